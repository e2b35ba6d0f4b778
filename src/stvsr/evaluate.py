"""S-VSR evaluation (×s in space) exactly as the literature scores it.

For every clip of a dataset folder (a folder of clip folders, e.g. ``Vid4/GT``, or one clip
folder): HR frames are modcropped, degraded (``bi``, ``bd`` or ``bd-duf``, rounded to 8 bits),
restored by the model in bounded memory through the path ``stvsr upscale`` takes
(:func:`stvsr.infer.runner.restore_stream`, chunk sizes from :data:`stvsr.infer.defaults
.CHUNKING`: a clip of up to 50 frames runs whole), clamped and rounded to 8 bits
(:func:`stvsr.frames.to_uint8`), and scored against the HR frames: PSNR/SSIM on Y (BT.601) and
RGB, averaged per frame → per clip → mean of clip means. The space-time protocol lives in
:mod:`stvsr.evaluate_st`.
"""

from __future__ import annotations

import json
import time
import zlib
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stvsr.data.chain import DegradationChain, parse_chain
from stvsr.data.degradations import modcrop
from stvsr.data.images import list_frame_files, read_image
from stvsr.errors import DataError
from stvsr.frames import frame_to_tensor, to_uint8
from stvsr.infer.runner import restore_stream
from stvsr.metrics import MetricAverager, frame_metrics, psnr
from stvsr.ops.resize import imresize

REPORT_FRAMES = 3  # output frames per clip an eval keeps for `stvsr report`


def find_clips(data: str | Path) -> list[tuple[str, Path]]:
    """Clip folders under ``data``: its image-holding subfolders, or ``data`` itself."""
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; pass a folder of clip folders")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    clips = [(p.name, p) for p in subdirs if _has_images(p)]
    if not clips and _has_images(root):
        clips = [(root.name, root)]
    if not clips:
        raise DataError(f"no image frames found in {root} or its subfolders")
    return clips


def _has_images(folder: Path) -> bool:
    try:
        return bool(list_frame_files(folder))
    except Exception:  # noqa: BLE001 - list_frame_files raises on folders without images
        return False


