"""Validation curves of training runs as one PNG (PIL only): one panel per run, the run's validation figure
against its step.

    python docs/scripts/plot_curves.py OUT.png RUN[:KEY] [RUN[:KEY] ...]

KEY is the figure of ``metrics.jsonl``'s validation lines to plot (default ``iou``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

PANEL_W, PANEL_H, MARGIN = 360, 240, 48


def curve(run: Path, key: str) -> list[tuple[int, float]]:
    pts = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        if '"val"' in line:
            v = json.loads(line)["val"]
            if key in v:
                pts.append((int(v["step"]), float(v[key])))
    return pts


def panel(draw: ImageDraw.ImageDraw, x0: int, title: str, pts: list[tuple[int, float]]) -> None:
    left, top = x0 + MARGIN, MARGIN // 2 + 16
    w, h = PANEL_W - MARGIN - 12, PANEL_H - MARGIN - 24
    draw.rectangle([left, top, left + w, top + h], outline=(0, 0, 0))
    draw.text((x0 + MARGIN, 6), title, fill=(0, 0, 0))
    steps = [s for s, _ in pts]
    vals = [v for _, v in pts]
    lo, hi = min(vals), max(vals)
    pad = 0.05 * (hi - lo or 1.0)
    lo, hi = lo - pad, hi + pad
    smax = max(steps) or 1

    def xy(s: int, v: float) -> tuple[float, float]:
        return left + w * s / smax, top + h * (1 - (v - lo) / (hi - lo))

    # enough significant digits that the three labels differ (a flat curve spans only ~1e-4)
    digits = 3
    while digits < 8 and len({f"{lo + f * (hi - lo):.{digits}g}" for f in (0.0, 0.5, 1.0)}) < 3:
        digits += 1
    for frac in (0.0, 0.5, 1.0):
        v = lo + frac * (hi - lo)
        _, y = xy(0, v)
        draw.text((x0 + 4, y - 6), f"{v:.{digits}g}", fill=(80, 80, 80))
    draw.text((left + w - 40, top + h + 6), f"{smax} steps", fill=(80, 80, 80))
    draw.line([xy(s, v) for s, v in pts], fill=(200, 60, 40), width=2)
    for s, v in pts:
        cx, cy = xy(s, v)
        draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=(200, 60, 40))


def main(argv: list[str]) -> int:
    out, specs = Path(argv[0]), argv[1:]
    img = Image.new("RGB", (PANEL_W * len(specs), PANEL_H), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for i, spec in enumerate(specs):
        run, _, key = spec.partition(":")
        key = key or "iou"
        run = Path(run)
        stage = json.loads((run / "config.json").read_text())["stage"]
        panel(draw, i * PANEL_W, f"{stage}: validation {key}", curve(run, key))
    img.save(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
