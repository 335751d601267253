"""Result tables: aggregate per-sample metrics and write them as JSON and Markdown.

:func:`aggregate` takes ``(name, SampleMetrics or failure)`` pairs in any order and returns a
:class:`Report` whose samples and failures are sorted by name, so the same results always give the same
files. :func:`write_report` writes ``metrics.json`` and ``metrics.md`` atomically (a temporary file in the
same folder, then ``os.replace``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Union

import numpy as np

from im2hands._io import atomic_write
from im2hands.eval.metrics import HAND_METRIC_UNITS, PAIR_METRIC_UNITS, UNDEFINED_WITHOUT_CONTACT, SampleMetrics

__all__ = ["Failure", "HandRow", "PairRow", "Report", "aggregate", "json_floats", "report_to_json", "report_to_markdown",
           "write_report"]


@dataclass(frozen=True)
class Failure:
    """A sample whose evaluation failed."""

    name: str
    message: str
    """``"ExceptionType: message"`` or the message given."""


@dataclass(frozen=True)
class HandRow:
    """Mean of one per-hand metric over the evaluated samples."""

    metric: str
    """Field name of :class:`~im2hands.eval.metrics.HandMetrics`."""
    unit: str
    right: float
    left: float
    mean: float
    """Mean over samples of the per-sample mean of both hands."""


@dataclass(frozen=True)
class PairRow:
    """Mean of one pair metric over the evaluated samples."""

    metric: str
    """Field name of :class:`~im2hands.eval.metrics.PairMetrics`."""
    unit: str
    mean: float


@dataclass(frozen=True)
class Report:
    """Aggregated results. Means are NaN when no sample was evaluated."""

    count: int
    """Samples evaluated."""
    failed: int
    """Samples whose evaluation failed."""
    hands: tuple[HandRow, ...]
    pair: tuple[PairRow, ...]
    failures: tuple[Failure, ...]
    """Sorted by name."""
    samples: tuple[tuple[str, SampleMetrics], ...]
    """Per-sample metrics, sorted by name."""


Outcome = Union[SampleMetrics, BaseException, str]


def aggregate(results: Iterable[tuple[str, Outcome]]) -> Report:
    """Aggregate per-sample results.

    Args:
        results: ``(name, outcome)`` pairs; the outcome is a :class:`SampleMetrics`, or the exception (or
            message) of a sample that failed. Names must be unique.
    Returns:
        :class:`Report` with per-hand means (right, left, both) and pair means over the evaluated samples.
    """
    ok: dict[str, SampleMetrics] = {}
    failures: dict[str, Failure] = {}
    for item in results:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise ValueError(f"results: expected (name, outcome) pairs, got {item!r}")
        name, outcome = item
        if name in ok or name in failures:
            raise ValueError(f"results: sample name {name!r} appears twice; names must be unique")
        if isinstance(outcome, SampleMetrics):
            ok[name] = outcome
        elif isinstance(outcome, BaseException):
            failures[name] = Failure(name, f"{type(outcome).__name__}: {outcome}")
        elif isinstance(outcome, str):
            failures[name] = Failure(name, outcome)
        else:
            raise ValueError(f"results: outcome of {name!r} must be SampleMetrics, an exception or a message, "
                             f"got {type(outcome).__name__}")
    samples = tuple(sorted(ok.items()))

    def mean(values: list[float], *, skip_nan: bool = False) -> float:
        if skip_nan:
            values = [v for v in values if not math.isnan(v)]
        return float(np.mean(values)) if values else float("nan")

    hands = tuple(
        HandRow(k, unit, mean([getattr(s.right, k) for _, s in samples]), mean([getattr(s.left, k) for _, s in samples]),
                mean([getattr(s.mean, k) for _, s in samples]))
        for k, unit in HAND_METRIC_UNITS.items())
    pair = tuple(PairRow(k, unit, mean([getattr(s.pair, k) for _, s in samples], skip_nan=k in UNDEFINED_WITHOUT_CONTACT))
                 for k, unit in PAIR_METRIC_UNITS.items())
    return Report(count=len(samples), failed=len(failures), hands=hands, pair=pair,
                  failures=tuple(failures[n] for n in sorted(failures)), samples=samples)


def json_floats(d: dict) -> dict:
    """A flat dict of figures ready for strict JSON: NaN and inf (a figure undefined for a sample) become None."""
    return {k: (v if math.isfinite(v) else None) if isinstance(v, float) else v for k, v in d.items()}


def report_to_json(report: Report) -> dict:
    """The report as a JSON-ready dict (NaN and inf become ``null``)."""
    return {
        "count": report.count,
        "failed": report.failed,
        "hands": [json_floats(asdict(r)) for r in report.hands],
        "pair": [json_floats(asdict(r)) for r in report.pair],
        "failures": [asdict(f) for f in report.failures],
        "samples": [
            {"name": name,
             "right": json_floats(asdict(s.right)), "left": json_floats(asdict(s.left)), "mean": json_floats(asdict(s.mean)),
             "pair": json_floats(asdict(s.pair))}
            for name, s in report.samples],
    }


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x:.4f}" if abs(x) < 10 else f"{x:.2f}"


def report_to_markdown(report: Report) -> str:
    """The report as a Markdown page: a per-hand table, a pair table and the failures."""
    lines = ["# Evaluation", "", f"Samples evaluated: {report.count}; failed: {report.failed}.", "",
             "| metric | unit | right | left | mean |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r.metric} | {r.unit or '-'} | {_fmt(r.right)} | {_fmt(r.left)} | {_fmt(r.mean)} |"
              for r in report.hands]
    lines += ["", "| pair metric | unit | mean |", "|---|---|---:|"]
    lines += [f"| {r.metric} | {r.unit} | {_fmt(r.mean)} |" for r in report.pair]
    if report.failures:
        lines += ["", "## Failures", ""]
        lines += [f"- `{f.name}`: {' '.join(f.message.split())}" for f in report.failures]
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_report(report: Report, out_dir: Path | str, *, stem: str = "metrics") -> tuple[Path, Path]:
    """Write ``{stem}.json`` and ``{stem}.md`` into `out_dir` (created if needed), each atomically.

    Returns:
        (json_path, markdown_path).
    """
    if not isinstance(report, Report):
        raise TypeError(f"report: expected a Report (from aggregate), got {type(report).__name__}")
    out = Path(out_dir)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    _write_atomic(json_path, json.dumps(report_to_json(report), indent=2, allow_nan=False, ensure_ascii=False) + "\n")
    _write_atomic(md_path, report_to_markdown(report))
    return json_path, md_path
