"""Compare our code with a golden folder of official outputs; the engine of ``im2hands check-official``.

Each network's check lives in its own module of this package and returns a list of
:class:`ArrayResult`, one per golden array, with the max absolute error beside its tolerance.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

# Network name -> module whose ``check(golden, device)`` returns list[ArrayResult]. Order = run order.
CHECKS: dict[str, str] = {
    "canonicalisation": "im2hands.official.canonicalisation",
    "image_encoder": "im2hands.official.image_encoder",
    "init_occ": "im2hands.official.init_occ",
    "ref_occ": "im2hands.official.ref_occ",
    "kpts_ref": "im2hands.official.kpts_ref",
}


@dataclass(frozen=True)
class ArrayResult:
    """Outcome of comparing one golden array."""

    network: str
    name: str
    shape: tuple[int, ...]
    max_abs_err: float
    """Max |ours - golden|; for integer arrays the number of differing entries."""
    atol: float
    """Absolute tolerance (0 for integer arrays: exact)."""

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.max_abs_err)) and self.max_abs_err <= self.atol

    def line(self) -> str:
        status = "ok  " if self.passed else "FAIL"
        return (f"{status} {self.network:<17s} {self.name:<32s} {str(self.shape):<20s} "
                f"max err {self.max_abs_err:.3e}  atol {self.atol:.1e}")


def compare(network: str, name: str, actual, expected: np.ndarray, atol: float) -> ArrayResult:
    """Compare `actual` (tensor or array) with golden `expected`; integer arrays must match exactly."""
    if isinstance(actual, torch.Tensor):
        actual = actual.detach().cpu().numpy()
    actual = np.asarray(actual)
    if actual.shape != expected.shape:
        return ArrayResult(network, name, tuple(expected.shape), float("inf"), atol)
    if np.issubdtype(expected.dtype, np.integer):
        err = float(np.count_nonzero(actual.astype(np.int64) != expected.astype(np.int64)))
        return ArrayResult(network, name, tuple(expected.shape), err, 0.0)
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    err = float(diff.max()) if diff.size else 0.0
    if not np.all(np.isfinite(actual)):
        err = float("inf")
    return ArrayResult(network, name, tuple(expected.shape), err, atol)


class Golden:
    """A golden folder: manifest, weight-rule parameters and lazily loaded ``.npz`` files."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"golden folder not found: {self.folder}")
        manifest = self.folder / "manifest.json"
        if not manifest.is_file():
            raise FileNotFoundError(f"golden folder {self.folder}: missing manifest.json")
        self.manifest = json.loads(manifest.read_text())
        try:
            self.seed = int(self.manifest["weight_rule"]["SEED"])
            self.gain = float(self.manifest["weight_rule"]["GAIN"])
        except KeyError as e:
            raise ValueError(f"{manifest}: missing weight_rule parameter {e}") from None
        self._npz: dict[str, dict[str, np.ndarray]] = {}

    def __getitem__(self, file: str) -> dict[str, np.ndarray]:
        """Arrays of ``<file>.npz`` as a dict of numpy arrays."""
        if file not in self._npz:
            path = self.folder / f"{file}.npz"
            if not path.is_file():
                raise FileNotFoundError(f"golden folder {self.folder}: missing {path.name}")
            with np.load(path) as z:
                self._npz[file] = {k: z[k] for k in z.files}
        return self._npz[file]

    def state_dict(self, model: str) -> dict[str, torch.Tensor]:
        """Official state dict of `model` built with this folder's weight rule."""
        from im2hands.official.weights import rule_state_dict

        return rule_state_dict(self.folder, model, seed=self.seed, gain=self.gain)

    @cached_property
    def inputs(self) -> dict[str, np.ndarray]:
        return self["inputs"]


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
        module = importlib.import_module(CHECKS[name])
        results.extend(module.check(golden, device=torch.device(device)))
    return results
