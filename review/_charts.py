"""Charts for the review reports, drawn with matplotlib's Agg canvas and returned as base64 PNG.

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot state), so reports can be drawn from any
thread. Chinese needs a CJK font: when none is installed, chart text is English only (the HTML around the
charts keeps the Chinese) and any character the default font lacks is replaced rather than drawn as a box.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

__all__ = ["Chart", "ChartText", "chart_text", "png_base64"]

_CJK_FAMILIES = (
    "Noto Sans CJK SC", "Noto Sans SC", "Noto Serif CJK SC", "Source Han Sans SC", "Source Han Sans CN",
    "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC",
    "AR PL UMing CN", "AR PL UKai CN", "Droid Sans Fallback",
)

# Palette (colour-blind safe, Okabe-Ito).
BLUE, ORANGE, GREEN, RED, PURPLE, GREY, SKY, YELLOW = (
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#7F7F7F", "#56B4E9", "#F0E442",
)


@lru_cache(maxsize=1)
def _cjk_family() -> str | None:
    installed = {font.name for font in font_manager.fontManager.ttflist}
    return next((family for family in _CJK_FAMILIES if family in installed), None)


@lru_cache(maxsize=8)
def _has_bold(family: str) -> bool:
    """Whether ``family`` has a bold face (WenQuanYi Micro Hei has none: asking for one logs a warning)."""
    weights = font_manager.weight_dict
    return any(
        font.name == family and (weights.get(font.weight, 400) if isinstance(font.weight, str) else font.weight) >= 600
        for font in font_manager.fontManager.ttflist
    )


@dataclass(frozen=True, slots=True)
class ChartText:
    """Chart labels in both languages when a CJK font exists, in English otherwise."""

    cjk_family: str | None

    def __call__(self, en: str, zh: str = "") -> str:
        if self.cjk_family and zh:
            return f"{zh} {en}"
        return self.safe(en)

    def safe(self, text: str) -> str:
        """``text`` with characters beyond the default font's reach replaced by '?' when no CJK font exists."""
        if self.cjk_family:
            return text
        return "".join(ch if ord(ch) < 0x2E80 else "?" for ch in text)


def chart_text() -> ChartText:
    return ChartText(_cjk_family())


class Chart:
    """One figure: ``with Chart(title, ...) as fig: ...``; afterwards ``chart.png`` is its base64 PNG."""

    def __init__(self, title: str, *, size: tuple[float, float] = (9.0, 4.0), text: ChartText | None = None) -> None:
        self.title = title
        self.text = text or chart_text()
        self.figure = Figure(figsize=size, dpi=100, layout="constrained")
        FigureCanvasAgg(self.figure)
        self._family = self.text.cjk_family
        self.png = ""

    def __enter__(self) -> Figure:
        return self.figure

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            bold = self._family is None or _has_bold(self._family)
            self.figure.suptitle(self.text.safe(self.title), fontsize=11, fontweight="bold" if bold else "normal")
            if self._family:
                for text in self.figure.findobj(Text):
                    text.set_fontfamily([self._family, "DejaVu Sans"])
            self.png = png_base64(self.figure)


def png_base64(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def time_buckets(times: pd.Series) -> tuple[pd.Series, str]:
    """Bucket start per row: hours for spans up to 3 days, days up to 120 days, weeks beyond."""
    if times.empty:
        return times, "D"
    span = times.max() - times.min()
    freq = "h" if span <= pd.Timedelta(days=3) else ("D" if span <= pd.Timedelta(days=120) else "W")
    local = times.dt.tz_convert("Asia/Shanghai")
    if freq == "W":
        return local.dt.to_period("W").dt.start_time.dt.tz_localize("Asia/Shanghai"), freq
    return local.dt.floor(freq), freq


def shorten(text: str, width: int = 18) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def circle_positions(n: int, radius: float = 1.0) -> np.ndarray:
    """``n`` points evenly on a circle, starting at the top, clockwise."""
    angles = math.pi / 2 - np.arange(n) * (2 * math.pi / max(n, 1))
    return np.column_stack([radius * np.cos(angles), radius * np.sin(angles)])


def scaled_widths(values: Sequence[float], low: float = 0.8, high: float = 9.0) -> np.ndarray:
    """Line widths proportional to sqrt(value) (area-like), between ``low`` and ``high``."""
    v = np.sqrt(np.maximum(np.asarray(values, dtype=np.float64), 0.0))
    top = v.max(initial=0.0)
    if top <= 0:
        return np.full(len(v), low)
    return np.asarray(low + (high - low) * v / top)
