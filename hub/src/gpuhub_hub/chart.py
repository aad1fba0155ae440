"""The usage report's chart (`gpuhub-admin usage --chart FILE`): a PNG with two panels of
stacked bars, GPU-hours and server-hours per day (UTC), one colour per group or user.
Drawn with Pillow and its built-in font (the hub image has no other)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .usage import Row

WIDTH, PANEL, MARGIN, LEFT = 960, 260, 36, 70
# Colour-blind-safe (Okabe-Ito), then grey for the rest.
COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442"]
OTHERS = "#999999"
MAX_KEYS = len(COLOURS)


def nice_top(value: float) -> float:
    """A round axis maximum at or above `value` (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(f * power for f in (1, 2, 5, 10) if f * power >= value)


def legend_keys(days: dict[date, dict[str, Row]]) -> list[str]:
    """The keys with the most GPU-hours (then server-hours) first; past MAX_KEYS - 1, the
    rest are drawn together as "others"."""
    totals: dict[str, tuple[float, float]] = {}
    for rows in days.values():
        for key, row in rows.items():
            gpu, server = totals.get(key, (0.0, 0.0))
            totals[key] = (gpu + row.gpu_hours, server + row.server_hours)
    ranked = sorted(totals, key=lambda k: (-totals[k][0], -totals[k][1], k))
    return ranked if len(ranked) <= MAX_KEYS else [*ranked[: MAX_KEYS - 1], "others"]


def render(days: dict[date, dict[str, Row]], by: str, title: str, path: str | Path) -> None:
    """Write the chart of `days` (usage.daily) to `path` as PNG."""
    keys = legend_keys(days)
    colour = {key: (OTHERS if key == "others" else COLOURS[i]) for i, key in enumerate(keys)}
    height = MARGIN * 3 + PANEL * 2 + 30
    image = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.text((LEFT, 4), title, fill="black", font=font)

    def key_of(key: str) -> str:
        return key if key in colour else "others"

    panels: list[tuple[str, Callable[[Row], float]]] = [
        ("GPU-hours", lambda row: row.gpu_hours),
        ("server-hours", lambda row: row.server_hours),
    ]
    ordered = sorted(days)
    for index, (label, value) in enumerate(panels):
        top = MARGIN + index * (PANEL + MARGIN)
        bottom = top + PANEL
        stacks = [
            {key: sum(value(r) for k, r in days[d].items() if key_of(k) == key) for key in keys}
            for d in ordered
        ]
        peak = nice_top(max((sum(s.values()) for s in stacks), default=0.0))
        draw.text((LEFT + 4, top - 14), label, fill="black", font=font)
        for tick in range(5):
            y = bottom - PANEL * tick / 4
            draw.line([(LEFT, y), (WIDTH - 20, y)], fill="#dddddd")
            draw.text((4, y - 6), f"{peak * tick / 4:g}", fill="black", font=font)
        slot = (WIDTH - 20 - LEFT) / max(len(ordered), 1)
        for i, (day, stack) in enumerate(zip(ordered, stacks, strict=True)):
            x0 = LEFT + i * slot + slot * 0.15
            x1 = LEFT + (i + 1) * slot - slot * 0.15
            y = float(bottom)
            for key in keys:
                h = PANEL * stack[key] / peak
                if h > 0:
                    draw.rectangle([x0, y - h, x1, y], fill=colour[key])
                    y -= h
            if index == 1 and (len(ordered) <= 16 or i % (len(ordered) // 16 + 1) == 0):
                draw.text((x0, bottom + 4), day.strftime("%m-%d"), fill="black", font=font)
        draw.line([(LEFT, bottom), (WIDTH - 20, bottom)], fill="black")
    x = LEFT
    y = height - 30
    draw.text((4, y), f"by {by}:", fill="black", font=font)
    for key in keys:
        draw.rectangle([x, y, x + 12, y + 12], fill=colour[key])
        draw.text((x + 16, y), key, fill="black", font=font)
        x += 16 + int(draw.textlength(key, font=font)) + 24
    image.save(path, "PNG")
