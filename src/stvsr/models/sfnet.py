"""SFNet: a store-and-fetch space-time video super-resolution network (×s in space, ×2 in time).

After "Store and Fetch Immediately: Everything Is All You Need for Space-Time Video
Super-resolution" (Hu et al., AAAI 2023) and its predecessor YOGO (ACM MM 2022). The authors
published no code; what is *fact* comes from the abstract and the architecture figure (two
recurrent modules BRM/FRM, each step = FE → AF + DF → DS emitting a hidden state and a store
entry; FRM reads BRM's hidden states and store; F&R emits structure, detail and final images).
Everything else — layer sizes, the DCN offset head, the local-window memory read used for DF,
the fetch budget and its selection rule, the store entry format, the loss weights, the boundary
handling — is **this project's design** (``/shared/spec/sfnet.md``), marked *design* below.
This is not a bit-exact reproduction of the paper's network.

Shapes (``s`` = spatial scale, ``K = 2n - 1`` output frames)::

    forward(x: (B, n, 3, h, w)) -> (B, K, 3, s·h, s·w)
    forward(x, return_structure=True) -> (images, structures), both (B, K, 3, s·h, s·w)

Output ``2i`` restores input ``i``; output ``2i + 1`` is the new frame half way between inputs
``i`` and ``i + 1``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from stvsr.errors import StvsrError
from stvsr.models.blocks import (
    ConvResidualBlocks,
    ResidualBlockNoBN,
    make_layer,
    run_res_blocks,
)
from stvsr.ops.dcn import DCNv2Pack, conv_act, has_forward_hooks
from stvsr.registry import register_model

__all__ = [
    "SFNet",
    "AdjacentFetch",
    "DistantFetch",
    "Reconstruction",
    "select_fetch_indices",
    "local_window_read",
    "charbonnier",
    "sfnet_loss",
    "sfnet_windowed",
    "window_plan",
    "init_from_basicvsr",
]

POLICIES = ("spread", "nearest")


# --------------------------------------------------------------------------- fetch selection


def select_fetch_indices(
    candidates: Sequence[int], k: int, budget: int | None, policy: str = "spread"
) -> list[int]:
    """Which stored entries step ``k`` reads (*design*). Pure function.

    Args:
        candidates: frame indices of the store entries step ``k`` may read (any order).
        k: the current output index.
        budget: at most this many entries are returned (``M``); ``None`` = all candidates.
        policy: ``"nearest"`` — the ``budget`` entries closest in time to ``k`` (ties: the
            earlier index first); ``"spread"`` — the ``ceil(budget / 2)`` nearest ones plus
            ``budget - ceil(budget / 2)`` entries spread evenly (centres of equal bins) over the
            remaining candidates in index order, so the far past/future is still sampled.

    Returns:
        The selected indices, sorted ascending (``len <= budget``; all candidates if they fit).
    """
    if policy not in POLICIES:
        raise StvsrError(f"unknown store policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if budget is not None and int(budget) < 1:
        raise StvsrError(f"fetch budget must be >= 1 or None (all), got {budget}")
    cands = sorted(set(int(c) for c in candidates))
    if budget is None or len(cands) <= budget:
        return cands
    budget = int(budget)
    by_dist = sorted(cands, key=lambda j: (abs(j - k), j))
    if policy == "nearest":
        return sorted(by_dist[:budget])
    n_near = (budget + 1) // 2
    near = by_dist[:n_near]
    rest = sorted(set(cands) - set(near))
    m = budget - n_near
    length = len(rest)
    spread = [rest[int((i + 0.5) * length / m)] for i in range(m)] if m > 0 else []
    return sorted(near + spread)


# --------------------------------------------------------------------------- building blocks


def _fmt(x: Tensor) -> torch.memory_format:
    """``x``'s memory format (channels-last or contiguous), for keeping activations in it."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(negative_slope=0.1, inplace=True)


