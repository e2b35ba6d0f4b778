"""Step 1 of ``stvsr upscale``: resolve the job.

:func:`resolve_job` checks the output, probes the input, builds the model and fills in every
default that depends on them (frame-rate factor, chunking, context, segment length, output
size and bit depth); the result, an :class:`UpscaleJob`, is all the later steps read. Its
:meth:`UpscaleJob.key` is what the work folder's manifest is checked against on a resume.
"""

from __future__ import annotations

import hashlib
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stvsr.data.video import CODEC_ALIASES, VideoInfo, VideoReader
from stvsr.errors import StvsrError
from stvsr.infer.checks import check_output, output_bits
from stvsr.infer.defaults import chunking
from stvsr.infer.layout import StreamLayout, layout_of
from stvsr.infer.options import UpscaleOptions
from stvsr.infer.retime import parse_rational, time_interpolator
from stvsr.infer.segments import input_fingerprint
from stvsr.infer.source import default_model
from stvsr.weights import sha256_file

__all__ = ["SEGMENT_CHUNKS", "UpscaleJob", "model_hash", "resolve_job", "runtime_key"]

#: Input frames per resumable segment, in chunks (``--segment-frames`` overrides).
SEGMENT_CHUNKS = 4


@dataclass(frozen=True)
class UpscaleJob:
    """One resolved ``stvsr upscale`` run: paths, the probed input, the model and the options
    with every default filled in (``options.chunk``, ``options.scale``, ...)."""

    input: Path
    output: Path
    mode: str  # "video" or "folder" (PNG frames)
    info: VideoInfo
    net: nn.Module  # the model as built (self-ensemble included), not optimized
    name: str
    options: UpscaleOptions
    device: str
    precision: str
    in_rate: Fraction
    factor: Fraction  # output frames per input frame, in time
    out_rate: Fraction
    interp: Callable[..., torch.Tensor] | None  # set when retiming by any rational factor
    context: tuple[int, int]  # input frames decoded on each side of a segment
    out_size: tuple[int, int]  # (height, width)
    high: bool  # more than 8 bits out

    @property
    def kind(self) -> str:
        """The model's kind (``recurrent``, ``window``, ``spacetime``)."""
        return str(self.net.kind)

    @property
    def layout(self) -> StreamLayout:
        """The model's output layout (:mod:`stvsr.infer.layout`)."""
        return layout_of(self.net)

    @property
    def retime(self) -> bool:
        """True: outputs on the exact grid of any rational factor (:mod:`stvsr.infer.retime`)."""
        return self.interp is not None

    @property
    def interpolate(self) -> bool:
        """True: a space-time model makes the in-between frames at factor 2."""
        return self.kind == "spacetime" and self.factor == 2 and not self.retime

    @property
    def model_scale(self) -> int:
        return int(self.net.scale)

    @property
    def resize_to(self) -> tuple[int, int] | None:
        """The output size when it differs from the model's own (MATLAB bicubic resize)."""
        h, w = self.info.height * self.model_scale, self.info.width * self.model_scale
        return None if self.out_size == (h, w) else self.out_size

    @property
    def rotation(self) -> int:
        """The display rotation carried over (multiples of 90° only)."""
        return self.info.rotation if self.info.rotation % 90 == 0 else 0

    @property
    def frame_rotation(self) -> int:
        """The rotation applied to output frames: PNG frames are rotated upright, video frames
        keep the tag instead."""
        return self.rotation if self.mode == "folder" else 0

    @property
    def suffix(self) -> str:
        """The suffix of a segment in the work folder (a PNG folder has none)."""
        return ".nut" if self.mode == "video" else ""

    @property
    def codec(self) -> str:
        """The output codec: ``png`` for a folder, else the encoder's."""
        return "png" if self.mode == "folder" else self.options.encoder.codec

    @property
    def bits(self) -> int:
        return 16 if (self.high and self.mode == "folder") else (10 if self.high else 8)

    def open_reader(self, start: Fraction | float | None = None) -> VideoReader:
        """A reader of the input from ``start`` (default: the job's ``--start``) to its end."""
        o = self.options
        return VideoReader(self.input, start=o.start if start is None else start, end=o.end,
                           high_bit_depth=True, fps_for_folders=o.fps_for_folders)

    def writer_kwargs(self, time_base: Fraction | None) -> dict[str, Any]:
        """Keyword arguments of :class:`~stvsr.data.video.VideoWriter` for a segment."""
        e = self.options.encoder
        return dict(fps=self.out_rate, codec=e.codec, crf=e.crf, preset=e.preset,
                    pix_fmt=e.pix_fmt, lossless=e.lossless, color=self.info.color,
                    time_base=time_base, sample_aspect_ratio=self.info.sample_aspect_ratio)

    def key(self) -> dict[str, Any]:
        """What the frames depend on: input, model, options, output mode and runtime (the
        work folder's resume key, :meth:`stvsr.infer.segments.WorkDir.open`)."""
        return {"input": input_fingerprint(self.input, self.info),
                "model": {"name": self.name, "kind": self.kind, "scale": self.model_scale,
                          "weights": model_hash(self.net)},
                "options": {**self.options.manifest(), "mode": self.mode},
                "runtime": runtime_key(self.net, self.device, self.precision)}


def model_hash(net: nn.Module) -> str:
    """The weights' identity: the SHA-256 of the file they came from, else of the state."""
    src = getattr(net, "weights_source", None)
    if src and Path(src).is_file():
        return "sha256:" + sha256_file(src)
    h = hashlib.sha256(type(net).__qualname__.encode())
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return "state:" + h.hexdigest()


