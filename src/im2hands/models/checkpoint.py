"""Our checkpoint format and building a network from one.

A checkpoint is a ``torch.save``'d dict::

    {"format": "im2hands-checkpoint/1",
     "model": "init_occ" | "ref_occ" | "kpts_ref",
     "config": {...},          # the network's config dataclass as plain data (nested dicts, lists)
     "state_dict": {...},      # parameter/buffer name -> tensor (CPU)
     "training": {...}}        # optional: the training state (im2hands.train.checkpoint)

It holds only tensors and plain data, so it loads with ``torch.load(weights_only=True)``. Writes are atomic
(temporary file in the target folder, then ``os.replace``).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import tempfile
import typing
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import torch
from torch import Tensor, nn

FORMAT = "im2hands-checkpoint/1"

MODEL_CLASSES: dict[str, tuple[str, str, str]] = {
    "init_occ": ("im2hands.models.init_occ", "InitOcc", "InitOccConfig"),
    "ref_occ": ("im2hands.models.ref_occ", "RefOcc", "RefOccConfig"),
    "kpts_ref": ("im2hands.models.kpts_ref", "KptsRef", "KptsRefConfig"),
}
"""Network kind -> (module, network class, config class). Imported only when a network is built, so that
this module does not depend on every network at import time."""


class Checkpoint(NamedTuple):
    """A loaded checkpoint; unpacks as ``kind, config, state_dict``."""

    kind: str
    """Network kind, a key of :data:`MODEL_CLASSES`."""
    config: dict[str, Any]
    """The network config as plain data (see :func:`config_from_dict`)."""
    state_dict: dict[str, Tensor]
    """Parameter and buffer tensors (CPU unless ``map_location`` said otherwise)."""


def _check_kind(kind: str, name: str = "model") -> None:
    if kind not in MODEL_CLASSES:
        raise ValueError(f"{name}: unknown network kind {kind!r}; choose from {sorted(MODEL_CLASSES)}")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A (nested) config dataclass as plain data: dicts, lists, numbers, strings, booleans."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config: expected a dataclass instance, got {type(config).__name__}")

    def plain(v):
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}


def config_from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Rebuild config dataclass `cls` from plain data; missing fields take their defaults.

    Nested dataclass fields are rebuilt recursively and lists become tuples. Unknown keys raise
    ``ValueError`` listing the allowed ones.
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"config for {cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"config for {cls.__name__}: unknown field(s) {unknown}; allowed: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints.get(key)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
            value = config_from_dict(hint, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def network_classes(kind: str) -> tuple[type, type]:
    """(network class, config class) of `kind`, imported now."""
    _check_kind(kind)
    module_name, net_name, cfg_name = MODEL_CLASSES[kind]
    try:
        module = importlib.import_module(module_name)
        return getattr(module, net_name), getattr(module, cfg_name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"model {kind!r}: cannot import {module_name}.{net_name}/{cfg_name} ({e})") from None


def build_model(kind: str, config: Mapping[str, Any] | None = None) -> nn.Module:
    """A freshly initialised network of `kind` from a plain-data config (defaults for missing fields)."""
    net_cls, cfg_cls = network_classes(kind)
    return net_cls(config_from_dict(cfg_cls, config or {}))


def save_checkpoint(path: str | Path, *, model: str, config: Any, state_dict: Mapping[str, Tensor],
                    training: Mapping[str, Any] | None = None) -> None:
    """Write a checkpoint atomically.

    Args:
        path: destination file (its folder is created if needed).
        model: network kind, a key of :data:`MODEL_CLASSES`.
        config: the network's config dataclass, or the same as plain data.
        state_dict: name -> tensor; stored detached on the CPU.
        training: optional training state (tensors and plain data only, e.g. an optimiser's state dict);
            stored under ``"training"`` and ignored by :func:`load_checkpoint`.
    """
    _check_kind(model)
    cfg = config_to_dict(config) if dataclasses.is_dataclass(config) else dict(config)
    bad = [k for k, v in state_dict.items() if not isinstance(v, Tensor)]
    if bad:
        raise TypeError(f"state_dict: entries must be tensors; not tensors: {bad[:5]}")
    payload = {"format": FORMAT, "model": model, "config": cfg,
               "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}}
    if training is not None:
        payload["training"] = dict(training)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` -> ``Checkpoint(kind, config, state_dict)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not our format"
        raise ValueError(f"{path}: not a readable im2hands checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        hint = " (an official file? convert it with `im2hands convert-official`)" if isinstance(payload, dict) \
            and "model" in payload and "format" not in payload else ""
        raise ValueError(f"{path}: expected format {FORMAT!r}, got {got!r}{hint}")
    for key in ("model", "config", "state_dict"):
        if key not in payload:
            raise ValueError(f"{path}: checkpoint lacks the {key!r} entry")
    _check_kind(payload["model"], f"{path}: model")
    return Checkpoint(payload["model"], dict(payload["config"]), dict(payload["state_dict"]))


def load_model(path: str | Path, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """Build the checkpoint's network from its config and load its weights (strict); eval mode."""
    kind, config, state = load_checkpoint(path, map_location=map_location)
    model = build_model(kind, config)
    check_state_dict(state, expected_shapes(model), f"{path} ({type(model).__name__})")
    model.load_state_dict(state)
    return model.to(map_location).eval()


def expected_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    """Key -> shape of every entry of `module`'s state dict (persistent buffers included)."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


class StateDictMismatch(ValueError):
    """A state dict whose key set or shapes differ from the target's; the message lists every difference."""

    def __init__(self, source: str, missing: list[str], unexpected: list[str],
                 misshaped: list[tuple[str, tuple[int, ...], tuple[int, ...]]], *, limit: int = 20):
        self.missing, self.unexpected, self.misshaped = missing, unexpected, misshaped
        lines = [f"{source}: state dict does not match the target network "
                 f"({len(missing)} missing, {len(unexpected)} unexpected, {len(misshaped)} mis-shaped keys)"]
        def more(items):
            return [f"    ... and {len(items) - limit} more"] if len(items) > limit else []
        if missing:
            lines += ["  missing:"] + [f"    {k}" for k in missing[:limit]] + more(missing)
        if unexpected:
            lines += ["  unexpected:"] + [f"    {k}" for k in unexpected[:limit]] + more(unexpected)
        if misshaped:
            lines += ["  mis-shaped (key: expected vs got):"] + [
                f"    {k}: {tuple(e)} vs {tuple(g)}" for k, e, g in misshaped[:limit]] + more(misshaped)
        super().__init__("\n".join(lines))


def check_state_dict(state: Mapping[str, Tensor], expected: Mapping[str, tuple[int, ...]], source: str) -> None:
    """Raise :class:`StateDictMismatch` unless `state` has exactly the keys and shapes of `expected`."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted((k, tuple(expected[k]), tuple(state[k].shape)) for k in set(state) & set(expected)
                       if tuple(state[k].shape) != tuple(expected[k]))
    if missing or unexpected or misshaped:
        raise StateDictMismatch(source, missing, unexpected, misshaped)
