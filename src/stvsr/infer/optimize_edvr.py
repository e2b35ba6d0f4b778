"""EDVR's speed paths, bound by :func:`stvsr.infer.optimize` (see :mod:`stvsr.infer.overrides`).
Each computes what the plain module computes (the float64 test in ``tests/test_architecture.py``
checks both against the paper's equations), reorganised for CPU inference:

* channels-last frames into the feature pyramid, fused residual chains;
* PCD with split offset convs: the first offset convs see ``cat(nbr, ref)``, and a conv over a
  channel concatenation is the sum of two convs over the halves, ``W·cat(a, b) = W[:, :C]·a +
  W[:, C:]·b`` (exact up to float summation order). The reference half (with the bias) is
  computed once per window instead of once per neighbour, and the neighbour half once per
  frame when its pyramid is reused by several windows (cached video inference: the terms are
  kept while the pyramid's ``l1`` tensor lives). Saves 4 of 5 (window) or all (cached)
  reference-half convs: ~39 GFLOP per window for EDVR-M at 180×320;
* TSA written frame by frame straight into the concatenation (no ``(T·B, C, H, W)`` stack, no
  separate product / cat / re-layout passes) and its tail in place.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Any

import torch
from torch import Tensor, nn

from stvsr.infer.optimize_blocks import channels_last_input, res_chain
from stvsr.infer.overrides import Override, plain
from stvsr.models.edvr import EDVR
from stvsr.models.edvr_modules import PCDAlignment, Pyramid, TSAFusion, dcn_offsets_contiguous, up2
from stvsr.ops.fused import conv_act, conv_part, fast_enabled, param_version, runs_as_module

__all__ = ["overrides"]

# id(l1 tensor) -> (weak reference to it, key, neighbour terms); see nbr_terms_cached
_TERMS: dict[int, tuple[weakref.ref, tuple, list[Tensor]]] = {}
_CACHE_TERMS: ContextVar[bool] = ContextVar("stvsr_edvr_cache_terms", default=True)


def split_convs(pcd: PCDAlignment) -> bool:
    """Whether to split the convs over ``cat(nbr, ref)`` (fast path, unless one of them must
    run as a module: :func:`~stvsr.ops.fused.runs_as_module`)."""
    convs = (*pcd.offset_conv1.values(), pcd.cas_offset_conv1)
    return fast_enabled() and not any(runs_as_module(m) for m in convs)


def nbr_terms(pcd: PCDAlignment, nbr: Sequence[Tensor]) -> list[Tensor]:
    """Neighbour halves of ``offset_conv1`` at l1, l2, l3 (no bias), shaped like ``nbr``."""
    c = nbr[0].shape[1]
    return [conv_part(pcd.offset_conv1[f"l{i}"], nbr[i - 1], slice(0, c), with_bias=False)
            for i in (1, 2, 3)]


def ref_terms(pcd: PCDAlignment, ref: Sequence[Tensor]) -> list[Tensor]:
    """Reference halves (with bias) of ``offset_conv1`` at l1, l2, l3 and of
    ``cas_offset_conv1``: four ``(B, C, h_k, w_k)`` maps."""
    c = ref[0].shape[1]
    half = slice(c, 2 * c)
    out = [conv_part(pcd.offset_conv1[f"l{i}"], ref[i - 1], half) for i in (1, 2, 3)]
    return out + [conv_part(pcd.cas_offset_conv1, ref[0], half)]


def nbr_terms_cached(model: EDVR, pyr: Pyramid) -> list[Tensor]:
    """:func:`nbr_terms` of one frame, kept while ``pyr[0]`` lives (unless
    :data:`_CACHE_TERMS` is off or autograd is on) and reused by later windows."""
    l1 = pyr[0]
    dev = l1.device.type
    dt = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else l1.dtype
    convs = model.pcd_align.offset_conv1
    key = (id(model), dt, *(param_version(convs[f"l{i}"]) for i in (1, 2, 3)))
    hit = _TERMS.get(id(l1))
    if hit is not None and hit[0]() is l1 and hit[1] == key:
        return hit[2]
    terms = nbr_terms(model.pcd_align, pyr)
    if _CACHE_TERMS.get() and not torch.is_grad_enabled():
        ident = id(l1)
        ref = weakref.ref(l1, lambda _r: _TERMS.pop(ident, None))
        _TERMS[ident] = (ref, key, terms)
    return terms


def pcd_split(
    pcd: PCDAlignment, nbr: Sequence[Tensor], ref: Sequence[Tensor], nt: Sequence[Tensor],
    rt: Sequence[Tensor],
) -> Tensor:
    """:meth:`PCDAlignment.forward` with the convs over ``cat(nbr, ref)`` computed as the sum of
    their halves: neighbour terms ``nt`` (:func:`nbr_terms`) and reference terms ``rt``
    (:func:`ref_terms`). Pyramids ``l_k (B, C, H/2^(k-1), W/2^(k-1))`` -> ``(B, C, H, W)``."""
    up_offset: Tensor | None = None
    up_feat: Tensor | None = None
    feat = nbr[0]
    for i in (3, 2, 1):
        lv = f"l{i}"
        r = rt[i - 1]
        offset = pcd.lrelu(nt[i - 1].to(r.dtype) + r)
        if i == 3:
            offset = conv_act(pcd.offset_conv2[lv], offset, pcd.lrelu)
        else:
            assert up_offset is not None and up_feat is not None
            offset = conv_act(
                pcd.offset_conv2[lv], torch.cat([offset, up_offset.to(offset.dtype)], 1),
                pcd.lrelu,
            )
            offset = conv_act(pcd.offset_conv3[lv], offset, pcd.lrelu)
        feat = dcn_offsets_contiguous(pcd.dcn_pack[lv], nbr[i - 1], offset)
        if i < 3:
            # no activation after feat_conv at l1
            feat = conv_act(pcd.feat_conv[lv], torch.cat([feat, up_feat.to(feat.dtype)], 1),
                            pcd.lrelu if i > 1 else None)
        else:
            feat = pcd.lrelu(feat)
        if i > 1:
            up_offset = up2(offset) * 2  # offsets double with the resolution
            up_feat = up2(feat)
    c = nbr[0].shape[1]
    offset = conv_part(pcd.cas_offset_conv1, feat, slice(0, c), with_bias=False,
                       act=pcd.lrelu, add=rt[3])
    offset = conv_act(pcd.cas_offset_conv2, offset, pcd.lrelu)
    return pcd.lrelu(dcn_offsets_contiguous(pcd.cas_dcnpack, feat, offset))


# --------------------------------------------------------------------------- EDVR overrides


@contextlib.contextmanager
def _no_term_cache() -> Iterator[Any]:
    """PCD neighbour terms computed in the block are not kept."""
    token = _CACHE_TERMS.set(False)
    try:
        yield
    finally:
        _CACHE_TERMS.reset(token)


def edvr_align(model: EDVR, pyramids: Sequence[Pyramid]) -> list[Tensor]:
    """Override of :meth:`EDVR.align`: split PCD convs, reference terms once per window,
    neighbour terms once per frame (:func:`nbr_terms_cached`)."""
    if not split_convs(model.pcd_align):
        return plain(model, "align")(pyramids)
    ref = pyramids[model.center_frame_idx]
    rt = ref_terms(model.pcd_align, ref)
    return [pcd_split(model.pcd_align, nbr, ref, nbr_terms_cached(model, nbr), rt)
            for nbr in pyramids]


def edvr_forward(model: EDVR, x: Tensor) -> Tensor:
    """Override of :meth:`EDVR.forward`: the plain forward without keeping PCD terms (its
    pyramids are not shared with another window)."""
    with _no_term_cache():
        return plain(model, "forward")(x)


# --------------------------------------------------------------------------- TSA overrides


def tsa_weighted_frames(tsa: TSAFusion, aligned: Sequence[Tensor]) -> Tensor:
    """Override of :meth:`TSAFusion.weighted_frames`: without autograd, frame by frame into the
    concatenation ``(B, T*C, H, W)`` in ``aligned``'s memory format; with autograd, the plain
    computation re-laid channels-last when ``aligned`` is."""
    a0 = aligned[0]
    cl = a0.is_contiguous(memory_format=torch.channels_last) and not a0.is_contiguous()
    if not fast_enabled():
        return plain(tsa, "weighted_frames")(aligned)
    if torch.is_grad_enabled():
        feat_in = plain(tsa, "weighted_frames")(aligned)
        return feat_in.contiguous(memory_format=torch.channels_last) if cl else feat_in
    b, c, h, w = a0.shape
    emb_ref = conv_act(tsa.temporal_attn1, aligned[tsa.center_frame_idx])
    cdt = torch.promote_types(emb_ref.dtype, torch.float32)  # correlation: fp32 or fp64
    emb_ref = emb_ref.to(cdt)
    fmt = torch.channels_last if cl else torch.contiguous_format
    feat_in = torch.empty(b, len(aligned) * c, h, w, dtype=a0.dtype, device=a0.device,
                          memory_format=fmt)
    for i, a in enumerate(aligned):
        emb = conv_act(tsa.temporal_attn2, a).to(cdt)
        corr = (emb * emb_ref).sum(dim=1, keepdim=True)
        prob = torch.sigmoid_(corr).to(a.dtype)
        torch.mul(a, prob, out=feat_in[:, i * c : (i + 1) * c])
    return feat_in


def tsa_modulate(tsa: TSAFusion, feat: Tensor, attn: Tensor, attn_add: Tensor) -> Tensor:
    """Override of :meth:`TSAFusion.modulate`: the same order of operations, in place, without
    autograd."""
    if fast_enabled() and not torch.is_grad_enabled():
        return feat.mul_(torch.sigmoid_(attn)).mul_(2).add_(attn_add)
    return TSAFusion.modulate(feat, attn, attn_add)


# --------------------------------------------------------------------------- binding


def overrides(module: nn.Module) -> list[Override]:
    """The overrides for ``module`` when it is an :class:`EDVR` or a :class:`TSAFusion`."""
    if isinstance(module, EDVR):
        return [
            Override(module, "feature_pyramid", channels_last_input("feature_pyramid")),
            res_chain(module.feature_extraction),
            res_chain(module.reconstruction),
            Override(module, "align", edvr_align),
            Override(module, "forward", edvr_forward),
        ]
    if isinstance(module, TSAFusion):
        return [Override(module, "weighted_frames", tsa_weighted_frames),
                Override(module, "modulate", tsa_modulate)]
    return []

