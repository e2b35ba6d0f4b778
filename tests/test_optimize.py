"""`stvsr.infer.optimize`: the optimized form of every preset gives the plain network's outputs,
the plain networks call their modules (hooks fire), and optimizing changes nothing in the model."""

from __future__ import annotations

import pytest
import torch
from _helpers import randomize_params

from stvsr.errors import StvsrError
from stvsr.infer import optimize
from stvsr.infer.optimize import OptimizedModel
from stvsr.infer.sliding import SlidingWindowRunner
from stvsr.registry import create_model, get_spec, list_models

pytestmark = pytest.mark.usefixtures("one_thread")

FP32_TOL = 1e-5
BF16_TOL = 0.05  # as the EDVR bf16-vs-fp32 test


def _build(name: str) -> torch.nn.Module:
    """Preset ``name`` with random (perturbed, so zero-initialised heads and offset convs act)
    weights; composite presets are built without their official parts."""
    kw = {"pretrained": False} if "pretrained" in get_spec(name).kwargs else {}
    torch.manual_seed(0)
    return randomize_params(create_model(name, weights=None, **kw))


def _input(model: torch.nn.Module, h: int = 16, w: int = 20) -> torch.Tensor:
    t = int(model.num_frames) if model.kind == "window" else 3
    return torch.rand(1, t, 3, h, w, generator=torch.Generator().manual_seed(1))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype
    return float((a - b).abs().max())


@pytest.mark.parametrize("name", list_models())
def test_optimized_equals_plain(name: str) -> None:
    model = _build(name)
    x = _input(model)
    fast32 = optimize(model, "cpu", "fp32")
    fast16 = optimize(model, "cpu", "bf16")
    with torch.no_grad():
        plain32 = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain16 = model(x).float()
        opt32 = fast32(x)
        opt16 = fast16(x).float()
    d32, d16 = _max_diff(opt32, plain32), _max_diff(opt16, plain16)
    print(f"{name}: fp32 {d32:.2e}, bf16 {d16:.2e} (|out| max {float(plain32.abs().max()):.2f})")
    assert d32 <= FP32_TOL, d32
    assert d16 <= BF16_TOL, d16
    assert torch.isfinite(opt32).all()


def test_optimized_wrapper_keeps_the_contract() -> None:
    model = _build("edvr-m")
    fast = optimize(model, "cpu", "fp32")
    assert isinstance(fast, OptimizedModel) and fast.model is model
    assert (fast.kind, fast.scale, fast.num_frames, fast.center_frame_idx, fast.preset) == (
        "window", 4, 5, 2, "edvr-m")
    assert fast.weights_source is None and fast.pretrained is False
    assert optimize(fast, "cpu", "fp32") is fast  # idempotent
    again = optimize(fast, "cpu", "bf16")
    assert again is not fast and again.model is model and again.precision == "bf16"
    assert not hasattr(optimize(_build("edvr-two-stage"), "cpu", "fp32"), "extract_features")
    with pytest.raises(StvsrError, match="precision"):
        optimize(model, "cpu", "fp8")
    with pytest.raises(StvsrError, match="fp16"):
        optimize(model, "cpu", "fp16")
    # the stage methods run on the fast path too: the cached sliding window equals the plain one
    video = torch.rand(6, 3, 12, 16, generator=torch.Generator().manual_seed(2))
    a = SlidingWindowRunner(model, cache=True).run_all(video)
    b = SlidingWindowRunner(fast, cache=True).run_all(video)
    assert _max_diff(a, b) <= FP32_TOL


@pytest.mark.parametrize("name", ["edvr-m", "basicvsr", "sfnet-lite", "sfnet-s-untrained"])
def test_plain_forward_calls_modules_and_hooks_fire(name: str) -> None:
    model = _build(name)
    x = _input(model, 12, 16)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    calls: dict[int, int] = {}
    handles = [c.register_forward_hook(
        lambda m, i, o: calls.__setitem__(id(m), calls.get(id(m), 0) + 1)) for c in convs]
    try:
        with torch.no_grad():
            ref = model(x)
        # every conv that took part ran as a module (its forward hook fired)
        plain = set(calls)
        assert len(plain) >= 0.9 * len(convs), (len(plain), len(convs))
        calls.clear()
        with torch.no_grad():
            out = optimize(model, "cpu", "fp32")(x)  # hooked convs are called as modules here too
        assert set(calls) == plain
        assert _max_diff(out, ref) <= FP32_TOL
    finally:
        for h in handles:
            h.remove()


def test_optimize_does_not_change_the_plain_model() -> None:
    model = _build("edvr-m")
    x = _input(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    attrs = {n: set(vars(m)) for n, m in model.named_modules()}
    with torch.no_grad():
        before = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            before16 = model(x)
        for precision in ("fp32", "bf16"):
            fast = optimize(model, "cpu", precision)
            fast(x)
            runner = SlidingWindowRunner(fast, cache=True)
            list(runner.run(x[0]))
        after = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            after16 = model(x)
    assert torch.equal(before, after) and torch.equal(before16, after16)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]) and v.is_contiguous(), k
    assert {n: set(vars(m)) for n, m in model.named_modules()} == attrs  # nothing cached on it


