"""Markdown tables of docs/RESULTS.md from `im2hands evaluate` runs over several test splits.

Layout read: ``ROOT/<model>_<keypoints>_s<seed>/evaluation.json`` with model ``halo`` (an InitOcc checkpoint
without the query-image attention: stage ``initial``), ``halo-long`` (optional: that HALO trained on for
InitOcc's steps with InitOcc's schedule, still without the image), ``init`` (InitOcc: stage ``initial``) or ``full``
(RefOcc, whose frozen InitOcc gives the initial meshes: stage ``refined``), keypoints ``gt`` or ``noisy``
(with noisy keypoints every model also loads KptsRef, so all read the same refined keypoints).

Each figure is the mean over the test splits (seeds) of the per-split mean over samples, ± the standard
deviation over the splits (the spread the paper's ordering must beat). The paired table gives, per split,
the mean over samples of one model's figure minus another's on the same samples (for the contact-zone IoU,
over the samples whose hands meet).

    python docs/scripts/results_tables.py ROOT > tables.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

METHODS = (("HALO (keypoints only)", "halo", "initial"),
           ("HALO + InitOcc's 900 steps, no image", "halo-long", "initial"),
           ("InitOcc (HALO + image)", "init", "initial"),
           ("Im2Hands (InitOcc + RefOcc)", "full", "refined"))
PAIRS = (("InitOcc − HALO", "init", "halo"), ("InitOcc − HALO with its steps", "init", "halo-long"),
         ("full − InitOcc", "full", "init"))
"""Paired differences (the same test samples): (label, model a, model b) for a − b."""
HAND_METRICS = (("IoU %", "iou", 100.0), ("Chamfer-L1 mm", "chamfer_l1_mm", 1.0), ("MPJPE mm", "mpjpe_mm", 1.0))
PAIR_METRICS = (("penetration mm³", "penetration_volume_mm3", 1.0), ("pen. depth mm", "penetration_depth_mm", 1.0),
                ("contact IoU %", "contact_iou", 100.0))


def _runs(root: Path, model: str, keypoints: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.glob(f"{model}_{keypoints}_s*/evaluation.json"))]


def _figure(report: dict, key: str, pair: bool) -> float:
    rows = report["pair" if pair else "hands"]
    value = next((r["mean"] for r in rows if r["metric"] == key), None)
    return float("nan") if value is None else value      # an evaluation from before a metric existed


def _cell(values: list[float], scale: float) -> str:
    v = np.asarray(values) * scale
    digits = 1 if abs(v.mean()) >= 10 else 2
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}" if len(v) > 1 else f"{v.mean():.{digits}f}"


def table(root: Path, keypoints: str) -> str:
    head = [name for name, _, _ in HAND_METRICS + PAIR_METRICS]
    lines = ["| method | " + " | ".join(head) + " | samples × splits |", "|---" * (len(head) + 2) + "|"]
    for label, model, stage in METHODS:
        runs = _runs(root, model, keypoints)
        if not runs:
            continue
        cells = []
        for _, key, scale in HAND_METRICS:
            cells.append(_cell([_figure(r["reports"][stage], key, False) for r in runs], scale))
        for _, key, scale in PAIR_METRICS:
            cells.append(_cell([_figure(r["reports"][stage], key, True) for r in runs], scale))
        failed = sum(r["reports"][stage]["failed"] for r in runs)
        # samples with a contact-zone IoU: a zone (set by the ground truth) with a hand in it
        zones = "/".join(str(len(_per_sample(r, stage, "contact_iou"))) for r in runs)
        n = f"{runs[0]['samples']} × {len(runs)}" + (f" ({failed} failed)" if failed else "") + f"; contact {zones}"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {n} |")
    return "\n".join(lines)


def _per_sample(run: dict, stage: str, key: str) -> dict[str, float]:
    """Sample name -> figure (the mean of both hands, or the pair's), for the samples where it is defined."""
    out = {}
    for x in run["reports"][stage]["samples"]:
        value = x["mean"][key] if key in x["mean"] else x["pair"].get(key)
        if value is not None:
            out[x["name"]] = value
    return out


def paired_table(root: Path, keypoints: str) -> str:
    stages = {model: stage for _, model, stage in METHODS}
    lines = ["| difference | IoU points, per split | Chamfer-L1 mm, per split | contact IoU points, per split |",
             "|---|---|---|---|"]
    for label, a, b in PAIRS:
        runs_a = {Path(r["config"]["data"]).name: r for r in _runs(root, a, keypoints)}
        runs_b = {Path(r["config"]["data"]).name: r for r in _runs(root, b, keypoints)}
        splits = sorted(set(runs_a) & set(runs_b))
        if not splits:
            continue
        cells = []
        for key, scale, digits in (("iou", 100.0, 2), ("chamfer_l1_mm", 1.0, 3), ("contact_iou", 100.0, 2)):
            diffs = []
            for split in splits:
                va = _per_sample(runs_a[split], stages[a], key)
                vb = _per_sample(runs_b[split], stages[b], key)
                common = sorted(set(va) & set(vb))
                diffs.append(scale * float(np.mean([va[n] - vb[n] for n in common])) if common else float("nan"))
            cells.append(", ".join(f"{d:+.{digits}f}" for d in diffs))
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {cells[2]} |")
    return "\n".join(lines)


def keypoint_table(root: Path) -> str:
    runs = _runs(root, "halo", "noisy")   # every noisy run reads the same KptsRef output; HALO's cover all splits
    if not runs:
        return ""
    lines = ["| keypoints | MPJPE mm (middle-MCP root, scaled) | MPJPE mm (wrist root) |", "|---|---|---|"]
    for label, which in (("noisy input", "input"), ("refined (KptsRef)", "used")):
        k = [r["keypoints_mpjpe_mm"][which] for r in runs]
        m = [(x["right_mpjpe_mm"] + x["left_mpjpe_mm"]) / 2 for x in k]
        w = [(x["right_mpjpe_wrist_mm"] + x["left_mpjpe_wrist_mm"]) / 2 for x in k]
        lines.append(f"| {label} | {_cell(m, 1.0)} | {_cell(w, 1.0)} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    root = Path(argv[0])
    print("### Ground-truth keypoints\n")
    print(table(root, "gt"))
    print("\n### Noisy keypoints (+ keypoint refinement)\n")
    print(table(root, "noisy"))
    for keypoints in ("gt", "noisy"):
        print(f"\n### Paired differences, {keypoints} keypoints (test splits in seed order)\n")
        print(paired_table(root, keypoints))
    kp = keypoint_table(root)
    if kp:
        print("\n### Keypoint refinement\n")
        print(kp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
