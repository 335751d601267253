"""Measure the spread of the golden comparison across CPU kernel sets and thread counts.

Runs ``im2hands check-official`` in a subprocess for every ``ATEN_CPU_CAPABILITY`` this CPU supports
(``default``, ``avx2``, ``avx512``) and for 1 and 2 threads, then prints, per tolerance class, the largest
``error / allowed`` ratio over all runs and the margin (its inverse). Usage::

    PYTHONPATH=src python docs/scripts/golden_spread.py [GOLDEN_DIR] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def supported_capabilities() -> list[str]:
    """Kernel sets this CPU can run: always ``default``; ``avx2`` / ``avx512`` when the flags are there."""
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    caps = ["default"]
    if {"avx2", "fma"} <= flags:
        caps.append("avx2")
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        caps.append("avx512")
    return caps


def run_once(golden: Path, capability: str, threads: int) -> list[dict]:
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability, OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.json"
        proc = subprocess.run([sys.executable, "-m", "im2hands", "check-official", str(golden), "--json", str(out)],
                              env=env, capture_output=True, text=True)
        if not out.is_file():
            raise RuntimeError(f"check-official produced no results ({capability}, {threads} threads):\n{proc.stderr}")
        return json.loads(out.read_text())["results"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("golden", nargs="?", type=Path, default=Path("tests/fixtures/golden/official"))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    args = parser.parse_args()

    import torch

    print(f"torch {torch.__version__}, native capability {torch.backends.cpu.get_cpu_capability()}")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    print(f"CPU: {cpu}")
    worst: dict[str, tuple[float, str]] = {}
    failed = 0
    for cap in supported_capabilities():
        for threads in args.threads:
            results = run_once(args.golden, cap, threads)
            failed += sum(not r["passed"] for r in results)
            for r in results:
                if r["problem"] or r["max_abs_err"] is None:
                    continue
                ratio = r["max_abs_err"] / r["allowed"] if r["allowed"] > 0 else (0.0 if r["max_abs_err"] == 0 else float("inf"))
                where = f"{r['network']}:{r['name']} ({cap}, {threads} thr, err {r['max_abs_err']:.2e})"
                if ratio >= worst.get(r["tolerance"], (-1.0, ""))[0]:
                    worst[r["tolerance"]] = (ratio, where)
            print(f"ran {cap:8s} {threads} thread(s): {sum(r['passed'] for r in results)}/{len(results)} passed",
                  flush=True)
    print()
    print("| class | worst error / allowed | margin | where |")
    print("|---|---|---|---|")
    for cls, (ratio, where) in sorted(worst.items()):
        margin = "exact" if ratio == 0 else f"{1 / ratio:.1f}x"
        print(f"| {cls} | {ratio:.3f} | {margin} | {where} |")
    print(f"\nfailed results over all runs: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