def test_optimized_weights_follow_a_new_state_dict() -> None:
    model = _build("sfnet-lite")
    fast = optimize(model, "cpu", "fp32")
    x = _input(model, 12, 16)
    with torch.no_grad():
        fast(x)  # fills the weight caches
        randomize_params(model, seed=5)  # in-place update of every parameter
        torch.testing.assert_close(fast(x), model(x), atol=FP32_TOL, rtol=0)


def test_autograd_through_the_optimized_model() -> None:
    model = _build("edvr-m")
    x = _input(model, 8, 8)
    out = optimize(model, "cpu", "fp32")(x)
    out.mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    ref = model(x)
    torch.testing.assert_close(out.detach(), ref.detach(), atol=FP32_TOL, rtol=0)


class _ScaledConv(torch.nn.Conv2d):
    """A conv subclass with its own forward (as a LoRA / quantisation wrapper would have)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 1.5


def test_conv_subclasses_run_their_own_forward_when_optimized() -> None:
    model = _build("edvr-m")
    x = _input(model)
    with torch.no_grad():
        original = model(x)
    swaps = [(model, "conv_hr"), (model.reconstruction[0], "conv1"),
             (model.pcd_align.offset_conv1, "l1"), (model, "upconv1")]
    for parent, name in swaps:
        old = getattr(parent, name) if name != "l1" else parent[name]
        new = _ScaledConv(old.in_channels, old.out_channels, old.kernel_size, old.stride,
                          old.padding)
        new.load_state_dict(old.state_dict())
        if name == "l1":
            parent[name] = new
        else:
            setattr(parent, name, new)
    with torch.no_grad():
        plain = model(x)
        fast = optimize(model, "cpu", "fp32")(x)
    assert _max_diff(plain, original) > 1e-3  # the subclasses change the output
    assert _max_diff(fast, plain) <= FP32_TOL


def test_speed_paths_are_bound_only_while_the_wrapper_runs() -> None:
    """The models' speed paths (:mod:`stvsr.infer.optimize_edvr`, ...) are instance attributes
    of the plain modules only during a call of the optimized wrapper; afterwards the model is
    back to its classes' methods."""
    model = _build("edvr-m")
    fast = optimize(model, "cpu", "fp32")
    names = {ov.method for ov in fast.overrides}
    assert {"align", "feature_pyramid", "forward", "weighted_frames", "modulate"} <= names
    during: list[bool] = []
    model.fusion.register_forward_pre_hook(
        lambda m, args: during.append("align" in vars(model) and "modulate" in vars(m)))
    x = _input(model)
    with torch.no_grad():
        fast(x)
        model(x)
    assert during == [True, False]
    assert not any(n in vars(m) for m in model.modules() for n in names)


def test_edvr_pcd_terms_are_computed_once_per_frame_and_freed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The cached sliding window computes each frame's PCD neighbour terms once (6 frames, 6
    windows of 5), and they are dropped with the frame's pyramid; a plain call keeps none."""
    import gc

    from stvsr.infer import optimize_edvr

    calls: list[int] = []
    real = optimize_edvr.nbr_terms
    monkeypatch.setattr(optimize_edvr, "nbr_terms",
                        lambda pcd, nbr: calls.append(1) or real(pcd, nbr))
    model = _build("edvr-m")
    fast = optimize(model, "cpu", "fp32")
    video = torch.rand(6, 3, 12, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        SlidingWindowRunner(fast, cache=True).run_all(video)
        gc.collect()
        assert len(calls) == 6 and optimize_edvr._TERMS == {}
        fast(_input(model))
    assert len(calls) == 6 + 5 and optimize_edvr._TERMS == {}


def test_bf16_without_native_bf16_leaves_onednn_for_the_plain_conv(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """oneDNN's fused bf16 convolution refuses to run on a CPU without native bf16 (an AVX2
    EPYC: "bf16 path needs the cpu support avx_ne_convert or avx512bw ..."): there the fast path
    runs the plain convolution under the caller's autocast; fp32 stays fused."""
    from torch import nn

    from stvsr.ops import fused

    real = fused._PW
    dtypes: list[torch.dtype] = []

    class Spy:
        def __call__(self, x, *args):
            dtypes.append(x.dtype)
            return real(x, *args)

    monkeypatch.setattr(fused, "_PW", Spy())
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False,
                        raising=False)
    torch.manual_seed(0)
    conv, act = nn.Conv2d(8, 8, 3, 1, 1).eval(), nn.LeakyReLU(0.1)
    x = torch.rand(1, 8, 12, 12)
    with torch.inference_mode(), fused.fast_kernels(fused.FastKernels()):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = fused.conv_act(conv, x, act)
        y32 = fused.conv_act(conv, x, act)
    assert dtypes == [torch.float32]  # only the fp32 call went to oneDNN's fused kernel
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), act(conv(x)), rtol=0.02, atol=0.02)
    torch.testing.assert_close(y32, act(conv(x)), rtol=1e-5, atol=1e-6)
