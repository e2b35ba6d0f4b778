"""``stvsr upscale`` resumes an interrupted run exactly, and starts over or refuses, in one line,
when what made the finished segments has changed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import TemporalBox, interrupt_after
from _upscale_clips import FAST, decode, make_clip

from stvsr.cli import main
from stvsr.infer.engine import tensor_to_frame, upscale_video


def _run_resumable(src: Path, out: Path, **kw) -> dict:
    return upscale_video(src, out, model=TemporalBox(scale=2), codec="ffv1", chunk=3, overlap=2,
                         segment_frames=4, scene_detect=False, **FAST, **kw)


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in.mkv"
    inputs = make_clip(src, 11, codec="ffv1", pix_fmt="bgr0")
    ref_out = tmp_path / "ref.mkv"
    _run_resumable(src, ref_out)
    out = tmp_path / "res.mkv"
    out.write_bytes(b"old result")  # an earlier output stays untouched until the new one is done
    with pytest.raises(KeyboardInterrupt):
        _run_resumable(src, out, on_segment_done=interrupt_after(1))
    assert out.read_bytes() == b"old result"
    work = tmp_path / "res.mkv.stvsr-work"
    manifest = json.loads((work / "manifest.json").read_text())
    assert list(manifest["done"]) == ["0"]
    assert not list(tmp_path.glob(".*partial*"))
    s = _run_resumable(src, out)
    assert s["resumed_segments"] == 1 and s["segments"] == 3
    assert not work.exists()
    a, ta, _ = decode(ref_out)
    b, tb_, _ = decode(out)
    assert len(a) == len(b) == 11 and ta == tb_
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    # context at segment borders: equal to running the model on the whole clip (no seams)
    x = torch.stack([torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f in inputs])
    whole = TemporalBox(scale=2)(x[None])[0]
    for k, y in enumerate(b):
        diff = np.abs(tensor_to_frame(whole[k]).astype(int) - y.astype(int)).max()
        assert diff <= 1


def test_changed_options_start_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in.mkv"
    make_clip(src, 9, codec="ffv1", pix_fmt="bgr0")
    out = tmp_path / "o.mkv"
    with pytest.raises(KeyboardInterrupt):
        _run_resumable(src, out, on_segment_done=interrupt_after(1))
    with pytest.warns(RuntimeWarning, match=r"options\.overlap 2 -> 1.*starting over"):
        s = upscale_video(src, out, model=TemporalBox(scale=2), codec="ffv1", chunk=3, overlap=1,
                          segment_frames=4, scene_detect=False, **FAST)
    assert s["resumed_segments"] == 0 and out.exists()


class _BoxWithDcn(TemporalBox):
    """:class:`TemporalBox` holding a deformable conv whose implementation can be chosen (it
    is not used: only the resume key looks at it)."""

    def __init__(self, impl: str) -> None:
        super().__init__(scale=2)
        from stvsr.ops.dcn import ModulatedDeformConv2d

        torch.manual_seed(0)
        self.dcn = ModulatedDeformConv2d(4, 4, 3, padding=1)
        self.dcn.impl = impl


def test_resume_refuses_a_changed_precision_or_dcn(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12: frames made at another precision or with another deformable-conv kernel
    would not match the finished segments: the rerun is refused in one line, the work folder
    is kept, and the old setting resumes."""
    src = tmp_path / "in.mkv"
    make_clip(src, 9, codec="ffv1", pix_fmt="bgr0")
    out = tmp_path / "o.mkv"
    work = tmp_path / "o.mkv.stvsr-work"
    with pytest.raises(KeyboardInterrupt):
        _run_resumable(src, out, on_segment_done=interrupt_after(1))
    manifest = json.loads((work / "manifest.json").read_text())
    assert manifest["key"]["runtime"] == {"device": "cpu", "precision": "fp32", "dcn": None}
    from stvsr.errors import StvsrError

    with pytest.raises(StvsrError, match="precision fp32, this run has precision bf16") as err:
        _run_resumable(src, out, precision="bf16")
    msg = str(err.value)
    assert "\n" not in msg and "--precision fp32" in msg and f"delete {work}" in msg
    assert list(json.loads((work / "manifest.json").read_text())["done"]) == ["0"]
    assert _run_resumable(src, out)["resumed_segments"] == 1  # the old setting resumes

    # the deformable-conv implementation (here set on the model; normally picked per machine)
    with pytest.raises(KeyboardInterrupt):
        upscale_video(src, out, model=_BoxWithDcn("pure"), codec="ffv1", chunk=3, overlap=2,
                      segment_frames=4, scene_detect=False, on_segment_done=interrupt_after(1),
                      **FAST)
    with pytest.raises(StvsrError, match="deformable conv pure, this run has deformable conv "
                                         "native") as err:
        upscale_video(src, out, model=_BoxWithDcn("native"), codec="ffv1", chunk=3, overlap=2,
                      segment_frames=4, scene_detect=False, **FAST)
    assert "STVSR_NATIVE=0" in str(err.value) and work.is_dir()


