"""The ``im2hands`` command line. It only parses arguments and dispatches to library functions.

Each command has a ``_add_<name>`` function that declares its arguments and a ``_run_<name>`` function
that calls the library. Heavy imports happen inside the ``_run_`` functions so that ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _add_check_official(sub) -> None:
    p = sub.add_parser(
        "check-official",
        help="compare our networks with a folder of official golden outputs",
        description="Rebuild the official weights from the folder's weight rule (manifest.json), run our "
                    "code on its inputs and print each array's max error beside the error its tolerance class "
                    "allows (abs + rel * max|golden|). Every array manifest.json lists is compared; a missing, "
                    "unexpected or uncompared array fails. Exits 1 if any array fails or nothing was compared.",
    )
    p.add_argument("golden_dir", type=Path, help="folder in the golden layout (manifest.json, *.npz, keys_*.json)")
    p.add_argument("--networks", nargs="*", default=None, help="subset of checks to run (default: all)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    p.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="also write every result (error, allowed error, class) to this JSON file")
    p.set_defaults(run=_run_check_official)


def _run_check_official(args) -> int:
    from im2hands.official.check import run_checks, summarise

    results = run_checks(args.golden_dir, args.networks, device=args.device)
    for r in results:
        print(r.line())
    summary = summarise(results)
    networks = list(dict.fromkeys(r.network for r in results))
    print(f"checked {summary.compared} arrays of: {', '.join(networks)}")
    if summary.worst is not None:
        w = summary.worst
        print(f"closest to its bound: {w.network} {w.name} at {w.ratio:.2g} of the allowed error ({w.tolerance})")
    print(f"{len(results) - summary.failed} passed, {summary.failed} failed")
    if args.json is not None:
        import json
        import os

        tmp = args.json.with_name(f".{args.json.name}.tmp")
        tmp.write_text(json.dumps({"results": [r.to_json() for r in results], "compared": summary.compared,
                                   "failed": summary.failed}, indent=1))
        os.replace(tmp, args.json)
    if summary.compared == 0:
        print("nothing was compared: the golden folder holds no array that a check knows", file=sys.stderr)
        return 1
    return 0 if summary.ok else 1


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="run the demo on the shipped defaults")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default: out/demo)")
    p.set_defaults(run=_run_demo)


def _run_demo(args) -> int:
    from im2hands.demo import run_demo

    run_demo(args.out)
    return 0


def _add_convert_official(sub) -> None:
    p = sub.add_parser(
        "convert-official",
        help="convert the authors' released weights into an im2hands checkpoint",
        usage="im2hands convert-official SRC [SRC ...] DST --model {init_occ,ref_occ,kpts_ref} [options]",
        description="Read official file(s) (init_occ.pt / ref_occ.pt / model_best.pt style {'model': ...} "
                    "dicts, IntagHand's DataParallel intaghand_baseline.pth, a HALO baseline decoder), map "
                    "their names (module.encoder.* -> image_encoder.*, decoder.* -> left_/right_decoder.*), "
                    "merge them, check the key set and shapes against the target network and write one "
                    "checkpoint.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="one or more official files, then the checkpoint to write")
    p.add_argument("--model", required=True, choices=["init_occ", "ref_occ", "kpts_ref"],
                   help="target network")
    p.add_argument("--official-quirks", action=argparse.BooleanOptionalAction, default=True,
                   help="store official_quirks=True in the config (default; needed to run official trained "
                        "weights as trained); --no-official-quirks for the fixed forward")
    p.add_argument("--keys-manifest", type=Path, default=None,
                   help="take the expected keys/shapes from this keys_<model>.json instead of building the "
                        "network")
    p.add_argument("--fill-missing", action="store_true",
                   help="take keys that no source provides from a freshly initialised network (e.g. to start "
                        "training from the HALO and IntagHand baselines)")
    p.set_defaults(run=_run_convert_official)


def _run_convert_official(args) -> int:
    from im2hands.official.convert import convert_official

    if len(args.paths) < 2:
        raise ValueError("convert-official: give at least one SRC file and the DST checkpoint")
    *sources, dst = args.paths
    summary = convert_official(sources, dst, model=args.model, official_quirks=args.official_quirks,
                               keys_manifest=args.keys_manifest, fill_missing=args.fill_missing)
    print(f"wrote {summary.destination}: {summary.model}, {summary.n_keys} entries"
          f"{f' ({summary.n_filled} freshly initialised)' if summary.n_filled else ''}, "
          f"official_quirks={summary.config.get('official_quirks')}")
    return 0


def _add_synth(sub) -> None:
    p = sub.add_parser(
        "synth",
        help="generate synthetic two-hand samples (images, keypoints, occupancy)",
        description="Render two interacting hands on the CPU and write one .npz per sample into OUT/<split>/ "
                    "(format: docs/DATA.md), then OUT/summary.json and OUT/gallery.png. Same seed and "
                    "arguments give identical files whatever --workers is; an interrupted run continues "
                    "where it stopped. Several splits in one command: --split train test --num 1000 200.",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--num", type=_count, nargs="+", required=True, help="number of samples (one per --split)")
    p.add_argument("--split", nargs="+", default=["train"], choices=("train", "val", "test"),
                   help="split name(s) (default: train)")
    p.add_argument("--seed", type=_count, default=0, help="job seed (default: 0)")
    p.add_argument("--workers", type=_positive, default=1, help="worker processes (default: 1)")
    p.add_argument("--mano", type=Path, default=None,
                   help="folder with MANO_RIGHT.pkl/MANO_LEFT.pkl (default: the built-in open hand model)")
    p.add_argument("--points", type=_positive, default=100_000, help="occupancy points per hand (default: 100000)")
    p.add_argument("--iou-points", type=_positive, default=10_000,
                   help="uniform IoU points per hand (default: 10000)")
    p.add_argument("--surface-points", type=_positive, default=10_000,
                   help="surface points with normals per hand (default: 10000)")
    p.add_argument("--gallery", type=_count, default=8,
                   help="first samples of the first split shown in gallery.png, 0 for none (default: 8)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_synth)


def _count(text: str) -> int:
    """argparse type: an integer >= 0 (argparse names the flag in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _run_synth(args) -> int:
    from im2hands.data.synth.generate import SynthConfig, SynthWorkerError, check_inputs, generate
    from im2hands.data.synth.occupancy import OccupancyConfig

    if len(args.num) != len(args.split):
        raise ValueError(f"--num: expected one count per --split ({len(args.split)}), got {len(args.num)}")
    if len(set(args.split)) != len(args.split):
        raise ValueError(f"--split: each split once, got {args.split}")
    if args.mano is not None and not args.mano.is_dir():
        raise ValueError(f"--mano: {args.mano} is not a folder (it should hold MANO_RIGHT.pkl and MANO_LEFT.pkl)")
    occupancy = OccupancyConfig(
        num_points=args.points, num_iou_points=args.iou_points, num_surface_points=args.surface_points
    )
    configs = [SynthConfig(  # the gallery shows the first split named
        out=args.out, num=num, split=split, seed=args.seed, workers=args.workers, mano_dir=args.mano,
        occupancy=occupancy, gallery=args.gallery if k == 0 else 0, progress=not args.no_progress,
    ) for k, (split, num) in enumerate(zip(args.split, args.num))]
    try:  # every input is checked before the first file is written
        check_inputs(configs[0])
    except ValueError as e:
        raise ValueError(str(e).replace("mano_dir:", "--mano:", 1)) from None
    for config in configs:
        try:
            summary = generate(config)
        except SynthWorkerError as e:
            print(f"im2hands synth: error: {e}", file=sys.stderr)
            return 1
        print("\n".join(summary.lines()))
    print(f"wrote {args.out / 'summary.json'}" + (f" and {args.out / 'gallery.png'}" if args.gallery else ""))
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train", add_help=False,
        help="train a stage (halo, init-occ, ref-occ, kpts-ref) or precompute RefOcc anchors",
        description="im2hands train STAGE --preset NAME --data DIR --out RUN [overrides]; see "
                    "`im2hands train --help` and docs/TRAINING.md.",
    )
    p.add_argument("argv", nargs=argparse.REMAINDER, help="stage, preset and overrides (parsed by tyro)")
    p.set_defaults(run=_run_train)


def _run_train(args) -> int:
    from im2hands.train.command import main as train_main

    return train_main(args.argv)


COMMANDS = (_add_demo, _add_check_official, _add_convert_official, _add_synth, _add_train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="im2hands",
        description="Im2Hands: occupancy of two interacting hands from one RGB image and 3D keypoints.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError, TypeError) as e:
        print(f"im2hands {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
