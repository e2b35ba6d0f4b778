"""Per-instance method overrides, bound only while an optimized model runs.

The networks in :mod:`stvsr.models` have one forward each: the paper's computation. The speed
paths of :func:`stvsr.infer.optimize` (reorganised but equivalent computations, memory layouts)
live beside it (:mod:`stvsr.infer.optimize_edvr`, :mod:`stvsr.infer.optimize_sfnet`, ...) as
plain functions ``fn(module, *args)``. An :class:`Override` names one of them for one module
instance and method; :func:`bound` sets it as an instance attribute (``module.forward = ...``)
for the duration of a block and restores what was there afterwards.

Bindings nest and may be shared (the same model run by two wrappers, a generator advanced step
by step): each ``(module, method)`` is bound on the first entry and restored on the last exit.
Every override function checks :func:`stvsr.ops.fused.fast_enabled` itself and runs the class's
plain method when it is off, so a thread that calls the bare model while another runs it
optimized gets the plain computation.
"""

from __future__ import annotations

import contextlib
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

__all__ = ["Override", "bound", "plain"]

_MISSING = object()
_LOCK = threading.Lock()
# (id(module), method) -> [count, module, what the instance dict held before (or _MISSING)]
_BOUND: dict[tuple[int, str], list[Any]] = {}


@dataclass(frozen=True)
class Override:
    """Bind ``fn`` as ``module.<method>`` (``fn(module, *args, **kwargs)``)."""

    module: nn.Module
    method: str
    fn: Callable[..., Any]


def plain(module: nn.Module, method: str) -> Callable[..., Any]:
    """``module``'s own ``method`` as its class defines it (bypassing a bound override)."""
    return getattr(type(module), method).__get__(module)


@contextlib.contextmanager
def bound(overrides: Sequence[Override]) -> Iterator[None]:
    """Bind ``overrides`` for the duration of the block (see the module docstring)."""
    done: list[Override] = []
    try:
        with _LOCK:
            for ov in overrides:
                key = (id(ov.module), ov.method)
                entry = _BOUND.get(key)
                if entry is None:
                    before = ov.module.__dict__.get(ov.method, _MISSING)
                    ov.module.__dict__[ov.method] = types.MethodType(ov.fn, ov.module)
                    entry = _BOUND[key] = [0, ov.module, before]
                entry[0] += 1
                done.append(ov)
        yield
    finally:
        with _LOCK:
            for ov in reversed(done):
                key = (id(ov.module), ov.method)
                entry = _BOUND[key]
                entry[0] -= 1
                if entry[0] == 0:
                    del _BOUND[key]
                    if entry[2] is _MISSING:
                        ov.module.__dict__.pop(ov.method, None)
                    else:
                        ov.module.__dict__[ov.method] = entry[2]