class AdjacentFetch(nn.Module):
    """AF: modulated deformable alignment of an adjacent hidden state onto the current frame.

    ``forward(feat (B, C, h, w), hidden (B, C, h, w)) -> aligned (B, C, h, w)``. Offsets and
    masks are predicted from ``cat(feat, hidden)`` by two 3×3 convs + the DCN's own
    ``conv_offset`` (EDVR's ``DCNv2Pack`` layout, ``deformable_groups`` groups); the DCN samples
    ``hidden``. Offsets are clamped to ``±max_offset`` LR pixels (*design*; a warning is logged
    when the clamp bites). With ``pyramid=True`` a PCD-like second level at half resolution
    predicts coarse offsets (clamped to ``max_offset / 2``) that feed the full-resolution
    offset head, and the two aligned maps are fused (*design*). ``h`` and ``w`` must be even
    with the pyramid.
    """

    def __init__(
        self,
        num_feat: int,
        deformable_groups: int = 8,
        max_offset: float | None = 10.0,
        pyramid: bool = False,
    ) -> None:
        super().__init__()
        c = num_feat
        self.pyramid = pyramid
        self.offset_conv1 = nn.Conv2d(2 * c, c, 3, 1, 1)
        self.offset_conv2 = nn.Conv2d(2 * c if pyramid else c, c, 3, 1, 1)
        self.dcn = DCNv2Pack(c, c, 3, padding=1, deformable_groups=deformable_groups,
                             max_offset=max_offset)
        self.lrelu = _lrelu()
        if pyramid:
            half = None if max_offset is None else max_offset / 2.0
            self.down_feat = nn.Conv2d(c, c, 3, 2, 1)
            self.down_hidden = nn.Conv2d(c, c, 3, 2, 1)
            self.l2_offset_conv1 = nn.Conv2d(2 * c, c, 3, 1, 1)
            self.l2_offset_conv2 = nn.Conv2d(c, c, 3, 1, 1)
            self.l2_dcn = DCNv2Pack(c, c, 3, padding=1, deformable_groups=deformable_groups,
                                    max_offset=half)
            self.fuse = nn.Conv2d(2 * c, c, 3, 1, 1)
        # design: the offset heads start near zero instead of at exactly zero (BasicSR), so the
        # offset-prediction convs receive gradients from the first step.
        for dcn in (self.dcn, getattr(self, "l2_dcn", None)):
            if dcn is not None:
                nn.init.normal_(dcn.conv_offset.weight, std=1e-4)

    def forward(self, feat: Tensor, hidden: Tensor) -> Tensor:
        off = conv_act(self.offset_conv1, torch.cat([feat, hidden], dim=1), "lrelu")
        if not self.pyramid:
            off = conv_act(self.offset_conv2, off, "lrelu")
            return self.lrelu(self.dcn(hidden, off))
        f2 = self.lrelu(self.down_feat(feat))
        h2 = self.lrelu(self.down_hidden(hidden))
        off2 = self.lrelu(self.l2_offset_conv1(torch.cat([f2, h2], dim=1)))
        off2 = self.lrelu(self.l2_offset_conv2(off2))
        al2 = self.lrelu(self.l2_dcn(h2, off2))
        size = feat.shape[-2:]
        off2_up = F.interpolate(off2, size=size, mode="bilinear", align_corners=False) * 2.0
        off = self.lrelu(self.offset_conv2(torch.cat([off, off2_up], dim=1)))
        al1 = self.lrelu(self.dcn(hidden, off))
        al2_up = F.interpolate(al2, size=size, mode="bilinear", align_corners=False)
        return self.lrelu(self.fuse(torch.cat([al1, al2_up], dim=1)))


