"""An interactive 3D view of a reconstruction in one self-contained HTML file.

The file holds three.js (vendored in ``im2hands/assets/web``: ``three.min.js`` and the non-module
``OrbitControls.js`` of three.js 0.147.0, MIT, ``three.LICENSE``), the page script ``viewer.js`` and the data,
so it opens offline in any browser with WebGL; nothing is fetched at view time.

Data: meshes and keypoints in the **camera frame** (OpenCV: x right, y down, z forward), metres, embedded as
base64 of little-endian float32 vertices / joints and uint32 faces in a JSON payload
(``<script type="application/json" id="im2hands-data">``).

View: the page rotates the whole scene by pi about x (three.js is y-up and looks along -z), so the initial
view is the image camera's: the viewer stands at the camera centre, +y of the image points down the screen.
It looks at the centre of the hands, which the controls orbit around. Right hand red, left hand blue
(:data:`im2hands.viz.overlay.COLOURS`); a ground-truth stage (named "ground truth", "ground_truth" or "gt")
is drawn translucent and grey-tinted. The page has a checkbox per stage (at first only "refined", or the last
stage given, is on), per keypoint set (off at first unless there are no meshes) and per side.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from im2hands._io import atomic_write
from im2hands.hand.skeleton import BONES_INTERNAL, INTERNAL, SIDES
from im2hands.viz.overlay import COLOURS

WEB_ASSETS = Path(__file__).resolve().parents[1] / "assets" / "web"
"""The vendored three.js files and the page script."""

VENDORED_SCRIPTS = ("three.min.js", "OrbitControls.js")
"""three.js 0.147.0 files inlined in every viewer, in load order."""

REFERENCE_STAGES = ("ground truth", "gt")
"""Stage names (compared lower-case, "_" and "-" read as spaces) drawn translucent as a reference."""

DEFAULT_STAGE = "refined"
"""The stage shown when the page opens; if absent, the last stage given."""

KEYPOINT_COLOURS = ([0.98, 0.75, 0.18], [0.10, 0.62, 0.47], [0.55, 0.27, 0.68], [0.15, 0.15, 0.15])
"""sRGB in [0, 1] of the keypoint sets, in the order given (cycled)."""

JOINT_RADIUS_M = 0.004
"""Radius of a keypoint's sphere, metres."""

REFERENCE_GREY = 0.6
"""Grey level that a reference stage's hand colour is mixed half-and-half with."""

BACKGROUND = [0.96, 0.96, 0.96]
"""sRGB of the page's 3D background: neutral, so both hand colours read against it."""


def write_viewer(path: str | os.PathLike, meshes: Mapping[str, Mapping[str, tuple]], *,
                 keypoints: Mapping[str, Mapping[str, np.ndarray]] | None = None,
                 title: str = "im2hands") -> Path:
    """Write one self-contained HTML file showing the meshes (and keypoints) in 3D.

    Args:
        path: the HTML file to (re)write, atomically; its folder is created if missing.
        meshes: stage name (e.g. "initial", "refined", "ground truth") -> side ("right" / "left") ->
            (vertices (V, 3) float, camera frame, metres; faces (F, 3) integer indices into vertices).
            Any subset of stages and sides; an empty mesh (V = F = 0) is allowed and shows nothing.
        keypoints: optional set name (e.g. "input", "refined") -> side -> (21, 3) float joints, camera frame,
            metres, internal order (:data:`im2hands.hand.skeleton.INTERNAL`); drawn as spheres and bones.
        title: shown in the page's panel and tab.
    Returns:
        `path` as a ``Path``.
    Raises:
        ValueError: a wrong shape, dtype, side, index or a non-finite value, naming the stage, side and
            array; or nothing to show.
        TypeError: `meshes` or `keypoints` is not a mapping.
    """
    if not isinstance(meshes, Mapping):
        raise TypeError(f"meshes: expected a mapping stage -> side -> (vertices, faces), got {type(meshes).__name__}")
    if keypoints is None:
        keypoints = {}
    if not isinstance(keypoints, Mapping):
        raise TypeError(f"keypoints: expected a mapping name -> side -> (21, 3) joints, got {type(keypoints).__name__}")
    mesh_arrays = _checked_meshes(meshes)
    keypoint_arrays = _checked_keypoints(keypoints)
    if not mesh_arrays and not keypoint_arrays:
        raise ValueError("meshes and keypoints are both empty: nothing to show")
    payload = _payload(mesh_arrays, keypoint_arrays, list(meshes), list(keypoints), str(title))
    page = _page(payload, str(title)).encode("utf-8")
    path = Path(path)
    atomic_write(path, lambda f: f.write(page))
    return path


