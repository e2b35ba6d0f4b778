"""Degradation chains written as text, shared by configs, ``stvsr eval`` and the data loader.

A chain is stages joined by ``+``, applied left to right to an HR clip ``(N, 3, H, W)``::

    bd+h264:crf=25                          # the compressed-VSR protocol's LR at CRF 25
    bi|bd+noise:sigma=0-0.01,prob=0.3+h264:crf=15-38,pix_fmt=yuv420p|yuv444p,prob=0.9

Exactly one stage downscales: ``bi``, ``bd`` or ``bd-duf`` (:mod:`stvsr.data.degradations`).
``blur:sigma=A-B`` (Gaussian, HR pixels) may come before it; after it, on the LR clip:
``noise:sigma=A-B`` (Gaussian, [0, 1] scale), ``jpeg:q=A-B`` (per frame) and the video codecs
``h264``, ``h265``, ``mpeg2``, ``mpeg4`` (the whole clip as one stream, :mod:`stvsr.data.codecs`)
with ``crf=``, ``q=`` (constant quantiser), ``b=`` (bitrate, ``500k``, ``2M``), ``preset=``,
``pix_fmt=`` (default ``yuv420p``), ``fps=`` (default 25), ``g=`` (GOP), ``bf=`` (B-frames).

Values: ``A-B`` is a range sampled uniformly (integers for ``crf``, ``q``, ``g``, ``bf``),
``a|b|c`` a choice; a stage name may be a choice too (``bi|bd``). ``prob=P`` applies a stage
with probability ``P`` (not the downscale). Every draw comes from the generator given to
:meth:`DegradationChain.apply`, once per clip, so a clip's frames share one setting and the same
seed gives the same LR (the codecs are deterministic for a given input and setting).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import torch

from stvsr.data.codecs import CODECS, CodecSettings, encode_clip
from stvsr.data.degradations import (
    DEGRADATIONS,
    add_gaussian_noise,
    degrade,
    gaussian_kernel1d,
    jpeg_compress,
    quantize,
)
from stvsr.errors import StvsrError
from stvsr.frames import frames_to_tensor, to_uint8

__all__ = ["DegradationChain", "Stage", "gaussian_blur", "parse_chain"]

_EXTRAS = ("blur", "noise", "jpeg", *CODECS)
_INT_KEYS = {"crf", "q", "g", "bf", "fps"}
_KEYS = {
    "blur": {"sigma", "prob"},
    "noise": {"sigma", "prob"},
    "jpeg": {"q", "prob"},
    **{c: {"crf", "q", "b", "preset", "pix_fmt", "fps", "g", "bf", "prob"} for c in CODECS},
}
_NUMBER = r"\d+(?:\.\d+)?[kKmM]?"
_RANGE = re.compile(rf"^({_NUMBER})-({_NUMBER})$")


@dataclass(frozen=True)
class Stage:
    """One stage: its name choices and its parameters (each a tuple of choices, or a range)."""

    names: tuple[str, ...]
    params: dict[str, tuple] = field(default_factory=dict)
    text: str = ""

    @property
    def downscale(self) -> bool:
        return self.names[0] in DEGRADATIONS

    @property
    def per_clip(self) -> bool:
        """Whether the stage needs the whole clip at once (a video codec)."""
        return any(n in CODECS for n in self.names)

    def draw(self, rng: np.random.Generator) -> tuple[str, dict[str, object]]:
        """The stage's name and parameter values for one clip."""
        name = self.names[int(rng.integers(len(self.names)))] if len(self.names) > 1 \
            else self.names[0]
        values: dict[str, object] = {}
        for key, spec in self.params.items():
            if spec[0] == "range":
                lo, hi = spec[1], spec[2]
                values[key] = int(rng.integers(lo, hi + 1)) if key in _INT_KEYS \
                    else float(rng.uniform(lo, hi))
            else:
                values[key] = spec[int(rng.integers(len(spec)))] if len(spec) > 1 else spec[0]
        return name, values


def _number(text: str, key: str) -> float:
    mult = {"k": 1e3, "m": 1e6}.get(text[-1].lower(), 1.0)
    try:
        return float(text[:-1] if mult != 1.0 else text) * mult
    except ValueError:
        raise StvsrError(f"degradation: {key}={text!r} is not a number") from None


def _parse_value(key: str, text: str) -> tuple:
    if key in ("preset", "pix_fmt"):
        return tuple(text.split("|"))
    m = _RANGE.match(text)
    if m:
        lo, hi = _number(m.group(1), key), _number(m.group(2), key)
        if hi < lo:
            raise StvsrError(f"degradation: range {key}={text} goes down; write low-high")
        return ("range", lo, hi)
    return tuple(_number(v, key) for v in text.split("|"))


