"""The one clip finder of evaluation: which clips a data folder holds, each as its HR frames.

Layouts (detected in this order; *design*):

* **Vimeo-90K septuplets**: ``ROOT/sequences/XXXXX/YYYY/im1..im7.png``; ``ROOT`` may also be the
  ``sequences`` folder itself or one septuplet folder. Clip names are ``XXXXX/YYYY``.
* **Vid4-like**: a folder of clip folders of HR frames (``Vid4/GT``; a folder holding ``GT`` is
  accepted too), or one clip folder. Clip folders are taken in sorted order, their frames in
  natural order (:func:`stvsr.data.images.list_frame_files`).

``names`` (from ``--clips`` or a list file, :func:`read_names`) selects clips: septuplets in the
order given, Vid4-like clips in folder order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stvsr.data.images import list_frame_files
from stvsr.errors import DataError

__all__ = ["Clip", "find_clips", "read_names"]


@dataclass(frozen=True)
class Clip:
    """One evaluation clip: its name and HR frame files in temporal order (``vimeo``: a
    Vimeo-90K septuplet, scored by :data:`stvsr.eval.protocols.SEPTUPLET`)."""

    name: str
    files: list[Path]
    vimeo: bool = False


def image_files(folder: Path) -> list[Path]:
    """The frame files of ``folder`` in natural order; ``[]`` when it holds no images."""
    try:
        return list_frame_files(folder)
    except Exception:  # noqa: BLE001 - folders without images raise; they are simply not clips
        return []


def septuplet_files(folder: Path) -> list[Path] | None:
    """``im1.png .. im7.png`` of a Vimeo septuplet folder, or ``None`` when one is missing."""
    files = [folder / f"im{i}.png" for i in range(1, 8)]
    return files if all(f.is_file() for f in files) else None


def read_names(list_file: str | Path) -> list[str]:
    """The non-empty lines of a list file (clip names or septuplets ``00001/0001``)."""
    path = Path(list_file)
    if not path.is_file():
        raise DataError(f"list file {path} does not exist; pass an existing text file")
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def find_clips(data: str | Path, names: Sequence[str] | None = None) -> list[Clip]:
    """The clips of ``data`` (see the module docstring), restricted to ``names`` if given."""
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; pass a Vid4-like or Vimeo folder")
    seq_root = _septuplet_root(root)
    if seq_root is not None:
        return _septuplets(seq_root, names)
    if septuplet_files(root) and not image_files(root / "GT"):
        return [Clip(root.name, septuplet_files(root) or [], vimeo=True)]
    return _clip_folders(root, names)


def _septuplet_root(root: Path) -> Path | None:
    """The folder of ``XXXXX/YYYY`` septuplet folders at or under ``root``, if there is one."""
    if (root / "sequences").is_dir():
        return root / "sequences"
    if any(septuplet_files(s) for d in root.iterdir() if d.is_dir()
           for s in d.iterdir() if s.is_dir()):
        return root
    return None


def _septuplets(seq_root: Path, names: Sequence[str] | None) -> list[Clip]:
    """The septuplets under ``seq_root``: all in sorted order, or ``names`` in their order."""
    if names is None:
        names = sorted(f"{d.name}/{s.name}" for d in seq_root.iterdir() if d.is_dir()
                       for s in d.iterdir() if s.is_dir() and septuplet_files(s))
    clips = []
    for name in names:
        files = septuplet_files(seq_root / name)
        if files is None:
            raise DataError(f"septuplet {name} not found under {seq_root} (im1..im7.png)")
        clips.append(Clip(name, files, vimeo=True))
    if not clips:
        raise DataError(f"no septuplets found under {seq_root}")
    return clips


def _clip_folders(root: Path, names: Sequence[str] | None) -> list[Clip]:
    """The image-holding subfolders of ``root`` (or of ``root/GT``), else ``root`` itself."""
    base = root / "GT" if (root / "GT").is_dir() else root
    clips = [Clip(d.name, image_files(d)) for d in sorted(base.iterdir()) if d.is_dir()]
    clips = [c for c in clips if c.files]
    if not clips and image_files(base):
        clips = [Clip(base.name, image_files(base))]
    if not clips:
        raise DataError(f"no image frames found in {base} or its subfolders")
    if names is not None:
        known = {c.name for c in clips}
        missing = [n for n in names if n not in known]
        if missing:
            raise DataError(f"clips {missing} not found in {base}")
        clips = [c for c in clips if c.name in names]
    return clips
