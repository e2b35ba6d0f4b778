"""SFNet: a store-and-fetch space-time video super-resolution network (×s in space, ×2 in time).

After "Store and Fetch Immediately: Everything Is All You Need for Space-Time Video
Super-resolution" (Hu et al., AAAI 2023) and its predecessor YOGO (ACM MM 2022). The authors
published no code; what is *fact* comes from the abstract and the architecture figure (two
recurrent modules BRM/FRM, each step = FE → AF + DF → DS emitting a hidden state and a store
entry; FRM reads BRM's hidden states and store; F&R emits structure, detail and final images).
Everything else — layer sizes, the DCN offset head, the local-window memory read used for DF,
the fetch budget and its selection rule, the store entry format, the loss weights, the boundary
handling — is **this project's design** (``docs/spec/sfnet.md``), marked *design* below.
This is not a bit-exact reproduction of the paper's network.

Shapes (``s`` = spatial scale, ``K = 2n - 1`` output frames)::

    forward(x: (B, n, 3, h, w)) -> (B, K, 3, s·h, s·w)
    forward(x, return_structure=True) -> (images, structures), both (B, K, 3, s·h, s·w)

Output ``2i`` restores input ``i``; output ``2i + 1`` is the new frame half way between inputs
``i`` and ``i + 1``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from stvsr.errors import StvsrError
from stvsr.models.blocks import ConvResidualBlocks
from stvsr.models.sfnet_blocks import (
    POLICIES,
    AdjacentFetch,
    DistantFetch,
    Reconstruction,
    RecurrentModule,
    leaky_relu,
    local_window_read,
    select_fetch_indices,
)
from stvsr.ops.fused import conv_act
from stvsr.registry import register_model

__all__ = [
    "SFNet",
    "AdjacentFetch",
    "DistantFetch",
    "Reconstruction",
    "select_fetch_indices",
    "local_window_read",
    "init_from_basicvsr",
]




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
        lambda_s: weight of the structure term of the training loss
            (:func:`stvsr.train.losses.spacetime_loss`).
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
        self.lrelu = leaky_relu()
        self.debug: dict[str, list[dict]] = {"brm": [], "frm": []}

    # ------------------------------------------------------------------ helpers

    def _multiple(self) -> int:
        m = max(1, self.store_stride) if self.use_df else 1
        return m * 2 if self.pyramid else m

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

    def reconstruct(self, z: Tensor, hb: Tensor, hf: Tensor) -> tuple[Tensor, Tensor]:
        """F&R of one step: ``z (B, 3, h, w)``, ``H^b, H^f (B, C, h, w)`` -> ``(I, S)``, both
        ``(B, 3, s·h, s·w)``."""
        base = z if self.scale == 1 else F.interpolate(
            z, scale_factor=self.scale, mode="bilinear", align_corners=False)
        structure = self.rec_s(hb, add=base)
        image = self.rec_d(conv_act(self.fuse_d, torch.cat([hf, hb], dim=1), self.lrelu),
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
        feats = self.fe(z.reshape(b * kk, 3, hp, wp)).view(b, kk, self.num_feat, hp, wp)
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
            img, st = self.reconstruct(z[:, k], hb[k], hf)
            outs.append(img)
            structs.append(st)
            hf_prev = hf
        out = torch.stack(outs, dim=1)
        s = self.scale
        out = out[..., : s * h, : s * w]
        if return_structure:
            return out, torch.stack(structs, dim=1)[..., : s * h, : s * w]
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
