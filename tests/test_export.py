"""``stvsr export``: ONNX graphs that onnxruntime runs like PyTorch (max |diff| <= 1e-4, fp32).

Skipped, saying why, without the optional onnx/onnxruntime packages (pip install 'stvsr[onnx]').
Random weights and tiny sizes: parity does not depend on trained weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _helpers import randomize_params

from stvsr import create_model
from stvsr.cli import main
from stvsr.errors import StvsrError

pytest.importorskip("onnx", reason="onnx is not installed (pip install 'stvsr[onnx]')")
pytest.importorskip("onnxruntime",
                    reason="onnxruntime is not installed (pip install 'stvsr[onnx]')")

from stvsr.export.onnx_export import (  # after the skips
    deform_conv_grid_sample,
    export_onnx,
    metadata_path,
)

QUIET = {"log": lambda s: None}


def _edvr_m() -> torch.nn.Module:
    """EDVR-M with DCN offsets of about a pixel (zero-initialised offsets would test nothing)."""
    torch.manual_seed(0)
    m = randomize_params(create_model("edvr-m", weights=None), seed=1)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "conv_offset.weight" in name:
                p.normal_(0.0, 0.03)
    return m


def test_grid_sample_dcn_equals_the_project_op() -> None:
    from stvsr.ops.dcn import modulated_deform_conv2d

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 8, 9, 11, generator=g)
    off = 2.5 * torch.randn(1, 2 * 2 * 9, 9, 11, generator=g)
    mask = torch.rand(1, 2 * 9, 9, 11, generator=g)
    w, b = torch.randn(6, 8, 3, 3, generator=g), torch.randn(6, generator=g)
    ref = modulated_deform_conv2d(x, off, mask, w, b, 1, 1, 1, 2, impl="pure")
    got = deform_conv_grid_sample(x, off, mask, w, b, (1, 1), (1, 1), (1, 1), 2)
    assert torch.allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("dcn", ["deformconv", "gridsample"])
def test_edvr_m_parity(dcn: str, tmp_path: Path) -> None:
    import onnx

    out = tmp_path / f"edvr_{dcn}.onnx"
    meta = export_onnx("edvr-m", out, model=_edvr_m(), size=(16, 20), dcn=dcn, **QUIET)
    assert meta["check"]["max_abs_diff"] <= 1e-4
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert ("DeformConv" in ops) == (dcn == "deformconv")
    assert ("GridSample" in ops) == (dcn == "gridsample")
    assert meta["deformable_conv"] == dcn and meta["opset"] == 19
    assert meta["frames_in"] == 5 and meta["frames_out"] == 1
    assert meta["outputs"][0]["shape"] == [1, 3, 64, 80]


def test_edvr_dynamic_size(tmp_path: Path) -> None:
    meta = export_onnx("edvr-m", tmp_path / "e.onnx", model=_edvr_m(), size=(16, 16),
                       dynamic_size=True, **QUIET)
    sizes = [r["size"] for r in meta["check"]["runs"]]
    assert sizes == [[16, 16], [24, 28]] and meta["check"]["max_abs_diff"] <= 1e-4
    assert meta["inputs"][0]["shape"] == [1, 5, 3, "H", "W"] and meta["size_multiple"] == 4
    with pytest.raises(StvsrError, match="multiples of 4"):
        export_onnx("edvr-m", tmp_path / "e2.onnx", model=_edvr_m(), size=(18, 16),
                    dynamic_size=True, **QUIET)


def test_basicvsr_dynamic_parity(tmp_path: Path) -> None:
    model = randomize_params(create_model("basicvsr", weights=None), seed=2)
    meta = export_onnx("basicvsr", tmp_path / "b.onnx", model=model, frames=2, size=(16, 16),
                       dynamic_size=True, **QUIET)
    assert meta["check"]["max_abs_diff"] <= 1e-4 and len(meta["check"]["runs"]) == 2
    assert meta["kind"] == "recurrent" and meta["frames_out"] == 2


def test_spacetime_models_parity(tmp_path: Path) -> None:
    from stvsr.models.sfnet_s_v1 import SFNetSV1
    from stvsr.models.stvsr_baselines import build_twostage

    sf = SFNetSV1()
    sf.preset = "sfnet-s"
    randomize_params(sf, seed=3)
    with torch.no_grad():  # a non-zero head (the shipped one starts at zero)
        sf.head.conv_out.weight.normal_(0.0, 0.01)
    two = build_twostage(pretrained=False)
    two.preset = "stvsr-twostage"
    randomize_params(two, seed=4)
    for name, model in (("sfnet-s", sf), ("stvsr-twostage", two)):
        meta = export_onnx(name, tmp_path / f"{name}.onnx", model=model, frames=2,
                           size=(16, 16), **QUIET)
        assert meta["check"]["max_abs_diff"] <= 1e-4, name
        assert meta["kind"] == "spacetime" and meta["frames_out"] == 3
        assert meta["time_factor"] == 2 and "odd indices" in meta["output_frames"]
    meta = export_onnx("stvsr-bicubic", tmp_path / "bic.onnx", frames=2, size=(12, 16), **QUIET)
    assert meta["check"]["max_abs_diff"] <= 1e-4
    with pytest.raises(StvsrError, match="without --dynamic-size"):
        export_onnx("stvsr-bicubic", tmp_path / "bic2.onnx", frames=2, size=(12, 16),
                    dynamic_size=True, **QUIET)


def test_cli_export_writes_onnx_and_json(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bic.onnx"
    assert main(["export", "stvsr-bicubic", str(out), "--frames", "3", "--size", "8x12"]) == 0
    printed = capsys.readouterr().out
    assert "max abs difference" in printed
    meta = json.loads(metadata_path(out).read_text())
    assert meta["inputs"][0] == {**meta["inputs"][0], "name": "lr", "layout": "NTCHW",
                                 "shape": [1, 3, 3, 8, 12], "value_range": [0.0, 1.0]}
    assert meta["outputs"][0]["name"] == "hr" and meta["outputs"][0]["shape"] == [1, 5, 3, 32, 48]
    assert meta["scale"] == 4 and meta["frames_in"] == 3 and meta["frames_out"] == 5
    assert main(["export", "edvr-m", str(tmp_path / "e.onnx"), "--frames", "3"]) == 2
    assert "--frames 5" in capsys.readouterr().err


def test_shipped_basicvsr_weights_parity(pull_weights, tmp_path: Path) -> None:
    pull_weights("basicvsr-vimeo-bi")
    meta = export_onnx("basicvsr-vimeo-bi", tmp_path / "bv.onnx", frames=2, size=(16, 16),
                       **QUIET)
    assert meta["pretrained"] and meta["check"]["max_abs_diff"] <= 1e-4


def test_onnx_speed_benchmark_smoke(tmp_path: Path, capsys) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "onnx_speed.py"
    spec = importlib.util.spec_from_file_location("onnx_speed", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "speed.json"
    rows = bench.main(["--presets", "stvsr-bicubic", "--size", "8x8", "--frames", "2",
                       "--repeat", "1", "--threads", "1", "--json", str(out)])
    (row,) = rows
    assert row["frames_out"] == 3 and row["max_abs_diff"] <= 1e-4
    assert row["torch_s_per_frame"] > 0 and row["onnxruntime_s_per_frame"] > 0
    assert json.loads(out.read_text())["results"][0]["preset"] == "stvsr-bicubic"
    assert "s/frame" in capsys.readouterr().out
