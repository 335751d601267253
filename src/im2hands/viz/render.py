"""CPU rendering of the synthetic images: two shaded hands over a random background, plus per-hand masks.

Rendering uses pyrender with an EGL context on Mesa's llvmpipe (no display, no GPU). ``PYOPENGL_PLATFORM``
must be set before pyrender (or PyOpenGL) is first imported; :func:`_import_pyrender` does that, so import
this module before anything else imports pyrender, or set ``PYOPENGL_PLATFORM=egl`` yourself.

Frames and pixels:
    Vertices come in the OpenCV camera frame (x right, y down, z forward, metres). pyrender's camera looks
    down -z with y up, so vertices are given to it as ``v * (1, -1, -1)`` under an identity camera pose.
    A pixel index (u, v) = (column, row) has its centre at the continuous point (u, v) of ``K @ X / z``
    (OpenCV's convention); GL rasterises pixel centres at +0.5, so the principal point handed to
    ``IntrinsicsCamera`` is ``c + 0.5``.

One :class:`HandRenderer` holds one offscreen context; create one per process (they are not picklable and
must not cross a fork). Rendering is deterministic: the same inputs give the same bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from im2hands.hand.camera import look_at
from im2hands.hand.skeleton import SIDES

MASK_VALUES = {"background": 0, "right": 1, "left": 2}
"""Values of the label image ``RenderResult.labels``."""


def _import_pyrender():
    if os.environ.get("PYOPENGL_PLATFORM") not in ("egl", "osmesa"):
        os.environ["PYOPENGL_PLATFORM"] = "egl"
    import pyrender

    return pyrender


# ---------------------------------------------------------------------------------------------------------
# Appearance
# ---------------------------------------------------------------------------------------------------------

SKIN_TONES = np.array(
    [  # sRGB 0-1, light to dark (a spread of common skin tones)
        (0.98, 0.85, 0.75), (0.95, 0.78, 0.66), (0.90, 0.72, 0.58), (0.84, 0.64, 0.50),
        (0.76, 0.56, 0.42), (0.66, 0.47, 0.34), (0.55, 0.38, 0.27), (0.44, 0.30, 0.21),
        (0.34, 0.23, 0.16), (0.26, 0.17, 0.12),
    ]
)


@dataclass(frozen=True)
class Light:
    """One directional light. ``direction``: (3,) unit vector the light travels along, OpenCV camera frame."""

    direction: np.ndarray
    color: np.ndarray
    """(3,) linear RGB in [0, 1]."""
    intensity: float


@dataclass(frozen=True)
class Appearance:
    """Everything random about a picture apart from the geometry."""

    skin_right: np.ndarray
    """(3,) sRGB in [0, 1], base colour of the right hand."""
    skin_left: np.ndarray
    """(3,) sRGB in [0, 1], base colour of the left hand."""
    roughness: float
    lights: tuple[Light, ...]
    ambient: np.ndarray
    """(3,) linear RGB ambient light."""
    background: np.ndarray = field(repr=False)
    """(H, W, 3) uint8 background image."""


def random_skin(rng: np.random.Generator) -> np.ndarray:
    """One skin colour: a random palette tone, jittered in brightness and hue. (3,) sRGB in [0, 1]."""
    base = SKIN_TONES[rng.integers(len(SKIN_TONES))]
    tint = 1.0 + rng.normal(0.0, 0.04, 3)
    return np.clip(base * tint * rng.uniform(0.9, 1.08), 0.0, 1.0)


def random_appearance(rng: np.random.Generator, size: int = 256) -> Appearance:
    """Draw skin tones (left and right differ in about a third of samples), lights and a background."""
    skin_right = random_skin(rng)
    skin_left = random_skin(rng) if rng.random() < 0.35 else np.clip(skin_right * (1.0 + rng.normal(0.0, 0.03, 3)), 0, 1)
    lights = []
    for i in range(int(rng.integers(1, 4))):
        d = rng.normal(size=3)
        d[2] = abs(d[2]) + 0.5  # mostly from the camera side (travelling away from the camera)
        d /= np.linalg.norm(d)
        color = np.clip(1.0 - rng.uniform(0.0, 0.25, 3) * (rng.random() < 0.5), 0, 1)
        lights.append(Light(direction=d, color=color, intensity=float(rng.uniform(1.0, 3.0) / (1 + i))))
    ambient = np.full(3, rng.uniform(0.1, 0.35)) * (1.0 + rng.normal(0.0, 0.05, 3))
    return Appearance(
        skin_right=skin_right,
        skin_left=skin_left,
        roughness=float(rng.uniform(0.5, 0.95)),
        lights=tuple(lights),
        ambient=np.clip(ambient, 0, 1),
        background=random_background(rng, size),
    )


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size, 3) float in [0, 1]: a random grid of ``cells``² colours upsampled bicubically."""
    grid = (rng.random((cells, cells, 3)) * 255).astype(np.uint8)
    img = Image.fromarray(grid).resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32) / 255.0


