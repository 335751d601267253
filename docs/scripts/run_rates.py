"""Steps/s, samples/s and wall time of finished training runs (docs/RESULTS.md, docs/PERFORMANCE.md).

    python docs/scripts/run_rates.py RUN [RUN ...]

Rates are the median over the logged steps of ``samples_per_s`` (each logged step's own time, the batch read
included; validation and checkpoints excluded); wall is from ``config.json`` (written first) to the last
``last.pt`` (written last), so it includes validation and checkpoints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def rates(run: Path) -> dict:
    cfg = json.loads((run / "config.json").read_text())
    sps = [json.loads(line)["samples_per_s"] for line in (run / "metrics.jsonl").read_text().splitlines()
           if '"samples_per_s"' in line]
    vals = [json.loads(line)["val"] for line in (run / "metrics.jsonl").read_text().splitlines() if '"val"' in line]
    med = float(np.median(sps))
    wall = (run / "last.pt").stat().st_mtime - (run / "config.json").stat().st_mtime
    return {"stage": cfg["stage"], "steps": cfg["steps"], "batch": cfg["batch_size"], "samples_per_s": med,
            "steps_per_s": med / cfg["batch_size"], "wall_min": wall / 60, "first_val": vals[0], "last_val": vals[-1]}


def main(argv: list[str]) -> int:
    print("| stage | steps | batch | steps/s | samples/s | wall (min) |")
    print("|---|---|---|---|---|---|")
    total = 0.0
    for run in map(Path, argv):
        r = rates(run)
        total += r["wall_min"]
        print(f"| {r['stage']} | {r['steps']} | {r['batch']} | {r['steps_per_s']:.3f} | {r['samples_per_s']:.2f} | "
              f"{r['wall_min']:.1f} |")
    print(f"| total | | | | | {total:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
