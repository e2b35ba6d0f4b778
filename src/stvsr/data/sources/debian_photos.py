"""Opt-in: natural photographs (2.5K–5K px) from Debian's wallpaper packages — placeholder,
filled in below."""

from __future__ import annotations

from stvsr.data.sources.base import Source

__all__ = ["DebianPhotosSource"]


class DebianPhotosSource(Source):
    name = "debian"
    title = "natural photographs from Debian wallpaper packages (opt-in)"
    licence = "per file, from the packages' copyright files"
