"""The options of ``stvsr upscale`` as two records, built once (from the command line or from
keyword arguments) and read everywhere else.

* :class:`EncoderOptions`: how restored frames are encoded (codec, quality, pixel format).
* :class:`UpscaleOptions`: everything besides the input, the model and the runtime (device,
  precision) that the output frames depend on, the encoder options included.

:func:`stvsr.infer.job.resolve_job` fills in the defaults that depend on the input and the model
(chunking, scale, frame-rate factor, segment length); the resolved record, as
:meth:`UpscaleOptions.manifest`, is the ``options`` section of the work folder's resume key.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields
from fractions import Fraction
from typing import Any

from stvsr.errors import StvsrError

__all__ = ["EncoderOptions", "UpscaleOptions"]


@dataclass(frozen=True)
class EncoderOptions:
    """How the output is encoded: ``codec`` (``libx264``, ``libx265``, ``ffv1`` or an alias),
    x264/x265 ``crf`` and ``preset``, the output ``pix_fmt`` (``None``: yuv420p, or a 10-bit
    format for >8-bit input) and ``lossless`` (x264 qp 0 / x265 lossless / FFV1)."""

    codec: str = "libx264"
    crf: int = 18
    preset: str = "medium"
    pix_fmt: str | None = None
    lossless: bool = False


@dataclass(frozen=True)
class UpscaleOptions:
    """What ``stvsr upscale`` makes of an input with a model (see ``stvsr upscale --help``).

    ``None`` means "the default for this input and model": ``scale`` the model's,
    ``fps_factor`` 2 for a space-time model else 1 (or ``output_fps`` / input rate),
    ``chunk`` / ``overlap`` the model kind's (:data:`stvsr.infer.defaults.CHUNKING`),
    ``segment_frames`` 4 chunks. ``start`` / ``end`` select a time range in seconds;
    ``fps_for_folders`` is the frame rate of a folder of frames.
    """

    scale: float | None = None
    fps_factor: int | float | Fraction | str | None = None
    output_fps: int | float | Fraction | str | None = None
    chunk: int | None = None
    overlap: int | None = None
    tile: int | None = None
    tile_overlap: int = 16
    self_ensemble: int = 1
    segment_frames: int | None = None
    start: float | None = None
    end: float | None = None
    scene_detect: bool = True
    scene_threshold: float = 0.12
    fps_for_folders: float | Fraction = Fraction(25)
    encoder: EncoderOptions = field(default_factory=EncoderOptions)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> UpscaleOptions:
        """The record from flat keyword arguments (encoder fields such as ``codec`` or ``crf``
        included, as :func:`stvsr.infer.engine.upscale_video` takes them)."""
        enc_names = {f.name for f in fields(EncoderOptions)}
        own_names = {f.name for f in fields(cls)} - {"encoder"}
        unknown = set(kwargs) - enc_names - own_names
        if unknown:
            raise TypeError(f"unknown upscale option(s): {', '.join(sorted(unknown))}")
        encoder = EncoderOptions(**{k: v for k, v in kwargs.items() if k in enc_names})
        return cls(encoder=encoder, **{k: v for k, v in kwargs.items() if k in own_names})

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> UpscaleOptions:
        """The record from ``stvsr upscale``'s parsed command line."""
        return cls(
            scale=args.scale, fps_factor=args.fps_factor, output_fps=args.output_fps,
            chunk=args.chunk, overlap=args.overlap, tile=args.tile,
            self_ensemble=getattr(args, "self_ensemble", 1),
            segment_frames=args.segment_frames, start=args.start, end=args.end,
            scene_detect=not args.no_scene_detect, scene_threshold=args.scene_threshold,
            fps_for_folders=Fraction(args.fps).limit_denominator(1001),
            encoder=EncoderOptions(codec=args.codec, crf=args.crf, preset=args.preset,
                                   pix_fmt=args.pix_fmt, lossless=args.lossless),
        )

    def check(self) -> None:
        """Refuse options that contradict each other or are out of range."""
        if self.fps_factor is not None and self.output_fps is not None:
            raise StvsrError("give --fps-factor or --output-fps, not both")
        if self.scale is not None and self.scale < 0:  # 0 means the model's scale
            raise StvsrError(f"--scale must be positive, got {self.scale}")

    def manifest(self) -> dict[str, Any]:
        """The record as plain JSON values (:func:`dataclasses.asdict`, fractions as text)."""
        return {k: _plain(v) for k, v in asdict(self).items()}


def _plain(value: Any) -> Any:
    """``value`` with fractions written as ``"n/d"`` text (whole numbers as ``int``)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Fraction):
        return int(value) if value.denominator == 1 else str(value)
    return value
