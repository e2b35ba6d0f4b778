"""EDVR: official parameter layouts, shapes, checkpoint formats, precision, two-stage chaining."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from _helpers import randomize_params
from torch.nn import functional as F  # noqa: N812

from stvsr.errors import CheckpointError, StvsrError
from stvsr.infer import optimize, optimize_edvr
from stvsr.infer.overrides import bound
from stvsr.models.edvr import EDVR, TSAFusion, TwoStageEDVR, convert_edvr_state_dict
from stvsr.ops.fused import FastKernels, fast_kernels
from stvsr.registry import create_model, get_spec
from stvsr.weights import load_state_dict_strict, load_weights

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
PARAMS = {
    "edvr-m": 3_300_131,
    "edvr-m-wotsa": 2_996_259,
    "edvr-l": 20_633_827,
    "edvr-l-vimeo": 20_699_363,
    "edvr-l-srblur": 23_306_851,
    "edvr-l-deblur": 23_602_019,
    "edvr-l-deblurcomp": 23_602_019,
}
# official file-name prefix (TSV section header) -> presets it describes
SECTIONS = {
    "EDVR_M_x4_SR_REDS_official": ["edvr-m"],
    "EDVR_M_woTSA_x4_SR_REDS_official": ["edvr-m-wotsa"],
    "EDVR_L_x4_SR_REDS_official": ["edvr-l"],
    "EDVR_L_x4_SR_Vimeo90K_official": ["edvr-l-vimeo"],
    "EDVR_L_x4_SRblur_REDS_official": ["edvr-l-srblur"],
    "EDVR_L_deblur_REDS_official": ["edvr-l-deblur", "edvr-l-deblurcomp"],
}


def _parse_tsv(path: Path) -> dict[str, list[tuple[str, tuple[int, ...]]]]:
    sections: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    cur: list | None = None
    for line in path.read_text().splitlines():
        if line.startswith("## EDVR_"):
            cur = sections.setdefault(line[3:].split("-")[0], [])
        elif line and not line.startswith("#"):
            key, shape = line.split("\t")
            assert cur is not None
            cur.append((key, tuple(int(v) for v in re.findall(r"\d+", shape))))
    return sections


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    return torch.rand(1, 5, 3, 16, 20, generator=torch.Generator().manual_seed(1))


# --------------------------------------------------------------------------- layouts


def _build_meta(name: str) -> torch.nn.Module:
    """Preset ``name`` built on the meta device: shapes only, no memory, no init cost."""
    spec = get_spec(name)
    with torch.device("meta"):
        return spec.builder(**spec.kwargs)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_param_count_and_attrs(name: str) -> None:
    model = _build_meta(name)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]
    assert model.kind == "window"
    assert model.scale == (1 if "deblur" in name else 4)
    assert model.num_frames == (7 if name == "edvr-l-vimeo" else 5)
    assert "official" in get_spec(name).description and get_spec(name).weights is None


def test_real_build_matches_meta_build() -> None:
    real = create_model("edvr-m-wotsa", weights=None)
    assert sum(p.numel() for p in real.parameters()) == PARAMS["edvr-m-wotsa"]
    assert not real.training and not real.pretrained


def test_state_dict_layout_matches_official() -> None:
    """Names, order and shapes of every preset equal the official checkpoints' (the key list in
    ``docs/spec/edvr-state-dict-keys.tsv``)."""
    sections = _parse_tsv(REPO / "docs" / "spec" / "edvr-state-dict-keys.tsv")
    assert set(sections) == set(SECTIONS)
    for section, presets in SECTIONS.items():
        for name in presets:
            model = _build_meta(name)
            ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
            assert ours == sections[section], name  # names, order and shapes


# --------------------------------------------------------------------------- forward


@pytest.mark.parametrize("hw", [(16, 16), (14, 19), (3, 2)])
def test_forward_shapes_any_size(edvr_m: EDVR, hw: tuple[int, int]) -> None:
    x = torch.rand(2, 5, 3, *hw)
    with torch.no_grad():
        y = edvr_m(x)
    assert y.shape == (2, 3, 4 * hw[0], 4 * hw[1]) and y.dtype == torch.float32
    assert torch.isfinite(y).all()


def test_padding_is_bottom_right_and_cropped(edvr_m: EDVR) -> None:
    x = torch.rand(1, 5, 3, 14, 19)
    xp = F.pad(x.flatten(0, 1), (0, 1, 0, 2), mode="reflect").unflatten(0, (1, 5))
    with torch.no_grad():
        y, yp = edvr_m(x), edvr_m(xp)
    torch.testing.assert_close(y, yp[..., :56, :76], atol=1e-5, rtol=0)


@pytest.mark.parametrize("predeblur", [True, False])
def test_hr_in_same_size(predeblur: bool) -> None:
    torch.manual_seed(0)
    model = EDVR(num_feat=16, num_reconstruct_block=1, with_predeblur=predeblur, hr_in=True).eval()
    assert model.scale == 1
    x = torch.rand(1, 5, 3, 20, 30)  # not multiples of 16
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 3, 20, 30)


def test_seven_frames_and_wrong_t() -> None:
    model = EDVR(num_feat=16, num_frame=7, num_reconstruct_block=1).eval()
    assert model.center_frame_idx == 3
    with torch.no_grad():
        assert model(torch.rand(1, 7, 3, 16, 16)).shape == (1, 3, 64, 64)
    with pytest.raises(StvsrError, match="7"):
        model(torch.rand(1, 5, 3, 16, 16))


def test_zero_residual_gives_bilinear_base(frames: torch.Tensor) -> None:
    """With conv_last zeroed the output is exactly the bilinear x4 of the centre frame."""
    model = EDVR(num_feat=16, num_reconstruct_block=1).eval()
    with torch.no_grad():
        model.conv_last.weight.zero_()
        model.conv_last.bias.zero_()
        y = model(frames)
    base = F.interpolate(frames[:, 2], scale_factor=4, mode="bilinear", align_corners=False)
    torch.testing.assert_close(y, base, atol=1e-6, rtol=0)


def test_stages_compose_to_forward(edvr_m: EDVR, frames: torch.Tensor) -> None:
    with torch.no_grad():
        pyr = edvr_m.extract_features(frames)
        assert len(pyr) == 5 and pyr[0][0].shape == (1, 64, 16, 20)
        assert pyr[0][1].shape == (1, 64, 8, 10) and pyr[0][2].shape == (1, 64, 4, 5)
        # per-frame extraction is independent of the other frames of the window
        single = edvr_m.extract_features(frames[:, 3:4])[0]
        torch.testing.assert_close(single[0], pyr[3][0], atol=1e-5, rtol=0)
        y = edvr_m.fuse_and_reconstruct(pyr, frames[:, 2])
    torch.testing.assert_close(y, edvr_m(frames), atol=1e-6, rtol=0)


def test_optimized_matches_plain_and_leaves_the_model_alone(
    edvr_m: EDVR, frames: torch.Tensor
) -> None:
    before = {k: v.clone() for k, v in edvr_m.state_dict().items()}
    with torch.no_grad():
        a = edvr_m(frames)
        b = optimize(edvr_m, "cpu", "fp32")(frames)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # plain NCHW parameters, untouched; no caches stored on the modules
    assert edvr_m.conv_first.weight.is_contiguous()
    assert all(torch.equal(v, edvr_m.state_dict()[k]) for k, v in before.items())
    assert not any(k.startswith("_stvsr") for m in edvr_m.modules() for k in vars(m))


def test_bf16_close_to_fp32(edvr_m: EDVR, frames: torch.Tensor) -> None:
    with torch.no_grad():
        ref = edvr_m(frames)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # the plain model follows autocast
            y = edvr_m(frames)
        y2 = optimize(edvr_m, "cpu", "bf16")(frames)
    diff = (y - ref).abs().max().item()
    diff2 = (y2 - ref).abs().max().item()
    print(f"bf16 vs fp32 max abs diff: plain {diff:.2e}, optimized {diff2:.2e}")
    assert y.dtype == y2.dtype == torch.float32 and 0 < diff < 0.05 and 0 < diff2 < 0.05
    with pytest.raises(StvsrError, match="precision"):
        optimize(edvr_m, "cpu", "fp8")


# --------------------------------------------------------------------------- checkpoints


def _to_2019(key: str, hr_in: bool = False) -> str:
    """BasicSR name -> original 2019 EDVR release name (written independently of the model).

    The 2019 code names the first conv ``conv_first`` for LR input and ``conv_first_1/2/3`` (the
    last two strided) for HR input, at the top level or inside ``pre_deblur``.
    """
    rules = [
        (r"^conv_l([23])_([12])\.", r"fea_L\1_conv\2."),
        (r"^pcd_align\.offset_conv([123])\.l([123])\.", r"pcd_align.L\2_offset_conv\1."),
        (r"^pcd_align\.dcn_pack\.l([123])\.conv_offset\.",
         r"pcd_align.L\1_dcnpack.conv_offset_mask."),
        (r"^pcd_align\.dcn_pack\.l([123])\.", r"pcd_align.L\1_dcnpack."),
        (r"^pcd_align\.feat_conv\.l([123])\.", r"pcd_align.L\1_fea_conv."),
        (r"^pcd_align\.cas_dcnpack\.conv_offset\.", "pcd_align.cas_dcnpack.conv_offset_mask."),
        (r"^fusion\.temporal_attn1\.", "tsa_fusion.tAtt_2."),
        (r"^fusion\.temporal_attn2\.", "tsa_fusion.tAtt_1."),
        (r"^fusion\.feat_fusion\.", "tsa_fusion.fea_fusion."),
        (r"^fusion\.spatial_attn_l([123])\.", r"tsa_fusion.sAtt_L\1."),
        (r"^fusion\.spatial_attn_add([12])\.", r"tsa_fusion.sAtt_add_\1."),
        (r"^fusion\.spatial_attn([1-5])\.", r"tsa_fusion.sAtt_\1."),
        (r"^fusion\.(weight|bias)$", r"tsa_fusion.\1"),
        (r"^reconstruction\.", "recon_trunk."),
        (r"^conv_hr\.", "HRconv."),
        (r"^predeblur\.", "pre_deblur."),
        (r"^(pre_deblur\.)?conv_first\.", r"\1conv_first_1." if hr_in else r"\1conv_first."),
        (r"^(pre_deblur\.)?stride_conv_hr([12])\.", lambda m: f"{m.group(1) or ''}conv_first_"
         f"{int(m.group(2)) + 1}."),
        (r"^pre_deblur\.stride_conv_l([23])\.", r"pre_deblur.deblur_L\1_conv."),
        (r"^pre_deblur\.resblock_l1\.([0-4])\.",
         lambda m: f"pre_deblur.RB_L1_{int(m.group(1)) + 1}."),
        (r"^pre_deblur\.resblock_l2_([12])\.", r"pre_deblur.RB_L2_\1."),
        (r"^pre_deblur\.resblock_l3\.", "pre_deblur.RB_L3_1."),
    ]
    for pat, rep in rules:
        key = re.sub(pat, rep, key)
    return key


_MM_WRAPPED = re.compile(
    r"^(pcd_alignment\.(offset_conv[123]\.l[123]|feat_conv\.l[12]|cas_offset_conv[12])|"
    r"feat_l[23]_conv[12]|fusion\.(feat_fusion|spatial_attn[1-4]|spatial_attn_l[123]|"
    r"spatial_attn_add1))\.(weight|bias)$"
)


def _to_mmagic(key: str) -> str:
    """BasicSR name -> MMagic ``EDVRNet`` name (ConvModule-wrapped convs get ``.conv.``)."""
    key = re.sub(r"^pcd_align\.", "pcd_alignment.", key)
    key = re.sub(r"^conv_l([23])_([12])\.", r"feat_l\1_conv\2.", key)
    key = re.sub(r"^upconv([12])\.", r"upsample\1.upsample_conv.", key)
    if _MM_WRAPPED.match(key):
        key = re.sub(r"\.(weight|bias)$", r".conv.\1", key)
    return "generator." + key


def test_checkpoint_formats_load_identically(
    edvr_m: EDVR, frames: torch.Tensor, tmp_path: Path
) -> None:
    sd = {k: v.clone() for k, v in edvr_m.state_dict().items()}
    with torch.no_grad():
        ref = edvr_m(frames)
    junk = {k: torch.zeros_like(v) for k, v in sd.items()}
    formats = {
        "basicsr": {"params": sd},
        "ema": {"params": junk, "params_ema": sd},
        "module": {"params": {"module." + k: v for k, v in sd.items()}},
        "2019": {_to_2019(k): v for k, v in sd.items()},
        "mmagic": {
            "meta": {"epoch": 1},
            "state_dict": {
                **{_to_mmagic(k): v for k, v in sd.items()},
                "data_preprocessor.mean": torch.zeros(1, 3, 1, 1),
            },
        },
    }
    assert "tsa_fusion.tAtt_1.weight" in formats["2019"]
    assert "generator.pcd_alignment.offset_conv1.l3.conv.weight" in formats["mmagic"]["state_dict"]
    assert "generator.upsample1.upsample_conv.weight" in formats["mmagic"]["state_dict"]
    path = tmp_path / "basicsr.pth"
    torch.save(formats["basicsr"], path)
    model = create_model("edvr-m", weights=path)  # the file path through the registry
    assert model.pretrained and model.weights_source == str(path)
    for fmt, obj in formats.items():
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
        path = tmp_path / f"{fmt}.pth"
        torch.save(obj, path)
        load_weights(model, path)
        with torch.no_grad():
            out = model(frames)
        torch.testing.assert_close(out, ref, atol=0, rtol=0, msg=fmt)


def test_2019_predeblur_hr_in_names() -> None:
    torch.manual_seed(0)
    for predeblur in (True, False):
        src = randomize_params(EDVR(num_feat=16, num_reconstruct_block=1, with_predeblur=predeblur,
                              hr_in=True))
        old = {_to_2019(k, hr_in=True): v for k, v in src.state_dict().items()}
        assert ("pre_deblur.RB_L1_5.conv2.weight" in old) == predeblur
        assert any(k.endswith("conv_first_3.weight") for k in old)
        dst = EDVR(num_feat=16, num_reconstruct_block=1, with_predeblur=predeblur, hr_in=True)
        load_state_dict_strict(dst, old)
        for k, v in src.state_dict().items():
            assert torch.equal(dst.state_dict()[k], v), k


def test_2019_temporal_attention_swap() -> None:
    """tAtt_1 embeds every frame (-> temporal_attn2), tAtt_2 the centre (-> temporal_attn1)."""
    model = create_model("edvr-m", weights=None)
    old = {_to_2019(k): v.clone() for k, v in model.state_dict().items()}
    old["tsa_fusion.tAtt_1.weight"].fill_(1.0)
    old["tsa_fusion.tAtt_2.weight"].fill_(2.0)
    load_state_dict_strict(model, old)
    assert bool((model.fusion.temporal_attn2.weight == 1.0).all())
    assert bool((model.fusion.temporal_attn1.weight == 2.0).all())

    # Semantics: a 2019-style temporal attention written out with the 2019 names.
    torch.manual_seed(0)
    tsa = randomize_params(TSAFusion(num_feat=8, num_frame=3, center_frame_idx=1))
    old = {_to_2019("fusion." + k)[len("tsa_fusion."):]: v for k, v in tsa.state_dict().items()}
    feats = [torch.randn(1, 8, 8, 8) for _ in range(3)]
    emb_ref = F.conv2d(feats[1], old["tAtt_2.weight"], old["tAtt_2.bias"], padding=1)
    probs = [
        torch.sigmoid((F.conv2d(f, old["tAtt_1.weight"], old["tAtt_1.bias"], padding=1)
                       * emb_ref).sum(1, keepdim=True))
        for f in feats
    ]
    weighted = torch.cat([f * p for f, p in zip(feats, probs)], dim=1)
    expect = F.leaky_relu(F.conv2d(weighted, old["fea_fusion.weight"], old["fea_fusion.bias"]), 0.1)
    with torch.no_grad():
        captured = {}
        hook = tsa.feat_fusion.register_forward_hook(lambda m, i, o: captured.setdefault("o", o))
        tsa(feats)
        hook.remove()
    torch.testing.assert_close(F.leaky_relu(captured["o"], 0.1), expect, atol=1e-5, rtol=0)


def test_basicsr_names_pass_unchanged(edvr_m: EDVR) -> None:
    sd = edvr_m.state_dict()
    assert list(convert_edvr_state_dict(dict(sd))) == list(sd)


@pytest.mark.parametrize(
    ("src", "dst", "key"),
    [
        ("edvr-l", "edvr-m", "conv_first.weight"),
        ("edvr-m-wotsa", "edvr-m", "fusion.temporal_attn1.weight"),
        ("edvr-m", "edvr-m-wotsa", "fusion.weight"),
    ],
)
def test_wrong_checkpoint_is_one_line_error(src: str, dst: str, key: str, tmp_path: Path) -> None:
    # shapes are all that matters here: zero-stride stand-ins for the source preset's tensors
    fake = {k: torch.zeros(()).expand(v.shape) for k, v in _build_meta(src).state_dict().items()}
    model = create_model(dst, weights=None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        load_state_dict_strict(model, {"params": fake}, source=f"{src}.pth")
    msg = str(info.value)
    assert "\n" not in msg and repr(key) in msg and f"{src}.pth" in msg
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_wrong_checkpoint_file_via_create_model(tmp_path: Path) -> None:
    path = tmp_path / "wotsa.pth"
    torch.save({"params": create_model("edvr-m-wotsa", weights=None).state_dict()}, path)
    with pytest.raises(CheckpointError, match="fusion.temporal_attn1.weight"):
        create_model("edvr-m", weights=path)


# --------------------------------------------------------------------------- two stages


def test_two_stage_composes(frames: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = create_model("edvr-two-stage", weights=None)
    assert isinstance(model, TwoStageEDVR)
    randomize_params(model)
    assert (model.kind, model.scale, model.num_frames) == ("window", 4, 9)
    assert model.stage2.hr_in and len(model.stage2.reconstruction) == 5
    x = torch.rand(1, 9, 3, 8, 12, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = model(x)
        mids = model.stage1_outputs(x)
        # stage-2 input equals the stage-1 outputs of the five 5-frame windows
        stage1 = torch.stack([model.stage1(x[:, j : j + 5]) for j in range(5)], dim=1)
        torch.testing.assert_close(mids, stage1, atol=1e-5, rtol=0)
        torch.testing.assert_close(y, model.stage2(stage1), atol=1e-5, rtol=0)
    assert y.shape == (1, 3, 32, 48)
    # checkpoints of a two-stage model round-trip through the converter (2019 names per stage)
    sd = model.state_dict()
    old = {
        k.split(".", 1)[0] + "." + _to_2019(k.split(".", 1)[1], hr_in=k.startswith("stage2.")): v
        for k, v in sd.items()
    }
    fresh = create_model("edvr-two-stage", weights=None)
    load_state_dict_strict(fresh, old)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in sd.items())


@pytest.mark.parametrize("channels_last", [False, True])
def test_tsa_inference_path_matches_autograd_path(channels_last: bool) -> None:
    """TSA's fast no-grad path (frame by frame, written into the concatenation, bound by
    :mod:`stvsr.infer.optimize_edvr`) gives the plain autograd path's numbers and keeps the
    memory format."""
    torch.manual_seed(2)
    tsa = randomize_params(TSAFusion(num_feat=8, num_frame=3, center_frame_idx=1), seed=3)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    feats = [torch.randn(1, 8, 8, 12).contiguous(memory_format=fmt) for _ in range(3)]
    with torch.no_grad(), fast_kernels(FastKernels()), bound(optimize_edvr.overrides(tsa)):
        fast_in = tsa.weighted_frames(feats)
        fast = tsa(feats)
    assert "weighted_frames" not in vars(tsa)  # unbound again
    slow_in = tsa.weighted_frames(feats)
    slow = tsa(feats)
    assert slow.requires_grad and not fast.requires_grad
    assert fast_in.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(fast_in, slow_in.detach(), atol=1e-6, rtol=0)
    torch.testing.assert_close(fast, slow.detach(), atol=1e-5, rtol=0)
