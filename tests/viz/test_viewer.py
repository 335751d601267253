"""The self-contained 3D viewer: embedded data round trip, no network loads, input errors, and a headless
Chromium that renders it (WebGL through SwiftShader) with the camera-frame convention."""

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import trimesh

from im2hands.hand.skeleton import BONES_INTERNAL
from im2hands.viz.viewer import VENDORED_SCRIPTS, WEB_ASSETS, write_viewer


def _sphere(centre, radius=0.03):
    m = trimesh.creation.icosphere(subdivisions=2, radius=radius)
    return m.vertices + np.asarray(centre), m.faces


def _payload(path: Path) -> dict:
    """The JSON object embedded in a viewer file."""
    match = re.search(r'<script type="application/json" id="im2hands-data">(.*?)</script>',
                      path.read_text(encoding="utf-8"), re.S)
    assert match, "no data payload in the page"
    return json.loads(match.group(1))


def _decode(b64: str, dtype: str, shape) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype=dtype).reshape(shape)


@pytest.fixture
def scene():
    rng = np.random.default_rng(0)
    meshes = {
        "initial": {"right": _sphere([0.05, 0.0, 0.5]), "left": _sphere([-0.05, 0.0, 0.5])},
        "refined": {"right": _sphere([0.05, 0.01, 0.5], 0.031), "left": _sphere([-0.05, 0.01, 0.5], 0.029)},
        "ground truth": {"left": _sphere([-0.05, 0.0, 0.52])},
    }
    keypoints = {"input": {"right": rng.normal(0, 0.03, (21, 3)) + [0.05, 0, 0.5],
                           "left": rng.normal(0, 0.03, (21, 3)) + [-0.05, 0, 0.5]},
                 "refined": {"right": rng.normal(0, 0.03, (21, 3)) + [0.05, 0, 0.5]}}
    return meshes, keypoints


def test_embeds_meshes_and_keypoints(tmp_path, scene):
    meshes, keypoints = scene
    path = write_viewer(tmp_path / "sub" / "view.html", meshes, keypoints=keypoints, title="sample 7")
    assert path == tmp_path / "sub" / "view.html" and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["view.html"], "temporary file left behind"
    data = _payload(path)
    assert data["title"] == "sample 7"
    assert data["stages"] == ["initial", "refined", "ground truth"]
    got = {(m["stage"], m["side"]): m for m in data["meshes"]}
    assert set(got) == {(s, side) for s, by_side in meshes.items() for side in by_side}
    for (stage, side), m in got.items():
        vertices, faces = meshes[stage][side]
        np.testing.assert_array_equal(_decode(m["vertices"], "<f4", (m["num_vertices"], 3)),
                                      vertices.astype(np.float32), err_msg=f"{stage} {side} vertices")
        np.testing.assert_array_equal(_decode(m["faces"], "<u4", (m["num_faces"], 3)), faces,
                                      err_msg=f"{stage} {side} faces")
    got_kp = {(k["name"], k["side"]): k for k in data["keypoints"]}
    assert set(got_kp) == {("input", "right"), ("input", "left"), ("refined", "right")}
    for (name, side), k in got_kp.items():
        np.testing.assert_array_equal(_decode(k["joints"], "<f4", (21, 3)),
                                      keypoints[name][side].astype(np.float32), err_msg=f"{name} {side}")
    assert [tuple(b) for b in data["bones"]] == list(BONES_INTERNAL)
    assert not data["keypoints_visible"], "keypoints start hidden beside meshes"
    # refined shown first; ground truth is the translucent reference
    assert {s: st["visible"] for s, st in data["stage_styles"].items()} == \
        {"initial": False, "refined": True, "ground truth": False}
    assert {s: st["reference"] for s, st in data["stage_styles"].items()} == \
        {"initial": False, "refined": False, "ground truth": True}
    # the initial view looks from the camera centre at the hands' centre (camera frame, metres)
    everything = np.concatenate([v for by_side in meshes.values() for v, _ in by_side.values()]
                                + [j for by_side in keypoints.values() for j in by_side.values()])
    np.testing.assert_allclose(data["view"]["centre_cam"], (everything.min(0) + everything.max(0)) / 2, atol=1e-6)


