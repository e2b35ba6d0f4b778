"""What a corpus source is: a named, licensed, pinned supplier of clips (and of stills to animate).

A source yields :class:`Clip` objects (HR frames, or files to copy byte for byte) and
:class:`Still` objects (images that :func:`stvsr.data.motion.animate_still` turns into clips);
``stvsr.data.prepare.prepare_corpus`` writes them. Helpers shared by the video sources live here
too: decoding, the ×2 downscale that makes HR targets of compressed sources, and the scene-cut
rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stvsr.errors import DataError
from stvsr.frames import frame_to_tensor, to_uint8

__all__ = ["CUT_BLOCK", "CUT_THRESHOLD", "FLAT_STD", "Clip", "Options", "Source", "Still",
           "cut_free_runs", "halve", "luma_thumbnail", "refuse_vid4", "video_frames"]

# Scene-cut rule of the video sources: the green channel (a luma proxy) averaged over
# CUT_BLOCK×CUT_BLOCK blocks; a cut between two frames when the mean absolute difference of
# those thumbnails exceeds CUT_THRESHOLD (0–255 scale). On Big Buck Bunny the median frame
# difference is about 1.
# A frame whose thumbnail has a standard deviation under FLAT_STD (black, a fade's first
# frames) is no training material and also breaks a run.
CUT_BLOCK = 20
CUT_THRESHOLD = 20.0
FLAT_STD = 10.0


@dataclass
class Clip:
    """One clip: ``frames`` (``(H, W, 3) uint8`` arrays) or ``files`` (PNGs copied as they are)."""

    name: str
    source: str
    licence: str
    kind: str = "real"
    frames: Iterable[np.ndarray] = ()
    files: tuple[Path, ...] = ()


@dataclass
class Still:
    """An image to animate (``(H, W, 3) uint8``), with its licence."""

    name: str
    image: np.ndarray
    licence: str


@dataclass
class Options:
    """The settings every source reads (the ``stvsr data prepare`` options)."""

    clip_len: int = 30
    shared: Path | None = None
    photo_dirs: tuple[Path, ...] = ()
    say: Callable[[str], None] = print
    quiet: bool = False


class Source:
    """A corpus source. Subclasses set the class attributes and override :meth:`clips` and/or
    :meth:`stills`; both are deterministic (the same pinned inputs give the same output).

    ``name``: the ``--sources`` name. ``title``: what it is. ``licence``: the footage's licence.
    ``pinned``: the exact packages it reads (``"moviepy==2.2.1"`` …), whose sha256 are pinned
    in the source's module. ``records``: manifest entries describing what was read, filled in
    while the source runs.
    """

    name: str = ""
    title: str = ""
    licence: str = ""
    pinned: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def available(self, opts: Options) -> str | None:
        """None when the source can run here, else a one-line reason to skip it."""
        return None

    def clips(self, opts: Options) -> Iterator[Clip]:
        return iter(())

    def stills(self, opts: Options) -> Iterator[Still]:
        return iter(())


def refuse_vid4(path: Path) -> None:
    """Vid4 is for evaluation only: refuse any path that names it."""
    if "vid4" in str(path).lower():
        raise DataError(f"{path} looks like Vid4, which is for evaluation only; never train on it")


def halve(rgb: np.ndarray) -> np.ndarray:
    """×½ with MATLAB-style bicubic (antialiased), the HR target of a compressed source: the
    downscale averages away most of the coding artefacts (as Vimeo-90K's curators did)."""
    from stvsr.ops.resize import imresize

    return to_uint8(imresize(frame_to_tensor(rgb)[None].double(), 0.5)[0].float())


def video_frames(path: Path, scale: float = 1.0) -> Iterator[np.ndarray]:
    """Every frame of ``path`` as RGB (``stvsr.data.video.VideoReader``), resized by ``scale``
    with MATLAB-style bicubic when ``scale != 1``."""
    from stvsr.data.video import VideoReader
    from stvsr.ops.resize import imresize

    for frame in VideoReader(path):
        rgb = frame.rgb
        if scale != 1.0:
            rgb = to_uint8(imresize(frame_to_tensor(rgb)[None].double(), scale)[0].float())
        yield rgb


def luma_thumbnail(rgb: np.ndarray, block: int = CUT_BLOCK) -> np.ndarray:
    """Block means of the green channel of ``(H, W, 3) uint8`` (cropped to whole blocks)."""
    y = rgb[..., 1]
    h, w = (y.shape[0] // block) * block, (y.shape[1] // block) * block
    t = y[:h, :w].astype(np.float32).reshape(h // block, block, w // block, block)
    return t.mean(axis=(1, 3))


@dataclass
class _Run:
    start: int = 0
    frames: list[np.ndarray] = field(default_factory=list)


def cut_free_runs(frames: Iterable[np.ndarray], *, slot: int, length: int,
                  excluded: Callable[[int], bool] = lambda i: False,
                  threshold: float = CUT_THRESHOLD) -> Iterator[tuple[int, list[np.ndarray]]]:
    """The clip rule of the long videos: from each ``slot``-frame slot (frames ``k·slot`` …
    ``(k+1)·slot − 1``), the first ``length`` consecutive frames with no scene cut between them,
    none of them flat (thumbnail std < :data:`FLAT_STD`) and none ``excluded``; a slot without
    such a run gives nothing.

    ``frames`` yields ``(H, W, 3) uint8`` frames; yields ``(index of the first frame, frames)``.
    Only the current run is kept in memory.
    """
    run = _Run()
    prev = None
    done_slot = -1
    for i, rgb in enumerate(frames):
        k = i // slot
        thumb = luma_thumbnail(rgb)
        cut = prev is None or i % slot == 0 or float(np.abs(thumb - prev).mean()) > threshold
        prev = thumb
        if k == done_slot:
            continue
        if excluded(i) or float(thumb.std()) < FLAT_STD:
            run = _Run(start=i + 1)
            continue
        if cut:
            run = _Run(start=i)
        run.frames.append(rgb)
        if len(run.frames) == length:
            yield run.start, run.frames
            done_slot = k
            run = _Run()
