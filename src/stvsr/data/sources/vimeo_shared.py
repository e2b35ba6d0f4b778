"""The Vimeo-90K septuplets of ``../shared/data/Vimeo90K/septuplet_HR`` when that folder exists,
copied byte for byte (7 frames each)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from stvsr.data.sources.base import Clip, Options, Source

__all__ = ["VIMEO_LICENCE", "VimeoSharedSource", "find_shared"]

VIMEO_LICENCE = ("Vimeo-90K (Xue et al., IJCV 2019), research use; see the TOFlow site's terms; "
                 "taken from ../shared (see its SOURCES.md)")


def find_shared(shared: Path | None) -> Path | None:
    """``shared``, else ``../shared`` of the working directory or of the repository when it has
    a ``data`` folder."""
    if shared is not None:
        return Path(shared)
    return next((p for p in (Path.cwd().parent / "shared",
                             Path(__file__).resolve().parents[4].parent / "shared")
                 if (p / "data").is_dir()), None)


def _sequences(shared: Path | None) -> Path | None:
    root = find_shared(shared)
    if root is None:
        return None
    seq = root / "data" / "Vimeo90K" / "septuplet_HR" / "sequences"
    return seq if seq.is_dir() else None


class VimeoSharedSource(Source):
    name = "vimeo"
    title = "Vimeo-90K septuplets from ../shared"
    licence = VIMEO_LICENCE

    def available(self, opts: Options) -> str | None:
        if _sequences(opts.shared) is None:
            return "no ../shared/data/Vimeo90K/septuplet_HR here (pass --shared)"
        return None

    def clips(self, opts: Options) -> Iterator[Clip]:
        seq = _sequences(opts.shared)
        if seq is None:
            return
        opts.say(f"Vimeo-90K septuplets from {seq}")
        self.records.append({"name": "Vimeo-90K septuplets (shared)", "path": str(seq),
                             "license": VIMEO_LICENCE})
        for folder in sorted(p for p in seq.glob("*/*") if p.is_dir()):
            files = sorted(folder.glob("im*.png"))
            if len(files) == 7:
                yield Clip(f"vimeo_{folder.parent.name}_{folder.name}",
                           f"shared:Vimeo90K/{folder.parent.name}/{folder.name}", VIMEO_LICENCE,
                           files=tuple(files))
