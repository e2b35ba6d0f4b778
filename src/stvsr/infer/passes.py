"""Progress inside a model's passes, while a chunk is restored in one forward call.

A recurrent or space-time network restores a whole chunk before its first output frame comes
out: ``make demo`` spends minutes at ``0/49``. :class:`PassWatch` counts the calls of the
modules that each pass of the network runs once per frame, with forward hooks on the plain
model (the model, its forward and the optimized wrapper stay as they are), and reports after
every step, e.g. ``backward 25/25 · forward 12/25 · new frames 10/24``.

The watched modules (*design*, read off each network's forward; :func:`pass_steps`):

* :class:`~stvsr.models.basicvsr.BasicVSR`, alone or inside ``sfnet-s``, the two-stage
  baselines and clean-then-restore: ``backward_trunk`` and ``forward_trunk``, once per input
  frame each;
* ``sfnet-s`` (v1 and v2): its ``head``, once per new frame (``n - 1``);
* :class:`~stvsr.models.sfnet.SFNet` with its store: ``brm.store`` and ``frm.store``, once per
  step over the ``2n - 1`` frames.

None of them is a module the fast path fuses (:mod:`stvsr.ops.fused` runs a hooked conv or
residual chain as a plain module), so watching costs no speed. A model with none of them (EDVR,
RIFE: a forward per output frame or pair) is not watched.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from stvsr.models.basicvsr import BasicVSR
from stvsr.models.sfnet import SFNet
from stvsr.models.sfnet_s import SFNetS
from stvsr.models.sfnet_s_v1 import SFNetSV1

__all__ = ["PassStep", "PassWatch", "pass_steps"]


@dataclass(frozen=True)
class PassStep:
    """A module called once per step of one pass: ``per_input · n + offset`` calls in a
    forward over ``n`` input frames."""

    label: str
    module: nn.Module
    per_input: int = 1
    offset: int = 0

    def total(self, n: int) -> int:
        return max(0, self.per_input * n + self.offset)


def _steps_of(module: nn.Module) -> list[PassStep]:
    """The steps ``module`` itself runs (not those of its submodules)."""
    if isinstance(module, BasicVSR):
        return [PassStep("backward", module.backward_trunk),
                PassStep("forward", module.forward_trunk)]
    if isinstance(module, (SFNetS, SFNetSV1)):
        return [PassStep("new frames", module.head, offset=-1)]
    if isinstance(module, SFNet) and module.use_df:
        return [PassStep("backward", module.brm.store, per_input=2, offset=-1),
                PassStep("forward", module.frm.store, per_input=2, offset=-1)]
    return []


def _steps_in_order(module: nn.Module) -> list[PassStep]:
    """The steps of ``module``'s submodules (in registration order), then its own: the order in
    which the networks here run them (sfnet-s: BasicVSR's passes, then its new frames)."""
    inner = [s for child in module.children() for s in _steps_in_order(child)]
    return inner + _steps_of(module)


def pass_steps(model: nn.Module) -> list[PassStep]:
    """The watched steps of ``model``'s forward in the order it runs them; a label that comes
    twice (two recurrent networks) is numbered."""
    steps = _steps_in_order(model)
    totals, seen = Counter(s.label for s in steps), Counter[str]()
    out = []
    for s in steps:
        seen[s.label] += 1
        numbered = totals[s.label] > 1
        out.append(replace(s, label=f"{s.label} {seen[s.label]}") if numbered else s)
    return out


class PassWatch:
    """While open, ``report(text)`` is called after each watched step of ``model``'s forward
    with every pass's count, ``"backward 25/25 · forward 12/25 · new frames 10/24"``; each
    call of ``model`` (a chunk, or a tile of one) starts the counts again. ``model`` is the
    plain network (an optimized wrapper calls it as a module, so its hooks run)."""

    def __init__(self, model: nn.Module, report: Callable[[str], None]) -> None:
        self.model, self.report = model, report
        self.steps = pass_steps(model)
        self.counts = [0] * len(self.steps)
        self.n = 0
        self._handles: list[RemovableHandle] = []

    def text(self) -> str:
        """The counts of the current forward call."""
        return " · ".join(f"{s.label} {c}/{s.total(self.n)}"
                          for s, c in zip(self.steps, self.counts, strict=True))

    def _start(self, _module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0] if args else None
        self.n = int(x.shape[1]) if isinstance(x, Tensor) and x.dim() == 5 else 0
        self.counts = [0] * len(self.steps)
        self.report(self.text())

    def _stepped(self, k: int) -> Callable[..., None]:
        def hook(_module: nn.Module, _args: tuple[Any, ...], _out: Any) -> None:
            self.counts[k] += 1
            self.report(self.text())

        return hook

    def __enter__(self) -> PassWatch:
        if self.steps:
            self._handles.append(self.model.register_forward_pre_hook(self._start))
            self._handles += [s.module.register_forward_hook(self._stepped(k))
                              for k, s in enumerate(self.steps)]
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