def _side_items(by_side, where: str):
    """(side, value) pairs of a side mapping, checked to hold only "right" / "left"."""
    if not isinstance(by_side, Mapping):
        raise ValueError(f"{where}: expected a mapping side -> arrays, got {type(by_side).__name__}")
    for side in by_side:
        if side not in SIDES:
            raise ValueError(f"{where}: unknown side {side!r}; expected 'right' or 'left'")
    return [(side, by_side[side]) for side in SIDES if side in by_side]


def _checked_name(name, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what}: expected a non-empty string name, got {name!r}")
    return name


def _checked_points(points, where: str, rows: int | None) -> np.ndarray:
    """`points` as float32 (rows, 3), checked finite; `rows` None for any count."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3 or (rows is not None and points.shape[0] != rows):
        expected = f"({'V' if rows is None else rows}, 3)"
        raise ValueError(f"{where}: expected shape {expected}, got {points.shape}")
    if not (np.issubdtype(points.dtype, np.floating) or np.issubdtype(points.dtype, np.integer)):
        raise ValueError(f"{where}: expected a numeric (float) array, got dtype {points.dtype}")
    with np.errstate(over="ignore"):   # values too large for float32 become inf, reported just below
        points32 = points.astype(np.float32)
    bad = ~np.isfinite(points32).all(axis=1)
    if bad.any():
        raise ValueError(f"{where}: {int(bad.sum())} non-finite rows (first at row {int(np.argmax(bad))}: "
                         f"{points[np.argmax(bad)].tolist()})")
    return points32


def _checked_meshes(meshes: Mapping) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """[(stage, side, vertices float32 (V, 3), faces uint32 (F, 3))] in the order given, sides right first."""
    checked = []
    for stage, by_side in meshes.items():
        _checked_name(stage, "meshes: stage")
        for side, mesh in _side_items(by_side, f"meshes[{stage!r}]"):
            where = f"meshes[{stage!r}][{side!r}]"
            if isinstance(mesh, (str, bytes)) or not hasattr(mesh, "__len__") or len(mesh) != 2:
                raise ValueError(f"{where}: expected a pair (vertices (V, 3), faces (F, 3)), got {type(mesh).__name__}")
            vertices = _checked_points(mesh[0], f"{where} vertices", None)
            faces = np.asarray(mesh[1])
            if faces.ndim != 2 or faces.shape[1] != 3:
                raise ValueError(f"{where} faces: expected shape (F, 3), got {faces.shape}")
            if faces.size and not np.issubdtype(faces.dtype, np.integer):
                raise ValueError(f"{where} faces: expected integer vertex indices, got dtype {faces.dtype} "
                                 "(convert with .astype(int) if the values are whole)")
            if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
                raise ValueError(f"{where} faces: indices must lie in [0, {len(vertices)}) (the vertex count), "
                                 f"got [{faces.min()}, {faces.max()}]")
            checked.append((stage, side, vertices, faces.astype(np.uint32)))
    return checked


def _checked_keypoints(keypoints: Mapping) -> list[tuple[str, str, np.ndarray]]:
    """[(name, side, joints float32 (21, 3))] in the order given, sides right first."""
    checked = []
    for name, by_side in keypoints.items():
        _checked_name(name, "keypoints: set")
        for side, joints in _side_items(by_side, f"keypoints[{name!r}]"):
            checked.append((name, side, _checked_points(joints, f"keypoints[{name!r}][{side!r}]", len(INTERNAL))))
    return checked


def _is_reference(stage: str) -> bool:
    return stage.lower().replace("_", " ").replace("-", " ").strip() in REFERENCE_STAGES


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def _initial_view(points: list[np.ndarray]) -> dict:
    """The camera at the origin looking at the centre of `points` ((N, 3) camera frame, metres).

    Returns the centre (camera frame, metres) and a vertical field of view (degrees) that fits the points'
    bounding sphere with a margin, clamped to [5, 60] degrees (60 when the camera is inside the sphere).
    """
    stacked = np.concatenate([p for p in points if len(p)] or [np.zeros((0, 3), np.float32)]).astype(np.float64)
    if len(stacked) == 0:   # only empty meshes: look half a metre ahead
        centre, radius = np.array([0.0, 0.0, 0.5]), 0.1
    else:
        centre = (stacked.min(axis=0) + stacked.max(axis=0)) / 2
        radius = max(float(np.linalg.norm(stacked - centre, axis=1).max()), 1e-3)
    distance = float(np.linalg.norm(centre))
    margin = 1.3
    fov_deg = 60.0 if distance <= margin * radius else math.degrees(2 * math.asin(margin * radius / distance))
    return {"centre_cam": centre.tolist(), "fov_deg": min(max(fov_deg, 5.0), 60.0),
            "near": 0.01, "far": max(10.0, 4 * (distance + radius))}


def _payload(mesh_arrays, keypoint_arrays, stages: list[str], keypoint_sets: list[str], title: str) -> dict:
    """The JSON object read by ``viewer.js``."""
    shown = DEFAULT_STAGE if DEFAULT_STAGE in stages else (stages[-1] if stages else None)
    colours = {side: np.asarray(COLOURS[side], dtype=float).tolist() for side in SIDES}
    return {
        "title": title,
        "stages": stages,
        "stage_styles": {s: {"visible": s == shown, "reference": _is_reference(s)} for s in stages},
        "meshes": [{"stage": stage, "side": side, "num_vertices": len(v), "num_faces": len(f),
                    "vertices": _b64(v, "<f4"), "faces": _b64(f, "<u4")}
                   for stage, side, v, f in mesh_arrays],
        "keypoints": [{"name": name, "side": side, "joints": _b64(j, "<f4")} for name, side, j in keypoint_arrays],
        "keypoint_colours": {n: KEYPOINT_COLOURS[i % len(KEYPOINT_COLOURS)] for i, n in enumerate(keypoint_sets)},
        # keypoints start hidden (they sit inside the meshes) unless there is nothing else to see
        "keypoints_visible": not mesh_arrays,
        "bones": [list(b) for b in BONES_INTERNAL],
        "colours": colours,
        "reference_colours": {side: [(c + REFERENCE_GREY) / 2 for c in rgb] for side, rgb in colours.items()},
        "joint_radius": JOINT_RADIUS_M,
        "background": BACKGROUND,
        "view": _initial_view([v for _, _, v, _ in mesh_arrays] + [j for _, _, j in keypoint_arrays]),
    }


def _script_text(text: str) -> str:
    """`text` safe inside a <script> element (which ends at the first "</script")."""
    if "</script" in text.lower() or "<!--" in text:
        raise ValueError("a vendored script contains '</script' or '<!--' and cannot be inlined")
    return text


_STYLE = """
html, body { margin: 0; height: 100%; overflow: hidden; font: 13px/1.4 system-ui, sans-serif; color: #222; }
canvas { display: block; }
#panel { position: absolute; top: 10px; left: 10px; background: rgba(255,255,255,0.88); padding: 8px 12px;
         border-radius: 6px; box-shadow: 0 1px 4px rgba(0,0,0,0.25); max-width: 260px; }
