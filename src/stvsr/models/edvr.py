"""EDVR (Wang et al., CVPR-W 2019): PCD alignment + TSA fusion, BasicSR-compatible parameters.

Every preset has exactly the parameter names, order and shapes of the official BasicSR
checkpoints (``docs/spec/edvr.md``). The forward pass is split into
reusable stages so that video inference can cache the per-frame work:

* :meth:`EDVR.extract_features` — per-frame feature pyramids ``(l1, l2, l3)``, independent of the
  window a frame ends up in;
* :meth:`EDVR.fuse_and_reconstruct` — PCD alignment of every window frame to the centre frame
  (per pair, not shareable), TSA fusion, reconstruction and the residual add.

:meth:`EDVR.convert_state_dict` translates the original 2019 release names and MMagic/MMEditing
names to BasicSR names before strict loading.

Extension (not in BasicSR): ``hr_in=True`` without predeblur uses the 2019 design — a stride-1
``conv_first`` followed by two stride-2 convs ``stride_conv_hr1/2`` (named like the predeblur
module's) — so that a shallow same-size EDVR can serve as the second stage of
:class:`TwoStageEDVR`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from stvsr.errors import StvsrError
from stvsr.models.blocks import ResidualBlockNoBN, make_layer
from stvsr.models.edvr_modules import (
    PCDAlignment,
    PredeblurModule,
    Pyramid,
    TSAFusion,
    conv_layer,
    leaky_relu,
)
from stvsr.ops.fused import conv_act, conv_shuffle_act
from stvsr.registry import register_model


class EDVR(nn.Module):
    """EDVR video restoration network (BasicSR parameter layout).

    ``forward(x)``: ``(B, T, 3, H, W)`` in [0, 1] with ``T == num_frame`` ->
    ``(B, 3, 4H, 4W)`` (``(B, 3, H, W)`` with ``hr_in``) restoring frame ``center_frame_idx``
    (default ``T // 2``). Any H, W: sizes that are not multiples of 4 (16 with ``hr_in``) are
    padded (reflect, or replicate for tiny frames) and the output is cropped back. No clamping.

    Precision follows the caller's autocast; the temporal-attention correlation and the final
    residual add run in fp32 whatever it is (the DCN op samples in fp32 too). For fast CPU
    inference (fused kernels, channels-last, cached PCD terms) wrap the model with
    :func:`stvsr.infer.optimize` (its EDVR speed paths: :mod:`stvsr.infer.optimize_edvr`).
    """

    kind = "window"

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_frame: int = 5,
        deformable_groups: int = 8,
        num_extract_block: int = 5,
        num_reconstruct_block: int = 10,
        center_frame_idx: int | None = None,
        hr_in: bool = False,
        with_predeblur: bool = False,
        with_tsa: bool = True,
    ) -> None:
        super().__init__()
        self.center_frame_idx = num_frame // 2 if center_frame_idx is None else center_frame_idx
        if not 0 <= self.center_frame_idx < num_frame:
            raise StvsrError(f"center_frame_idx must lie in [0, {num_frame}); pass a valid index")
        self.num_frames = num_frame
        self.num_feat = num_feat
        self.hr_in = hr_in
        self.with_predeblur = with_predeblur
        self.with_tsa = with_tsa
        self.scale = 1 if hr_in else 4
        self.multiple = 16 if hr_in else 4
        c = num_feat

        if with_predeblur:
            self.predeblur = PredeblurModule(num_in_ch, c, hr_in=hr_in)
            self.conv_1x1 = conv_layer(c, c, 1)
        else:
            self.conv_first = conv_layer(num_in_ch, c)
            if hr_in:  # 2019 design (conv_first_1/2/3), see module docstring
                self.stride_conv_hr1 = conv_layer(c, c, 3, 2)
                self.stride_conv_hr2 = conv_layer(c, c, 3, 2)
        self.feature_extraction = make_layer(ResidualBlockNoBN, num_extract_block, num_feat=c)
        self.conv_l2_1 = conv_layer(c, c, 3, 2)
        self.conv_l2_2 = conv_layer(c, c)
        self.conv_l3_1 = conv_layer(c, c, 3, 2)
        self.conv_l3_2 = conv_layer(c, c)
        self.pcd_align = PCDAlignment(c, deformable_groups)
        self.fusion: nn.Module
        if with_tsa:
            self.fusion = TSAFusion(c, num_frame, self.center_frame_idx)
        else:
            self.fusion = conv_layer(num_frame * c, c, 1)
        self.reconstruction = make_layer(ResidualBlockNoBN, num_reconstruct_block, num_feat=c)
        self.upconv1 = conv_layer(c, 4 * c)
        self.upconv2 = conv_layer(c, 4 * 64)
        self.conv_hr = conv_layer(64, 64)
        self.conv_last = conv_layer(64, num_out_ch)
        self.lrelu = leaky_relu()

    def _pad(self, x: Tensor) -> Tensor:
        """Pad ``(N, 3, H, W)`` at the bottom/right up to multiples of ``self.multiple``."""
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph == 0 and pw == 0:
            return x
        mode = "reflect" if ph < h and pw < w else "replicate"
        return F.pad(x, (0, pw, 0, ph), mode=mode)

    # ------------------------------------------------------------------ stages
    def extract_features(self, frames: Tensor) -> list[Pyramid]:
        """Per-frame feature pyramids.

        Args:
            frames: ``(B, T, 3, H, W)`` for any ``T`` (each frame is independent).

        Returns:
            ``T`` tuples ``(l1, l2, l3)`` of shapes ``(B, C, h, w)``, ``(B, C, h/2, w/2)``,
            ``(B, C, h/4, w/4)`` with ``h, w`` the padded size (divided by 4 with ``hr_in``).
        """
        if frames.dim() != 5:
            raise StvsrError(f"EDVR expects (B, T, 3, H, W) frames, got {tuple(frames.shape)}")
        b, t = frames.shape[:2]
        levels = [lv.unflatten(0, (b, t))
                  for lv in self.feature_pyramid(self._pad(frames.flatten(0, 1)))]
        return [(levels[0][:, i], levels[1][:, i], levels[2][:, i]) for i in range(t)]

    def feature_pyramid(self, x: Tensor) -> Pyramid:
        """Feature extraction and the L2 / L3 levels of padded frames: ``x (N, 3, H, W)`` ->
        ``(l1, l2, l3)``, ``(N, C, h, w)``, ``(N, C, h/2, w/2)``, ``(N, C, h/4, w/4)``."""
        if self.with_predeblur:
            l1 = self.conv_1x1(self.predeblur(x))
        else:
            l1 = conv_act(self.conv_first, x, self.lrelu)
            if self.hr_in:
                l1 = conv_act(self.stride_conv_hr1, l1, self.lrelu)
                l1 = conv_act(self.stride_conv_hr2, l1, self.lrelu)
        l1 = self.feature_extraction(l1)
        l2 = conv_act(self.conv_l2_2, conv_act(self.conv_l2_1, l1, self.lrelu), self.lrelu)
        l3 = conv_act(self.conv_l3_2, conv_act(self.conv_l3_1, l2, self.lrelu), self.lrelu)
        return l1, l2, l3

    def align(self, pyramids: Sequence[Pyramid]) -> list[Tensor]:
        """PCD alignment of every window frame to the centre one: ``num_frame`` pyramids ->
        ``num_frame`` aligned features ``(B, C, h, w)``."""
        ref = pyramids[self.center_frame_idx]
        return [self.pcd_align(nbr, ref) for nbr in pyramids]

    def fuse_and_reconstruct(self, pyramids: Sequence[Pyramid], centre_lr: Tensor) -> Tensor:
        """Align, fuse and reconstruct one window.

        Args:
            pyramids: ``num_frame`` pyramids from :meth:`extract_features`, in window order.
            centre_lr: the unpadded input frame at ``center_frame_idx``, ``(B, 3, H, W)``.

        Returns:
            ``(B, 3, s·H, s·W)`` in float32 (float64 for a float64 model).
        """
        if len(pyramids) != self.num_frames:
            raise StvsrError(
                f"EDVR was built for {self.num_frames}-frame windows, got {len(pyramids)} frames"
            )
        h, w = centre_lr.shape[-2:]
        aligned = self.align(pyramids)
        if self.with_tsa:
            feat = self.fusion(aligned)
        else:
            feat = conv_act(self.fusion, torch.cat(aligned, dim=1))
        del aligned
        out = self.reconstruction(feat)
        out = conv_shuffle_act(self.upconv1, out, 2, self.lrelu)
        out = conv_shuffle_act(self.upconv2, out, 2, self.lrelu)
        out = conv_act(self.conv_hr, out, self.lrelu)
        out = conv_act(self.conv_last, out)
        with torch.autocast(centre_lr.device.type, enabled=False):  # residual add in fp32
            dt = torch.promote_types(out.dtype, torch.float32)  # fp32 (also under autocast), fp64
            base = self._pad(centre_lr.to(dt))
            if not self.hr_in:
                base = F.interpolate(base, scale_factor=4, mode="bilinear", align_corners=False)
            out = out.to(dt) + base
        s = self.scale
        return out[..., : s * h, : s * w].contiguous()

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, 3, H, W) -> (B, 3, s·H, s·W)``; see the class docstring."""
        if x.dim() != 5 or x.shape[1] != self.num_frames:
            raise StvsrError(
                f"EDVR expects (B, {self.num_frames}, 3, H, W) input, got {tuple(x.shape)}"
            )
        pyramids = self.extract_features(x)
        return self.fuse_and_reconstruct(pyramids, x[:, self.center_frame_idx])

    # ------------------------------------------------------------------ checkpoints
    def convert_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Translate 2019-release or MMagic/MMEditing key names to BasicSR names.

        BasicSR names pass unchanged. ``params``/``params_ema`` containers and a ``module.``
        prefix are removed upstream (:func:`stvsr.weights.unwrap_state_dict`); a leftover
        ``module.`` prefix is stripped here too. For MMagic files only ``generator.*`` keys
        are kept (data-preprocessor buffers and counters are not network weights).
        """
        return convert_edvr_state_dict(state)


# --------------------------------------------------------------------------- key conversion

_RULES_2019: list[tuple[str, str]] = [
    (r"^fea_L([23])_conv([12])\.", r"conv_l\1_\2."),
    (r"^pcd_align\.L([123])_offset_conv([123])\.", r"pcd_align.offset_conv\2.l\1."),
    (r"^pcd_align\.L([123])_dcnpack\.conv_offset(_mask)?\.",
     r"pcd_align.dcn_pack.l\1.conv_offset."),
    (r"^pcd_align\.L([123])_dcnpack\.", r"pcd_align.dcn_pack.l\1."),
    (r"^pcd_align\.L([123])_fea_conv\.", r"pcd_align.feat_conv.l\1."),
    (r"^pcd_align\.cas_dcnpack\.conv_offset_mask\.", "pcd_align.cas_dcnpack.conv_offset."),
    (r"^tsa_fusion\.tAtt_1\.", "fusion.temporal_attn2."),  # tAtt_1 embeds every frame
    (r"^tsa_fusion\.tAtt_2\.", "fusion.temporal_attn1."),  # tAtt_2 embeds the centre frame
    (r"^tsa_fusion\.fea_fusion\.", "fusion.feat_fusion."),
    (r"^tsa_fusion\.sAtt_([1-5])\.", r"fusion.spatial_attn\1."),
    (r"^tsa_fusion\.sAtt_L([123])\.", r"fusion.spatial_attn_l\1."),
    (r"^tsa_fusion\.sAtt_add_([12])\.", r"fusion.spatial_attn_add\1."),
    (r"^tsa_fusion\.(weight|bias)$", r"fusion.\1"),  # woTSA: one 1x1 conv
    (r"^recon_trunk\.", "reconstruction."),
    (r"^HRconv\.", "conv_hr."),
    (r"^pre_deblur\.", "predeblur."),
    (r"^(predeblur\.)?conv_first_1\.", r"\1conv_first."),
    (r"^(predeblur\.)?conv_first_2\.", r"\1stride_conv_hr1."),
    (r"^(predeblur\.)?conv_first_3\.", r"\1stride_conv_hr2."),
    (r"^predeblur\.deblur_L([23])_conv\.", r"predeblur.stride_conv_l\1."),
    (r"^predeblur\.RB_L2_([12])\.", r"predeblur.resblock_l2_\1."),
    (r"^predeblur\.RB_L3_1\.", "predeblur.resblock_l3."),
]
_RB_L1 = re.compile(r"^predeblur\.RB_L1_([1-5])\.")
_MARK_2019 = re.compile(
    r"^(fea_L[23]_|pcd_align\.L[123]_|pcd_align\.cas_dcnpack\.conv_offset_mask|tsa_fusion\.|"
    r"recon_trunk\.|HRconv\.|pre_deblur\.|conv_first_[123]\.)"
)

_RULES_MMAGIC: list[tuple[str, str]] = [
    (r"^pcd_alignment\.", "pcd_align."),
    (r"^feat_l([23])_conv([12])\.", r"conv_l\1_\2."),
    (r"^upsample([12])\.upsample_conv\.", r"upconv\1."),
    (r"\.conv\.(weight|bias)$", r".\1"),  # ConvModule wrapper
]


def _apply(rules: list[tuple[str, str]], key: str) -> str:
    for pat, rep in rules:
        key = re.sub(pat, rep, key)
    return key


def convert_edvr_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename 2019-release / MMagic EDVR keys to BasicSR's; BasicSR keys pass unchanged."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if any(k.startswith("generator.") for k in state):
        state = {k[len("generator."):]: v for k, v in state.items() if k.startswith("generator.")}
    out: dict[str, Tensor] = {}
    is_2019 = any(_MARK_2019.match(k) for k in state)
    is_mmagic = any(k.startswith(("pcd_alignment.", "feat_l2_conv", "upsample1.")) for k in state)
    for key, value in state.items():
        new = key
        if is_2019:
            new = _apply(_RULES_2019, new)
            new = _RB_L1.sub(lambda m: f"predeblur.resblock_l1.{int(m.group(1)) - 1}.", new)
        if is_mmagic:
            new = _apply(_RULES_MMAGIC, new)
        out[new] = value
    return out


# --------------------------------------------------------------------------- two stages


class TwoStageEDVR(nn.Module):
    """Two chained EDVRs (the paper's NTIRE setting): restore, then refine the centre.

    Stage 1 (``T1`` frames, scale ``s1``) restores each of the ``T2`` frames that stage 2
    (``hr_in=True``, scale 1, ``T2`` frames) needs, from the ``T1`` inputs around it; stage 2
    refines the centre one from those restored frames.

    ``forward(x)``: ``(B, T, 3, H, W)`` with ``T = (T1 - 1) + (T2 - 1) + 1`` -> the centre frame
    ``(B, 3, s1·H, s1·W)``. Stage-1 features are extracted once for all ``T`` frames and shared
    by the ``T2`` stage-1 windows.
    """

    kind = "window"

    def __init__(self, stage1: EDVR, stage2: EDVR) -> None:
        super().__init__()
        if stage2.scale != 1:
            raise StvsrError("stage 2 of TwoStageEDVR must keep the size; build it with hr_in=True")
        if stage1.center_frame_idx != stage1.num_frames // 2 or (
            stage2.center_frame_idx != stage2.num_frames // 2
        ):
            raise StvsrError("TwoStageEDVR needs both stages to restore their middle frame")
        self.stage1 = stage1
        self.stage2 = stage2
        self.scale = stage1.scale * stage2.scale
        self.num_frames = (stage1.num_frames - 1) + (stage2.num_frames - 1) + 1

    def stage1_outputs(self, x: Tensor) -> Tensor:
        """Stage-1 restorations of the ``T2`` frames around the centre: ``(B, T2, 3, sH, sW)``."""
        t1 = self.stage1.num_frames
        pyr = self.stage1.extract_features(x)
        outs = [
            self.stage1.fuse_and_reconstruct(pyr[j : j + t1], x[:, j + t1 // 2])
            for j in range(self.stage2.num_frames)
        ]
        return torch.stack(outs, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, 3, H, W) -> (B, 3, s1·H, s1·W)``; see the class docstring."""
        if x.dim() != 5 or x.shape[1] != self.num_frames:
            raise StvsrError(
                f"TwoStageEDVR expects (B, {self.num_frames}, 3, H, W) input, got {tuple(x.shape)}"
            )
        return self.stage2(self.stage1_outputs(x))

    def convert_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Convert ``stage1.``/``stage2.`` keys like :meth:`EDVR.convert_state_dict` does."""
        if state and all(k.startswith("module.") for k in state):
            state = {k[len("module."):]: v for k, v in state.items()}
        out: dict[str, Tensor] = {}
        for prefix in ("stage1.", "stage2."):
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            out.update({prefix + k: v for k, v in convert_edvr_state_dict(sub).items()})
        out.update({k: v for k, v in state.items() if not k.startswith(("stage1.", "stage2."))})
        return out


def build_two_stage(
    stage1: dict | None = None, stage2: dict | None = None, **common: object
) -> TwoStageEDVR:
    """``TwoStageEDVR(EDVR(**stage1), EDVR(hr_in=True, **stage2))``; ``common`` goes to both."""
    s1 = EDVR(**{**common, **(stage1 or {})})  # type: ignore[arg-type]
    s2 = EDVR(**{**common, "hr_in": True, **(stage2 or {})})  # type: ignore[arg-type]
    return TwoStageEDVR(s1, s2)


# --------------------------------------------------------------------------- presets

_OFFICIAL = "official BasicSR checkpoint {}.pth (not bundled; pass it with --weights FILE)"
_PRESETS: dict[str, tuple[str, str, dict]] = {
    "edvr-m": ("EDVR_M_x4_SR_REDS_official-32075921", "EDVR-M x4 SR (REDS), 5 frames, TSA", {}),
    "edvr-m-wotsa": (
        "EDVR_M_woTSA_x4_SR_REDS_official-1edf645c",
        "EDVR-M x4 SR (REDS) without TSA",
        {"with_tsa": False},
    ),
    "edvr-l": (
        "EDVR_L_x4_SR_REDS_official-9f5f5039",
        "EDVR-L x4 SR (REDS), 5 frames",
        {"num_feat": 128, "num_reconstruct_block": 40},
    ),
    "edvr-l-vimeo": (
        "EDVR_L_x4_SR_Vimeo90K_official-162b54e4",
        "EDVR-L x4 SR (Vimeo-90K), 7 frames",
        {"num_feat": 128, "num_reconstruct_block": 40, "num_frame": 7},
    ),
    "edvr-l-srblur": (
        "EDVR_L_x4_SRblur_REDS_official-983d7b8e",
        "EDVR-L x4 SR of blurred input (REDS), predeblur",
        {"num_feat": 128, "num_reconstruct_block": 40, "with_predeblur": True},
    ),
    "edvr-l-deblur": (
        "EDVR_L_deblur_REDS_official-ca46bd8c",
        "EDVR-L deblurring (REDS), same size",
        {"num_feat": 128, "num_reconstruct_block": 40, "with_predeblur": True, "hr_in": True},
    ),
    "edvr-l-deblurcomp": (
        "EDVR_L_deblurcomp_REDS_official-0e988e5c",
        "EDVR-L deblurring + decompression (REDS), same size",
        {"num_feat": 128, "num_reconstruct_block": 40, "with_predeblur": True, "hr_in": True},
    ),
}

for _name, (_file, _desc, _kw) in _PRESETS.items():
    register_model(_name, EDVR, weights=None, description=f"{_desc}; {_OFFICIAL.format(_file)}",
                   **_kw)

register_model(
    "edvr-two-stage",
    build_two_stage,
    weights=None,
    description="EDVR-M x4 followed by a shallow same-size EDVR (C64, 5 recon blocks) refining "
    "the centre frame; 9 input frames; no official weights",
    stage1={},
    stage2={"num_reconstruct_block": 5},
)
