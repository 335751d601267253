"""The golden weight rule: a deterministic tensor for every state-dict key, from its name alone.

Rule (``golden/official/README.md`` §2): for key ``k`` (rule key ``rk``: for ref_occ, ``init_occ.`` is
stripped), shape ``s``:

- integer entries (``num_batches_tracked``) are 0 (int64);
- float entries draw ``n = default_rng(crc32(rk) + SEED).standard_normal(s)`` (float64) and take
  ``n * GAIN / sqrt(prod(s) / s[0])`` for ``len(s) >= 2``; for 1-D: ``1 + 0.1|n|`` (running_var),
  ``0.1 n`` (running_mean), ``1 + 0.1 n`` (weight), ``0.1 n`` (bias); then cast to float32.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import numpy as np
import torch


def rule_tensor(rule_key: str, shape: tuple[int, ...], dtype: str, *, seed: int, gain: float) -> torch.Tensor:
    """The tensor the golden rule assigns to one state-dict entry."""
    if dtype.startswith("int") or dtype in ("torch.int64", "long"):
        return torch.zeros(shape, dtype=torch.int64)
    rng = np.random.default_rng(zlib.crc32(rule_key.encode("utf-8")) + seed)
    n = rng.standard_normal(shape)
    if len(shape) >= 2:
        value = n * gain / np.sqrt(np.prod(shape) / shape[0])
    elif len(shape) == 1:
        if rule_key.endswith("running_var"):
            value = 1 + 0.1 * np.abs(n)
        elif rule_key.endswith("running_mean"):
            value = 0.1 * n
        elif rule_key.endswith(".weight"):
            value = 1 + 0.1 * n
        elif rule_key.endswith(".bias"):
            value = 0.1 * n
        else:
            raise ValueError(f"golden weight rule: 1-D key {rule_key!r} is in no key family")
    else:
        raise ValueError(f"golden weight rule: float scalar key {rule_key!r} is not covered by the rule")
    return torch.from_numpy(np.ascontiguousarray(value.astype(np.float32)))


def load_keys(golden_dir: Path, model: str) -> list[dict]:
    """The state-dict manifest ``keys_<model>.json``: a list of {key, shape, dtype, kind}."""
    path = Path(golden_dir) / f"keys_{model}.json"
    if not path.is_file():
        raise FileNotFoundError(f"golden folder {golden_dir}: missing {path.name}")
    return json.loads(path.read_text())


def rule_state_dict(golden_dir: Path, model: str, *, seed: int, gain: float) -> dict[str, torch.Tensor]:
    """Build the full state dict of official model `model` (``init_occ``, ``ref_occ``, ``kpts_ref``)."""
    out = {}
    for entry in load_keys(golden_dir, model):
        key = entry["key"]
        rule_key = key[len("init_occ."):] if model == "ref_occ" and key.startswith("init_occ.") else key
        out[key] = rule_tensor(rule_key, tuple(entry["shape"]), entry["dtype"], seed=seed, gain=gain)
    return out


def fingerprint(t: torch.Tensor) -> dict:
    """{sum, sha256_16} of a tensor, as in ``weights_check.json`` (float32 little-endian C-order bytes)."""
    if t.dtype.is_floating_point:
        arr = t.detach().cpu().numpy().astype("<f4", copy=False)
    else:
        arr = t.detach().cpu().numpy()
    return {
        "sum": float(arr.astype(np.float64).sum()),
        "sha256_16": hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()[:16],
    }
