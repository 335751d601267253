"""Load the authors' released files into state dicts with our names (all three networks).

Our modules use the official parameter names, so the name map is the identity except for two renames
the official training scripts themselves perform when they initialise a network:

- IntagHand's encoder ``intaghand_baseline.pth`` (a DataParallel state dict): ``module.encoder.X`` ->
  ``image_encoder.X``; its other ``module.*`` entries (IntagHand's own mid-level model and mesh decoder) are
  not part of Im2Hands and are dropped. Any other DataParallel file just loses its ``module.`` prefix.
- A HALO baseline decoder (``halo_baseline.pt``, ``{"model": {"decoder.X": ...}}``): ``decoder.X`` ->
  both ``left_decoder.X`` and ``right_decoder.X``.

Every other key is kept as is (``init_occ.pt``, ``ref_occ.pt``, ``model_best.pt``: ``{"model": state_dict,
"optimizer": ..., "it": ..., ...}``, or a bare state dict). Several files can be merged (e.g. the official
init_occ initialisation = HALO decoder + IntagHand encoder); the result is checked against the target's
key set and shapes — taken from a network instance or a ``keys_<model>.json`` manifest — and every
missing, unexpected or mis-shaped key is reported in one error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from im2hands.models.checkpoint import (
    MODEL_CLASSES, build_model, check_state_dict, config_to_dict, expected_shapes, save_checkpoint,
)

INTAGHAND_PREFIX = "module.encoder."
DATAPARALLEL_PREFIX = "module."
HALO_DECODER_PREFIX = "decoder."


def _numpy_safe_globals() -> list:
    """Numpy scalar types that official checkpoints may pickle (e.g. ``loss_val_best``), allowed when loading."""
    core = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
    types = [core.multiarray.scalar, np.dtype]
    types += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    return types


def read_official(path: str | Path) -> dict[str, Tensor]:
    """The state dict inside an official file, with the file's own names.

    Accepts ``{"model": state_dict, ...}`` (artihand/HALO checkpoints) or a bare state dict (IntagHand's
    ``intaghand_baseline.pth``). Loaded with ``weights_only=True`` (tensors, plain data and numpy scalars
    only); nothing in the file is executed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - report any unpickling failure with the file name
        first_line = (str(e).strip().splitlines() or [""])[0]  # torch's own advice follows; keep the cause
        raise ValueError(f"{path}: cannot read as a torch checkpoint ({type(e).__name__}: {first_line})") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f"{path}: expected a state dict or a dict with a 'model' state dict, "
                         f"got {type(obj).__name__}{' (empty)' if isinstance(obj, dict) else ''}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"{path}: not a state dict; entries that are not name -> tensor: {bad[:5]}")
    return dict(obj)


