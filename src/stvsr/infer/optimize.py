"""The one explicit optimisation step between a plain network and fast inference.

The networks in :mod:`stvsr.models` are plain modules that follow the caller's autocast.
:func:`optimize` wraps one for inference on a device at a precision: each call of the returned
module (its forward and its public methods, e.g. EDVR's ``extract_features`` /
``fuse_and_reconstruct``) runs

* under ``torch.autocast`` for ``precision`` (nothing for fp32), and
* inside :func:`stvsr.ops.fused.fast_kernels` with the wrapper's own caches: fused oneDNN conv +
  activation / add kernels, weights cached in the compute dtype and channels-last, channels-last
  activations, the phase-major pixel shuffle (see :mod:`stvsr.ops.fused`), and
* with the models' speed paths bound as per-instance method overrides
  (:mod:`stvsr.infer.overrides`): the networks in :mod:`stvsr.models` have one forward each,
  the paper's computation; the reorganised but equivalent ones live beside this module —
  :mod:`~stvsr.infer.optimize_blocks` (fused residual chains), :mod:`~stvsr.infer.optimize_edvr`
  (split PCD offset convs with per-frame neighbour-term caching, TSA frame by frame),
  :mod:`~stvsr.infer.optimize_sfnet` and :mod:`~stvsr.infer.optimize_basicvsr` (layouts).

The deformable convolutions keep their own ``impl`` choice (``auto``: the native C kernel for
CPU inference when it builds, see :func:`stvsr.ops.dcn.inference_impl`), as in the plain model.

The model itself is not changed: its parameters, their memory format and its modules stay as
they are (the overrides are instance attributes only while a call of the wrapper runs), so
optimizing a model that is being trained (e.g. for validation) is safe; derived weights live in
the wrapper and are refreshed when the parameters change. The fast path is meant for inference
(no autograd); with autograd on it computes the same values without fusion.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from stvsr.errors import StvsrError
from stvsr.infer import optimize_basicvsr, optimize_edvr, optimize_sfnet
from stvsr.infer.overrides import Override, bound
from stvsr.ops.fused import FastKernels, fast_kernels

__all__ = ["PRECISIONS", "OptimizedModel", "optimize", "precision_context", "speed_paths"]

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# each maps a module to the overrides of its speed paths (none for modules it does not know)
_OVERRIDE_SOURCES: tuple[Callable[[nn.Module], list[Override]], ...] = (
    optimize_edvr.overrides, optimize_sfnet.overrides, optimize_basicvsr.overrides)


def speed_paths(model: nn.Module) -> list[Override]:
    """The method overrides :class:`OptimizedModel` binds on ``model``'s modules."""
    return [ov for m in model.modules() for source in _OVERRIDE_SOURCES for ov in source(m)]


def precision_context(
    precision: str, device: torch.device | str
) -> contextlib.AbstractContextManager:
    """Autocast for ``precision`` (``fp32`` = no autocast) on ``device``'s type."""
    if precision not in PRECISIONS:
        raise StvsrError(f"unknown precision {precision!r}; choose fp32, bf16 or fp16")
    if precision == "fp32":
        return contextlib.nullcontext()
    dev = torch.device(device).type
    if dev == "cpu" and precision == "fp16":
        raise StvsrError("fp16 is not supported on CPU; use --precision bf16 or fp32")
    return torch.autocast(dev, dtype=PRECISIONS[precision])


class OptimizedModel(nn.Module):
    """``model`` run with the fast kernels at ``precision`` on ``device`` (see the module
    docstring); build it with :func:`optimize`.

    Attributes the wrapper does not define (``kind``, ``scale``, ``num_frames``,
    ``center_frame_idx``, ``preset``, ``weights_source``, ...) are the model's; its public
    methods are returned wrapped so that they too run on the fast path. The model is registered
    as the submodule ``model`` (so ``state_dict`` keys carry a ``model.`` prefix).
    """

    def __init__(self, model: nn.Module, device: torch.device | str, precision: str) -> None:
        super().__init__()
        precision_context(precision, device)  # validates
        self.model = model
        self.run_device = torch.device(device)
        self.precision = precision
        self.kernels = FastKernels(channels_last=True)
        self.overrides = speed_paths(model)

    @contextlib.contextmanager
    def fast(self) -> Iterator[None]:
        """The fast kernels, the speed paths and the autocast of this wrapper, for a block of
        calls."""
        with fast_kernels(self.kernels), bound(self.overrides), precision_context(
                self.precision, self.run_device):
            yield

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with self.fast():
            return self.model(*args, **kwargs)

    def _wrap(self, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            with self.fast():  # looked up inside: an override bound for the call replaces it
                out = getattr(self.model, name)(*args, **kwargs)
            return self._gen(out) if inspect.isgenerator(out) else out

        return call

    def _gen(self, gen: Iterator[Any]) -> Iterator[Any]:
        """``gen`` advanced on the fast path step by step."""
        while True:
            with self.fast():
                try:
                    item = next(gen)
                except StopIteration:
                    return
            yield item

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            modules = self.__dict__.get("_modules", {})
            if "model" not in modules or name.startswith("__"):
                raise
        attr = getattr(modules["model"], name)
        if inspect.ismethod(attr) and attr.__self__ is modules["model"] and not name.startswith(
                "_"):
            return self._wrap(attr, name)
        return attr

    def extra_repr(self) -> str:
        return f"device={self.run_device}, precision={self.precision!r}"


def optimize(model: nn.Module, device: torch.device | str, precision: str) -> nn.Module:
    """``model`` wrapped for fast inference on ``device`` at ``precision`` (``fp32``, ``bf16``
    or ``fp16``): an :class:`OptimizedModel` (see the module docstring).

    The model is not moved, copied or modified (put it on ``device`` first). An
    :class:`OptimizedModel` for the same device and precision is returned as is; one for
    another is re-wrapped. Fp32 outputs equal the plain model's up to float summation order
    (split PCD convs); the fused kernels are exact in fp32.
    """
    device = torch.device(device)
    if isinstance(model, OptimizedModel):
        if model.run_device == device and model.precision == precision:
            return model
        model = model.model
    return OptimizedModel(model, device, precision)