def test_last_stage_shown_without_refined(tmp_path, scene):
    meshes, _ = scene
    data = _payload(write_viewer(tmp_path / "v.html", {"initial": meshes["initial"], "gt": meshes["ground truth"]}))
    assert {s: st["visible"] for s, st in data["stage_styles"].items()} == {"initial": False, "gt": True}
    assert data["stage_styles"]["gt"]["reference"]


def test_keypoints_shown_without_meshes(tmp_path, scene):
    _, keypoints = scene
    assert _payload(write_viewer(tmp_path / "v.html", {}, keypoints=keypoints))["keypoints_visible"]


def test_empty_mesh_allowed(tmp_path):
    empty = (np.zeros((0, 3)), np.zeros((0, 3), int))
    data = _payload(write_viewer(tmp_path / "v.html", {"refined": {"right": empty}}))
    assert data["meshes"][0]["num_faces"] == 0


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_self_contained(tmp_path, scene):
    meshes, keypoints = scene
    page = write_viewer(tmp_path / "v.html", meshes, keypoints=keypoints).read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(page)
    for tag, attrs in parser.tags:
        assert "src" not in attrs and "href" not in attrs, f"<{tag} {attrs}> loads a resource"
        assert tag not in ("link", "iframe", "img", "object", "embed"), f"<{tag}> in a self-contained page"
    # every script is inlined: the vendored three.js files verbatim, then the page script
    for name in (*VENDORED_SCRIPTS, "viewer.js"):
        assert (WEB_ASSETS / name).read_text(encoding="utf-8") in page, f"{name} not inlined"
    # outside the vendored files (whose only URLs are an XML namespace and a comment) no URL at all
    ours = page
    for name in VENDORED_SCRIPTS:
        ours = ours.replace((WEB_ASSETS / name).read_text(encoding="utf-8"), "")
    for pattern in ("http://", "https://", "//cdn", "import(", "fetch(", "XMLHttpRequest", "url("):
        assert pattern not in ours, f"{pattern!r} in the page"


def test_names_cannot_break_the_page(tmp_path, scene):
    meshes, _ = scene
    title = "</script><script>alert(1)</script>"
    path = write_viewer(tmp_path / "v.html", {"a</script>": meshes["refined"]}, title=title)
    page = path.read_text(encoding="utf-8")
    assert page.count("</script>") == 1 + len(VENDORED_SCRIPTS) + 1   # data, vendored, viewer.js
    data = _payload(path)
    assert data["title"] == title and data["stages"] == ["a</script>"]


GOOD = _sphere([0.0, 0.0, 0.5])


@pytest.mark.parametrize("meshes, keypoints, message", [
    ({"refined": {"right": (GOOD[0][:, :2], GOOD[1])}}, None,
     r"meshes\['refined'\]\['right'\] vertices: expected shape \(V, 3\), got \(\d+, 2\)"),
    ({"refined": {"left": (np.where(np.arange(len(GOOD[0]))[:, None] == 5, np.nan, GOOD[0]), GOOD[1])}}, None,
     r"meshes\['refined'\]\['left'\] vertices: 1 non-finite rows \(first at row 5"),
    ({"initial": {"right": (GOOD[0], GOOD[1].astype(float))}}, None,
     r"meshes\['initial'\]\['right'\] faces: expected integer vertex indices, got dtype float64"),
    ({"initial": {"right": (GOOD[0], GOOD[1][:, :2])}}, None,
     r"meshes\['initial'\]\['right'\] faces: expected shape \(F, 3\)"),
    ({"initial": {"right": (GOOD[0], GOOD[1] + 1)}}, None,
     r"meshes\['initial'\]\['right'\] faces: indices must lie in \[0, \d+\)"),
    ({"initial": {"middle": GOOD}}, None, r"meshes\['initial'\]: unknown side 'middle'"),
    ({"initial": {"right": GOOD[0]}}, None, r"meshes\['initial'\]\['right'\]: expected a pair"),
    ({"initial": {"right": GOOD}}, {"input": {"left": np.zeros((20, 3))}},
     r"keypoints\['input'\]\['left'\]: expected shape \(21, 3\), got \(20, 3\)"),
    ({"initial": {"right": GOOD}}, {"input": {"right": np.full((21, 3), np.inf)}},
     r"keypoints\['input'\]\['right'\]: 21 non-finite rows"),
    ({"initial": {"right": (GOOD[0] * 1e40, GOOD[1])}}, None,
     r"meshes\['initial'\]\['right'\] vertices: \d+ non-finite rows"),   # overflows float32
    ({}, None, "nothing to show"),
])
def test_rejects_bad_input(tmp_path, meshes, keypoints, message):
    with pytest.raises(ValueError, match=message):
        write_viewer(tmp_path / "v.html", meshes, keypoints=keypoints)
    assert not any(tmp_path.iterdir()), "a file was written for bad input"


