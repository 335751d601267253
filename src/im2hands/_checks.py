"""Input checks shared by public functions: shapes, finiteness, devices.

Every check raises ``ValueError`` (or ``TypeError``) that names the argument, what was expected and what
was given, so that bad input never surfaces as a NaN or a stack trace from deep inside torch.
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_tensor(x: object, name: str) -> Tensor:
    """Raise ``TypeError`` unless `x` is a torch tensor; return it."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    return x


def check_shape(x: Tensor, spec: str, name: str) -> dict[str, int]:
    """Raise unless `x` matches `spec`, e.g. ``"B N 3"`` (letters free, digits fixed).

    A letter that appears twice must have the same size both times. ``"..."`` as the first token allows any
    number of leading dimensions. Returns the sizes bound to the letters, e.g. ``{"B": 2, "N": 100}``.
    """
    check_tensor(x, name)
    dims = spec.split()
    leading = bool(dims) and dims[0] == "..."
    if leading:
        dims = dims[1:]
        ok = x.ndim >= len(dims)
        shape = tuple(x.shape[x.ndim - len(dims):]) if ok else tuple(x.shape)
    else:
        ok = x.ndim == len(dims)
        shape = tuple(x.shape)
    bound: dict[str, int] = {}
    if ok:
        for d, s in zip(dims, shape):
            if d.isdigit():
                ok = ok and int(d) == s
            elif d in bound:
                ok = ok and bound[d] == s
            else:
                bound[d] = s
    if not ok:
        want = ("..., " if leading else "") + ", ".join(dims)
        raise ValueError(f"{name}: expected shape ({want}), got {tuple(x.shape)}")
    return bound


def check_same_size(sizes: dict[str, int], other: dict[str, int], letter: str, names: tuple[str, str]) -> None:
    """Raise unless two shape bindings agree on `letter` (e.g. the batch size of two arguments)."""
    if sizes[letter] != other[letter]:
        raise ValueError(
            f"{names[0]} and {names[1]}: mismatched {letter} ({sizes[letter]} vs {other[letter]}); "
            "they must describe the same batch"
        )


def check_finite(x: Tensor, name: str) -> None:
    """Raise unless every entry of `x` is finite; the message gives the first bad index."""
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name}: contains NaN or inf (first at index {idx}, value {x[idx].item()})")
