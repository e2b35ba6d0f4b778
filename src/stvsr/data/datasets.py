"""Training datasets: Vimeo-90K septuplets, REDS and any folder of clips, for S-VSR and ST-VSR.

Every dataset here is a list of *clips* (:class:`ClipSource`: HR frames as files or a video
file, optionally matching LR frames) sampled by :class:`VideoClipDataset`. One item is one
random temporal window of one clip, randomly cropped, augmented and degraded. Randomness is
drawn from a generator seeded by ``(seed, epoch, index)`` only, so an item is the same in any
worker process, under any number of workers and after a resume (call :meth:`set_epoch`).
Video files are opened lazily inside the worker that reads them, never in ``__init__``.

Sampling modes (``mode``), with ``T = num_frames``, LR patch ``p`` and scale ``s``:

``"svsr"``
    ``lr (T, 3, p, p)``, ``gt (3, s·p, s·p)``: the HR frame at the window centre ``T // 2``
    (window models such as EDVR).
``"sequence"``
    ``lr (T, 3, p, p)``, ``gt (T, 3, s·p, s·p)``: every HR frame (recurrent models).
``"stvsr"``
    a window of ``2T - 1`` HR frames; every other one (0, 2, …) is degraded into the input:
    ``lr (T, 3, p, p)``, ``gt (2T - 1, 3, s·p, s·p)``.

Pipeline per item: pick the window (start, frame interval) → read HR frames (and stored LR
frames, if any) → aligned random crop (LR patch ``p`` at ``(y, x)``, HR patch at ``(s·y, s·x)``)
→ flips / transpose / temporal reversal, applied identically to every frame → (no stored LR)
optional Gaussian blur, then ``degrade`` (``bi``/``bd``/``bd-duf``) of the HR crop → optional
noise, JPEG and H.264 compression of the LR frames. Values are float32 in [0, 1].

Note: on-the-fly LR is made from the *cropped* HR patch, so the bicubic/blur kernels see padded
borders at the patch edge (as in most on-the-fly pipelines); stored LR frames (REDS
``train_sharp_bicubic``) are cropped instead.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from stvsr.data.chain import DegradationChain, parse_chain
from stvsr.data.clips import (
    REDS4_CLIPS,
    VIDEO_EXTENSIONS,
    ClipSource,
    folder_clips,
    reds_clips,
    vimeo_septuplet_clips,
)
from stvsr.data.variants import VariantCache
from stvsr.errors import DataError
from stvsr.frames import frames_to_tensor

__all__ = [
    "MODES",
    "REDS4_CLIPS",
    "VIDEO_EXTENSIONS",
    "ClipSource",
    "DegradationSpec",
    "VideoClipDataset",
    "folder_clips",
    "frames_spanned",
    "item_generator",
    "reds_clips",
    "vimeo_septuplet_clips",
]

MODES = ("svsr", "sequence", "stvsr")

# --------------------------------------------------------------------------- degradations


@dataclass
class DegradationSpec:
    """On-the-fly degradation of HR crops, as fields (the older config form) or as a chain.

    ``chain`` (text, :mod:`stvsr.data.chain`, e.g. ``"bi|bd+h264:crf=15-38,prob=0.9"``)
    replaces the other fields when given. Otherwise ``kind`` is the downscale and
    ``blur_sigma`` (Gaussian blur before it, HR pixels), ``noise_sigma`` (on the [0, 1] scale,
    after downscaling), ``jpeg_quality`` and ``h264_crf`` (compression of the LR clip, x264
    ``veryfast``) are ``(low, high)`` ranges or ``None`` (off), each applied with probability
    ``prob``; they are written as the equivalent chain.
    """

    kind: str = "bi"
    scale: int = 4
    blur_sigma: tuple[float, float] | None = None
    noise_sigma: tuple[float, float] | None = None
    jpeg_quality: tuple[int, int] | None = None
    h264_crf: tuple[int, int] | None = None
    prob: float = 1.0
    chain: str | None = None

    def chain_text(self) -> str:
        """The chain these fields stand for."""
        if self.chain is not None:
            return self.chain
        p = f",prob={self.prob:g}" if self.prob != 1.0 else ""
        parts = []
        if self.blur_sigma is not None:
            parts.append(f"blur:sigma={_span(self.blur_sigma)}{p}")
        parts.append(self.kind)
        if self.noise_sigma is not None:
            parts.append(f"noise:sigma={_span(self.noise_sigma)}{p}")
        if self.jpeg_quality is not None:
            parts.append(f"jpeg:q={_span(self.jpeg_quality)}{p}")
        if self.h264_crf is not None:
            parts.append(f"h264:crf={_span(self.h264_crf)},preset=veryfast{p}")
        return "+".join(parts)

    def parsed(self) -> DegradationChain:
        """The parsed chain (cached; a bad chain raises a one-line error)."""
        cached = self.__dict__.get("_parsed")
        if cached is None:
            cached = parse_chain(self.chain_text()).with_scale(self.scale)
            self.__dict__["_parsed"] = cached
        return cached

    def apply(self, hr: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """``(N, 3, H, W)`` HR → ``(N, 3, H/s, W/s)`` LR on the 8-bit grid."""
        return self.parsed().apply(hr, rng)

    def split(self, hr: torch.Tensor,
              rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(clean LR, degraded LR)`` of ``(N, 3, H, W)`` HR (:meth:`DegradationChain.split`)."""
        return self.parsed().split(hr, rng)


