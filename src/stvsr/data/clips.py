"""Training clips: Vimeo-90K septuplets, REDS and any folder of clips, as :class:`ClipSource`
lists (HR frames as files or a video file, optionally matching LR frames). Sampling them is
:class:`stvsr.data.datasets.VideoClipDataset`'s job."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stvsr.errors import DataError

__all__ = ["REDS4_CLIPS", "VIDEO_EXTENSIONS", "ClipSource", "folder_clips", "reds_clips",
           "vimeo_septuplet_clips"]

REDS4_CLIPS = ("000", "011", "015", "020")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".y4m")
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ClipSource:
    """One training clip: HR frame files *or* a video file, plus optional stored LR frames."""

    name: str
    frames: tuple[Path, ...] = ()
    video: Path | None = None
    lr_frames: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if bool(self.frames) == (self.video is not None):
            raise ValueError("a ClipSource has either frame files or a video file")
        if self.lr_frames and len(self.lr_frames) != len(self.frames):
            raise DataError(f"clip {self.name}: {len(self.lr_frames)} LR frames for "
                            f"{len(self.frames)} HR frames; the folders must match")


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise DataError(f"{what} folder {path} does not exist; check the dataset root")


def _images(folder: Path) -> list[Path]:
    from stvsr.data.images import natural_key

    files = [p for p in folder.iterdir()
             if p.suffix.lower() in _IMAGE_EXTENSIONS and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


def vimeo_septuplet_clips(root: str | Path,
                          list_file: str | Path | None = None) -> list[ClipSource]:
    """Clips of a Vimeo-90K septuplet root (``sequences/XXXXX/YYYY/im1..im7.png``).

    ``list_file`` (absolute, or relative to ``root``; e.g. ``sep_trainlist.txt``) selects
    ``XXXXX/YYYY`` entries; without it every septuplet under ``sequences/`` is used.
    """
    root = Path(root)
    seq = root / "sequences" if (root / "sequences").is_dir() else root
    _require_dir(seq, "Vimeo-90K sequences")
    if list_file is not None:
        lf = Path(list_file)
        lf = lf if lf.is_absolute() else root / lf
        if not lf.is_file():
            raise DataError(f"Vimeo list file {lf} does not exist; fix data.list_file")
        keys = [ln.strip() for ln in lf.read_text().splitlines() if ln.strip()]
    else:
        keys = sorted(f"{a.name}/{b.name}" for a in seq.iterdir() if a.is_dir()
                      for b in a.iterdir() if b.is_dir())
    clips = []
    for key in keys:
        files = tuple(seq / key / f"im{i}.png" for i in range(1, 8))
        if not files[0].parent.is_dir():
            raise DataError(f"septuplet {key} from the list is missing under {seq}")
        clips.append(ClipSource(key, frames=files))
    if not clips:
        raise DataError(f"no septuplets found under {seq}")
    return clips


def reds_clips(root: str | Path, split: str = "train", *, lr: bool = True,
               scale: int = 4) -> list[ClipSource]:
    """Clips of a REDS root (``train_sharp/NNN/*.png`` and ``train_sharp_bicubic/X4/NNN/*.png``).

    ``split``: ``"train"`` (all clips but REDS4 = 000, 011, 015, 020), ``"reds4"`` (those four)
    or ``"all"``. ``lr``: use the stored bicubic LR frames (else LR is made on the fly).
    """
    root = Path(root)
    hr_root = root / "train_sharp"
    _require_dir(hr_root, "REDS train_sharp")
    lr_root = root / "train_sharp_bicubic" / f"X{scale}"
    if lr:
        _require_dir(lr_root, "REDS train_sharp_bicubic")
    if split not in ("train", "reds4", "all"):
        raise DataError(f"unknown REDS split {split!r}; choose train, reds4 or all")
    clips = []
    for d in sorted(p for p in hr_root.iterdir() if p.is_dir()):
        held_out = d.name in REDS4_CLIPS
        if (split == "train" and held_out) or (split == "reds4" and not held_out):
            continue
        hr = tuple(_images(d))
        lrf = tuple(_images(lr_root / d.name)) if lr else ()
        if hr:
            clips.append(ClipSource(d.name, frames=hr, lr_frames=lrf))
    if not clips:
        raise DataError(f"no REDS clips for split {split!r} under {hr_root}")
    return clips


def folder_clips(root: str | Path | list[str | Path]) -> list[ClipSource]:
    """Every frame folder (any depth) and video file under ``root``, as clips (sorted).

    ``root`` may list several folders (corpora used together): their clips follow one another
    in the order given, named relative to their own folder; two clips of one name (which would
    share a variant store's files) are an error."""
    if isinstance(root, (list, tuple)):
        return _clips_of_folders([Path(r) for r in root])
    root = Path(root)
    _require_dir(root, "clip")
    clips = []
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            files = _images(path)
            if files:
                clips.append(ClipSource(str(path.relative_to(root)), frames=tuple(files)))
        elif path.suffix.lower() in VIDEO_EXTENSIONS:
            clips.append(ClipSource(str(path.relative_to(root)), video=path))
    if not clips and _images(root):
        clips.append(ClipSource(root.name, frames=tuple(_images(root))))
    if not clips:
        raise DataError(f"no frame folders or video files under {root}")
    return clips


def _clips_of_folders(roots: list[Path]) -> list[ClipSource]:
    if not roots:
        raise DataError("the list of clip folders is empty; name at least one folder")
    clips, seen = [], {}
    for root in roots:
        for clip in folder_clips(root):
            if clip.name in seen:
                raise DataError(f"clip {clip.name!r} is in both {seen[clip.name]} and {root}; "
                                "rename one folder's clips or train on one of them")
            seen[clip.name] = root
            clips.append(clip)
    return clips
