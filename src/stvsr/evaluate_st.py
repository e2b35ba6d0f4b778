"""ST-VSR evaluation (×s in space, ×2 in time) following ``spec/evaluation.md``.

Data layouts (detected automatically):

* **Vimeo-90K septuplets** — ``ROOT/sequences/XXXXX/YYYY/im1..im7.png`` (``ROOT`` may also be
  the ``sequences`` folder itself, or one septuplet folder). Inputs are ``im1, im3, im5, im7``;
  all 7 HR frames are scored. ``list_file`` (lines ``00001/0001``) selects septuplets.
* **Vid4-like** — a folder of clip folders of HR frames (``Vid4/GT``; a folder holding ``GT`` is
  accepted too), or one clip folder. ``list_file`` (one clip name per line) selects clips.

HR frames are modcropped to the model's scale and degraded with :func:`stvsr.data.degradations
.degrade` (rounded to 8 bits). The model runs through the one streaming path of ``stvsr
upscale``, :func:`stvsr.infer.runner.restore_stream` (chunk sizes from
:data:`stvsr.infer.defaults.CHUNKING`, output layout from :mod:`stvsr.infer.layout`). Outputs
are clamped, rounded to 8 bits (:func:`stvsr.frames.to_uint8`) and scored with
:func:`stvsr.metrics.frame_metrics` (Y and RGB PSNR/SSIM); averages are per frame → per clip →
mean of clip means, separately for all frames, restored input frames and new in-between frames.

Protocols (a clip of ``N`` HR frames, ``N >= 3``):

``"windowed"`` (what papers report)
    Windows of ``window`` (7) HR frames, starts ``0, stride, 2·stride, …`` (stride 6: one frame
    shared) while the window fits, plus a tail window ending at frame ``N - 1`` when the last
    one stops short. Each window's frames ``0, 2, 4, 6`` are the LR input, fed to
    ``restore_stream`` as one short stream (one model call while ``chunk >= 4``); it outputs
    all ``window`` frames. **Each HR frame is scored exactly once, by the earliest window that
    contains it** (so the frame shared by two stride-6 windows is scored as the last input of
    the earlier one, and a tail window scores only the frames no earlier window covered). A
    frame counts as "input" or "new" by its position in the scoring window (even = input).
    A clip shorter than ``window`` is scored with the full protocol.
``"full"`` (what a store-and-fetch model is made for)
    The model sees HR frames ``0, 2, 4, …, E`` (``E`` = the last even index) as one LR
    stream and outputs frames ``0 … E`` (``restore_stream``: chunks of ``chunk`` LR frames
    with ``overlap`` context frames on each side; a Vid4 clip's <= 25 LR frames fit one chunk
    at the default 30). If ``N`` is even, frame ``N - 1`` has no right neighbour: it is scored
    from an extra 2-frame stream of LR frames ``N - 3, N - 1`` (its output 2, an input frame);
    nothing else of that run is scored.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stvsr.data.chain import DegradationChain, parse_chain
from stvsr.data.degradations import modcrop
from stvsr.data.images import list_frame_files, read_image
from stvsr.errors import DataError, StvsrError
from stvsr.evaluate import (
    REPORT_FRAMES,
    clip_generator,
    report_frames,
    result_model_name,
    save_report_frame,
)
from stvsr.frames import frame_to_tensor, to_uint8
from stvsr.infer.layout import layout_of
from stvsr.infer.runner import restore_stream
from stvsr.metrics import MetricAverager, frame_metrics

__all__ = ["evaluate_spacetime", "find_st_clips", "windowed_plan", "full_plan", "STClip"]

PROTOCOLS = ("windowed", "full")
_KIND = {"frame": "input", "mid": "new"}  # layout.source(j)[0] -> the kind a frame is scored as


@dataclass
class STClip:
    """One evaluation clip: a name and its HR frame files in temporal order."""

    name: str
    files: list[Path]
    vimeo: bool = False


def _image_files(folder: Path) -> list[Path]:
    try:
        return list_frame_files(folder)
    except Exception:  # noqa: BLE001 - folders without images raise; they are simply not clips
        return []


def _septuplet_files(folder: Path) -> list[Path] | None:
    files = [folder / f"im{i}.png" for i in range(1, 8)]
    return files if all(f.is_file() for f in files) else None


def _read_list(list_file: str | Path) -> list[str]:
    path = Path(list_file)
    if not path.is_file():
        raise DataError(f"list file {path} does not exist; pass an existing text file")
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def find_st_clips(data: str | Path, list_file: str | Path | None = None) -> list[STClip]:
    """Discover the clips of ``data`` (Vimeo septuplet or Vid4-like layout, see module doc)."""
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; pass a Vid4-like or Vimeo folder")
    wanted = _read_list(list_file) if list_file is not None else None
    # --- Vimeo septuplets
    seq_root: Path | None = None
    if (root / "sequences").is_dir():
        seq_root = root / "sequences"
    elif any(_septuplet_files(s) for d in root.iterdir() if d.is_dir()
             for s in d.iterdir() if s.is_dir()):
        seq_root = root
    if seq_root is not None:
        if wanted is None:
            names = sorted(f"{d.name}/{s.name}" for d in seq_root.iterdir() if d.is_dir()
                           for s in d.iterdir() if s.is_dir() and _septuplet_files(s))
        else:
            names = wanted
        clips = []
        for name in names:
            files = _septuplet_files(seq_root / name)
            if files is None:
                raise DataError(f"septuplet {name} not found under {seq_root} (im1..im7.png)")
            clips.append(STClip(name, files, vimeo=True))
        if not clips:
            raise DataError(f"no septuplets found under {seq_root}")
        return clips
    if _septuplet_files(root) and not _image_files(root / "GT"):
        return [STClip(root.name, _septuplet_files(root) or [], vimeo=True)]
    # --- Vid4-like folder of clip folders
    base = root / "GT" if (root / "GT").is_dir() else root
    clips = [STClip(d.name, _image_files(d)) for d in sorted(base.iterdir()) if d.is_dir()]
    clips = [c for c in clips if c.files]
    if not clips and _image_files(base):
        clips = [STClip(base.name, _image_files(base))]
    if not clips:
        raise DataError(f"no image frames found in {base} or its subfolders")
    if wanted is not None:
        known = {c.name for c in clips}
        missing = [w for w in wanted if w not in known]
        if missing:
            raise DataError(f"clips {missing} from the list file are not in {base}")
        clips = [c for c in clips if c.name in wanted]
    return clips


# --------------------------------------------------------------------------- plans


def windowed_plan(n_frames: int, window: int = 7, stride: int = 6) -> list[tuple[int, list[int]]]:
    """``[(start, scored)]``: window starts and the window positions each one scores.

    Window ``[start, start + window)`` takes its even positions as LR input; ``scored`` lists
    the positions ``j`` whose frame ``start + j`` this window scores (earliest window wins).
    """
    if window < 3 or window % 2 == 0:
        raise StvsrError(f"window must be an odd number of HR frames >= 3, got {window}")
    if not 1 <= stride <= window:
        raise StvsrError(f"stride must be in 1..{window} so every frame is covered, got {stride}")
    if n_frames < window:
        raise StvsrError(f"a clip of {n_frames} frames is shorter than the window {window}")
    starts = list(range(0, n_frames - window + 1, stride))
    if starts[-1] + window < n_frames:
        starts.append(n_frames - window)
    done: set[int] = set()
    plan = []
    for a in starts:
        scored = [j for j in range(window) if a + j not in done]
        done.update(a + j for j in scored)
        plan.append((a, scored))
    return plan


def full_plan(n_frames: int) -> tuple[list[int], int | None]:
    """LR frame indices of the full protocol and the extra tail frame (``None`` if ``N`` odd)."""
    if n_frames < 3:
        raise DataError(f"a clip needs at least 3 frames for ST-VSR evaluation, got {n_frames}")
    last_even = n_frames - 1 if n_frames % 2 else n_frames - 2
    return list(range(0, last_even + 1, 2)), (None if n_frames % 2 else n_frames - 1)


# --------------------------------------------------------------------------- evaluation


def _mixed(frames: list[int]) -> list[int]:
    """Frames to save for a report: when they are all input frames or all new frames, the first
    one moves on by one, so that both kinds are shown."""
    if len(frames) > 1 and len({f % 2 for f in frames}) == 1 and frames[0] + 1 not in frames:
        frames = [frames[0] + 1, *frames[1:]]
    return frames


def _prefixed(means: dict[str, float], suffix: str) -> dict[str, float]:
    return {f"{k}_{suffix}": v for k, v in means.items() if k not in ("frames", "clips")}


def _clip_inputs(files: list[Path], chain: DegradationChain, rng: np.random.Generator
                 ) -> tuple[list[np.ndarray], Callable[[list[int]], list[torch.Tensor]]]:
    """The clip's 8-bit HR frames and a function giving the LR stream of HR frames ``ids``:
    degraded frame by frame once (a chain without a codec), or as one encoded stream per
    call."""
    scale = chain.scale
    gt_u8: list[np.ndarray] = []
    lr_all: list[torch.Tensor] = []
    hrs: list[torch.Tensor] = []  # kept only when a codec needs the whole stream
    for path in files:
        hr = modcrop(frame_to_tensor(read_image(path)), scale)
        gt_u8.append(to_uint8(hr))
        if chain.per_clip:
            hrs.append(hr)
        else:
            lr_all.append(chain.apply(hr.unsqueeze(0), rng)[0])
    if not chain.per_clip:
        return gt_u8, lambda ids: [lr_all[i] for i in ids]
    return gt_u8, lambda ids: list(chain.apply(torch.stack([hrs[i] for i in ids]), rng))


def evaluate_spacetime(
    model: nn.Module,
    data: str | Path,
    *,
    protocol: str = "windowed",
    degradation: str = "bi",
    list_file: str | Path | None = None,
    device: str = "cpu",
    window: int = 7,
    stride: int = 6,
    progress: bool = True,
    max_clips: int | None = None,
    max_frames: int | None = None,
    chunk: int | None = None,
    overlap: int | None = None,
    crop_border: int = 0,
    out_dir: str | Path | None = None,
    save_frames: int = REPORT_FRAMES,
    precision: str = "fp32",
    tile: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Score a ``kind="spacetime"`` model on ``data``; returns the JSON-ready result.

    Args:
        model: ``(B, n, 3, h, w) -> (B, 2n-1, 3, s·h, s·w)``.
        data: Vimeo septuplet root or Vid4-like folder (see the module docstring).
        protocol: ``"windowed"`` or ``"full"`` (identical for 7-frame septuplets).
        degradation: ``"bi"``, ``"bd"``, ``"bd-duf"`` or a chain (:mod:`stvsr.data.chain`).
            With a video codec, each input stream the model sees (a window's 4 LR frames, the
            clip's LR stream, the 2-frame tail) is encoded as one video, as a half-rate file
            would be; ``seed`` and the clip name fix the chain's random draws.
        list_file: selects septuplets (``00001/0001``) or clip names.
        window, stride: windowed protocol (HR frames).
        max_clips, max_frames: evaluate only the first clips / first frames of each clip.
        chunk, overlap: LR-frame chunking of :func:`~stvsr.infer.runner.restore_stream`
            (``None``: the space-time default of :data:`stvsr.infer.defaults.CHUNKING`).
        precision, tile: as for ``stvsr upscale`` (autocast; LR tiles).
        out_dir, save_frames: when ``out_dir`` is given, the outputs of ``save_frames`` evenly
            spaced frames of each clip are written there (PNG; ``saved_frames`` in the result)
            for ``stvsr report``.

    Returns:
        ``{"model", "task": "stvsr", "protocol", "degradation", "clips": {name: {psnr_y, ssim_y,
        psnr_rgb, ssim_rgb, frames, psnr_y_input, …, psnr_y_new, …, per_frame}}, "mean":
        {psnr_y, ssim_y, psnr_rgb, ssim_rgb, psnr_y_input, ssim_y_input, …, psnr_y_new,
        ssim_y_new, …, clips, frames}, "seconds"}``; ``per_frame`` lists ``{"frame", "kind",
        "psnr_y", "ssim_y"}`` for every HR frame, in order.
    """
    from tqdm import tqdm

    if getattr(model, "kind", None) != "spacetime":
        raise StvsrError(
            f"evaluate_spacetime needs a space-time model (kind 'spacetime'), got "
            f"{getattr(model, 'kind', None)!r}; use stvsr.evaluate for S-VSR models")
    if protocol not in PROTOCOLS:
        raise StvsrError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    scale = int(model.scale)
    chain = parse_chain(degradation).with_scale(scale)
    clips = find_st_clips(data, list_file)[:max_clips]
    model.eval().to(device)
    avg_all, avg_in, avg_new = MetricAverager(), MetricAverager(), MetricAverager()
    per_frame: dict[str, list[dict[str, Any]]] = {}
    saved: dict[str, dict[str, str]] = {}
    frame_files: dict[str, list[str]] = {}
    model_name = result_model_name(model)
    t0 = time.perf_counter()
    outputs = 0

    layout = layout_of(model)

    def run(lr: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The outputs of one LR stream, through the path ``stvsr upscale`` takes."""
        return restore_stream(model, lr, device=device, chunk=chunk, overlap=overlap,
                              precision=precision, tile=tile)

    bar = tqdm(clips, desc=f"ST-VSR {protocol}", unit="clip", disable=not progress)
    for clip in bar:
        files = clip.files[:max_frames]
        n = len(files)
        frame_files[clip.name] = [str(f.resolve()) for f in files]
        keep = set(_mixed(report_frames(n, save_frames))) if out_dir is not None else set()
        saved[clip.name] = {}
        gt_u8, lr_of = _clip_inputs(files, chain, clip_generator(seed, clip.name))
        rows: list[dict[str, Any]] = []

        def score(frame: int, out: torch.Tensor, kind: str, name: str = clip.name,
                  rows: list[dict[str, Any]] = rows, gt_u8: list[np.ndarray] = gt_u8,
                  keep: set[int] = keep) -> None:
            sr = to_uint8(out)
            m = frame_metrics(sr, gt_u8[frame], crop_border=crop_border)
            if frame in keep:
                saved[name][str(frame)] = save_report_frame(out_dir, model_name, name, frame, sr)
            avg_all.add(name, frame, m)
            (avg_in if kind == "input" else avg_new).add(name, frame, m)
            rows.append({"frame": frame, "kind": kind, "psnr_y": m["psnr_y"],
                         "ssim_y": m["ssim_y"]})

        if protocol == "windowed" and n >= window:
            for a, scored in windowed_plan(n, window, stride):
                # output j of the window's stream is its HR frame a + j
                for j, out in enumerate(run(lr_of(list(range(a, a + window, 2))))):
                    outputs += 1
                    if j in scored:
                        score(a + j, out, _KIND[layout.source(j)[0]])
        else:
            idx, tail = full_plan(n)
            # output t of the stream of HR frames 0, 2, ..., E is HR frame t
            for t, out in enumerate(run(lr_of(idx))):
                outputs += 1
                score(t, out, _KIND[layout.source(t)[0]])
            if tail is not None:
                ys = list(run(lr_of([tail - 2, tail])))
                outputs += len(ys)
                score(tail, ys[layout.output_of(1)], "input")
        rows.sort(key=lambda r: r["frame"])
        if [r["frame"] for r in rows] != list(range(n)):
            raise RuntimeError(f"clip {clip.name}: frames were not each scored once")
        per_frame[clip.name] = rows
        bar.set_postfix(psnr_y=f"{np.mean([r['psnr_y'] for r in rows]):.2f}")

    seconds = time.perf_counter() - t0
    clip_res: dict[str, dict[str, Any]] = {}
    means_in, means_new = avg_in.clip_means(), avg_new.clip_means()
    for name, means in avg_all.clip_means().items():
        res: dict[str, Any] = dict(means)
        for suffix, table in (("input", means_in), ("new", means_new)):
            if name in table:
                res.update(_prefixed(table[name], suffix))
                res[f"frames_{suffix}"] = table[name]["frames"]
        res["per_frame"] = per_frame[name]
        res["frame_files"] = frame_files[name]
        if saved.get(name):
            res["saved_frames"] = saved[name]
        clip_res[name] = res
    mean: dict[str, Any] = dict(avg_all.mean())
    mean.update(_prefixed(avg_in.mean(), "input"))
    if len(avg_new):
        mean.update(_prefixed(avg_new.mean(), "new"))
    return {
        "model": getattr(model, "preset", None) or type(model).__name__,
        "task": "stvsr",
        "protocol": protocol,
        "degradation": degradation,
        "scale": scale,
        "data": str(data),
        "max_frames": max_frames,
        **({"figures_dir": str(out_dir)} if out_dir is not None else {}),
        "clips": clip_res,
        "mean": mean,
        "seconds": seconds,
        "seconds_per_output_frame": seconds / max(1, outputs),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m stvsr.evaluate_st MODEL DATA [--protocol full] [--json out.json]``."""
    from stvsr.registry import create_model

    p = argparse.ArgumentParser(description="ST-VSR evaluation (x4 space, x2 time)")
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("--protocol", default="windowed", choices=PROTOCOLS)
    p.add_argument("--degradation", default="bi")
    p.add_argument("--list-file")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-clips", type=int)
    p.add_argument("--max-frames", type=int)
    p.add_argument("--json")
    a = p.parse_args(argv)
    try:
        res = evaluate_spacetime(
            create_model(a.model), a.data, protocol=a.protocol, degradation=a.degradation,
            list_file=a.list_file, device=a.device, max_clips=a.max_clips,
            max_frames=a.max_frames)
    except StvsrError as exc:
        print(f"error: {exc}")
        return 2
    for name, r in res["clips"].items():
        print(f"{name:>12s}  {r['psnr_y']:.3f} / {r['ssim_y']:.4f}  ({r['frames']} frames)")
    m = res["mean"]
    print(f"{'mean':>12s}  {m['psnr_y']:.3f} / {m['ssim_y']:.4f}  input {m['psnr_y_input']:.3f}"
          f"  new {m.get('psnr_y_new', float('nan')):.3f}")
    if a.json:
        slim = {**res, "clips": {k: {kk: vv for kk, vv in v.items() if kk != "per_frame"}
                                 for k, v in res["clips"].items()}}
        Path(a.json).write_text(json.dumps(slim, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