def official_to_ours(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Apply the official -> our name map (see the module docstring) to one file's state dict.

    A file whose keys all start with ``module.`` is a DataParallel state dict: IntagHand's
    ``intaghand_baseline.pth`` if it has ``module.encoder.*`` keys (only those are kept, as
    ``image_encoder.*``), otherwise a wrapped Im2Hands network, whose ``module.`` prefix is removed.
    """
    if state and all(k.startswith(DATAPARALLEL_PREFIX) for k in state):
        if any(k.startswith(INTAGHAND_PREFIX) for k in state):
            # IntagHand's mid_model / mesh decoder are not part of Im2Hands: dropped
            return {"image_encoder." + k[len(INTAGHAND_PREFIX):]: v for k, v in state.items()
                    if k.startswith(INTAGHAND_PREFIX)}
        state = {k[len(DATAPARALLEL_PREFIX):]: v for k, v in state.items()}
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith(HALO_DECODER_PREFIX):
            rest = key[len(HALO_DECODER_PREFIX):]
            out["left_decoder." + rest] = value
            out["right_decoder." + rest] = value.clone()
        else:
            out[key] = value
    return out


def expected_from_manifest(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Key -> shape from a ``keys_<model>.json`` manifest (a list of ``{key, shape, ...}``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"keys manifest not found: {path}")
    try:
        entries = json.loads(path.read_text())
        return {e["key"]: tuple(int(s) for s in e["shape"]) for e in entries}
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a keys manifest (a JSON list of {{key, shape}}): {e}") from None


def merge_official(sources: Sequence[str | Path]) -> dict[str, Tensor]:
    """Read official files, map their names (:func:`official_to_ours`) and merge them.

    A key may come from one file only; a clash raises ``ValueError`` naming both files.
    """
    if not sources:
        raise ValueError("sources: give at least one official file")
    merged: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    for src in sources:
        for key, value in official_to_ours(read_official(src)).items():
            if key in merged:
                raise ValueError(f"{src}: key {key!r} is also provided by {origin[key]}; each key must come "
                                 "from one file")
            merged[key], origin[key] = value, str(src)
    return merged


def convert_state_dicts(sources: Sequence[str | Path], expected: Mapping[str, tuple[int, ...]], *,
                        fill: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Merge official files (:func:`merge_official`) and check the result against `expected`.

    Args:
        sources: official files (see :func:`read_official`).
        expected: target key -> shape.
        fill: tensors for keys that no source provides (e.g. a freshly initialised network's state
            dict); without it, any missing key is an error.
    Returns:
        state dict with exactly the keys and shapes of `expected`.
    Raises:
        StateDictMismatch (a ``ValueError``) listing missing, unexpected and mis-shaped keys.
    """
    merged = merge_official(sources)
    if fill is not None:
        merged.update({k: fill[k] for k in set(expected) - set(merged) if k in fill})
    check_state_dict(merged, expected, ", ".join(str(s) for s in sources))
    return merged


@dataclass(frozen=True)
class ConversionSummary:
    """What :func:`convert_official` wrote."""

    model: str
    destination: Path
    n_keys: int
    """Entries in the written state dict."""
    n_filled: int
    """Entries taken from the fresh network because no source had them (``fill_missing``)."""
    config: dict[str, Any]


def convert_official(sources: Sequence[str | Path], destination: str | Path, *, model: str,
                     official_quirks: bool = True, keys_manifest: str | Path | None = None,
                     fill_missing: bool = False) -> ConversionSummary:
    """Convert official file(s) into one of our checkpoints (``models/checkpoint.py`` format).

    Args:
        sources: official files merged into one state dict (see :func:`convert_state_dicts`).
        destination: checkpoint to write (atomically).
        model: ``init_occ``, ``ref_occ`` or ``kpts_ref``.
        official_quirks: the ``official_quirks`` value stored in the config (on for trained official weights).
        keys_manifest: take the expected key set from this ``keys_<model>.json`` instead of building the
            network; the stored config is then only ``{"official_quirks": ...}``.
        fill_missing: take keys that no source provides from a freshly initialised network (as the official
            training scripts do when they start from the HALO/IntagHand baselines).
    """
    if model not in MODEL_CLASSES:
        raise ValueError(f"model: unknown network kind {model!r}; choose from {sorted(MODEL_CLASSES)}")
    if keys_manifest is not None:
        if fill_missing:
            raise ValueError("fill_missing needs the network itself; it cannot be combined with keys_manifest")
        expected = expected_from_manifest(keys_manifest)
        config: dict[str, Any] = {"official_quirks": official_quirks}
        fill = None
    else:
        net = build_model(model, {"official_quirks": official_quirks})
        expected = expected_shapes(net)
        config = config_to_dict(net.config)
        fill = net.state_dict() if fill_missing else None
    state = merge_official(sources)
    filled = sorted(k for k in set(expected) - set(state) if fill is not None and k in fill)
    if fill is not None:
        state.update({k: fill[k] for k in filled})
    check_state_dict(state, expected, ", ".join(str(s) for s in sources))
    save_checkpoint(destination, model=model, config=config, state_dict=state)
    return ConversionSummary(model=model, destination=Path(destination), n_keys=len(state),
                             n_filled=len(filled), config=config)