def _parse_stage(text: str) -> Stage:
    head, _, args = text.partition(":")
    names = tuple(n.strip().lower() for n in head.split("|"))
    known = (*DEGRADATIONS, *_EXTRAS)
    for n in names:
        if n not in known:
            raise StvsrError(f"degradation: unknown stage {n!r} in {text!r}; stages are "
                             f"{', '.join(known)}")
    if len({n in DEGRADATIONS for n in names}) > 1 or (len(names) > 1 and names[0] not in
                                                        DEGRADATIONS and names[0] not in CODECS):
        raise StvsrError(f"degradation: {text!r} mixes stages of different kinds")
    params: dict[str, tuple] = {}
    if args:
        allowed = set().union(*(_KEYS.get(n, set()) for n in names))
        for item in args.split(","):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or key not in allowed:
                raise StvsrError(f"degradation: {text!r}: unknown setting {item!r}; "
                                 f"{'/'.join(names)} takes {', '.join(sorted(allowed)) or 'none'}")
            params[key] = _parse_value(key, value.strip())
    return Stage(names, params, text)


def parse_chain(text: str) -> DegradationChain:
    """Parse a chain such as ``"bd+h264:crf=25"`` (see the module docstring); one-line errors."""
    stages = tuple(_parse_stage(s.strip()) for s in str(text).split("+") if s.strip())
    downs = [i for i, s in enumerate(stages) if s.downscale]
    if len(downs) != 1:
        raise StvsrError(f"degradation {text!r}: needs exactly one of "
                         f"{', '.join(DEGRADATIONS)} (the downscale)")
    d = downs[0]
    for i, s in enumerate(stages):
        if "blur" in s.names and i > d:
            raise StvsrError(f"degradation {text!r}: blur goes before the downscale")
        if not s.downscale and "blur" not in s.names and i < d:
            raise StvsrError(f"degradation {text!r}: {s.text} goes after the downscale")
        if s.downscale and "prob" in s.params:
            raise StvsrError(f"degradation {text!r}: the downscale always applies (no prob)")
    return DegradationChain(stages, str(text))


@dataclass(frozen=True)
class DegradationChain:
    """A parsed chain; :meth:`apply` makes LR clips, :meth:`split` also the clean LR."""

    stages: tuple[Stage, ...]
    text: str = ""
    scale: int = 4

    def with_scale(self, scale: int) -> DegradationChain:
        return DegradationChain(self.stages, self.text, int(scale))

    @property
    def per_clip(self) -> bool:
        """Whether some stage encodes the whole clip (so LR cannot be made frame by frame)."""
        return any(s.per_clip for s in self.stages)

    @property
    def downscale_names(self) -> tuple[str, ...]:
        return next(s.names for s in self.stages if s.downscale)

    def apply(self, hr: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """``(N, 3, H, W)`` HR in [0, 1] → ``(N, 3, H/s, W/s)`` LR on the 8-bit grid."""
        return self.split(hr, rng)[1]

    def split(self, hr: torch.Tensor,
              rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(clean, degraded)``: the LR clip after the downscale (and blur) only, and after the
        whole chain. The clean clip is the target of an LR restoration (compression removal)."""
        x = hr
        clean: torch.Tensor | None = None
        for stage in self.stages:
            if stage.downscale:
                name, _ = stage.draw(rng)
                x = degrade(x, name, self.scale)
                clean = x
                continue
            name, values = stage.draw(rng)
            prob = float(values.pop("prob", 1.0))
            apply = rng.random() < prob  # drawn always: the stream does not depend on prob
            if apply:
                x = _apply_extra(name, values, x, rng)
        assert clean is not None
        return clean, x


def _apply_extra(name: str, v: dict[str, object], x: torch.Tensor,
                 rng: np.random.Generator) -> torch.Tensor:
    if name == "blur":
        return gaussian_blur(x, float(v.get("sigma", 1.0)))
    if name == "noise":
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        return quantize(add_gaussian_noise(x, float(v.get("sigma", 0.01)), generator=gen))
    if name == "jpeg":
        return jpeg_compress(x, int(v.get("q", 75)))
    q = v.get("q")
    settings = CodecSettings(
        codec=name,
        crf=None if v.get("crf") is None else float(v["crf"]),
        qp=None if q is None else int(q),  # type: ignore[arg-type]
        bitrate=None if v.get("b") is None else int(v["b"]),  # type: ignore[arg-type]
        preset=v.get("preset"),  # type: ignore[arg-type]
        pix_fmt=str(v.get("pix_fmt", "yuv420p")),
        fps=int(v.get("fps", 25)),  # type: ignore[arg-type]
        gop=None if v.get("g") is None else int(v["g"]),  # type: ignore[arg-type]
        bframes=None if v.get("bf") is None else int(v["bf"]),  # type: ignore[arg-type]
    )
    lead = x.shape[:-3]
    h, w = x.shape[-2:]
    out = encode_clip(to_uint8(x.reshape(-1, 3, h, w)), settings)
    return frames_to_tensor(out, x.dtype).reshape(*lead, 3, h, w).to(x.device)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (odd kernel, replicate padding) of ``(..., 3, H, W)``."""
    if sigma <= 0:
        return x
    size = 2 * math.ceil(3 * sigma) + 1
    k = torch.from_numpy(gaussian_kernel1d(size, sigma)).to(x.dtype)
    shape = x.shape
    h, w = shape[-2:]
    y = x.reshape(-1, 1, h, w)
    pad = size // 2
    y = torch.nn.functional.pad(y, (pad, pad, pad, pad), mode="replicate")
    y = torch.nn.functional.conv2d(y, k.view(1, 1, 1, -1))
    y = torch.nn.functional.conv2d(y, k.view(1, 1, -1, 1))
    return y.reshape(shape)
