"""A tiny InterHand2.6M v1.0 in the exact official layouts, written by the tests (no dataset file is shipped).

``write_open_wrist_mano`` writes a MANO-format model with an open wrist like MANO's: the project's open hand
model with the faces of its wrist cap removed (one boundary loop), the left file an exact mirror except for
the official files' unmirrored ``shapedirs`` (so the left-hand fix must be detected), no ``openhand_version``.

``write_interhand_fixture`` writes ``annotations/skeleton.txt``, the four JSON files of one split and JPEG
images of 512 x 334 (W x H) rendered from the MANO fits through each camera: one capture, two cameras, seven
frames covering every selection and skip case (``FRAMES``). Its traps are the real ones: ``capture`` an int
and ``camera`` a string in the data file, string keys elsewhere, nested ``joint_valid``, ``[1, 1, 1]``
placeholders for invalid joints, ``null`` MANO hands, world mm with MANO ``trans`` in metres, camera 2 seeing
the hands past the left image edge (bbox beyond the image).
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from im2hands.hand.skeleton import INTERHAND, INTERHAND_HAND_FROM_INTERNAL, SIDES
from tests.hand.mano_fixture import mirror_to_left

WIDTH, HEIGHT = 512, 334
CAPTURE = 0
SEQ = "0000_fixture_interaction"
CAMS = ("400262", "400263")
BACKGROUND = (90, 90, 90)
SKIN = {"right": (0.95, 0.25, 0.2), "left": (0.2, 0.3, 0.95)}

# frame_idx -> (hand_type, hand_type_valid, MANO right present, MANO left present, MANO entry present,
#               invalid joint ids, images: per camera "ok" | "missing" | "dark")
FRAMES = {
    100: ("interacting", 1, True, True, True, (), ("ok", "ok")),
    106: ("interacting", 1, True, True, True, (0, 5, 41), ("ok", "ok")),
    112: ("interacting", 1, True, False, True, (), ("ok", "ok")),
    118: ("right", 1, True, False, True, tuple(range(21, 42)), ("ok", "ok")),
    124: ("interacting", 0, True, True, True, (), ("ok", "ok")),
    130: ("interacting", 1, True, True, False, (), ("ok", "ok")),
    136: ("interacting", 1, True, True, True, (), ("missing", "dark")),
}
SELECTION_SKIPS = {"MANO missing for a hand": 2, "hand type not valid": 2, "no MANO entry": 2, "not interacting": 2}
PREPARE_SKIPS = {"dark image": 1, "image missing": 1}
SELECTED_FRAMES = (100, 106, 136)


def write_open_wrist_mano(folder: Path) -> Path:
    """``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` of the open hand model with its wrist cap cut open."""
    import scipy.sparse

    from im2hands.hand.mano import load_mano_pickle
    from im2hands.hand.openhand import openhand_dir

    d = load_mano_pickle(openhand_dir() / "MANO_RIGHT.pkl")
    v, f = np.asarray(d["v_template"]), np.asarray(d["f"]).astype(np.int64)
    f = f[~(v[f][:, :, 0] > 0.03).any(axis=1)]  # the wrist cap: faces beyond x = 3 cm
    used = np.unique(f)
    new_id = np.full(len(v), -1)
    new_id[used] = np.arange(len(used))
    jreg = scipy.sparse.csc_matrix(d["J_regressor"])[:, used]
    right = {
        "v_template": v[used], "f": new_id[f].astype(np.uint32), "weights": np.asarray(d["weights"])[used],
        "J_regressor": scipy.sparse.csc_matrix(jreg.multiply(1.0 / jreg.sum(axis=1))),
        "kintree_table": np.asarray(d["kintree_table"]), "shapedirs": np.asarray(d["shapedirs"])[used],
        "posedirs": np.asarray(d["posedirs"])[used], "hands_components": np.asarray(d["hands_components"]),
        "hands_mean": np.asarray(d["hands_mean"]), "tip_vertex_ids": new_id[np.asarray(d["tip_vertex_ids"])],
        "hands_coeffs": np.zeros((4, 45)), "bs_style": "lbs", "bs_type": "lrotmin",
    }
    assert (right["tip_vertex_ids"] >= 0).all()
    right["J"] = right["J_regressor"] @ right["v_template"]
    left = mirror_to_left(right)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (("MANO_RIGHT.pkl", right), ("MANO_LEFT.pkl", left)):
        with open(folder / name, "wb") as fh:
            pickle.dump(data, fh, protocol=2)
    return folder


@dataclass(frozen=True)
class FixtureCamera:
    campos_mm: np.ndarray
    camrot: np.ndarray
    focal: tuple[float, float]
    princpt: tuple[float, float]

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.focal[0], 0, self.princpt[0]], [0, self.focal[1], self.princpt[1]], [0, 0, 1.0]])

    @property
    def T(self) -> np.ndarray:
        return -self.camrot @ self.campos_mm / 1000.0


def fixture_cameras() -> dict[str, FixtureCamera]:
    from im2hands.hand.camera import look_at

    centre = np.array([0.1, 0.2, 0.9])
    cams = {}
    for cam, offset, princpt in ((CAMS[0], (0.0, -0.05, -0.6), (256.0, 167.0)),
                                 (CAMS[1], (0.25, -0.1, -0.5), (40.0, 160.0))):
        eye = centre + np.array(offset)
        R, _ = look_at(eye, centre, np.array([0.0, -1.0, 0.0]))
        cams[cam] = FixtureCamera(campos_mm=eye * 1000.0, camrot=R, focal=(400.0, 404.0), princpt=princpt)
    return cams


def fixture_mano(frame: int, hands) -> dict[str, np.ndarray]:
    """NeuralAnnot-style fit (61 values: pose 48, shape 10, trans 3 metres) of each hand of `frame`."""
    rng = np.random.default_rng(frame)
    centre = np.array([0.1, 0.2, 0.9])
    out = {}
    for side, dx in (("right", 0.11), ("left", -0.11)):
        pose = np.concatenate([rng.normal(0, 0.25, 3), rng.normal(0, 0.15, 45)])
        betas = rng.normal(0, 0.5, 10)
        zero = np.concatenate([pose, betas, np.zeros(3)])
        _, joints = hands[side].pose(zero)
        trans = centre + np.array([dx, 0.0, 0.0]) + rng.normal(0, 0.01, 3) - joints[0]
        out[side] = np.concatenate([pose, betas, trans])
    return out


def _mano_json(values: np.ndarray) -> dict:
    return {"pose": values[:48].tolist(), "shape": values[48:58].tolist(), "trans": values[58:61].tolist()}


def write_interhand_fixture(root: Path, mano_dir: Path, split: str = "test") -> dict:
    """Write the fixture into `root` (see the module docstring). Returns ``{(frame, cam): info}`` of the images."""
    from PIL import Image

    from im2hands.data.interhand.prepare import load_posable_hands
    from im2hands.viz.render import Appearance, HandRenderer, Light

    hands = load_posable_hands(mano_dir)
    cams = fixture_cameras()
    ann_dir = root / "annotations" / split
    ann_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for j, name in enumerate(INTERHAND):
        side, joint = name.split("_", 1)
        parent = -1 if joint == "wrist" else (j + 1 if not joint.endswith("1") else (20 if side == "right" else 41))
        lines.append(f"{side[0]}_{joint}\t{j}\t{parent}")
    (root / "annotations" / "skeleton.txt").write_text("\n".join(lines) + "\n")

    images, annotations, mano_js, joints_js, info = [], [], {}, {}, {}
    light = Light(direction=np.array([0.2, 0.3, 1.0]) / np.linalg.norm([0.2, 0.3, 1.0]), color=np.ones(3), intensity=2.5)
    appearance = Appearance(skin_right=np.array(SKIN["right"]), skin_left=np.array(SKIN["left"]), roughness=0.8,
                            lights=(light,), ambient=np.full(3, 0.5),
                            background=np.broadcast_to(np.array(BACKGROUND, np.uint8), (WIDTH, WIDTH, 3)).copy())
    image_id = 0
    with HandRenderer(WIDTH) as renderer:
        for frame, (hand_type, type_valid, has_r, has_l, has_entry, invalid, kinds) in FRAMES.items():
            fits = fixture_mano(frame, hands)
            posed = {s: hands[s].pose(fits[s]) for s in SIDES}
            world_mm = np.concatenate([posed[s][1][list(INTERHAND_HAND_FROM_INTERNAL)] * 1000.0 for s in SIDES])
            valid = np.ones(42, dtype=bool)
            valid[list(invalid)] = False
            world_mm[~valid] = 1.0  # the official placeholder of an invalid joint
            if has_entry:
                mano_js[str(frame)] = {"right": _mano_json(fits["right"]) if has_r else None,
                                       "left": _mano_json(fits["left"]) if has_l else None}
            joints_js[str(frame)] = {"world_coord": world_mm.tolist(), "joint_valid": [[int(v)] for v in valid],
                                     "hand_type": hand_type, "hand_type_valid": type_valid}
            for cam, kind in zip(CAMS, kinds):
                c = cams[cam]
                file_name = f"Capture{CAPTURE}/{SEQ}/cam{cam}/image{frame:05d}.jpg"
                path = root / "images" / split / file_name
                path.parent.mkdir(parents=True, exist_ok=True)
                verts_c = {s: posed[s][0] @ c.camrot.T + c.T for s in SIDES}
                if kind == "ok":
                    res = renderer.render({s: (verts_c[s], hands[s].faces) for s in SIDES}, c.K, appearance)
                    Image.fromarray(res.rgb[:HEIGHT]).save(path, quality=95)
                elif kind == "dark":
                    Image.fromarray(np.full((HEIGHT, WIDTH, 3), 3, np.uint8)).save(path, quality=95)
                joints_c = (world_mm / 1000.0) @ c.camrot.T + c.T
                uv = joints_c[:, :2] / joints_c[:, 2:] * np.array(c.focal) + np.array(c.princpt)
                lo, hi = uv[valid].min(0), uv[valid].max(0)
                images.append({"id": image_id, "file_name": file_name, "width": WIDTH, "height": HEIGHT,
                               "capture": CAPTURE, "seq_name": SEQ, "camera": cam, "frame_idx": frame})
                annotations.append({"id": image_id, "image_id": image_id, "bbox": [*lo.tolist(), *(hi - lo).tolist()],
                                    "joint_valid": [[int(v)] for v in valid], "hand_type": hand_type,
                                    "hand_type_valid": type_valid})
                info[(frame, cam)] = {"image_id": image_id, "file_name": file_name, "fits": fits, "kind": kind}
                image_id += 1
    camera_js = {str(CAPTURE): {
        "campos": {k: c.campos_mm.tolist() for k, c in cams.items()},
        "camrot": {k: c.camrot.tolist() for k, c in cams.items()},
        "focal": {k: list(c.focal) for k, c in cams.items()},
        "princpt": {k: list(c.princpt) for k, c in cams.items()},
    }}
    files = {"data": {"images": images, "annotations": annotations}, "camera": camera_js,
             "joint_3d": {str(CAPTURE): joints_js}, "MANO_NeuralAnnot": {str(CAPTURE): mano_js}}
    for kind, content in files.items():
        (ann_dir / f"InterHand2.6M_{split}_{kind}.json").write_text(json.dumps(content))
    return info


def write_scaled_annotations(root: Path, split: str, *, frames: int, cams: int, captures: int = 4) -> dict[str, int]:
    """The four annotation files at scale (every frame seen by every camera, half interacting), no images.

    Entries have the real files' fields and number formats, so file sizes per image are close to the real
    ones. Returns the byte size of each file.
    """
    rng = np.random.default_rng(0)
    ann_dir = root / "annotations" / split
    ann_dir.mkdir(parents=True, exist_ok=True)
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    lines = [f"{n.split('_', 1)[0][0]}_{n.split('_', 1)[1]}\t{j}\t-1" for j, n in enumerate(INTERHAND)]
    (root / "annotations" / "skeleton.txt").write_text("\n".join(lines) + "\n")

    def num(x):
        return [float(f"{v:.6f}") for v in np.ravel(x)]

    sizes = {}
    path = ann_dir / f"InterHand2.6M_{split}_data.json"
    with open(path, "w") as f:  # written piecewise: the test itself must not hold the whole file
        f.write('{"images": [')
        k = 0
        for cap in range(captures):
            for frame in range(frames // captures):
                for cam in range(cams):
                    sep = "," if k else ""
                    f.write(sep + json.dumps({"id": k, "file_name": f"Capture{cap}/0001_seq/cam{400000 + cam}/image{frame * 6:05d}.jpg",
                                              "width": 512, "height": 334, "capture": cap, "seq_name": "0001_seq",
                                              "camera": str(400000 + cam), "frame_idx": frame * 6}))
                    k += 1
        f.write('], "annotations": [')
        k = 0
        for cap in range(captures):
            for frame in range(frames // captures):
                for cam in range(cams):
                    sep = "," if k else ""
                    f.write(sep + json.dumps({"id": k, "image_id": k, "bbox": num(rng.uniform(0, 300, 4)),
                                              "joint_valid": [[1]] * 42,
                                              "hand_type": "interacting" if frame % 2 == 0 else "right",
                                              "hand_type_valid": 1}))
                    k += 1
        f.write("]}")
    sizes["data"] = path.stat().st_size
    camera = {str(cap): {"campos": {str(400000 + c): num(rng.normal(0, 500, 3)) for c in range(cams)},
                         "camrot": {str(400000 + c): np.eye(3).tolist() for c in range(cams)},
                         "focal": {str(400000 + c): [1200.0, 1200.0] for c in range(cams)},
                         "princpt": {str(400000 + c): [167.0, 256.0] for c in range(cams)}} for cap in range(captures)}
    mano = {str(cap): {str(fr * 6): {s: {"pose": num(rng.normal(0, 0.3, 48)), "shape": num(rng.normal(0, 1, 10)),
                                         "trans": num(rng.normal(0, 0.2, 3))} for s in SIDES}
                       for fr in range(frames // captures)} for cap in range(captures)}
    joints = {str(cap): {str(fr * 6): {"world_coord": [num(rng.normal(0, 300, 3)) for _ in range(42)],
                                       "joint_valid": [[1]] * 42, "hand_type": "interacting", "hand_type_valid": 1}
                         for fr in range(frames // captures)} for cap in range(captures)}
    for kind, content in (("camera", camera), ("MANO_NeuralAnnot", mano), ("joint_3d", joints)):
        p = ann_dir / f"InterHand2.6M_{split}_{kind}.json"
        p.write_text(json.dumps(content))
        sizes[kind] = p.stat().st_size
    return sizes
