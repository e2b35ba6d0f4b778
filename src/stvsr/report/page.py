"""What a report page shows, as data: sections (one clip or one upscaled video) with their
per-frame series and frame viewers. :mod:`stvsr.report.build` fills them in and
:mod:`stvsr.report.html` turns them into HTML; neither imports the other's internals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["FrameView", "Section", "Series", "Variant"]


@dataclass
class Variant:
    """One image of a frame viewer."""

    label: str
    image: np.ndarray  # (H, W, 3) uint8
    psnr_y: float | None = None
    role: str = "model"  # "bicubic", "model", "gt", "input", "output"


@dataclass
class FrameView:
    """A frame shown with a before/after slider and zoomable crops."""

    index: int
    kind: str  # "input", "new" or "" (S-VSR: every frame restores an input)
    variants: list[Variant]
    time: float | None = None
    left: int = 0  # variant shown left of the slider
    right: int = 1


@dataclass
class Series:
    label: str
    values: list[float | None]
    kinds: list[str] | None = None
    dashed: bool = False


@dataclass
class Section:
    """One clip (of one task and degradation) or one upscaled video."""

    key: str
    title: str
    subtitle: str
    n_frames: int
    series: list[Series] = field(default_factory=list)
    candidates: list[int] = field(default_factory=list)
    loader: Callable[[int], FrameView | None] | None = None
    frames: list[FrameView] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)