def evaluate_svsr(
    model: nn.Module,
    data: str | Path,
    *,
    degradation: str = "bi",
    clips: list[str] | None = None,
    max_frames: int | None = None,
    crop_border: int = 0,
    device: str = "cpu",
    chunk: int | None = None,
    overlap: int | None = None,
    precision: str = "fp32",
    tile: int | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    save_frames: int = REPORT_FRAMES,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate ``model`` on every clip of ``data``; returns the JSON-ready result.

    ``degradation`` is a downscale (``bi``, ``bd``, ``bd-duf``) or a chain
    (:mod:`stvsr.data.chain`, e.g. ``bd+h264:crf=25``); a chain with a video codec encodes
    each clip's LR frames as one stream, its random draws seeded by ``seed`` and the clip name.

    ``out_dir`` (optional) receives a per-frame PSNR plot and a bicubic | model | GT crop per
    clip, and the model's output for ``save_frames`` evenly spaced frames of each clip (PNG,
    listed in the result as ``saved_frames``, for ``stvsr report``).
    """
    from tqdm import tqdm

    scale = int(model.scale)
    chain = parse_chain(degradation).with_scale(scale)
    found = find_clips(data)
    if clips:
        missing = sorted(set(clips) - {n for n, _ in found})
        if missing:
            raise DataError(f"clips {missing} not found in {data}")
        found = [(n, p) for n, p in found if n in clips]
    avg = MetricAverager()
    per_frame: dict[str, dict[str, list[float]]] = {}
    crops: dict[str, np.ndarray] = {}
    saved: dict[str, dict[str, str]] = {}
    frame_files: dict[str, list[str]] = {}
    t0 = time.perf_counter()
    for name, folder in found:
        files = list_frame_files(folder)[:max_frames]
        frame_files[name] = [str(f.resolve()) for f in files]
        keep = set(report_frames(len(files), save_frames)) if out_dir is not None else set()
        saved[name] = {}
        gt_queue: deque[np.ndarray] = deque()
        lr_queue: deque[torch.Tensor] = deque()

        frames = degraded_clip(files, chain, clip_generator(seed, name), gt_queue, lr_queue)
        stream = restore_stream(model, frames, device=device, chunk=chunk,
                                overlap=overlap, precision=precision, tile=tile)
        curve = {"psnr_y": [], "bicubic_psnr_y": []}
        mid = len(files) // 2
        bar = tqdm(stream, total=len(files), desc=name, unit="f", disable=not progress,
                   leave=False)
        for idx, out in enumerate(bar):
            gt, lr = gt_queue.popleft(), lr_queue.popleft()
            sr = to_uint8(out)
            m = frame_metrics(sr, gt, crop_border=crop_border)
            avg.add(name, idx, m)
            bic = to_uint8(imresize(lr.unsqueeze(0), float(scale))[0])
            curve["psnr_y"].append(m["psnr_y"])
            curve["bicubic_psnr_y"].append(psnr(bic, gt, crop_border=crop_border, y_channel=True))
            if idx == mid and out_dir is not None:
                crops[name] = _side_by_side(bic, sr, gt)
            if idx in keep:
                saved[name][str(idx)] = save_report_frame(out_dir, result_model_name(model),
                                                          name, idx, sr)
        per_frame[name] = curve
    seconds = time.perf_counter() - t0
    result = _result(model, degradation, avg, per_frame, crop_border, seconds)
    result.update({"scale": scale, "data": str(data), "max_frames": max_frames})
    if out_dir is not None:
        result["figures_dir"] = str(out_dir)
    for name, clip in result["clips"].items():
        clip["per_frame_bicubic_psnr_y"] = per_frame[name]["bicubic_psnr_y"]
        clip["frame_files"] = frame_files[name]
        if saved.get(name):
            clip["saved_frames"] = saved[name]
    if out_dir is not None:
        _write_figures(Path(out_dir), result, per_frame, crops)
    return result


def clip_generator(seed: int, clip: str) -> np.random.Generator:
    """The generator of a clip's degradation draws: fixed by ``seed`` and the clip's name."""
    return np.random.default_rng([int(seed), zlib.crc32(clip.encode())])


def degraded_clip(files: list[Path], chain: DegradationChain, rng: np.random.Generator,
                  gt_queue: deque[np.ndarray], lr_queue: deque[torch.Tensor]
                  ) -> Iterator[torch.Tensor]:
    """The LR frames of a clip's HR ``files``, each after its HR frame (8-bit, modcropped) was
    appended to ``gt_queue`` and the LR frame to ``lr_queue``. A chain without a codec works
    frame by frame (bounded memory); with one, the whole clip is degraded at once."""
    scale = chain.scale

    def hr_of(path: Path) -> torch.Tensor:
        return modcrop(frame_to_tensor(read_image(path)), scale)

    if not chain.per_clip:
        for path in files:
            hr = hr_of(path)
            lr = chain.apply(hr.unsqueeze(0), rng)[0]
            gt_queue.append(to_uint8(hr))
            lr_queue.append(lr)
            yield lr
        return
    hrs = [hr_of(p) for p in files]
    lrs = chain.apply(torch.stack(hrs), rng)
    for hr, lr in zip(hrs, lrs, strict=True):
        gt_queue.append(to_uint8(hr))
        lr_queue.append(lr)
        yield lr


def report_frames(n: int, k: int) -> list[int]:
    """``k`` evenly spaced frame indices of a clip of ``n`` frames, away from both ends where
    possible (the frames an eval saves for ``stvsr report``)."""
    if n <= 0 or k <= 0:
        return []
    if k >= n:
        return list(range(n))
    return sorted({int(np.floor((i + 1) * n / (k + 1))) for i in range(k)})


def result_model_name(model: nn.Module) -> str:
    """The name an eval result gives ``model`` (its preset, else its class)."""
    return getattr(model, "preset", None) or type(model).__name__


def save_report_frame(out_dir: str | Path, model: str, clip: str, idx: int,
                      rgb: np.ndarray) -> str:
    """Write one output frame under ``out_dir/frames/MODEL/CLIP/``; returns its path relative
    to ``out_dir`` (what the result's ``saved_frames`` lists)."""
    from stvsr.data.images import write_image

    rel = Path("frames") / _safe(model) / _safe(clip) / f"{idx:06d}.png"
    path = Path(out_dir) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, rgb)
    return rel.as_posix()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"


