"""InterHand2.6M preparation: selection memory and time on scaled-up annotation files, and the time and disk
of one prepared sample at full point counts (tests/data/interhand/fixture.py writes both inputs).

    PYTHONPATH=src:. python benchmarks/bm_interhand_prepare.py --frames 4000 --cams 25 --samples 4

Prints the selection's peak resident memory above the interpreter's baseline (after imports) per selected
image and per MB of annotations, and the seconds and bytes per sample, with the per-10k-frame figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=4000)
    ap.add_argument("--cams", type=int, default=25)
    ap.add_argument("--samples", type=int, default=4, help="images prepared at full point counts (<= 4)")
    args = ap.parse_args()

    import torch  # noqa: F401 -- the baseline includes what the CLI imports

    from im2hands.data.interhand.prepare import PrepareConfig, prepare
    from tests.data.interhand.fixture import write_interhand_fixture, write_open_wrist_mano, write_scaled_annotations

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sizes = write_scaled_annotations(tmp / "big", "train", frames=args.frames, cams=args.cams)
        # the selection runs in a fresh interpreter (this one's peak holds the fixture writer's); VmHWM, not
        # ru_maxrss, which Linux carries over from the parent across exec
        code = ("import resource, sys, time, torch; from im2hands.data.interhand.select import select_frames; "
                "r = lambda: int([x for x in open('/proc/self/status') if x.startswith('VmHWM')][0].split()[1]) / 1024; "
                "b = r(); t = time.perf_counter(); "
                f"s = select_frames({str(tmp / 'big')!r}, 'train'); "
                "print(len(s), time.perf_counter() - t, b, r() - b)")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        n, seconds, base, peak = (float(x) for x in subprocess.check_output([sys.executable, "-c", code], env=env).split())
        mb = sum(sizes.values()) / 1e6
        print(f"selection: {args.frames * args.cams} annotations, {mb:.0f} MB of JSON "
              f"({ {k: round(v / 1e6, 1) for k, v in sizes.items()} } MB), {int(n)} selected in {seconds:.1f} s "
              f"({mb / seconds:.1f} MB/s); peak RSS +{peak:.0f} MB over the {base:.0f} MB baseline (after imports) = "
              f"{peak * 1e3 / n:.2f} kB per selected image")

        mano = write_open_wrist_mano(tmp / "mano")
        write_interhand_fixture(tmp / "IH", mano)
        config = PrepareConfig(root=tmp / "IH", mano_dir=mano, split="test", out=tmp / "out", limit=args.samples,
                               progress=False)
        summary = prepare(config)
        print(f"prepare (100k occupancy, 10k IoU, 10k surface points per hand; 1 worker): {summary.made_now} samples, "
              f"{summary.seconds_per_sample:.2f} s/sample = {summary.seconds_per_sample * 1e4 / 3600:.1f} h per 10k "
              f"images on one worker; {summary.mean_file_bytes / 1e6:.2f} MB/sample = "
              f"{summary.mean_file_bytes * 1e4 / 1e9:.1f} GB per 10k images")


if __name__ == "__main__":
    main()
