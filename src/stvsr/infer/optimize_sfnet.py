"""SFNet's speed paths, bound by :func:`stvsr.infer.optimize` (see :mod:`stvsr.infer.overrides`):
the same computations as the plain modules, for CPU inference —

* FE on channels-last step inputs with fused conv + LeakyReLU and fused residual chains
  (also in every DS and ``R``);
* F&R and DF keep the tensors they add or convolve in the memory format of the activations
  (channels-last on the fast path), so no conv gets a mixed-layout input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from stvsr.infer.optimize_blocks import fmt, res_blocks, res_chain
from stvsr.infer.overrides import Override, plain
from stvsr.models.blocks import ConvResidualBlocks
from stvsr.models.sfnet import SFNet
from stvsr.models.sfnet_blocks import (
    DistantFetch,
    Reconstruction,
    RecurrentModule,
    local_window_read,
)
from stvsr.ops.fused import conv_act, fast_enabled, fast_layout

__all__ = ["overrides"]


def fe_forward(fe: ConvResidualBlocks, x: Tensor) -> Tensor:
    """Override of SFNet's FE forward: ``(N, 3, h, w) -> (N, C, h, w)``, channels-last, fused."""
    if not fast_enabled():
        return plain(fe, "forward")(x)
    conv, act, blocks = fe.main
    return res_blocks(blocks, conv_act(conv, fast_layout(x), act))


def sfnet_reconstruct(model: SFNet, z: Tensor, hb: Tensor, hf: Tensor) -> tuple[Tensor, Tensor]:
    """Override of :meth:`SFNet.reconstruct`: the bilinear base goes in ``H^b``'s layout."""
    if not fast_enabled():
        return plain(model, "reconstruct")(z, hb, hf)
    base = z if model.scale == 1 else F.interpolate(
        z, scale_factor=model.scale, mode="bilinear", align_corners=False)
    structure = model.rec_s(hb, add=base.contiguous(memory_format=fmt(hb)))
    image = model.rec_d(conv_act(model.fuse_d, torch.cat([hf, hb], dim=1), model.lrelu),
                        add=structure)
    return image, structure


def df_forward(df: DistantFetch, feat: Tensor, keys: Tensor, values: Tensor) -> Tensor:
    """Override of :meth:`DistantFetch.forward`: the read-out goes in ``feat``'s layout."""
    if not fast_enabled():
        return plain(df, "forward")(feat, keys, values)
    q = df.query(feat)
    if df.stride > 1:
        q = F.avg_pool2d(q, df.stride)
    read = local_window_read(q, keys, values, df.radius, df.log_tau.exp())
    read = F.interpolate(read, size=feat.shape[-2:], mode="bilinear", align_corners=False)
    return df.out_conv(read.contiguous(memory_format=fmt(feat)))


def overrides(module: nn.Module) -> list[Override]:
    """The overrides for ``module`` when it is an :class:`SFNet` or one of its blocks."""
    if isinstance(module, SFNet):
        return [Override(module.fe, "forward", fe_forward),
                Override(module, "reconstruct", sfnet_reconstruct)]
    if isinstance(module, Reconstruction):
        return [res_chain(module.body)]
    if isinstance(module, RecurrentModule):
        return [res_chain(module.ds_body)]
    if isinstance(module, DistantFetch):
        return [Override(module, "forward", df_forward)]
    return []