# --- in a browser -------------------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium: install Debian's `chromium` package (apt-get install chromium)")

# Headless Chromium has no GPU here: WebGL runs on SwiftShader (CPU) through ANGLE, which newer Chromium only
# allows with --enable-unsafe-swiftshader. Console messages land on stderr as "INFO:CONSOLE...] "msg", source:".
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader",
                  "--enable-unsafe-swiftshader", "--enable-logging=stderr", "--v=0", "--window-size=800,600",
                  "--virtual-time-budget=5000", "--host-resolver-rules=MAP * ~NOTFOUND")
# the driver's note about reading the frame back for the screenshot; not the page's
HARMLESS_CONSOLE = re.compile(r"GL Driver Message \(OpenGL, Performance")


def _chromium(page: Path, tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run headless Chromium on `page`; return the process and the page's console messages."""
    proc = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *extra,
                           page.resolve().as_uri()], capture_output=True, text=True, timeout=60)
    console = re.findall(r'CONSOLE[^\]]*\] "(.*)", source:', proc.stderr)
    return proc, console


@needs_chromium
def test_renders_in_headless_chromium(tmp_path):
    from PIL import Image

    # right hand right of and above the left one in the image (camera frame: x right, y down)
    right, left = [0.06, -0.03, 0.5], [-0.06, 0.03, 0.5]
    page = write_viewer(tmp_path / "v.html", {"refined": {"right": _sphere(right), "left": _sphere(left)}},
                        keypoints={"input": {"right": np.tile(right, (21, 1))}})
    shot = tmp_path / "shot.png"
    proc, console = _chromium(page, tmp_path, f"--screenshot={shot}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    page_messages = [m for m in console if not HARMLESS_CONSOLE.search(m)]
    assert page_messages == ["im2hands-viewer: ok, 2 meshes, 1 keypoint sets, WebGL2"] or \
        page_messages == ["im2hands-viewer: ok, 2 meshes, 1 keypoint sets, WebGL1"], \
        f"console: {console}\n{proc.stderr[-3000:]}"
    assert "Uncaught" not in proc.stderr and "ERROR:CONSOLE" not in proc.stderr

    rgb = np.asarray(Image.open(shot).convert("RGB")).astype(int)          # (600, 800, 3)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    reddish = (r > 90) & (r > g + 50) & (r > b + 50)
    bluish = (b > 90) & (b > r + 50) & (b > g + 30)
    # each sphere covers ~60 px radius at this distance and field of view (~11,000 px); the panel's swatches ~100
    assert reddish.sum() > 3000 and bluish.sum() > 3000, (reddish.sum(), bluish.sum())
    (ry, rx), (by, bx) = (np.argwhere(m).mean(axis=0) for m in (reddish, bluish))
    assert rx > 400 > bx, ("right hand on the right of the screen", rx, bx)
    assert ry < by, ("y down: the left hand (larger y) is lower on the screen", ry, by)


@needs_chromium
def test_reports_missing_webgl(tmp_path, scene):
    meshes, _ = scene
    page = write_viewer(tmp_path / "v.html", meshes)
    proc, console = _chromium(page, tmp_path, "--disable-3d-apis", f"--screenshot={tmp_path / 'shot.png'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any(m.startswith("im2hands-viewer: failed: WebGL is not available") for m in console), console
    assert not any(m.startswith("im2hands-viewer: ok") for m in console), console