def runtime_key(net: nn.Module, device: str, precision: str) -> dict[str, Any]:
    """What the run's frames depend on besides the input, model and options: the device (its
    type, and the GPU model), the precision and the deformable-conv implementation."""
    from stvsr.ops.dcn import inference_impl

    dev = torch.device(device)
    where = dev.type
    if dev.type == "cuda" and torch.cuda.is_available():
        where += f" ({torch.cuda.get_device_name(dev)})"
    return {"device": where, "precision": precision, "dcn": inference_impl(net, dev)}


def resolve_job(
    input: str | Path,
    output: str | Path,
    options: UpscaleOptions,
    *,
    model: str | nn.Module | None = None,
    weights: str | None = "default",
    device: str = "cpu",
    precision: str = "fp32",
    say: Callable[[str], None] | None = None,
) -> UpscaleJob:
    """Check the output, probe the input, build the model and fill in the options' defaults.

    ``model``: a preset name or a built network; ``None`` chooses one for the input
    (:func:`stvsr.infer.source.default_model`) and says which. Errors are one-line
    :class:`~stvsr.errors.StvsrError`\\ s (a bad output, contradictory options, a frame-rate
    factor the model cannot make)."""
    say = say or (lambda s: print(s, file=sys.stderr))
    in_path, out_path = Path(input), Path(output)
    mode = check_output(out_path, in_path, options.encoder.codec)
    options.check()
    factor = None if options.fps_factor is None else parse_rational(options.fps_factor,
                                                                    "--fps-factor")
    target = None if options.output_fps is None else parse_rational(options.output_fps,
                                                                   "--output-fps")
    reader = VideoReader(in_path, start=options.start, end=options.end, high_bit_depth=True,
                         fps_for_folders=options.fps_for_folders)
    info = reader.info
    reader.close()
    net, name = _build_model(model, weights, device, info, options.scale, say)
    in_rate = info.frame_rate or Fraction(options.fps_for_folders)
    factor, interp = _frame_rate_factor(net, name, factor, target, in_rate)
    if options.self_ensemble > 1:
        if interp is not None:
            raise StvsrError("--self-ensemble works with --fps-factor 1 or 2 only; drop it to "
                             f"retime by {factor}")
        from stvsr.infer.ensemble import self_ensemble

        net = self_ensemble(net, options.self_ensemble)
        name = net.preset
    chunk, overlap = chunking(net.kind, options.chunk or None, options.overlap)
    if chunk < 1 or overlap < 0:
        raise StvsrError("--chunk must be >= 1 and --overlap >= 0")
    # a pair interpolator sees only the two frames around an output slot
    context = (0, 1) if interp is not None else layout_of(net).context(overlap)
    out_scale = float(options.scale) if options.scale else float(int(net.scale))
    out_size = (max(1, round(info.height * out_scale)), max(1, round(info.width * out_scale)))
    high = output_bits(info, options.encoder.pix_fmt)  # x264 high10 is chosen by VideoWriter
    if info.rotation % 90:
        warnings.warn(f"rotation {info.rotation}° is not a multiple of 90; ignored",
                      RuntimeWarning, stacklevel=2)
    resolved = replace(
        options, scale=out_scale, fps_factor=factor, output_fps=None, chunk=chunk,
        overlap=overlap, segment_frames=options.segment_frames or max(SEGMENT_CHUNKS * chunk, 1),
        encoder=replace(options.encoder, codec=CODEC_ALIASES[options.encoder.codec.lower()]))
    return UpscaleJob(
        input=in_path, output=out_path, mode=mode, info=info, net=net, name=name,
        options=resolved, device=device, precision=precision, in_rate=in_rate, factor=factor,
        out_rate=target if target is not None else in_rate * factor, interp=interp,
        context=context, out_size=out_size, high=high)


def _build_model(model: str | nn.Module | None, weights: str | None, device: str,
                 info: VideoInfo, scale: float | None, say: Callable[[str], None]
                 ) -> tuple[nn.Module, str]:
    """The network (in eval mode) and its name; warns when it has no trained weights."""
    from stvsr import create_model
    from stvsr.registry import is_untrained

    if model is None:
        model, why = default_model(info, scale)
        say(f"model: {model} ({why}; --model overrides)")
    net = create_model(model, weights=weights, device=device) if isinstance(model, str) else (
        model.eval())
    name = getattr(net, "preset", type(net).__name__)
    if is_untrained(net):
        say(f"warning: {name} has no trained weights (random initialisation): the output only "
            "shows that the pipeline runs; pass --weights FILE for real results")
    return net, name


def _frame_rate_factor(net: nn.Module, name: str, factor: Fraction | None,
                       target: Fraction | None, in_rate: Fraction
                       ) -> tuple[Fraction, Callable[..., torch.Tensor] | None]:
    """The output/input frame-rate factor and, when the output is retimed on the exact grid of
    any rational factor, the model's interpolator; refuses what the model cannot make."""
    kind = net.kind
    spacetime = kind == "spacetime"
    if target is not None:
        factor = target / in_rate
    if factor is None:
        factor = Fraction(2 if spacetime else 1)
    if factor < 1:
        raise StvsrError(
            f"the frame-rate factor must be >= 1 (frames are never dropped), got {factor}"
            + (f" = {target} / {in_rate} fps" if target is not None else "")
        )
    if factor != 1 and not spacetime:
        raise StvsrError(
            f"--fps-factor {factor} needs a space-time model (e.g. rife with --scale 1, "
            f"stvsr-bicubic, sfnet-s); {name} is a {kind} model that only upscales in space"
        )
    interp = time_interpolator(net) if factor != 1 else None
    if factor not in (1, 2) and interp is None:
        raise StvsrError(
            f"--fps-factor {factor} needs a model that interpolates at any time (rife, e.g. "
            f"--model rife --scale 1, or just --scale 1); {name} only makes frames halfway "
            "between its inputs (factor 2)"
        )
    return factor, interp
