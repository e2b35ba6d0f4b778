"""BasicVSR's speed path, bound by :func:`stvsr.infer.optimize`: the propagation trunks and the
fusion conv take their CPU inputs channels-last (oneDNN's 3×3 convs are ~1.5× faster so)."""

from __future__ import annotations

from torch import nn

from stvsr.infer.optimize_blocks import channels_last_cpu_input
from stvsr.infer.overrides import Override
from stvsr.models.basicvsr import BasicVSR

__all__ = ["overrides"]


def overrides(module: nn.Module) -> list[Override]:
    """The overrides for ``module`` when it is a :class:`BasicVSR` (else none)."""
    if not isinstance(module, BasicVSR):
        return []
    return [Override(m, "forward", channels_last_cpu_input)
            for m in (module.backward_trunk, module.forward_trunk, module.fusion)]