def local_window_read(q: Tensor, keys: Tensor, values: Tensor, radius: int, tau: Tensor) -> Tensor:
    """Softmax memory read over a ``(2r+1)²`` window, jointly across ``M`` entries.

    For every query position ``p``: ``a(m, d) = softmax_{m,d}(<q(p), key_m(p + d)> /
    (sqrt(Ck) · tau))`` over the ``M`` entries and window offsets ``d`` inside the map; the
    read-out is ``sum a(m, d) · value_m(p + d)``. Positions outside the map are excluded.
    Implemented as a padded-shift loop over the ``(2r+1)²`` offsets (no per-pixel loop);
    memory ``O(M · (2r+1)² · hw)`` for the logits.

    Args:
        q: ``(B, Ck, hp, wp)`` queries.
        keys: ``(B, M, Ck, hp, wp)``.
        values: ``(B, M, Cv, hp, wp)``.
        radius: ``r``.
        tau: scalar temperature (> 0).

    Returns:
        ``(B, Cv, hp, wp)``.
    """
    b, m, ck, hp, wp = keys.shape
    r = int(radius)
    d = 2 * r + 1
    kp = F.pad(keys, (r, r, r, r))
    vp = F.pad(values, (r, r, r, r))
    valid = F.pad(q.new_ones(1, 1, hp, wp), (r, r, r, r))
    scale = 1.0 / (math.sqrt(ck) * tau)
    neg = torch.finfo(q.dtype).min
    qe = q.unsqueeze(1)
    logits = []
    for dy in range(d):
        for dx in range(d):
            ks = kp[..., dy:dy + hp, dx:dx + wp]
            lg = (qe * ks).sum(dim=2)  # (B, M, hp, wp)
            ok = valid[..., dy:dy + hp, dx:dx + wp] > 0
            logits.append(torch.where(ok, lg * scale, lg.new_full((), neg)))
    attn = torch.softmax(torch.stack(logits, dim=2).view(b, m * d * d, hp, wp), dim=1)
    attn = attn.view(b, m, d * d, hp, wp)
    out = q.new_zeros(b, values.shape[2], hp, wp)
    i = 0
    for dy in range(d):
        for dx in range(d):
            vs = vp[..., dy:dy + hp, dx:dx + wp]  # (B, M, Cv, hp, wp)
            out = out + (attn[:, :, i].unsqueeze(2) * vs).sum(1)
            i += 1
    return out


