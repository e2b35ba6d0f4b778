"""The optional native DCN kernel: exactness against the float64 loop reference, agreement with
the pure-PyTorch path in float32/bfloat16, and the fallback when it cannot be built."""

from __future__ import annotations

import logging

import pytest
import torch
from test_dcn import CASES, _random_case, naive_mdcn

from stvsr.errors import StvsrError
from stvsr.ops import dcn, native
from stvsr.ops.dcn import DCNv2Pack, modulated_deform_conv2d

needs_native = pytest.mark.skipif(
    not native.available(),
    reason=f"native DCN kernel unavailable here ({native.unavailable_reason()})",
)


def _count_paths(monkeypatch) -> dict[str, int]:
    calls = {"pure": 0, "native": 0}
    real_pure, real_native = dcn.deform_conv_pure, dcn.deform_conv_native

    def pure(*a, **k):
        calls["pure"] += 1
        return real_pure(*a, **k)

    def nat(*a, **k):
        calls["native"] += 1
        return real_native(*a, **k)

    monkeypatch.setattr(dcn, "deform_conv_pure", pure)
    monkeypatch.setattr(dcn, "deform_conv_native", nat)
    return calls


@needs_native
@pytest.mark.parametrize("case", CASES)
def test_native_matches_naive_float64(case):
    b, cin, cout, h, w, k, s, p, d, dg = case
    x, offset, mask, weight, bias = _random_case(sum(case), b, cin, cout, h, w, k, s, p, d, dg)
    ref = naive_mdcn(x, offset, mask, weight, bias, s, p, d, dg)
    out = modulated_deform_conv2d(x, offset, mask, weight, bias, s, p, d, dg, impl="native")
    assert out.shape == ref.shape and out.dtype == torch.float64
    assert (out - ref).abs().max().item() <= 1e-10
    # one output row per chunk: the row split must not change anything
    out1 = dcn.deform_conv_native(x, offset, mask, weight, bias, (s, s), (p, p), (d, d), dg, 1)
    assert (out1 - ref).abs().max().item() <= 1e-10


@needs_native
@pytest.mark.parametrize("cg", [8, 3])  # the 8-channel vector path and the generic one
def test_native_float32_matches_pure(cg):
    dg = 2
    x, offset, mask, weight, bias = (
        t.float() for t in _random_case(cg, 2, dg * cg, 5, 11, 13, 3, 1, 1, 1, dg)
    )
    nat = modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1, dg, impl="native")
    pure = modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1, dg, impl="pure")
    ref = modulated_deform_conv2d(*(t.double() for t in (x, offset, mask, weight, bias)),
                                  1, 1, 1, dg, impl="native")
    assert nat.dtype == torch.float32
    assert (nat - pure).abs().max().item() < 1e-4
    assert (nat.double() - ref).abs().max().item() < 1e-4


@needs_native
def test_native_bf16_keeps_fp32_coordinates():
    """bf16 storage, fp32 coordinates: close to float64 on a wide map (bf16 coordinates would be
    off by about a pixel near the right edge)."""
    torch.manual_seed(0)
    h, w, dg = 4, 256, 2
    x = torch.randn(1, 16, h, w).bfloat16()
    offset = torch.full((1, 2 * dg * 9, h, w), 0.5).bfloat16()
    mask = torch.rand(1, dg * 9, h, w).bfloat16()
    weight = (torch.randn(4, 16, 3, 3) * 0.3).bfloat16()
    ref = modulated_deform_conv2d(
        x.double(), offset.double(), mask.double(), weight.double(), None, 1, 1, 1, dg
    )
    scale = ref.abs().max().item()
    out = modulated_deform_conv2d(x, offset, mask, weight, None, 1, 1, 1, dg, impl="native")
    assert out.dtype == torch.bfloat16
    assert (out.double() - ref).abs().max().item() < 0.03 * scale
    with torch.autocast("cpu", dtype=torch.bfloat16):  # fp32 features, bf16 matmul
        out_ac = modulated_deform_conv2d(
            x.float(), offset.float(), mask.float(), weight.float(), None, 1, 1, 1, dg,
            impl="native",
        )
        pure_ac = modulated_deform_conv2d(
            x.float(), offset.float(), mask.float(), weight.float(), None, 1, 1, 1, dg,
            impl="pure",
        )
    assert out_ac.dtype == torch.bfloat16
    assert (out_ac.double() - ref).abs().max().item() < 0.03 * scale
    assert (out_ac.double() - pure_ac.double()).abs().max().item() < 0.03 * scale


@needs_native
@pytest.mark.parametrize("batch", [1, 2])
def test_native_memory_formats(batch):
    """Channels-last in -> channels-last out, NCHW in -> NCHW out, same numbers."""
    x, offset, mask, weight, bias = _random_case(5, batch, 16, 6, 9, 10, 3, 1, 1, 1, 2)
    ref = modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1, 2, impl="native")
    assert ref.is_contiguous()
    cl = torch.channels_last
    out = modulated_deform_conv2d(
        x.contiguous(memory_format=cl), offset.contiguous(memory_format=cl),
        mask.contiguous(memory_format=cl), weight, bias, 1, 1, 1, 2, impl="native",
    )
    assert out.is_contiguous(memory_format=cl)
    assert (out - ref).abs().max().item() <= 1e-12


