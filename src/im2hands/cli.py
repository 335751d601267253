"""The ``im2hands`` command line. It only parses arguments and dispatches to library functions.

Each command has a ``_add_<name>`` function that declares its arguments and a ``_run_<name>`` function
that calls the library. Heavy imports happen inside the ``_run_`` functions so that ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# OpenMP threads that spin while waiting lose 5x (measured: InitOcc decode 25k vs 120k points/s on 2 cores
# with one other busy process) as soon as another process shares the cores; passive waiting costs nothing
# measurable on idle cores. Must be set before torch loads OpenMP; OMP_WAIT_POLICY=ACTIVE overrides.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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

        from im2hands._io import atomic_write

        text = json.dumps({"results": [r.to_json() for r in results], "compared": summary.compared,
                           "failed": summary.failed}, indent=1)
        atomic_write(args.json, lambda f: f.write(text.encode()))
    if summary.compared == 0:
        print("nothing was compared: the golden folder holds no array that a check knows", file=sys.stderr)
        return 1
    return 0 if summary.ok else 1


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the shipped model on the shipped samples (or on your image): meshes, pictures, metrics",
        description="Reconstruct both hands with the shipped model (Im2Hands.pretrained(): KptsRef -> InitOcc -> "
                    "RefOcc) on the shipped samples (a clasp, a cross, a touch) and write into OUT/<sample>/ the "
                    "meshes of each stage (.ply), overlay.png, figure.png (input | initial | refined | ground "
                    "truth), metrics.json and viewer.html. With --image, --keypoints and --camera, the same on "
                    "your input (no ground truth: no metrics) into OUT/<image name>/. docs/RECONSTRUCT.md.",
    )
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default: out/demo)")
    p.add_argument("--image", type=Path, default=None, help="your image (any size; RGB); with --keypoints, --camera")
    p.add_argument("--keypoints", type=Path, default=None, help="keypoints JSON of both hands (docs/RECONSTRUCT.md)")
    p.add_argument("--camera", type=Path, default=None, help="camera JSON: K of the image, optional R and T")
    p.add_argument("--model", type=Path, nargs="+", default=None, metavar="PATH",
                   help="checkpoint or bundle files/folders to use instead of the shipped model")
    _add_lattice_arguments(p)
    _add_metric_points_argument(p)
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 fast mode: InitOcc's part decoders, RefOcc's decoder products and anchor "
                        "encoder in bfloat16 (faster on CPUs with native bfloat16, slightly different logits; "
                        "docs/PERFORMANCE.md)")
    p.set_defaults(run=_run_demo)


def _run_demo(args) -> int:
    from im2hands.demo import load_input, run_demo
    from im2hands.eval.metrics import EvalConfig
    from im2hands.mesh import Lattice

    given = {flag: v for flag, v in (("--image", args.image), ("--keypoints", args.keypoints),
                                     ("--camera", args.camera)) if v is not None}
    inputs = None
    if given:
        missing = [f for f in ("--image", "--keypoints", "--camera") if f not in given]
        if missing:
            raise ValueError(f"{', '.join(given)} needs {' and '.join(missing)} too (or none of them for the "
                             "shipped samples)")
        inputs = [load_input(args.image, args.keypoints, args.camera)]
    n = args.metric_points
    run = run_demo(args.out, inputs=inputs, model=args.model, device=args.device,
                   lattice=Lattice(args.resolution, args.upsampling_steps),
                   metrics=EvalConfig(iou_points=n, chamfer_points=n, penetration_points=n, contact_points=n),
                   bf16=True if args.bf16 else None)
    return 1 if run.failures else 0


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


def _add_lattice_arguments(p) -> None:
    """--resolution and --upsampling-steps: the extraction lattice (``im2hands.mesh.Lattice``)."""
    p.add_argument("--resolution", type=_positive, default=32,
                   help="start resolution of the extraction lattice (default 32)")
    p.add_argument("--upsampling-steps", type=_count, default=3,
                   help="upsampling steps of the extraction lattice (default 3: 257^3)")


def _add_metric_points_argument(p) -> None:
    p.add_argument("--metric-points", type=_positive, default=100_000,
                   help="points of each metric (IoU, Chamfer, penetration, contact-zone IoU; default 100000)")


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


def _add_reconstruct(sub) -> None:
    p = sub.add_parser(
        "reconstruct",
        help="reconstruct both hands' meshes from an image, keypoints and a camera",
        description="Crop the image around both hands (IntagHand's rule), optionally refine the keypoints, "
                    "extract the initial and refined meshes (camera frame, metres) and write "
                    "OUT/<stage>_<side>.ply and OUT/result.json. With --inputs DIR, every image DIR/NAME.{png,jpg} "
                    "with DIR/NAME.keypoints.json and DIR/NAME.camera.json (or one DIR/camera.json) is "
                    "reconstructed into OUT/NAME/. File formats: docs/RECONSTRUCT.md.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", type=Path, help="input image (any size; RGB)")
    src.add_argument("--inputs", type=Path, help="folder of inputs (see above)")
    p.add_argument("--keypoints", type=Path, help="keypoints JSON (with --image)")
    p.add_argument("--camera", type=Path, help="camera JSON: K, optional R and T (with --image)")
    p.add_argument("--checkpoint", type=Path, nargs="+", required=True,
                   help="checkpoint files or folders (init_occ, ref_occ, kpts_ref)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--stages", nargs="+", default=["initial", "refined"], choices=("initial", "refined"))
    p.add_argument("--refine-keypoints", choices=("auto", "yes", "no"), default="auto",
                   help="run the keypoint refinement first (auto: when a kpts_ref checkpoint is given)")
    _add_lattice_arguments(p)
    p.add_argument("--format", choices=("ply", "obj"), default="ply", help="mesh file format (default ply)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 fast mode: InitOcc's part decoders, RefOcc's decoder products and anchor "
                        "encoder in bfloat16 (faster on CPUs with native bfloat16, slightly different logits; "
                        "docs/PERFORMANCE.md)")
    p.add_argument("--no-pictures", action="store_true",
                   help="skip OUT/overlay.png (meshes over the crop) and, for --inputs, OUT/contact_sheet.png")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_reconstruct)


def _reconstruct_jobs(args) -> list[tuple[str, Path, Path, Path]]:
    """(name, image, keypoints file, camera file) per input, all checked to exist before any work."""
    if args.image is not None:
        missing = [flag for flag, v in (("--keypoints", args.keypoints), ("--camera", args.camera)) if v is None]
        if missing:
            raise ValueError(f"--image needs {' and '.join(missing)}")
        for flag, path in (("--image", args.image), ("--keypoints", args.keypoints), ("--camera", args.camera)):
            if not path.is_file():
                raise FileNotFoundError(f"{flag}: file not found: {path}")
        return [("", args.image, args.keypoints, args.camera)]
    if not args.inputs.is_dir():
        raise FileNotFoundError(f"--inputs: folder not found: {args.inputs}")
    images = sorted(p for p in args.inputs.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not images:
        raise FileNotFoundError(f"--inputs: no .png/.jpg images in {args.inputs}")
    shared = args.inputs / "camera.json"
    jobs = []
    for img in images:
        kp = img.with_name(f"{img.stem}.keypoints.json")
        cam = img.with_name(f"{img.stem}.camera.json")
        cam = cam if cam.is_file() else shared
        if not kp.is_file():
            raise FileNotFoundError(f"--inputs: {img.name} has no {kp.name}")
        if not cam.is_file():
            raise FileNotFoundError(f"--inputs: {img.name} has no {img.stem}.camera.json and there is no camera.json")
        jobs.append((img.stem, img, kp, cam))
    return jobs


def _run_reconstruct(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from im2hands.api import Im2Hands, load_camera_json, load_keypoints_json, save_reconstruction
    from im2hands.mesh import Lattice

    jobs = _reconstruct_jobs(args)
    inputs = [(name, img, *load_keypoints_json(kp), load_camera_json(cam)) for name, img, kp, cam in jobs]
    model = Im2Hands.from_checkpoint(*args.checkpoint, device=args.device,
                                     lattice=Lattice(args.resolution, args.upsampling_steps),
                                     bf16=True if args.bf16 else None)
    refine = {"auto": None, "yes": True, "no": False}[args.refine_keypoints]
    failed = 0
    sheet_rows, sheet_labels = [], []
    for name, img, keypoints, order, camera in tqdm(inputs, desc="reconstruct", unit="image",
                                                     disable=args.no_progress or len(inputs) == 1):
        try:
            result = model.reconstruct(img, keypoints, camera, keypoint_order=order, refine_keypoints=refine,
                                       stages=args.stages)
        except ValueError as e:
            if len(inputs) == 1:
                raise
            failed += 1
            print(f"im2hands reconstruct: {img}: {e}", file=sys.stderr)
            continue
        out = args.out / name if name else args.out
        save_reconstruction(result, out, mesh_format=args.format)
        if not args.no_pictures:
            from im2hands.viz.overlay import overlay_meshes, save_png

            row = [result.crop.image]
            for stage, res in result.stages.items():
                meshes = {s: (res.hand(s).vertices, res.hand(s).faces) for s in ("right", "left")}
                row.append(overlay_meshes(result.crop.image, result.crop.K, meshes))
            save_png(out / "overlay.png", np.concatenate(row, axis=1))
            sheet_rows.append(row)
            sheet_labels.append(name or img.stem)
        t = result.timings
        stages = ", ".join(f"{s} {r.seconds:.2f} s ({sum(r.evaluations.values())} evaluations)"
                           for s, r in result.stages.items())
        print(f"{img.name}: {stages}; total {t['total']:.2f} s -> {out}")
    if args.inputs is not None and sheet_rows and not args.no_pictures:
        from im2hands.viz.overlay import contact_sheet, save_png

        save_png(args.out / "contact_sheet.png", contact_sheet(sheet_rows, labels=sheet_labels))
        print(f"wrote {args.out / 'contact_sheet.png'}: per input the crop, then each stage's meshes over it")
    return 1 if failed else 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a model on a folder of samples (IoU, Chamfer-L1, MPJPE, penetration)",
        description="Reconstruct every sample of DATA/SPLIT from its crop and keypoints and score each stage "
                    "against the ground truth; print a table and write OUT/evaluation.{json,md} and "
                    "OUT/metrics_<stage>.{json,md}. A failed sample is reported and counted; results do not "
                    "depend on --workers. Metrics: docs/EVALUATION.md.",
    )
    p.add_argument("--checkpoint", type=Path, nargs="+", required=True, help="checkpoint files or folders")
    p.add_argument("--data", type=Path, required=True, help="folder of samples (DATA/<split>/*.npz)")
    p.add_argument("--split", default="test", help="split folder (default: test)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--stages", nargs="+", default=["initial", "refined"], choices=("initial", "refined"))
    p.add_argument("--keypoints", choices=("gt", "noisy", "predicted"), default="gt",
                   help="keypoints fed to the model (default: gt)")
    p.add_argument("--refine-keypoints", choices=("auto", "yes", "no"), default="auto",
                   help="run the keypoint refinement on the input keypoints: auto (default) when the loaded "
                        "model has one and --keypoints is not gt (refining exact keypoints only adds error)")
    p.add_argument("--limit", type=_positive, default=None, help="only the first N samples")
    p.add_argument("--workers", type=_positive, default=1, help="processes (default 1)")
    p.add_argument("--threads", type=_positive, default=None,
                   help="torch threads per process (default: all cores); results do not depend on --workers")
    _add_lattice_arguments(p)
    _add_metric_points_argument(p)
    p.add_argument("--seed", type=_count, default=0)
    p.add_argument("--bf16", action="store_true",
                   help="reconstruct in the bfloat16 fast mode (faster on CPUs with native bfloat16; "
                        "docs/PERFORMANCE.md)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args) -> int:
    from im2hands.eval.metrics import EvalConfig
    from im2hands.eval.run import EvaluationConfig, evaluate_folder, summary_lines

    n = args.metric_points
    config = EvaluationConfig(
        data=args.data, split=args.split, stages=tuple(args.stages), keypoints=args.keypoints,
        refine_keypoints={"auto": None, "yes": True, "no": False}[args.refine_keypoints], limit=args.limit,
        workers=args.workers, threads=args.threads, resolution_0=args.resolution, upsampling_steps=args.upsampling_steps,
        metrics=EvalConfig(iou_points=n, chamfer_points=n, penetration_points=n, contact_points=n), seed=args.seed,
        bf16=args.bf16, progress=not args.no_progress)
    result = evaluate_folder(args.checkpoint, config, args.out)
    print("\n".join(summary_lines(result)))
    print(f"wrote {args.out / 'evaluation.md'} ({result.seconds:.1f} s)")
    return 0


def _add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="prepare a real dataset as samples (InterHand2.6M)",
                       description="Convert a real dataset into samples in the format of docs/DATA.md.")
    datasets = p.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    q = datasets.add_parser(
        "interhand",
        help="InterHand2.6M v1.0 with the NeuralAnnot MANO fits (docs/INTERHAND.md)",
        description="Select images of one split (default: the paper's, interacting hands with MANO fits for "
                    "both), pose and seal both hands with your MANO files, crop both hands to 256x256 and write "
                    "one .npz per image into OUT/<split>/, with skip counts in OUT/<split>/summary-K-of-N.json. "
                    "An interrupted run continues where it stopped.",
    )
    q.add_argument("--root", type=Path, required=True, help="InterHand2.6M folder (annotations/, images/)")
    q.add_argument("--mano", type=Path, required=True, help="folder with MANO_RIGHT.pkl and MANO_LEFT.pkl")
    q.add_argument("--split", required=True, choices=("train", "val", "test"), help="split to prepare")
    q.add_argument("--out", type=Path, required=True, help="output folder")
    q.add_argument("--hand-types", choices=("interacting", "all"), default="interacting",
                   help="interacting frames only (default, the paper), or also single-hand-labelled frames "
                        "with MANO fits for both hands")
    q.add_argument("--subset", choices=("all", "human", "machine"), default="all",
                   help="annotation subset: all = H+M (default, the paper), human (H) or machine (M)")
    q.add_argument("--human-annot-ids", type=Path, default=None, metavar="FILE",
                   help="human-annotated annotation ids, one per line (needed by --subset human/machine)")
    q.add_argument("--require-joints", choices=("none", "wrists", "all"), default="none",
                   help="annotated joints that must be valid in both hands (default none, as IntagHand)")
    q.add_argument("--pred-keypoints", type=Path, default=None, metavar="DIR",
                   help="predicted keypoints, one JSON per image (docs/INTERHAND.md); stored as noisy_joints")
    q.add_argument("--fix-left-shapedirs", choices=("auto", "yes", "no"), default="auto",
                   help="the left MANO shapedirs fix: detected from the files (default) or forced")
    q.add_argument("--min-brightness", type=float, default=10.0,
                   help="skip images whose mean pixel value is below this (default 10, as IntagHand; 0 keeps all)")
    q.add_argument("--points", type=_positive, default=100_000, help="occupancy points per hand (default: 100000)")
    q.add_argument("--iou-points", type=_positive, default=10_000, help="uniform IoU points per hand (default: 10000)")
    q.add_argument("--surface-points", type=_positive, default=10_000,
                   help="surface points with normals per hand (default: 10000)")
    q.add_argument("--seed", type=_count, default=0, help="seed of the random points (default: 0)")
    q.add_argument("--workers", type=_positive, default=1, help="worker processes (default: 1)")
    q.add_argument("--shard", default="0/1", metavar="K/N",
                   help="prepare only the selected images i with i %% N == K (default 0/1: all)")
    q.add_argument("--limit", type=_count, default=None, help="prepare only the first LIMIT selected images")
    q.add_argument("--verify", action="store_true", help="on resume, check every CRC of the existing samples")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(run=_run_prepare)


def _run_prepare(args) -> int:
    from im2hands.data.interhand.prepare import PrepareConfig, PrepareWorkerError, prepare
    from im2hands.data.interhand.select import SelectionConfig
    from im2hands.data.synth.occupancy import OccupancyConfig

    try:
        k, n = (int(x) for x in args.shard.split("/"))
    except ValueError:
        raise ValueError(f"--shard: expected K/N such as 0/4, got {args.shard!r}") from None
    config = PrepareConfig(
        root=args.root, mano_dir=args.mano, split=args.split, out=args.out,
        selection=SelectionConfig(hand_types=args.hand_types, subset=args.subset,
                                  human_annot_ids=args.human_annot_ids, require_joints=args.require_joints),
        occupancy=OccupancyConfig(num_points=args.points, num_iou_points=args.iou_points,
                                  num_surface_points=args.surface_points),
        pred_keypoints=args.pred_keypoints, fix_left_shapedirs=args.fix_left_shapedirs,
        min_brightness=args.min_brightness, seed=args.seed, workers=args.workers, shard=(k, n), limit=args.limit,
        verify=args.verify, progress=not args.no_progress,
    )
    try:
        summary = prepare(config)
    except PrepareWorkerError as e:
        print(f"im2hands prepare: error: {e}", file=sys.stderr)
        return 1
    print("\n".join(summary.lines()))
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


COMMANDS = (_add_demo, _add_check_official, _add_convert_official, _add_synth, _add_prepare, _add_train,
            _add_reconstruct, _add_evaluate)


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