class DistantFetch(nn.Module):
    """DF: content-based read of distant store entries (*design*).

    ``forward(feat (B, C, h, w), keys (B, M, Ck, hp, wp), values (B, M, Cv, hp, wp))
    -> G (B, C, h, w)``. The query is a 1×1 conv of ``feat`` average-pooled by ``stride``; the
    read-out (:func:`local_window_read`, radius ``r``, learned temperature ``exp(log_tau)``) is
    upsampled bilinearly to ``h × w`` and mapped to ``C`` channels by a 3×3 conv.
    """

    def __init__(self, num_feat: int, key_channels: int, value_channels: int, radius: int = 3,
                 stride: int = 2) -> None:
        super().__init__()
        self.radius = radius
        self.stride = stride
        self.query = nn.Conv2d(num_feat, key_channels, 1)
        self.log_tau = nn.Parameter(torch.zeros(()))
        self.out_conv = nn.Conv2d(value_channels, num_feat, 3, 1, 1)

    def forward(self, feat: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        q = self.query(feat)
        if self.stride > 1:
            q = F.avg_pool2d(q, self.stride)
        read = local_window_read(q, keys, values, self.radius, self.log_tau.exp())
        read = F.interpolate(read, size=feat.shape[-2:], mode="bilinear", align_corners=False)
        return self.out_conv(read.contiguous(memory_format=_fmt(feat)))


class StoreEntry(nn.Module):
    """Store entry ``c_k = (key, value)`` of a hidden state (*design*).

    ``forward(H (B, C, h, w)) -> (key (B, Ck, h/st, w/st), value (B, Cv, h/st, w/st))``: 1×1
    convs then average pooling by ``stride``.
    """

    def __init__(self, num_feat: int, key_channels: int, value_channels: int,
                 stride: int = 2) -> None:
        super().__init__()
        self.stride = stride
        self.key = nn.Conv2d(num_feat, key_channels, 1)
        self.value = nn.Conv2d(num_feat, value_channels, 1)

    def forward(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        k, v = self.key(hidden), self.value(hidden)
        if self.stride > 1:
            k, v = F.avg_pool2d(k, self.stride), F.avg_pool2d(v, self.stride)
        return k, v


class Reconstruction(nn.Module):
    """``R``: ``n_rec`` residual blocks + pixel-shuffle upsampler + conv_hr + conv_last.

    ``(B, C, h, w) -> (B, 3, s·h, s·w)``. Upsampler: ×2 ×2 for ``s = 4`` (``upconv1``,
    ``upconv2``), one ×3 (``s = 3``) or ×2 (``s = 2``) stage (``upconv1``), none for ``s = 1``;
    the tail's names and shapes match BasicVSR's for ``C = 64, s = 4``.
    """

    def __init__(self, num_feat: int, num_block: int, scale: int) -> None:
        super().__init__()
        c = num_feat
        self.scale = scale
        self.body = make_layer(ResidualBlockNoBN, num_block, num_feat=c)
        self.lrelu = _lrelu()
        if scale == 4:
            self.upconv1 = nn.Conv2d(c, 4 * c, 3, 1, 1)
            self.upconv2 = nn.Conv2d(c, 4 * c, 3, 1, 1)
            self.shuffles = [2, 2]
        elif scale in (2, 3):
            self.upconv1 = nn.Conv2d(c, scale * scale * c, 3, 1, 1)
            self.shuffles = [scale]
        else:
            self.shuffles = []
        self.conv_hr = nn.Conv2d(c, c, 3, 1, 1)
        self.conv_last = nn.Conv2d(c, 3, 3, 1, 1)

    def forward(self, x: Tensor, add: Tensor | None = None) -> Tensor:
        """``(B, C, h, w) -> (B, 3, s·h, s·w)``; ``add`` (same shape as the output) is added to
        the result inside the last conv (fused on CPU without autograd)."""
        out = run_res_blocks(self.body, x)
        for i, f in enumerate(self.shuffles):
            conv = self.upconv1 if i == 0 else self.upconv2
            # LeakyReLU commutes with the pixel shuffle, so it is fused into the conv
            out = F.pixel_shuffle(conv_act(conv, out, "lrelu"), f)
        out = conv_act(self.conv_hr, out, "lrelu")
        return conv_act(self.conv_last, out, add=add)


class RecurrentModule(nn.Module):
    """One recurrent direction (BRM or FRM): AF, DF, DS and the store-entry head.

    ``num_adjacent`` = 1 (BRM: ``H^b_{k+1}``) or 2 (FRM: ``H^f_{k-1}`` and ``H^b_{k+1}``,
    aligned separately and fused by a 1×1 conv ``af_fuse``). With ``use_af=False`` the adjacent
    hidden states enter unaligned (ablation). DS: ``H = RB^{n_ds}(lrelu(conv1×1(cat(F, A, G))))``.
    """

    def __init__(self, num_feat: int, num_ds: int, num_adjacent: int, *, use_af: bool,
                 use_df: bool, key_channels: int, value_channels: int, radius: int,
                 store_stride: int, deformable_groups: int, max_offset: float | None,
                 pyramid: bool) -> None:
        super().__init__()
        c = num_feat
        self.use_af = use_af
        self.use_df = use_df
        if use_af:
            self.af = nn.ModuleList(
                AdjacentFetch(c, deformable_groups, max_offset, pyramid)
                for _ in range(num_adjacent)
            )
        if num_adjacent > 1:
            self.af_fuse = nn.Conv2d(num_adjacent * c, c, 1)
        if use_df:
            self.df = DistantFetch(c, key_channels, value_channels, radius, store_stride)
            self.store = StoreEntry(c, key_channels, value_channels, store_stride)
        n_in = 3 if use_df else 2
        self.ds_fuse = nn.Conv2d(n_in * c, c, 1)
        self.ds_body = make_layer(ResidualBlockNoBN, num_ds, num_feat=c)
        self.lrelu = _lrelu()

    def adjacent(self, feat: Tensor, hidden: Sequence[Tensor | None]) -> Tensor:
        """AF of ``feat (B, C, h, w)`` with each adjacent state (``None`` = absent → zeros)."""
        parts = []
        for i, h in enumerate(hidden):
            if h is None:
                parts.append(torch.zeros_like(feat))
            elif self.use_af:
                parts.append(self.af[i](feat, h))
            else:
                parts.append(h)
        if len(parts) == 1:
            return parts[0]
        return conv_act(self.af_fuse, torch.cat(parts, dim=1), "lrelu")

    def step(self, feat: Tensor, adj: Tensor, fetched: Tensor | None) -> Tensor:
        """DS: ``(F, A, G) -> H``, all ``(B, C, h, w)``."""
        parts = [feat, adj]
        if self.use_df:
            parts.append(fetched if fetched is not None else torch.zeros_like(feat))
        fused = conv_act(self.ds_fuse, torch.cat(parts, dim=1), "lrelu")
        return run_res_blocks(self.ds_body, fused)


# --------------------------------------------------------------------------- the network


class SFNet(nn.Module):
    """Store-and-fetch ST-VSR network: ``(B, n, 3, h, w) -> (B, 2n - 1, 3, s·h, s·w)``.

    Per output index ``k`` (``K = 2n - 1``): step input ``z_k`` (the LR frame for even ``k``,
    the mean of the two LR neighbours for odd ``k`` — *design* for the paper's ``⊕``);
    ``F_k = FE(z_k)`` (shared, conv + ``n_fe`` residual blocks). BRM runs ``k = K-1 … 0``:
    ``H^b_k = DS_b(F_k, AF(F_k, H^b_{k+1}), DF(F_k, C^b_{≥k+2}))`` and stores ``c^b_k``. FRM runs
    ``k = 0 … K-1``: ``H^f_k = DS_f(F_k, AF(F_k, H^f_{k-1}, H^b_{k+1}), DF(F_k, C^f_{≤k-2} ∪
    C^b_{≥k+2}))`` and stores ``c^f_k``. F&R: ``S_k = up_bilinear(z_k) + R_S(H^b_k)``,
    ``D_k = R_D(conv1×1(cat(H^f_k, H^b_k)))``, ``I_k = S_k + D_k`` (YOGO's split: backward →
    structure, forward → detail). Missing neighbours/candidates at the sequence ends read as
    zeros (*design*).

    DF reads at most ``fetch_frames`` (``M``) entries chosen by :func:`select_fetch_indices`
    with ``store_policy``; ``debug`` records per step the store sizes and the fetched indices.
    Inputs are replicate-padded to a multiple of ``store_stride`` (×2 with the pyramid) and
    outputs cropped back, so any ``h, w`` works.

    Args:
        num_feat: ``C`` (must be divisible by ``deformable_groups``).
        num_fe, num_ds, num_rec: residual blocks in FE, in each DS, in each ``R``.
        scale: 1, 2, 3 or 4.
        fetch_frames: ``M``; ``None`` reads every candidate.
        radius: ``r`` of the DF window on the pooled grid.
        key_channels: ``Ck`` (default ``max(16, C // 2)``); value channels are ``C // 2``.
        store_stride: average-pooling factor of store entries and queries.
        max_offset: DCN offset clamp in LR pixels.
        pyramid: 2-level PCD-like AF.
        use_af, use_df: ablations (AF off = unaligned adjacent states; DF off = no store).
        store_policy: ``"spread"`` or ``"nearest"``.
        lambda_s: weight of the structure term in :meth:`loss`.
    """

    kind = "spacetime"
    num_frames = 0

    def __init__(
        self,
        num_feat: int = 64,
        num_fe: int = 5,
        num_ds: int = 10,
        num_rec: int = 5,
        scale: int = 4,
        fetch_frames: int | None = 8,
        radius: int = 3,
        key_channels: int | None = None,
        store_stride: int = 2,
        deformable_groups: int = 8,
        max_offset: float | None = 10.0,
        pyramid: bool = False,
        use_af: bool = True,
        use_df: bool = True,
        store_policy: str = "spread",
        lambda_s: float = 0.25,
    ) -> None:
        super().__init__()
        if scale not in (1, 2, 3, 4):
            raise StvsrError(f"SFNet supports scale 1, 2, 3 or 4, got {scale}")
        if store_policy not in POLICIES:
            raise StvsrError(
                f"unknown store policy {store_policy!r}; choose one of {', '.join(POLICIES)}"
            )
        if fetch_frames is not None and int(fetch_frames) < 1:
            raise StvsrError(f"fetch_frames must be >= 1 or None (all), got {fetch_frames}")
        if num_feat % deformable_groups:
            raise StvsrError(f"num_feat {num_feat} must be divisible by {deformable_groups}")
        c = num_feat
        self.num_feat = c
        self.scale = scale
        self.fetch_frames = None if fetch_frames is None else int(fetch_frames)
        self.store_policy = store_policy
        self.store_stride = store_stride
        self.pyramid = pyramid
        self.use_af = use_af
        self.use_df = use_df
        self.lambda_s = lambda_s
        ck = key_channels or max(16, c // 2)
        cv = max(1, c // 2)
        common = dict(use_af=use_af, use_df=use_df, key_channels=ck, value_channels=cv,
                      radius=radius, store_stride=store_stride,
                      deformable_groups=deformable_groups, max_offset=max_offset,
                      pyramid=pyramid)
        self.fe = ConvResidualBlocks(3, c, num_fe)
        self.brm = RecurrentModule(c, num_ds, 1, **common)
        self.frm = RecurrentModule(c, num_ds, 2, **common)
        self.rec_s = Reconstruction(c, num_rec, scale)
        self.fuse_d = nn.Conv2d(2 * c, c, 1)
        self.rec_d = Reconstruction(c, num_rec, scale)
        self.lrelu = _lrelu()
        self.debug: dict[str, list[dict]] = {"brm": [], "frm": []}

    # ------------------------------------------------------------------ helpers

    def _multiple(self) -> int:
        m = max(1, self.store_stride) if self.use_df else 1
        return m * 2 if self.pyramid else m

    def _fe(self, x: Tensor) -> Tensor:
        """FE ``(N, 3, h, w) -> (N, C, h, w)`` with fused convs (same maths as ``self.fe``)."""
        main = self.fe.main
        if has_forward_hooks(self.fe) or has_forward_hooks(main) or has_forward_hooks(main[1]):
            return self.fe(x)
        return run_res_blocks(main[2], conv_act(main[0], x, "lrelu"))

    def _fetch(self, mod: RecurrentModule, feat: Tensor, k: int,
               stores: Sequence[dict[int, tuple[Tensor, Tensor]]],
               record: list[dict]) -> Tensor | None:
        """DF of step ``k`` over the union of ``stores`` (their keys are disjoint indices)."""
        cands = sorted(j for st in stores for j in st)
        chosen = select_fetch_indices(cands, k, self.fetch_frames, self.store_policy)
        record.append({"k": k, "store_sizes": [len(st) for st in stores],
                       "candidates": cands, "fetched": chosen})
        if not chosen:
            return None
        entries = [next(st[j] for st in stores if j in st) for j in chosen]
        keys = torch.stack([e[0] for e in entries], dim=1)
        values = torch.stack([e[1] for e in entries], dim=1)
        return mod.df(feat, keys, values)

    def _fr(self, z: Tensor, hb: Tensor, hf: Tensor) -> tuple[Tensor, Tensor]:
        """F&R of one step: ``z (B, 3, h, w)``, ``H^b, H^f (B, C, h, w)`` -> ``(I, S)``."""
        base = z if self.scale == 1 else F.interpolate(
            z, scale_factor=self.scale, mode="bilinear", align_corners=False)
        structure = self.rec_s(hb, add=base.contiguous(memory_format=_fmt(hb)))
        image = self.rec_d(conv_act(self.fuse_d, torch.cat([hf, hb], dim=1), "lrelu"),
                           add=structure)
        return image, structure

    # ------------------------------------------------------------------ forward

    def forward(self, x: Tensor, return_structure: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """``(B, n, 3, h, w)`` in ``[0, 1]`` -> ``(B, 2n-1, 3, s·h, s·w)`` (+ structure images)."""
        if x.dim() != 5 or x.shape[2] != 3:
            raise StvsrError(f"SFNet expects input (B, n, 3, h, w); got {tuple(x.shape)}")
        b, n, _, h, w = x.shape
        if n < 2:
            raise StvsrError(f"SFNet needs at least 2 input frames, got {n}")
        mult = self._multiple()
        ph, pw = (-h) % mult, (-w) % mult
        if ph or pw:
            x = F.pad(x.reshape(b * n, 3, h, w), (0, pw, 0, ph), mode="replicate")
            x = x.view(b, n, 3, h + ph, w + pw)
        hp, wp = h + ph, w + pw
        kk = 2 * n - 1
        z = x.new_empty(b, kk, 3, hp, wp)
        z[:, 0::2] = x
        z[:, 1::2] = 0.5 * (x[:, :-1] + x[:, 1:])
        zin = z.reshape(b * kk, 3, hp, wp)
        if not torch.is_grad_enabled():  # oneDNN inference is faster in channels-last here
            zin = zin.contiguous(memory_format=torch.channels_last)
        feats = self._fe(zin).view(b, kk, self.num_feat, hp, wp)
        self.debug = {"brm": [], "frm": [], "budget": self.fetch_frames}  # type: ignore[dict-item]

        # BRM: K-1 -> 0
        hb: list[Tensor] = [x.new_empty(0)] * kk
        store_b: dict[int, tuple[Tensor, Tensor]] = {}
        for k in range(kk - 1, -1, -1):
            feat = feats[:, k]
            adj = self.brm.adjacent(feat, [hb[k + 1] if k + 1 < kk else None])
            g = None
            if self.use_df:
                view = {j: e for j, e in store_b.items() if j >= k + 2}
                g = self._fetch(self.brm, feat, k, [view], self.debug["brm"])
                self.debug["brm"][-1]["store_sizes"] = [len(store_b)]
            hb[k] = self.brm.step(feat, adj, g)
            if self.use_df:
                store_b[k] = self.brm.store(hb[k])

        # FRM: 0 -> K-1, with F&R per step
        outs: list[Tensor] = []
        structs: list[Tensor] = []
        hf_prev: Tensor | None = None
        store_f: dict[int, tuple[Tensor, Tensor]] = {}
        for k in range(kk):
            feat = feats[:, k]
            adj = self.frm.adjacent(feat, [hf_prev, hb[k + 1] if k + 1 < kk else None])
            g = None
            if self.use_df:
                past = {j: e for j, e in store_f.items() if j <= k - 2}
                future = {j: e for j, e in store_b.items() if j >= k + 2}
                g = self._fetch(self.frm, feat, k, [past, future], self.debug["frm"])
                self.debug["frm"][-1]["store_sizes"] = [len(store_f), len(store_b)]
            hf = self.frm.step(feat, adj, g)
            if self.use_df:
                store_f[k] = self.frm.store(hf)
            img, st = self._fr(z[:, k], hb[k], hf)
            outs.append(img)
            structs.append(st)
            hf_prev = hf
        out = torch.stack(outs, dim=1)
        s = self.scale
        out = out[..., : s * h, : s * w]
        if return_structure:
            return out, torch.stack(structs, dim=1)[..., : s * h, : s * w]
        return out

    def loss(self, out: Tensor, structure: Tensor, gt: Tensor) -> Tensor:
        """:func:`sfnet_loss` with this model's ``lambda_s``."""
        return sfnet_loss(out, structure, gt, self.lambda_s)


# --------------------------------------------------------------------------- loss


def charbonnier(pred: Tensor, target: Tensor, eps: float = 1e-3) -> Tensor:
    """Mean Charbonnier penalty ``sqrt((pred - target)² + eps²)``."""
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def sfnet_loss(out: Tensor, structure: Tensor, gt: Tensor, lambda_s: float = 0.25) -> Tensor:
    """Training loss: Charbonnier(I, gt) + ``lambda_s`` · Charbonnier(S, gt) (ε = 1e-3).

    All three tensors ``(B, K, 3, s·h, s·w)``. ``lambda_s = 0.25`` is *design*.
    """
    return charbonnier(out, gt) + lambda_s * charbonnier(structure, gt)


# --------------------------------------------------------------------------- long videos


def window_plan(n: int, window: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Windows for :func:`sfnet_windowed`: ``[(a, b, t0, t1)]``.

    Window ``[a, b)`` of LR frames (at most ``window`` long, consecutive starts
    ``window - 2·overlap`` apart, the last one ending at ``n``) contributes its outputs for
    global output indices ``[t0, t1)``. Each output goes to the window in which it lies
    farthest from a window edge that is not a sequence end (ties: the earlier window), so
    every output index ``0 … 2n-2`` is produced exactly once and, where possible, at least
    ``2·overlap`` output steps from any seam.
    """
    if window < 2:
        raise StvsrError(f"window must be >= 2 LR frames, got {window}")
    if overlap < 0 or window - 2 * overlap < 1:
        raise StvsrError(f"overlap {overlap} needs 0 <= 2*overlap < window ({window})")
    if n <= window:
        return [(0, n, 0, 2 * n - 1)]
    step = window - 2 * overlap
    starts = list(range(0, n - window + 1, step))
    if starts[-1] + window < n:
        starts.append(n - window)
    wins = [(a, a + window) for a in starts]
    owner = []
    for t in range(2 * n - 1):
        best, best_d = 0, -1.0
        for i, (a, b) in enumerate(wins):
            lo, hi = 2 * a, 2 * (b - 1)
            if not lo <= t <= hi:
                continue
            dl = math.inf if a == 0 else t - lo
            dr = math.inf if b == n else hi - t
            d = min(dl, dr)
            if d > best_d:
                best, best_d = i, d
        owner.append(best)
    plan = []
    for i, (a, b) in enumerate(wins):
        ts = [t for t, o in enumerate(owner) if o == i]
        if ts:
            plan.append((a, b, ts[0], ts[-1] + 1))
    return plan


@torch.no_grad()
def sfnet_windowed(model: nn.Module, x: Tensor, window: int, overlap: int) -> Tensor:
    """Bounded-memory inference of any space-time model on a long sequence.

    ``x (B, n, 3, h, w) -> (B, 2n-1, 3, s·h, s·w)``. The model runs on windows of ``window``
    LR frames that overlap by ``overlap`` frames on each side; outputs near a window's inner
    edges are discarded and the rest stitched (:func:`window_plan`). Model memory depends on
    ``window``, not on ``n``; only the output tensor grows with ``n``.
    """
    b, n = x.shape[:2]
    plan = window_plan(n, window, overlap)
    out: Tensor | None = None
    for a, bb, t0, t1 in plan:
        y = model(x[:, a:bb])
        if isinstance(y, tuple):
            y = y[0]
        if out is None:
            out = y.new_empty(b, 2 * n - 1, *y.shape[2:])
        out[:, t0:t1] = y[:, t0 - 2 * a: t1 - 2 * a]
    assert out is not None
    return out


# --------------------------------------------------------------------------- warm start


def init_from_basicvsr(model: SFNet, state: dict[str, Tensor]) -> list[str]:
    """Copy matching BasicVSR weights into ``model``; returns the SFNet keys that were set.

    What is copied (only where shapes match, i.e. ``C = 64`` and ``s = 4`` for the tails):

    * ``brm.ds_body.i`` ← ``backward_trunk.main.2.i``; ``frm.ds_body.i`` ←
      ``forward_trunk.main.2.i`` (residual blocks of the propagation trunks);
    * ``fe.main.2.i`` ← ``backward_trunk.main.2.(n_ds + i)`` (the next unused trunk blocks);
    * ``rec_s`` and ``rec_d`` tails (``upconv1``, ``upconv2``, ``conv_hr``, ``conv_last``) ←
      BasicVSR's upsampler;
    * ``fuse_d`` ← ``fusion`` with its input halves swapped (BasicVSR concatenates
      (backward, forward), SFNet (``H^f``, ``H^b``)).

    AF, DF, the store heads, ``R_*.body`` and FE's first conv stay as initialised.
    """
    own = model.state_dict()
    mapping: dict[str, str] = {}
    n_ds = len(model.brm.ds_body)
    for prefix_dst, prefix_src, offset, count in (
        ("brm.ds_body", "backward_trunk.main.2", 0, n_ds),
        ("frm.ds_body", "forward_trunk.main.2", 0, len(model.frm.ds_body)),
        ("fe.main.2", "backward_trunk.main.2", n_ds, len(model.fe.main[2])),
    ):
        for i in range(count):
            for conv in ("conv1", "conv2"):
                for p in ("weight", "bias"):
                    mapping[f"{prefix_dst}.{i}.{conv}.{p}"] = (
                        f"{prefix_src}.{i + offset}.{conv}.{p}")
    for rec in ("rec_s", "rec_d"):
        for name in ("upconv1", "upconv2", "conv_hr", "conv_last"):
            for p in ("weight", "bias"):
                mapping[f"{rec}.{name}.{p}"] = f"{name}.{p}"
    new = {}
    for dst, src in mapping.items():
        if dst in own and src in state and state[src].shape == own[dst].shape:
            new[dst] = state[src]
    fw, fb = state.get("fusion.weight"), state.get("fusion.bias")
    if fw is not None and fb is not None and fw.shape == own["fuse_d.weight"].shape:
        c = fw.shape[1] // 2
        new["fuse_d.weight"] = torch.cat([fw[:, c:], fw[:, :c]], dim=1)
        new["fuse_d.bias"] = fb
    model.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in new.items()}})
    return sorted(new)


# --------------------------------------------------------------------------- presets

register_model(
    "sfnet", SFNet, num_feat=64, num_fe=5, num_ds=10, num_rec=5, fetch_frames=8, radius=3,
    description="SFNet store-and-fetch ST-VSR x4/x2t (C64, paper scale; project design, "
                "random initialisation until trained weights are registered)",
)
register_model(
    "sfnet-lite", SFNet, num_feat=32, num_fe=2, num_ds=3, num_rec=2, fetch_frames=4, radius=3,
    description="SFNet, paper design at small scale (C32) ST-VSR x4/x2t, CPU-trainable (random "
                "initialisation until trained weights are registered)",
)