def _span(r: tuple[float, float]) -> str:
    return f"{r[0]:g}-{r[1]:g}" if r[0] != r[1] else f"{r[0]:g}"


# --------------------------------------------------------------------------- dataset


def frames_spanned(mode: str, num_frames: int, interval: int) -> int:
    """Clip frames one item spans: its HR window (``2T - 1`` frames in ``stvsr`` mode, else
    ``T``) taken every ``interval`` frames."""
    window = 2 * num_frames - 1 if mode == "stvsr" else num_frames
    return (window - 1) * interval + 1


def item_generator(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of item ``index`` in ``epoch``: independent of workers and processes."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch, index])))


@dataclass
class _WorkerCache:
    """Per-process cache of decoded video frames (bounded by ``max_bytes``)."""

    max_bytes: int = 512 << 20
    frames: OrderedDict[str, list[np.ndarray]] = field(default_factory=OrderedDict)
    counts: dict[str, int] = field(default_factory=dict)


class VideoClipDataset(Dataset):
    """Random windows of clips; see the module docstring for modes and the pipeline.

    Args:
        clips: the clips (:func:`vimeo_septuplet_clips`, :func:`reds_clips`,
            :func:`folder_clips`).
        mode: ``"svsr"``, ``"sequence"`` or ``"stvsr"``.
        num_frames: ``T`` (LR frames per item).
        lr_patch: LR crop size ``p`` (``None``: whole frames, which must then share a size).
        scale: spatial factor ``s``.
        degradation: how LR is made when a clip has no stored LR frames.
        intervals: frame intervals to choose from (temporal augmentation; 1 = consecutive).
        flip, transpose, reverse: random horizontal/vertical flips, H↔W transpose, temporal
            reversal (each with probability 1/2).
        repeat: items per clip per epoch.
        seed: base seed.
        target: ``"hr"`` (the HR frames, above) or ``"clean_lr"``: the LR frames after the
            downscale alone, before noise and compression (same frames as ``"hr"`` would give,
            at LR size): the target of a same-size restoration that removes compression.

    Items are dicts ``{"lr": (T, 3, p, p), "gt": ..., "key": str}`` (see module docstring).
    """

    def __init__(
        self,
        clips: Sequence[ClipSource],
        *,
        mode: str = "svsr",
        num_frames: int = 5,
        lr_patch: int | None = 64,
        scale: int = 4,
        degradation: DegradationSpec | None = None,
        intervals: Sequence[int] = (1,),
        flip: bool = True,
        transpose: bool = True,
        reverse: bool = False,
        repeat: int = 1,
        seed: int = 0,
        cache_mb: int = 512,
        target: str = "hr",
        variants: int = 0,
        variants_dir: str | Path | None = None,
    ) -> None:
        if mode not in MODES:
            raise DataError(f"unknown sampling mode {mode!r}; choose one of {', '.join(MODES)}")
        if not clips:
            raise DataError("the dataset has no clips")
        if num_frames < 1 or (mode == "stvsr" and num_frames < 2):
            need = 2 if mode == "stvsr" else 1
            raise DataError(f"num_frames must be >= {need}, got {num_frames}")
        if repeat < 1 or not intervals or min(intervals) < 1:
            raise DataError("repeat and every frame interval must be >= 1")
        self.clips = list(clips)
        self.mode = mode
        self.num_frames = int(num_frames)
        self.lr_patch = lr_patch
        self.scale = int(scale)
        self.degradation = degradation or DegradationSpec(scale=scale)
        if self.degradation.scale != self.scale:
            raise DataError(f"degradation scale {self.degradation.scale} != dataset scale {scale}")
        self.intervals = tuple(int(i) for i in intervals)
        self.flip, self.transpose, self.reverse = flip, transpose, reverse
        self.repeat = int(repeat)
        if target not in ("hr", "clean_lr"):
            raise DataError(f"unknown target {target!r}; choose hr or clean_lr")
        if target == "clean_lr" and any(c.lr_frames for c in self.clips):
            raise DataError("target clean_lr makes LR on the fly; these clips store LR frames")
        self.target = target
        if variants and (mode == "stvsr" or any(c.lr_frames for c in self.clips)):
            raise DataError("whole-clip variants work for svsr / sequence sampling of clips "
                            "without stored LR frames")
        if variants_dir is not None and not variants:
            raise DataError("a variants folder needs whole-clip variants (variants > 0)")
        self.variants = int(variants)
        self.variants_dir = variants_dir
        self._variant_cache: VariantCache | None = None
        self.seed = int(seed)
        self.epoch = 0
        self._cache_bytes = int(cache_mb) << 20
        self._cache: _WorkerCache | None = None  # created lazily, per process

    # ---- bookkeeping --------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.clips) * self.repeat

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws items use (call before iterating)."""
        self.epoch = int(epoch)

    @property
    def hr_window(self) -> int:
        """HR frames read per item."""
        return frames_spanned(self.mode, self.num_frames, 1)

    def clip_length(self, ci: int) -> int:
        """Number of HR frames of clip ``ci``."""
        return self._num_clip_frames(self.clips[ci])

    def clip_frames(self, ci: int, idx: list[int]) -> np.ndarray:
        """HR frames ``idx`` of clip ``ci``, whole (uncropped): ``(N, H, W, 3)`` uint8."""
        return self._load(self.clips[ci], idx, lr=False)

    def clip_variant(self, ci: int, variant: int) -> tuple[np.ndarray, np.ndarray]:
        """Whole-clip variant ``variant`` of clip ``ci``: ``(clean LR, degraded LR)``, each
        ``(N, h, w, 3)`` uint8 (:mod:`stvsr.data.variants`; read from ``variants_dir`` when
        stored there, else made, and written there)."""
        if self._variant_cache is None:
            self._variant_cache = VariantCache(
                self.degradation.split, self.scale, self.seed, self._cache_bytes,
                store=self.variants_dir, tag=self.degradation.chain_text(),
                keep_clean=self.target == "clean_lr")
        clip = self.clips[ci]
        n = self._num_clip_frames(clip)
        return self._variant_cache.get(ci, variant,
                                       lambda: self._load(clip, list(range(n)), lr=False),
                                       name=clip.name)

    def _worker_cache(self) -> _WorkerCache:
        if self._cache is None:
            self._cache = _WorkerCache(self._cache_bytes)
        return self._cache

    def _num_clip_frames(self, clip: ClipSource) -> int:
        if clip.video is None:
            return len(clip.frames)
        cache = self._worker_cache()
        key = str(clip.video)
        if key not in cache.counts:
            from stvsr.data.video import count_frames

            cache.counts[key] = count_frames(clip.video)
        return cache.counts[key]

    def _read_video(self, clip: ClipSource, idx: list[int]) -> list[np.ndarray]:
        """Frames ``idx`` of a video file, decoding up to ``max(idx)`` (cached per worker)."""
        from stvsr.data.video import VideoReader

        cache = self._worker_cache()
        key = str(clip.video)
        frames = cache.frames.get(key)
        if frames is None or len(frames) <= max(idx):
            frames = []
            for f in VideoReader(clip.video):
                frames.append(f.rgb)
                if len(frames) > max(idx):
                    break
            if len(frames) <= max(idx):
                raise DataError(f"{clip.video} has only {len(frames)} decodable frames")
            cache.frames[key] = frames
        cache.frames.move_to_end(key)
        total = sum(a.nbytes for fs in cache.frames.values() for a in fs)
        while total > cache.max_bytes and len(cache.frames) > 1:
            _, old = cache.frames.popitem(last=False)
            total -= sum(a.nbytes for a in old)
        return [frames[i] for i in idx]

    # ---- sampling -----------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = item_generator(self.seed, self.epoch, index)
        clip = self.clips[index % len(self.clips)]
        n = self._num_clip_frames(clip)
        span = self.hr_window
        usable = [i for i in self.intervals
                  if frames_spanned(self.mode, self.num_frames, i) <= n]
        if not usable:
            raise DataError(f"clip {clip.name} has {n} frames; an item needs {span}")
        interval = usable[int(rng.integers(len(usable)))]
        start = int(rng.integers(n - (span - 1) * interval))
        idx = [start + k * interval for k in range(span)]
        key = f"{clip.name}/{idx[0]}-{idx[-1]}"
        if self.variants:
            return self._variant_item(index % len(self.clips), clip, idx, rng, key)
        hr = self._load(clip, idx, lr=False)
        lr = self._load(clip, idx, lr=True) if clip.lr_frames else None
        hr_t, lr_t = self._crop(hr, lr, rng, clip.name)
        hr_t, lr_t = self._augment(hr_t, lr_t, rng)
        inputs = slice(0, None, 2) if self.mode == "stvsr" else slice(None)
        if lr_t is None:
            clean, lr_t = self.degradation.split(hr_t[inputs], rng)
        else:
            clean, lr_t = None, lr_t[inputs]
        target = clean if self.target == "clean_lr" else hr_t
        assert target is not None
        gt = target[self.num_frames // 2] if self.mode == "svsr" else target
        return {"lr": lr_t.contiguous(), "gt": gt.contiguous(), "key": key}

    def _variant_item(self, ci: int, clip: ClipSource, idx: list[int],
                      rng: np.random.Generator, key: str) -> dict[str, Any]:
        """An item cropped from a whole-clip degraded variant (:mod:`stvsr.data.variants`)."""
        v = int(rng.integers(self.variants))
        clean, coded = self.clip_variant(ci, v)
        h, w = coded.shape[1:3]
        p = self.lr_patch or min(h, w)
        if h < p or w < p:
            raise DataError(f"clip {clip.name} is {w}x{h} at LR, smaller than the LR patch {p}")
        y, x = int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))
        lr_t = frames_to_tensor(coded[idx, y:y + p, x:x + p])
        if self.target == "clean_lr":
            target = frames_to_tensor(clean[idx, y:y + p, x:x + p])
        else:
            s = self.scale
            hr = self._load(clip, idx, lr=False)
            target = frames_to_tensor(hr[:, s * y: s * (y + p), s * x: s * (x + p)])
        target, lr_aug = self._augment(target, lr_t, rng)
        assert lr_aug is not None
        gt = target[self.num_frames // 2] if self.mode == "svsr" else target
        return {"lr": lr_aug.contiguous(), "gt": gt.contiguous(), "key": key}

    def _load(self, clip: ClipSource, idx: list[int], *, lr: bool) -> np.ndarray:
        from stvsr.data.images import read_image

        if clip.video is not None:
            frames = self._read_video(clip, idx)
        else:
            files = clip.lr_frames if lr else clip.frames
            frames = [read_image(files[i]) for i in idx]
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise DataError(f"clip {clip.name} mixes frame sizes {sorted(shapes)}")
        return np.stack(frames)  # (N, H, W, 3) uint8

    def _crop(self, hr: np.ndarray, lr: np.ndarray | None, rng: np.random.Generator,
              name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        s = self.scale
        hh, ww = hr.shape[1] // s, hr.shape[2] // s  # LR size after modcrop
        if lr is not None and (lr.shape[1], lr.shape[2]) != (hh, ww):
            raise DataError(f"clip {name}: LR frames are {lr.shape[2]}x{lr.shape[1]}, expected "
                            f"{ww}x{hh} (HR / {s})")
        p = self.lr_patch
        if p is None:
            y = x = 0
            ph, pw = hh, ww
        else:
            if hh < p or ww < p:
                raise DataError(f"clip {name} ({hr.shape[2]}x{hr.shape[1]}) is smaller than the "
                                f"HR patch {p * s}; lower data.lr_patch")
            y, x = int(rng.integers(hh - p + 1)), int(rng.integers(ww - p + 1))
            ph = pw = p
        hr_c = hr[:, s * y: s * (y + ph), s * x: s * (x + pw)]
        hr_t = frames_to_tensor(hr_c)
        lr_t = None
        if lr is not None:
            lr_c = lr[:, y: y + ph, x: x + pw]
            lr_t = frames_to_tensor(lr_c)
        return hr_t, lr_t

    def _augment(self, hr: torch.Tensor, lr: torch.Tensor | None, rng: np.random.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # Draw every flag unconditionally so the random stream does not depend on the options.
        hflip, vflip, trans, rev = (bool(v) for v in rng.random(4) < 0.5)
        ops: list = []
        if self.flip and hflip:
            ops.append(lambda t: t.flip(-1))
        if self.flip and vflip:
            ops.append(lambda t: t.flip(-2))
        if self.transpose and trans and (self.lr_patch is not None or hr.shape[-1] == hr.shape[-2]):
            ops.append(lambda t: t.transpose(-1, -2))
        if self.reverse and rev:
            ops.append(lambda t: t.flip(0))
        for op in ops:
            hr = op(hr)
            lr = None if lr is None else op(lr)
        return hr, lr