#panel h1 { font-size: 15px; margin: 0 0 6px; }
#panel h2 { font-size: 12px; margin: 8px 0 2px; text-transform: uppercase; color: #666; }
#panel label { display: block; cursor: pointer; white-space: nowrap; }
.swatch { display: inline-block; width: 10px; height: 10px; margin: 0 5px 0 2px; border-radius: 2px; }
#help { margin-top: 8px; font-size: 11px; color: #666; }
#error { position: absolute; top: 40%; left: 10%; right: 10%; padding: 12px; background: #fee; color: #900;
         border: 1px solid #c66; border-radius: 6px; font-size: 15px; }
"""

_BODY = """
<div id="panel">
  <h1 id="title"></h1>
  <div id="stages-panel"><h2>Stages</h2><div id="stages"></div></div>
  <div id="keypoints-panel"><h2>Keypoints</h2><div id="keypoint-sets"></div></div>
  <h2>Hands</h2><div id="sides"></div>
  <button id="reset" type="button">view from the camera</button>
  <div id="help">drag: orbit &middot; right-drag: pan &middot; wheel: zoom<br>
  camera frame (OpenCV): x right, y down, z forward; metres</div>
</div>
<div id="error" hidden></div>
"""


def _page(payload: dict, title: str) -> str:
    # "<" escaped so that no string in the data can close the <script> element holding it
    data = json.dumps(payload, separators=(",", ":")).replace("<", "\\u003c")
    scripts = [(WEB_ASSETS / name).read_text(encoding="utf-8") for name in (*VENDORED_SCRIPTS, "viewer.js")]
    inlined = "\n".join(f"<script>\n{_script_text(s)}\n</script>" for s in scripts)
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n{_BODY}\n"
            f"<script type=\"application/json\" id=\"im2hands-data\">{data}</script>\n{inlined}\n</body>\n</html>\n")
