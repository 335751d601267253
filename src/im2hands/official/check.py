"""Compare our code with a golden folder of official outputs; the engine of ``im2hands check-official``.

Each network's check lives in its own module of this package. A module declares the golden files it
verifies (``GOLDEN_FILES``), the arrays of those files that are inputs rather than results
(``INPUT_ARRAYS``) and a function ``comparisons(golden, device)`` that runs our code and returns one
:class:`Comparison` per result. The engine is strict about coverage: the list of arrays to check comes from
``manifest.json``; an array the manifest lists but the file lacks, an array in the file that the manifest
does not list, and an array nobody compared each give a failure that names it. A run that checks nothing
fails too (:func:`summarise`).
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from im2hands.official.tolerance import Tolerance

# Network name -> module of its check. Order = run order.
CHECKS: dict[str, str] = {
    "canonicalisation": "im2hands.official.canonicalisation",
    "image_encoder": "im2hands.official.image_encoder",
    "init_occ": "im2hands.official.init_occ",
    "ref_occ": "im2hands.official.ref_occ",
    "kpts_ref": "im2hands.official.kpts_ref",
}


class GoldenError(ValueError):
    """A golden folder lacks something a check needs (a file, an array, a manifest entry)."""


@dataclass(frozen=True)
class ArrayResult:
    """Outcome of comparing one golden array (or of a structural problem with it)."""

    network: str
    name: str
    shape: tuple[int, ...]
    max_abs_err: float
    """Max |ours - golden|; for integer arrays the number of differing entries; inf when not comparable."""
    allowed: float
    """The largest error this array may show (``tolerance.allowed(golden)``)."""
    tolerance: str = ""
    """The array class whose rule gave `allowed` (:mod:`im2hands.official.tolerance`)."""
    problem: str = ""
    """Why the array could not be compared (missing, unexpected, not compared, wrong shape, ...); empty
    when it was."""

    @property
    def passed(self) -> bool:
        return not self.problem and math.isfinite(self.max_abs_err) and self.max_abs_err <= self.allowed

    @property
    def ratio(self) -> float:
        """``max_abs_err / allowed`` (0 when both are 0): below 1 passes; 1 / ratio is the margin."""
        if self.max_abs_err == 0:
            return 0.0
        return self.max_abs_err / self.allowed if self.allowed > 0 else math.inf

    def line(self) -> str:
        status = "ok  " if self.passed else "FAIL"
        head = f"{status} {self.network:<17s} {self.name:<32s} {str(self.shape):<20s}"
        if self.problem:
            return f"{head} {self.problem}"
        return f"{head} max err {self.max_abs_err:.3e}  allowed {self.allowed:.1e}  ({self.tolerance})"

    def to_json(self) -> dict:
        return {"network": self.network, "name": self.name, "shape": list(self.shape),
                "max_abs_err": self.max_abs_err if math.isfinite(self.max_abs_err) else None,
                "allowed": self.allowed, "tolerance": self.tolerance, "problem": self.problem,
                "passed": self.passed}


@dataclass(frozen=True)
class Comparison:
    """One result of our code to compare with a golden array."""

    file: str
    """Golden file stem holding the expected array (``"ref_occ"`` for ``ref_occ.npz``)."""
    key: str
    """Array name in that file."""
    actual: object
    """Our value: a tensor or an array of the golden array's shape."""
    tolerance: Tolerance
    label: str | None = None
    """Name printed for the result (default `key`; e.g. ``"unpose_left [f64 path]"``)."""


def compare(network: str, name: str, actual, expected: np.ndarray, tolerance: Tolerance) -> ArrayResult:
    """Compare `actual` (tensor or array) with golden `expected` under `tolerance`.

    Integer arrays must match exactly. Non-finite values in `actual` fail.
    """
    if isinstance(actual, torch.Tensor):
        actual = actual.detach().cpu().numpy()
    actual = np.asarray(actual)
    shape = tuple(expected.shape)
    if actual.shape != expected.shape:
        return ArrayResult(network, name, shape, math.inf, 0.0, tolerance.name,
                           f"shape {tuple(actual.shape)} instead of {shape}")
    if np.issubdtype(expected.dtype, np.integer):
        err = float(np.count_nonzero(actual.astype(np.int64) != expected.astype(np.int64)))
        return ArrayResult(network, name, shape, err, 0.0, "exact")
    if not np.all(np.isfinite(actual)):
        return ArrayResult(network, name, shape, math.inf, tolerance.allowed(expected), tolerance.name,
                           "non-finite values in our result")
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    err = float(diff.max()) if diff.size else 0.0
    return ArrayResult(network, name, shape, err, tolerance.allowed(expected), tolerance.name)


