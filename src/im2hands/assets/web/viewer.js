// The page script of im2hands' self-contained 3D viewer (written by im2hands.viz.viewer.write_viewer).
//
// Reads the JSON payload in <script id="im2hands-data">: meshes and keypoints in the camera frame (OpenCV:
// x right, y down, z forward; metres) as base64 little-endian float32 / uint32 arrays.
//
// Frame: everything is added to one group rotated by pi about x, i.e. (x, y, z)_three = (x, -y, -z)_camera.
// A proper rotation, so faces keep their winding; a three.js camera at the origin with its default
// orientation (looking along -z, +y up) then sees what the image camera saw, which is the initial view.
//
// Signals for a headless check: on success one console line "im2hands-viewer: ok ..." and
// document.body.dataset.viewer = "ok"; on failure (no WebGL, an exception) one console.error line
// "im2hands-viewer: failed ...", dataset.viewer = "failed", document.title prefixed "[failed]", and the
// message shown in the page.
(function () {
  "use strict";

  let failed = false;

  function fail(message) {
    if (failed) return;
    failed = true;
    console.error("im2hands-viewer: failed: " + message);
    document.body.dataset.viewer = "failed";
    document.title = "[failed] " + document.title;
    const box = document.getElementById("error");
    box.textContent = "The 3D view could not be shown: " + message;
    box.hidden = false;
  }

  window.addEventListener("error", function (event) {
    fail(event.message || String(event));
  });

  // base64 -> a typed array over the decoded bytes (the payload is little-endian, like every platform
  // browsers run on).
  function decode(base64, TypedArray) {
    const binary = atob(base64);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return new TypedArray(bytes.buffer);
  }

  function css(rgb) {
    return "rgb(" + rgb.map(function (c) { return Math.round(255 * c); }).join(",") + ")";
  }

  const data = JSON.parse(document.getElementById("im2hands-data").textContent);
  document.getElementById("title").textContent = data.title;

  let renderer;
  try {
    renderer = new THREE.WebGLRenderer({ antialias: true });
  } catch (error) {
    // three.js throws a string, not an Error, when the context cannot be created
    fail("WebGL is not available in this browser (" + ((error && error.message) || error) + ")");
    return;
  }
  renderer.setPixelRatio(window.devicePixelRatio);
  renderer.setSize(window.innerWidth, window.innerHeight);
  renderer.setClearColor(new THREE.Color(data.background[0], data.background[1], data.background[2]));
  document.body.appendChild(renderer.domElement);

  const scene = new THREE.Scene();
  const world = new THREE.Group();   // the camera frame; see the frame note at the top
  world.rotation.x = Math.PI;
  scene.add(world);

  const view = data.view;
  const camera = new THREE.PerspectiveCamera(view.fov_deg, window.innerWidth / window.innerHeight,
                                             view.near, view.far);
  scene.add(camera);
  scene.add(new THREE.AmbientLight(0xffffff, 0.35));
  // a headlight from above-right of the viewer, so the side being looked at is always lit
  const headlight = new THREE.DirectionalLight(0xffffff, 0.75);
  headlight.position.set(0.4, 0.6, 0.0);
  headlight.target.position.set(0.0, 0.0, -1.0);
  camera.add(headlight);
  camera.add(headlight.target);
  const fill = new THREE.DirectionalLight(0xffffff, 0.25);   // fixed, from below-behind the hands
  fill.position.set(-0.5, -1.0, -1.0);
  scene.add(fill);

  // the hands' centre in three.js coordinates (the camera-frame centre with y and z negated)
  const target = new THREE.Vector3(view.centre_cam[0], -view.centre_cam[1], -view.centre_cam[2]);
  const controls = new THREE.OrbitControls(camera, renderer.domElement);

  function resetView() {
    camera.position.set(0, 0, 0);
    camera.up.set(0, 1, 0);
    controls.target.copy(target);
    controls.update();
  }

  const sideOn = { right: true, left: true };
  const stageOn = {};
  const keypointsOn = {};
  const stageObjects = [];      // {stage, side, object}
  const keypointObjects = [];   // {name, side, object}

  function render() {
    renderer.render(scene, camera);
  }

  function updateVisibility() {
    stageObjects.forEach(function (o) { o.object.visible = stageOn[o.stage] && sideOn[o.side]; });
    keypointObjects.forEach(function (o) { o.object.visible = keypointsOn[o.name] && sideOn[o.side]; });
    render();
  }

  // meshes
  data.meshes.forEach(function (m) {
    if (m.num_faces === 0) return;
    const geometry = new THREE.BufferGeometry();
    geometry.setAttribute("position", new THREE.BufferAttribute(decode(m.vertices, Float32Array), 3));
    geometry.setIndex(new THREE.BufferAttribute(decode(m.faces, Uint32Array), 1));
    geometry.computeVertexNormals();
    const style = data.stage_styles[m.stage];
    const rgb = style.reference ? data.reference_colours[m.side] : data.colours[m.side];
    const material = new THREE.MeshPhongMaterial({
      color: new THREE.Color(rgb[0], rgb[1], rgb[2]), shininess: 25, side: THREE.DoubleSide,
      transparent: style.reference, opacity: style.reference ? 0.45 : 1.0,
      depthWrite: !style.reference,   // a translucent reference must not hide what lies inside it
    });
    const mesh = new THREE.Mesh(geometry, material);
    if (style.reference) mesh.renderOrder = 1;   // after the opaque meshes, so they show through it
    world.add(mesh);
    stageObjects.push({ stage: m.stage, side: m.side, object: mesh });
  });

  // keypoints: a sphere per joint and a line per bone
  const sphere = new THREE.SphereGeometry(data.joint_radius, 12, 8);
  data.keypoints.forEach(function (k) {
    const joints = decode(k.joints, Float32Array);   // (21 * 3,) camera frame, metres
    const colour = data.keypoint_colours[k.name];
    const material = new THREE.MeshPhongMaterial({ color: new THREE.Color(colour[0], colour[1], colour[2]) });
    const group = new THREE.Group();
    for (let j = 0; j < joints.length / 3; j++) {
      const ball = new THREE.Mesh(sphere, material);
      ball.position.set(joints[3 * j], joints[3 * j + 1], joints[3 * j + 2]);
      group.add(ball);
    }
    const ends = new Float32Array(6 * data.bones.length);
    data.bones.forEach(function (bone, b) {
      for (let e = 0; e < 2; e++) {
        for (let a = 0; a < 3; a++) ends[6 * b + 3 * e + a] = joints[3 * bone[e] + a];
      }
    });
    const lines = new THREE.BufferGeometry();
    lines.setAttribute("position", new THREE.BufferAttribute(ends, 3));
    group.add(new THREE.LineSegments(lines, new THREE.LineBasicMaterial({
      color: new THREE.Color(colour[0], colour[1], colour[2]) })));
    world.add(group);
    keypointObjects.push({ name: k.name, side: k.side, object: group });
  });

  // the panel: a checkbox per stage, keypoint set and side
  function addToggle(listId, label, checked, rgb, onChange) {
    const row = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = checked;
    box.addEventListener("change", function () { onChange(box.checked); updateVisibility(); });
    row.appendChild(box);
    if (rgb) {
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = css(rgb);
      row.appendChild(swatch);
    }
    row.appendChild(document.createTextNode(label));
    document.getElementById(listId).appendChild(row);
  }

  data.stages.forEach(function (stage) {
    const style = data.stage_styles[stage];
    stageOn[stage] = style.visible;
    addToggle("stages", stage + (style.reference ? " (translucent)" : ""), style.visible, null,
              function (on) { stageOn[stage] = on; });
  });
  Object.keys(data.keypoint_colours).forEach(function (name) {
    keypointsOn[name] = data.keypoints_visible;
    addToggle("keypoint-sets", name, data.keypoints_visible, data.keypoint_colours[name],
              function (on) { keypointsOn[name] = on; });
  });
  document.getElementById("stages-panel").hidden = data.stages.length === 0;
  document.getElementById("keypoints-panel").hidden = Object.keys(data.keypoint_colours).length === 0;
  ["right", "left"].forEach(function (side) {
    addToggle("sides", side, true, data.colours[side], function (on) { sideOn[side] = on; });
  });
  document.getElementById("reset").addEventListener("click", function () { resetView(); render(); });

  controls.addEventListener("change", render);
  window.addEventListener("resize", function () {
    camera.aspect = window.innerWidth / window.innerHeight;
    camera.updateProjectionMatrix();
    renderer.setSize(window.innerWidth, window.innerHeight);
    render();
  });

  resetView();
  updateVisibility();
  if (!failed) {
    document.body.dataset.viewer = "ok";
    console.log("im2hands-viewer: ok, " + stageObjects.length + " meshes, " + keypointObjects.length +
                " keypoint sets, WebGL" + (renderer.capabilities.isWebGL2 ? "2" : "1"));
  }
})();