def _result(model, degradation, avg, per_frame, crop_border, seconds) -> dict[str, Any]:
    clips = {}
    for name, m in avg.clip_means().items():
        clips[name] = {
            "psnr_y": m["psnr_y"], "ssim_y": m["ssim_y"], "psnr_rgb": m["psnr_rgb"],
            "ssim_rgb": m["ssim_rgb"], "frames": int(m["frames"]),
            "bicubic_psnr_y": float(np.mean(per_frame[name]["bicubic_psnr_y"])),
            "per_frame_psnr_y": per_frame[name]["psnr_y"],
        }
    mean = avg.mean()
    return {
        "model": getattr(model, "preset", type(model).__name__),
        "weights": getattr(model, "weights_source", None),
        "task": "svsr",
        "degradation": degradation,
        "crop_border": crop_border,
        "clips": clips,
        "mean": {k: mean[k] for k in ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")},
        "seconds": round(seconds, 2),
    }


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of per-clip and mean scores."""
    keys = [k for k in ("psnr_y", "ssim_y", "psnr_rgb", "psnr_y_input", "psnr_y_new")
            if k in result["mean"]]
    head = f"{'clip':<14}" + "".join(f"{k:>14}" for k in keys) + f"{'frames':>8}"
    lines = [f"{result['model']}  ({result.get('task', 'svsr')}, {result['degradation']})", head]
    for name, m in result["clips"].items():
        lines.append(f"{name:<14}" + "".join(_fmt(k, m.get(k)) for k in keys)
                     + f"{m['frames']:>8}")
    lines.append(f"{'mean':<14}" + "".join(_fmt(k, result["mean"][k]) for k in keys))
    return "\n".join(lines)


def _fmt(key: str, value: float | None) -> str:
    if value is None:
        return f"{'-':>14}"
    return f"{value:>14.4f}" if key.startswith("ssim") else f"{value:>14.3f}"


def write_json(result: dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(path)


def _side_by_side(*images: np.ndarray, size: int = 192) -> np.ndarray:
    """Centre crops of equal-size images, side by side with a 4-px white gap."""
    h, w = images[0].shape[:2]
    s = min(size, h, w)
    y, x = (h - s) // 2, (w - s) // 2
    gap = np.full((s, 4, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for img in images:
        parts += [img[y:y + s, x:x + s], gap]
    return np.concatenate(parts[:-1], axis=1)


def _write_figures(out_dir: Path, result, per_frame, crops) -> None:
    from PIL import Image, ImageDraw

    out_dir.mkdir(parents=True, exist_ok=True)
    model = result["model"]
    for name, img in crops.items():
        pil = Image.fromarray(img)
        canvas = Image.new("RGB", (pil.width, pil.height + 18), "white")
        canvas.paste(pil, (0, 18))
        draw = ImageDraw.Draw(canvas)
        third = (pil.width + 8) // 3
        for i, label in enumerate(("bicubic", model, "GT")):
            draw.text((i * third + 4, 3), label, fill="black")
        canvas.save(out_dir / f"{name}_crop.png")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the per-frame PSNR plot "
              "(pip install 'stvsr[plot]')")
        return
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (name, curve) in enumerate(per_frame.items()):
        color = f"C{i}"
        ax.plot(curve["psnr_y"], color=color, label=f"{name} ({model})")
        ax.plot(curve["bicubic_psnr_y"], color=color, linestyle=":", label=f"{name} (bicubic)")
    ax.set_xlabel("frame")
    ax.set_ylabel("PSNR-Y (dB)")
    ax.set_title(f"{model}, {result['degradation']}: per-frame PSNR-Y")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out_dir / "psnr_per_frame.png", dpi=100)
    plt.close(fig)
