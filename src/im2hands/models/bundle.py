"""The model bundle: several checkpoints in one compact file (the shipped model).

A bundle is a ``torch.save``'d dict of tensors and plain data only, so it loads with
``torch.load(weights_only=True)`` (no pickled code runs)::

    {"format": "im2hands-bundle/1",
     "dtype": "float16",                      # what floating tensors were cast to
     "tensors": [t0, t1, ...],                # every distinct tensor once
     "networks": {kind: {"config": {...},     # the network's config as plain data (as in a checkpoint)
                         "entries": {state-dict key: index into "tensors"}}}}

Floating tensors are stored in ``dtype`` (float16 by default: half the bytes of float32; a tensor whose values
do not fit float16's range stays float32), integer buffers unchanged. Tensors that are identical after the
cast are stored once: a RefOcc checkpoint holds the frozen InitOcc (``init_occ.*``) and its own image encoder,
which starts as InitOcc's; KptsRef's image encoder too. :func:`load_bundle` returns float32 state dicts.

The shipped model is :data:`SHIPPED_BUNDLE` (``docs/RECONSTRUCT.md``, built by ``docs/scripts/ship_model.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from im2hands.models.checkpoint import FORMAT as CHECKPOINT_FORMAT
from im2hands.models.checkpoint import MODEL_CLASSES, Checkpoint, _check_kind, config_to_dict

BUNDLE_FORMAT = "im2hands-bundle/1"

SHIPPED_BUNDLE = Path(__file__).resolve().parents[1] / "assets" / "model" / "im2hands_compact.pt"
"""The trained model shipped inside the package (``Im2Hands.pretrained()``)."""

_FLOAT16_MAX = float(torch.finfo(torch.float16).max)


def _digest(t: Tensor) -> tuple:
    """A key equal for tensors of equal dtype, shape and bytes."""
    data = t.contiguous().reshape(-1).view(torch.uint8)
    return str(t.dtype), tuple(t.shape), hashlib.sha256(data.numpy().tobytes()).hexdigest()


def _stored(t: Tensor, dtype: torch.dtype) -> Tensor:
    """`t` as it is stored: floating tensors cast to `dtype` unless their values leave its range."""
    t = t.detach().cpu()
    if t.is_floating_point() and t.dtype != dtype:
        finite = t[torch.isfinite(t)]
        if dtype == torch.float16 and finite.numel() and float(finite.abs().max()) > _FLOAT16_MAX:
            return t.float().clone()
        return t.to(dtype)
    return t.clone()


def save_bundle(path: str | Path, checkpoints: Mapping[str, Checkpoint], *, dtype: torch.dtype = torch.float16) -> None:
    """Write checkpoints into one bundle file, atomically.

    Args:
        path: the file to write (its folder is created if needed).
        checkpoints: network kind (``"init_occ"``, ``"ref_occ"``, ``"kpts_ref"``) -> its
            :class:`~im2hands.models.checkpoint.Checkpoint` (e.g. from ``load_checkpoint``); each key must
            equal its checkpoint's ``kind``.
        dtype: floating dtype of the stored tensors (``torch.float16``, ``torch.bfloat16`` or
            ``torch.float32``). A float16 tensor whose finite values exceed float16's range is kept float32.
    """
    from im2hands._io import atomic_write

    if dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"dtype: expected torch.float16, torch.bfloat16 or torch.float32, got {dtype}")
    if not checkpoints:
        raise ValueError("checkpoints: give at least one network (kind -> Checkpoint)")
    tensors: list[Tensor] = []
    index_of: dict[tuple, int] = {}
    networks = {}
    for kind, ckpt in checkpoints.items():
        _check_kind(kind, "checkpoints")
        if not isinstance(ckpt, Checkpoint):
            raise TypeError(f"checkpoints[{kind!r}]: expected a Checkpoint, got {type(ckpt).__name__}")
        if ckpt.kind != kind:
            raise ValueError(f"checkpoints[{kind!r}]: holds a {ckpt.kind!r} checkpoint")
        bad = [k for k, v in ckpt.state_dict.items() if not isinstance(v, Tensor)]
        if bad:
            raise TypeError(f"checkpoints[{kind!r}].state_dict: entries must be tensors; not tensors: {bad[:5]}")
        entries = {}
        for key, value in ckpt.state_dict.items():
            stored = _stored(value, dtype)
            digest = _digest(stored)
            i = index_of.get(digest)
            if i is None or not torch.equal(tensors[i], stored):
                i = index_of[digest] = len(tensors)
                tensors.append(stored)
            entries[key] = i
        config = config_to_dict(ckpt.config) if not isinstance(ckpt.config, Mapping) else dict(ckpt.config)
        networks[kind] = {"config": config, "entries": entries}
    payload = {"format": BUNDLE_FORMAT, "dtype": str(dtype).removeprefix("torch."), "tensors": tensors,
               "networks": networks}
    atomic_write(Path(path), lambda f: torch.save(payload, f))


def _read(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"model bundle not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a readable file"
        raise ValueError(f"{path}: not a readable im2hands bundle or checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: expected an im2hands bundle (a dict), got {type(payload).__name__}")
    return payload


def _decode(path: Path, payload: dict) -> dict[str, Checkpoint]:
    """The float32 checkpoints of a bundle payload; ValueError naming `path` on any inconsistency."""
    if payload.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{path}: expected format {BUNDLE_FORMAT!r}, got {payload.get('format')!r}")
    tensors, networks = payload.get("tensors"), payload.get("networks")
    if not isinstance(tensors, list) or not isinstance(networks, dict) or not networks:
        raise ValueError(f"{path}: corrupt bundle (no 'tensors' list or no 'networks')")
    out = {}
    for kind, net in networks.items():
        if kind not in MODEL_CLASSES:
            raise ValueError(f"{path}: unknown network kind {kind!r}; known: {sorted(MODEL_CLASSES)}")
        if not isinstance(net, dict) or not isinstance(net.get("config"), dict) or not isinstance(net.get("entries"), dict):
            raise ValueError(f"{path}: corrupt bundle (network {kind!r} lacks its 'config' or 'entries')")
        state = {}
        for key, i in net["entries"].items():
            if not isinstance(i, int) or not 0 <= i < len(tensors) or not isinstance(tensors[i], Tensor):
                raise ValueError(f"{path}: corrupt bundle ({kind}.{key} points at tensor {i!r} of {len(tensors)})")
            t = tensors[i]
            state[key] = t.float() if t.is_floating_point() else t.clone()
        out[kind] = Checkpoint(kind, dict(net["config"]), state)
    return out


def load_bundle(path: str | Path, *, networks: Sequence[str] | None = None) -> dict[str, Checkpoint]:
    """Read a bundle written by :func:`save_bundle`.

    Args:
        path: the bundle file.
        networks: kinds that must be present (a ValueError lists what the bundle holds otherwise); None: any.
    Returns:
        kind -> :class:`~im2hands.models.checkpoint.Checkpoint` with float32 floating tensors (integer
        buffers as stored), every network of the bundle.
    """
    path = Path(path)
    payload = _read(path)
    if payload.get("format") == CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: a single checkpoint, not a bundle (load it with load_checkpoint, or make a "
                         "bundle with docs/scripts/ship_model.py)")
    out = _decode(path, payload)
    missing = [k for k in (networks or ()) if k not in out]
    if missing:
        raise ValueError(f"{path}: the bundle lacks the {missing} network(s); it holds {sorted(out)}")
    return out


def read_networks(path: str | Path) -> dict[str, Checkpoint]:
    """The checkpoints in a file that is either one checkpoint (``save_checkpoint``) or a bundle: kind ->
    :class:`~im2hands.models.checkpoint.Checkpoint` (float32 for a bundle). Reads the file once."""
    from im2hands.models.checkpoint import load_checkpoint

    path = Path(path)
    payload = _read(path)
    if payload.get("format") == BUNDLE_FORMAT:
        return _decode(path, payload)
    if payload.get("format") == CHECKPOINT_FORMAT and all(k in payload for k in ("model", "config", "state_dict")) \
            and payload["model"] in MODEL_CLASSES:
        return {payload["model"]: Checkpoint(payload["model"], dict(payload["config"]), dict(payload["state_dict"]))}
    load_checkpoint(path)   # not a valid file: raises with the checkpoint reader's message
    raise ValueError(f"{path}: neither an im2hands checkpoint nor a bundle")