def random_background(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """A varied, non-uniform background: gradient + smooth noise + random shapes. (size, size, 3) uint8."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)) + 0.5
    c0, c1 = rng.random(3), rng.random(3)
    img = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    w_noise = rng.uniform(0.1, 0.6)
    noise = _smooth_noise(rng, size, int(rng.integers(3, 24)))
    img = (1 - w_noise) * img + w_noise * noise
    fine = rng.normal(0.0, rng.uniform(0.0, 0.06), (size, size, 1))  # grain
    img = np.clip(img + fine, 0, 1)
    pil = Image.fromarray((img * 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil, "RGBA")
    for _ in range(int(rng.integers(0, 9))):
        kind = int(rng.integers(3))
        color = tuple(int(c) for c in rng.integers(0, 256, 3)) + (int(rng.integers(90, 256)),)
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * size
        w, h = rng.uniform(0.05, 0.6, 2) * size
        if kind == 0:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=color)
        elif kind == 1:
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=color)
        else:
            pts = rng.uniform(-0.1, 1.1, (int(rng.integers(3, 7)), 2)) * size
            draw.polygon([tuple(p) for p in pts], fill=color)
    if rng.random() < 0.5:
        pil = pil.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 3.0))))
    return np.asarray(pil.convert("RGB"), dtype=np.uint8).copy()


# ---------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderResult:
    """One rendered picture.

    Attributes:
        rgb: (H, W, 3) uint8 image, hands composited over the background (anti-aliased edges).
        labels: (H, W) uint8, visible hand per pixel: 0 background, 1 right, 2 left (``MASK_VALUES``).
        silhouette_right: (H, W) bool, pixels covered by the right hand if the left were absent.
        silhouette_left: (H, W) bool, same for the left hand.
    """

    rgb: np.ndarray
    labels: np.ndarray
    silhouette_right: np.ndarray
    silhouette_left: np.ndarray


def _look_at_rotation(direction_gl: np.ndarray) -> np.ndarray:
    """(4, 4) pose whose -z axis points along ``direction_gl`` (pyrender lights shine along their -z)."""
    z = -direction_gl / np.linalg.norm(direction_gl)
    up = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, y, z], axis=1)
    return pose


_CV_TO_GL = np.array([1.0, -1.0, -1.0])


_CONTEXTS: dict[tuple[int, int], list] = {}
"""(process id, size) -> [pyrender.OffscreenRenderer, number of open HandRenderers using it]."""

_EGL_USED_IN: set[int] = set()
"""Process ids that have opened an EGL context (a process that has not can safely fork renderers)."""


def egl_used_in_this_process() -> bool:
    """Whether this process has ever opened a rendering context (then fork-started workers are unsafe)."""
    return os.getpid() in _EGL_USED_IN


class HandRenderer:
    """Offscreen renderer of two hands; call :meth:`close` (or use ``with``) when done.

    All renderers of one size in a process share one EGL context (deleting one EGL context terminates the
    display under the others), which is freed when the last of them closes. Never use a renderer created
    before a fork in the child: make it in the process that renders.

    Args:
        size: image side in pixels (square images).
    """

    def __init__(self, size: int = 256):
        if not isinstance(size, int) or size <= 0:
            raise ValueError(f"size: expected a positive int, got {size!r}")
        self.size = size
        self._pyrender = _import_pyrender()
        self._key = (os.getpid(), size)
        entry = _CONTEXTS.get(self._key)
        if entry is None:
            _EGL_USED_IN.add(os.getpid())
            entry = _CONTEXTS[self._key] = [self._pyrender.OffscreenRenderer(size, size), 0]
        entry[1] += 1
        self._renderer = entry[0]

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer = None
            entry = _CONTEXTS[self._key]
            entry[1] -= 1
            if entry[1] == 0:
                entry[0].delete()
                del _CONTEXTS[self._key]

    def __enter__(self) -> "HandRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def render(
        self,
        meshes: dict[str, tuple[np.ndarray, np.ndarray]],
        K: np.ndarray,
        appearance: Appearance,
    ) -> RenderResult:
        """Render both hands over ``appearance.background``.

        Args:
            meshes: ``{"right": (vertices, faces), "left": (vertices, faces)}``; vertices (V, 3) metres in the
                OpenCV camera frame, faces (F, 3) int, outward-oriented.
            K: (3, 3) intrinsics in pixels for an image of ``size``² (pixel = K X / z, OpenCV convention).
            appearance: skin colours, lights and background from :func:`random_appearance`.
        Returns:
            A :class:`RenderResult`.
        """
        if self._renderer is None:
            raise ValueError("HandRenderer: render() called after close()")
        pyrender = self._pyrender
        import trimesh

        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"K: expected shape (3, 3), got {K.shape}")
        if set(meshes) != set(SIDES):
            raise ValueError(f"meshes: expected keys {SIDES}, got {tuple(meshes)}")
        bg = np.asarray(appearance.background)
        if bg.shape != (self.size, self.size, 3):
            raise ValueError(f"appearance.background: expected shape ({self.size}, {self.size}, 3), got {bg.shape}")

        depths = []
        for side in SIDES:
            v, _ = meshes[side]
            depths.append(np.asarray(v)[:, 2])
        zmin = float(min(d.min() for d in depths))
        zmax = float(max(d.max() for d in depths))
        if zmin <= 0:
            raise ValueError(f"meshes: every vertex must be in front of the camera (z > 0), min z = {zmin:.4g} m")

        scene = pyrender.Scene(bg_color=np.zeros(4), ambient_light=np.asarray(appearance.ambient, dtype=np.float64))
        camera = pyrender.IntrinsicsCamera(
            fx=K[0, 0], fy=K[1, 1], cx=K[0, 2] + 0.5, cy=K[1, 2] + 0.5,
            znear=max(zmin * 0.5, 1e-3), zfar=zmax * 2.0 + 0.1,
        )
        scene.add(camera, pose=np.eye(4))
        for light in appearance.lights:
            node = pyrender.DirectionalLight(color=np.asarray(light.color), intensity=light.intensity)
            scene.add(node, pose=_look_at_rotation(np.asarray(light.direction) * _CV_TO_GL))
        nodes = {}
        for side in SIDES:
            v, f = meshes[side]
            tm = trimesh.Trimesh(np.asarray(v, dtype=np.float64) * _CV_TO_GL, np.asarray(f), process=False)
            skin = appearance.skin_right if side == "right" else appearance.skin_left
            material = pyrender.MetallicRoughnessMaterial(
                baseColorFactor=np.append(np.asarray(skin, dtype=np.float64), 1.0),
                metallicFactor=0.0,
                roughnessFactor=appearance.roughness,
            )
            nodes[side] = scene.add(pyrender.Mesh.from_trimesh(tm, material=material, smooth=True))

        flags = pyrender.RenderFlags
        color, _ = self._renderer.render(scene, flags=flags.RGBA)
        alpha = color[..., 3:4].astype(np.float32) / 255.0
        # The multisampled buffer is resolved against a transparent black clear colour, so the colour is
        # premultiplied by coverage: composite with "over" for premultiplied colour.
        rgb = color[..., :3].astype(np.float32) + bg.astype(np.float32) * (1.0 - alpha)
        rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)

        seg_colors = {nodes["right"]: np.array([1, 0, 0]), nodes["left"]: np.array([2, 0, 0])}
        seg, _ = self._renderer.render(scene, flags=flags.SEG, seg_node_map=seg_colors)
        labels = np.ascontiguousarray(seg[..., 0]).astype(np.uint8)
        sil = {}
        for side in SIDES:
            seg1, _ = self._renderer.render(scene, flags=flags.SEG, seg_node_map={nodes[side]: np.array([1, 0, 0])})
            sil[side] = seg1[..., 0] > 0
        return RenderResult(rgb=rgb, labels=labels, silhouette_right=sil["right"], silhouette_left=sil["left"])


def pool_start_method(method: str, preload=None) -> str:
    """``fork`` or ``spawn`` for a pool of rendering workers.

    Args:
        method: ``"auto"``: ``fork`` (no start-up imports) when this process has never opened a rendering
            context, else ``spawn``; ``"fork"`` or ``"spawn"`` to choose.
        preload: called before forking, to import what every worker needs once in the parent.
    Raises:
        ValueError: ``fork`` after this process opened a rendering context (the EGL context cannot be shared).
    """
    if method not in ("auto", "fork", "spawn"):
        raise ValueError(f"start_method: expected 'auto', 'fork' or 'spawn', got {method!r}")
    if method == "auto":
        method = "spawn" if egl_used_in_this_process() else "fork"
    if method == "fork":
        if egl_used_in_this_process():
            raise ValueError("start_method: 'fork' is unsafe after this process opened a rendering context; "
                             "use 'spawn' or 'auto'")
        # Import the heavy modules once here, so forked workers start without importing them.
        _import_pyrender()
        import im2hands.hand.canonical  # noqa: F401
        if preload is not None:
            preload()
    return method


def opengl_pose(R: np.ndarray, T: np.ndarray) -> np.ndarray:
    """(4, 4) camera-to-world pose in OpenGL's camera convention (looks along -z, y up) of the OpenCV
    camera (R, T) (:func:`im2hands.hand.camera.look_at`): columns x, -y, -z of the camera, at its centre."""
    R, T = np.asarray(R, dtype=np.float64), np.asarray(T, dtype=np.float64)
    pose = np.eye(4)
    pose[:3, :3] = R.T * np.array([1.0, -1.0, -1.0])
    pose[:3, 3] = -R.T @ T
    return pose


def render_meshes(meshes, colors, cam_pose: np.ndarray, *, size: int = 512, yfov: float = 0.55) -> np.ndarray:
    """Render meshes shaded, offscreen (pyrender, EGL), on a white background.

    Args:
        meshes: list of ``trimesh.Trimesh`` (metres).
        colors: one RGB (0-1) per mesh.
        cam_pose: (4, 4) camera-to-world pose, OpenGL convention (:func:`opengl_pose`).
    Returns:
        (size, size, 3) uint8 image.
    """
    pyrender = _import_pyrender()

    scene = pyrender.Scene(bg_color=np.array([1.0, 1.0, 1.0, 1.0]), ambient_light=np.array([0.25, 0.25, 0.25]))
    for mesh, color in zip(meshes, colors):
        mat = pyrender.MetallicRoughnessMaterial(baseColorFactor=(*color, 1.0), metallicFactor=0.0,
                                                 roughnessFactor=0.65)
        scene.add(pyrender.Mesh.from_trimesh(mesh, material=mat, smooth=True))
    scene.add(pyrender.PerspectiveCamera(yfov=yfov), pose=cam_pose)
    scene.add(pyrender.DirectionalLight(intensity=2.2), pose=cam_pose)
    key = opengl_pose(*look_at(cam_pose[:3, 3] + np.array([0.3, 0.5, 0.2]), cam_pose[:3, 3] - cam_pose[:3, 2],
                               [0, -1, 0]))
    scene.add(pyrender.DirectionalLight(intensity=1.2), pose=key)
    renderer = pyrender.OffscreenRenderer(size, size)
    try:
        color, _ = renderer.render(scene)
    finally:
        renderer.delete()
    return np.ascontiguousarray(color[..., :3])