def test_cli_refuses_a_changed_precision_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in.mkv"
    make_clip(src, 9, codec="ffv1", pix_fmt="bgr0")
    out = tmp_path / "o"
    argv = ["upscale", str(src), str(out), "--model", "bicubic", "--segment-frames", "3",
            "--no-scene-detect", "--progress", "none", "--precision", "fp32"]
    import functools

    import stvsr.infer.engine as engine

    plain = engine.upscale_video
    monkeypatch.setattr(engine, "upscale_video",
                        functools.partial(plain, on_segment_done=interrupt_after(1)))
    assert main(argv) == 130  # interrupted
    monkeypatch.setattr(engine, "upscale_video", plain)
    capsys.readouterr()
    # a CPU with native bf16, so that the refusal is all it says (it refuses before running)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True,
                        raising=False)
    assert main([*argv, "--precision", "bf16"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    assert "precision fp32" in err and "--precision fp32" in err and "start over" in err
    assert (tmp_path / "o.stvsr-work" / "manifest.json").is_file()


def test_work_dir_refuses_another_device(tmp_path: Path) -> None:
    from stvsr.errors import VideoError
    from stvsr.infer.segments import WorkDir

    key = {"input": {"path": "x"}, "options": {"chunk": 3},
           "runtime": {"device": "cuda (NVIDIA H100 80GB HBM3)", "precision": "bf16",
                       "dcn": "torchvision"}}
    assert WorkDir(tmp_path / "o.mkv").open(key, refuse="runtime") is False
    cpu = {**key, "runtime": {"device": "cpu", "precision": "bf16", "dcn": "native"}}
    with pytest.raises(VideoError) as err:
        WorkDir(tmp_path / "o.mkv").open(cpu, refuse="runtime")
    msg = str(err.value)
    assert "with deformable conv torchvision, device cuda (NVIDIA H100 80GB HBM3)," in msg
    assert "this run has deformable conv native, device cpu," in msg
    assert "rerun with --device cuda to resume" in msg and "\n" not in msg
    assert WorkDir(tmp_path / "o.mkv").open(key, refuse="runtime") is True  # kept
    # with the options changed as well it is another job: start over
    other = {**cpu, "options": {"chunk": 4}}
    with pytest.warns(RuntimeWarning, match="starting over"):
        assert WorkDir(tmp_path / "o.mkv").open(other, refuse="runtime") is False


def test_inference_impl_names_the_kernel_that_runs() -> None:
    from stvsr.ops import native
    from stvsr.ops.dcn import inference_impl

    assert inference_impl(TemporalBox()) is None  # no deformable conv
    assert inference_impl(_BoxWithDcn("pure")) == "pure"
    auto = _BoxWithDcn("auto")
    assert inference_impl(auto, "cpu") == ("native" if native.available() else "pure")