class GoldenFile(Mapping):
    """The arrays of one golden ``.npz``; a missing array raises :class:`GoldenError` naming it."""

    def __init__(self, path: Path, arrays: dict[str, np.ndarray]):
        self.path = path
        self._arrays = arrays

    def __getitem__(self, key: str) -> np.ndarray:
        try:
            return self._arrays[key]
        except KeyError:
            raise GoldenError(f"{self.path}: no array {key!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)


class Golden:
    """A golden folder: manifest, weight-rule parameters and lazily loaded ``.npz`` files."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"golden folder not found: {self.folder}")
        manifest = self.folder / "manifest.json"
        if not manifest.is_file():
            raise FileNotFoundError(f"golden folder {self.folder}: missing manifest.json")
        try:
            self.manifest = json.loads(manifest.read_text())
        except json.JSONDecodeError as e:
            raise GoldenError(f"{manifest}: not valid JSON ({e})") from None
        try:
            self.seed = int(self.manifest["weight_rule"]["SEED"])
            self.gain = float(self.manifest["weight_rule"]["GAIN"])
        except KeyError as e:
            raise GoldenError(f"{manifest}: missing weight_rule parameter {e}") from None
        if not isinstance(self.manifest.get("files"), dict):
            raise GoldenError(f"{manifest}: missing 'files' (the list of arrays per golden file)")
        self._npz: dict[str, GoldenFile] = {}

    def __getitem__(self, file: str) -> GoldenFile:
        """Arrays of ``<file>.npz``; raises :class:`GoldenError` if the file is missing or unreadable."""
        if file not in self._npz:
            path = self.folder / f"{file}.npz"
            if not path.is_file():
                raise GoldenError(f"golden folder {self.folder}: missing {path.name}")
            try:
                with np.load(path) as z:
                    arrays = {k: z[k] for k in z.files}
            except Exception as e:  # zip / pickle / format errors of a damaged file
                raise GoldenError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
            self._npz[file] = GoldenFile(path, arrays)
        return self._npz[file]

    def listed(self, file: str) -> list[str]:
        """The arrays ``manifest.json`` lists for ``<file>.npz``, in manifest order."""
        entries = self.manifest["files"].get(f"{file}.npz")
        if entries is None:
            raise GoldenError(f"{self.folder / 'manifest.json'}: no entry for {file}.npz")
        return [e["name"] for e in entries]

    def state_dict(self, model: str) -> dict[str, torch.Tensor]:
        """Official state dict of `model` built with this folder's weight rule."""
        from im2hands.official.weights import rule_state_dict

        return rule_state_dict(self.folder, model, seed=self.seed, gain=self.gain)

    @cached_property
    def inputs(self) -> GoldenFile:
        return self["inputs"]


def _prefixed(file: str, key: str) -> str:
    """Printed name of a golden array: ``canon_extra`` arrays carry an ``extra/`` prefix."""
    return f"extra/{key}" if file == "canon_extra" else key


def check_network(golden: Golden, network: str, device: torch.device) -> list[ArrayResult]:
    """Run one network's check and the coverage rules of its golden files; one result per array."""
    if network not in CHECKS:
        raise ValueError(f"unknown network {network!r}; choose from {list(CHECKS)}")
    module = importlib.import_module(CHECKS[network])
    results: list[ArrayResult] = []
    try:
        comparisons = module.comparisons(golden, device)
    except GoldenError as e:
        comparisons = []
        results.append(ArrayResult(network, "(run)", (), math.inf, 0.0, problem=f"cannot run: {e}"))
    compared: dict[str, set[str]] = {}
    for c in comparisons:
        name = c.label or _prefixed(c.file, c.key)
        compared.setdefault(c.file, set()).add(c.key)
        try:
            expected = golden[c.file][c.key]
        except GoldenError as e:
            results.append(ArrayResult(network, name, (), math.inf, 0.0, c.tolerance.name, f"missing: {e}"))
            continue
        results.append(compare(network, name, c.actual, expected, c.tolerance))
    for file in module.GOLDEN_FILES:
        results.extend(_coverage(golden, network, file, compared.get(file, set()), module.INPUT_ARRAYS))
    return results


def _coverage(golden: Golden, network: str, file: str, compared: set[str],
              inputs: frozenset[str]) -> list[ArrayResult]:
    """Failures for arrays of ``<file>.npz`` that are missing, unexpected or not compared.

    `compared`: the keys a comparison asked for (a missing one was already reported by the comparison).
    """
    try:
        listed = golden.listed(file)
    except GoldenError as e:
        return [ArrayResult(network, f"({file}.npz)", (), math.inf, 0.0, problem=str(e))]
    try:
        stored = set(golden[file])
    except GoldenError as e:
        stored = set()
        if not compared:
            return [ArrayResult(network, f"({file}.npz)", (), math.inf, 0.0, problem=str(e))]
    out = []
    for key in listed:
        if key not in stored and key not in compared:
            out.append(ArrayResult(network, _prefixed(file, key), (), math.inf, 0.0,
                                   problem=f"missing from {file}.npz (listed in manifest.json)"))
        elif key not in compared and key not in inputs:
            out.append(ArrayResult(network, _prefixed(file, key), (), math.inf, 0.0,
                                   problem=f"listed in manifest.json but not compared by the {network} check"))
    for key in sorted(stored - set(listed)):
        out.append(ArrayResult(network, _prefixed(file, key), (), math.inf, 0.0,
                               problem=f"unexpected array in {file}.npz (not listed in manifest.json)"))
    return out


def run_checks(golden_dir: str | Path, networks: list[str] | None = None, *,
               device: str = "cpu") -> list[ArrayResult]:
    """Run the checks of `networks` (default: all) on a golden folder; return every array's result."""
    golden = Golden(golden_dir)
    names = list(CHECKS) if not networks else networks
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown network(s) {unknown}; choose from {list(CHECKS)}")
    results: list[ArrayResult] = []
    for name in names:
        results.extend(check_network(golden, name, torch.device(device)))
    return results


@dataclass(frozen=True)
class Summary:
    """Counts of a run and its verdict."""

    compared: int
    failed: int
    worst: ArrayResult | None
    """The compared array closest to (or furthest past) its bound."""

    @property
    def ok(self) -> bool:
        """Passed: something was compared and nothing failed."""
        return self.compared > 0 and self.failed == 0


def summarise(results: list[ArrayResult]) -> Summary:
    compared = [r for r in results if not r.problem]
    worst = max(compared, key=lambda r: r.ratio, default=None)
    return Summary(len(compared), sum(not r.passed for r in results), worst)