@needs_native
def test_native_non_finite_offsets_read_nothing():
    """A NaN or infinite coordinate samples nothing (as torchvision's kernel): the output there
    is the bias."""
    x, offset, mask, weight, bias = _random_case(3, 1, 4, 3, 6, 6, 3, 1, 1, 1, 1)
    offset[:, :, 2, 3] = float("nan")
    offset[:, :, 4, 1] = float("inf")
    out = modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1, 1, impl="native")
    assert torch.isfinite(out).all()
    assert torch.allclose(out[0, :, 2, 3], bias) and torch.allclose(out[0, :, 4, 1], bias)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dcnv2pack_native_matches_pure(dtype, monkeypatch, caplog):
    """The packed offset/logit map is read in place; outputs and the |offset| warning agree."""
    torch.manual_seed(0)
    m = DCNv2Pack(16, 8, 3, padding=1, deformable_groups=2).to(dtype)
    with torch.no_grad():
        m.conv_offset.weight.normal_(0, 0.2)
    cl = torch.channels_last
    x = torch.randn(1, 16, 12, 14, dtype=dtype).contiguous(memory_format=cl)
    feat = torch.randn(1, 16, 12, 14, dtype=dtype).contiguous(memory_format=cl)
    calls = _count_paths(monkeypatch)
    with torch.no_grad():
        m.impl = "pure"
        pure = m(x, feat)
        m.impl = "auto"
        auto = m(x, feat)
    assert calls == {"pure": 1, "native": 1}
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    assert (auto - pure).abs().max().item() < tol
    # the |offset| sum the kernel accumulates drives the same warning
    with torch.no_grad():
        m.conv_offset.bias[: 2 * 2 * 9] = 60.0
        with caplog.at_level(logging.WARNING, logger="stvsr.ops.dcn"):
            m(x, feat)
    assert any("Offset abs mean" in r.getMessage() for r in caplog.records)


@needs_native
def test_auto_takes_pure_for_autograd(monkeypatch):
    x, offset, mask, weight, bias = _random_case(4, 1, 4, 3, 5, 6, 3, 1, 1, 1, 2)
    calls = _count_paths(monkeypatch)
    xg = x.clone().requires_grad_(True)
    modulated_deform_conv2d(xg, offset, mask, weight, bias, 1, 1, 1, 2).sum().backward()
    assert calls == {"pure": 1, "native": 0} and xg.grad is not None
    with pytest.raises(StvsrError, match="impl='pure'"):
        modulated_deform_conv2d(xg, offset, mask, weight, bias, 1, 1, 1, 2, impl="native")
    with torch.no_grad():
        modulated_deform_conv2d(xg, offset, mask, weight, bias, 1, 1, 1, 2)
    assert calls["native"] == 1


def test_unavailable_kernel_falls_back_to_pure(monkeypatch):
    """Without the kernel ``auto`` runs pure PyTorch; an explicit ``native`` says why and what
    to do."""
    monkeypatch.setattr(native, "_state", {"lib": None, "why": "no C compiler found"})
    assert not native.available()
    calls = _count_paths(monkeypatch)
    x, offset, mask, weight, bias = _random_case(6, 1, 4, 3, 5, 6, 3, 1, 1, 1, 2)
    out = modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1, 2)
    assert calls == {"pure": 1, "native": 0}
    assert (out - naive_mdcn(x, offset, mask, weight, bias, 1, 1, 1, 2)).abs().max() <= 1e-10
    with pytest.raises(StvsrError, match="no C compiler found; use impl='pure'"):
        modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1, 2, impl="native")


def test_build_failures_leave_the_kernel_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("STVSR_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setenv("STVSR_NATIVE", "0")
    assert native.library() is None and "STVSR_NATIVE=0" in native.unavailable_reason()
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setenv("STVSR_NATIVE", "1")
    monkeypatch.setenv("STVSR_CC", "false")  # a "compiler" that always fails
    assert native.library() is None and "failed" in native.unavailable_reason()
    assert not any(tmp_path.rglob("*.so"))  # nothing half-written left in the cache
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setenv("STVSR_CC", str(tmp_path / "no-such-cc"))
    assert native.library() is None and "no C compiler" in native.unavailable_reason()


@needs_native
def test_unwritable_cache_still_builds(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("STVSR_CACHE", str(blocker))
    monkeypatch.setattr(native, "_state", {})
    assert native.library() is not None  # built into a private temporary folder instead


@needs_native
def test_damaged_cached_library_is_rebuilt(monkeypatch, tmp_path):
    """A cached file cut short (e.g. by a full disk) is rebuilt, not fatal."""
    monkeypatch.setenv("STVSR_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_state", {})
    cc = native._compiler()
    so = native._lib_path(cc)
    native._build(cc, so)
    so.write_bytes(so.read_bytes()[:100])  # never loaded in this process before
    assert native.library() is not None and so.stat().st_size > 100


@needs_native
def test_build_without_openmp_splits_rows_over_python_threads(monkeypatch, tmp_path):
    """A compiler that rejects -fopenmp: the next flag set builds, rows go to Python threads,
    results are unchanged."""
    import shutil
    import stat

    gcc = shutil.which("gcc") or shutil.which("cc")
    wrapper = tmp_path / "cc-no-openmp"
    wrapper.write_text(
        "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = -fopenmp ] && exit 1; done\n"
        f"exec {gcc} \"$@\"\n"
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    x, offset, mask, weight, bias = _random_case(8, 2, 16, 5, 9, 11, 3, 1, 1, 1, 2)
    ref = naive_mdcn(x, offset, mask, weight, bias, 1, 1, 1, 2)
    monkeypatch.setenv("STVSR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("STVSR_CC", str(wrapper))
    monkeypatch.setattr(native, "_state", {})
    assert native.library() is not None and native._state["openmp"] is False
    out = modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1, 2, impl="native")
    assert (out - ref).abs().max().item() <= 1e-10
