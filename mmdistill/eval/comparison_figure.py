"""The comparison as a picture: every model's few-shot accuracy with its 95% CI, one panel per
setting (standard and group-disjoint side by side), the appearance baseline and chance as lines.

Drawn with PIL (matplotlib is not a requirement). Read it as: a dot right of the orange band
(the colour histogram's mean and CI) is ahead of what scene colour alone gives; right of the
grey dashed line, ahead of chance (100 / N).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from PIL import Image, ImageDraw

from mmdistill.eval.appearance import NAME as APPEARANCE

PANEL_W, ROW_H, LABEL_W, TOP, BOTTOM, PAD = 260, 22, 230, 40, 34, 14
DOT, CI, CHANCE, BASELINE, BAND = (31, 79, 160), (120, 150, 210), (120, 120, 120), \
    (230, 120, 20), (252, 226, 196)


def _settings(reports: Mapping[str, Any]) -> list[str]:
    """Setting names in the first report's order, standard ones first, each followed by its
    group-disjoint twin when there is one."""
    names = [r.setting.name for r in next(iter(reports.values())).results]
    ordered = []
    for name in names:
        if not name.endswith("_disjoint"):
            ordered.append(name)
            if name + "_disjoint" in names:
                ordered.append(name + "_disjoint")
    return ordered + [n for n in names if n not in ordered]


def draw_comparison(reports: Mapping[str, Any], path: str | Path,
                    labels: Mapping[str, str] | None = None) -> Path:
    """Write the picture of `reports` (model name -> few-shot Report) to `path` (PNG)."""
    settings = _settings(reports)
    models = [m for m in reports if m != APPEARANCE]
    labels = dict(labels or {})
    height = TOP + ROW_H * len(models) + BOTTOM
    image = Image.new("RGB", (LABEL_W + PANEL_W * len(settings) + PAD, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((PAD, 6), "Few-shot accuracy (%), mean and 95% CI over the same episodes; orange: "
              "colour histogram (appearance only), grey dashed: chance", fill="black")
    for row, model in enumerate(models):
        draw.text((PAD, TOP + row * ROW_H + 5), labels.get(model, model), fill="black")
    for col, setting in enumerate(settings):
        left = LABEL_W + col * PANEL_W
        results = {m: r[setting] for m, r in reports.items()}
        n_way = results[models[0] if models else APPEARANCE].setting.n_way
        values = [x for s in results.values() for x in (s.accuracy.mean - s.accuracy.ci95,
                                                         s.accuracy.mean + s.accuracy.ci95)]
        low = max(0.0, (min(values + [100.0 / n_way]) // 10) * 10)
        high = min(100.0, (max(values + [100.0 / n_way]) // 10 + 1) * 10)

        def x_of(value: float) -> float:
            return left + 10 + (PANEL_W - 30) * (value - low) / (high - low)

        bottom = TOP + ROW_H * len(models)
        draw.text((left + 10, TOP - 16), setting, fill="black")
        if APPEARANCE in results:
            a = results[APPEARANCE].accuracy
            draw.rectangle([x_of(a.mean - a.ci95), TOP, x_of(a.mean + a.ci95), bottom], fill=BAND)
            draw.line([x_of(a.mean), TOP, x_of(a.mean), bottom], fill=BASELINE, width=2)
        chance = x_of(100.0 / n_way)
        for y in range(TOP, bottom, 6):
            draw.line([chance, y, chance, min(y + 3, bottom)], fill=CHANCE, width=1)
        for row, model in enumerate(models):
            a = results[model].accuracy
            y = TOP + row * ROW_H + ROW_H // 2
            draw.line([x_of(a.mean - a.ci95), y, x_of(a.mean + a.ci95), y], fill=CI, width=3)
            draw.ellipse([x_of(a.mean) - 4, y - 4, x_of(a.mean) + 4, y + 4], fill=DOT)
        draw.line([left + 10, bottom, left + PANEL_W - 20, bottom], fill="black")
        for tick in range(int(low), int(high) + 1, 10):
            draw.line([x_of(tick), bottom, x_of(tick), bottom + 4], fill="black")
            draw.text((x_of(tick) - 6, bottom + 6), str(tick), fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
