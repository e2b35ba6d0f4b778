"""Progress inside a model's passes (:mod:`stvsr.infer.passes`): the counts are those of the
network's forward, they come through the optimized wrapper, and watching changes no output."""

from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from _helpers import randomize_params
from _video_clips import write_clip
from torch import nn

from stvsr.infer.engine import upscale_video
from stvsr.infer.optimize import optimize
from stvsr.infer.passes import PassWatch, pass_steps
from stvsr.infer.progress import Progress
from stvsr.models.basicvsr import BasicVSR
from stvsr.models.edvr import EDVR
from stvsr.models.sfnet import SFNet
from stvsr.models.sfnet_s import SFNetS

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_sfnet_s() -> SFNetS:
    torch.manual_seed(0)
    return randomize_params(SFNetS(num_feat=8, num_block=1, mid_feat=8, mid_block=1)).eval()


def no_hooks_left(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_sfnet_s_passes_counted_through_the_optimized_wrapper_without_changing_outputs() -> None:
    model = tiny_sfnet_s()
    x = torch.rand(1, 4, 3, 16, 16)
    fast = optimize(model, "cpu", "fp32")
    with torch.inference_mode():
        ref = fast(x)
        reports: list[str] = []
        with PassWatch(model, reports.append):
            out = fast(x)
    assert torch.equal(out, ref)  # the hooks leave the fast path as it was
    assert no_hooks_left(model)
    assert reports[0] == "backward 0/4 · forward 0/4 · new frames 0/3"
    assert reports[-1] == "backward 4/4 · forward 4/4 · new frames 3/3"
    assert len(reports) == 1 + 4 + 4 + 3  # the start, then one report per step
    # the store (backward pass) ends before the forward pass begins
    assert reports.index("backward 4/4 · forward 0/4 · new frames 0/3") == 4


def test_sfnet_counts_its_steps_over_all_2n_minus_1_frames() -> None:
    torch.manual_seed(0)
    model = SFNet(num_feat=16, num_fe=1, num_ds=1, num_rec=1, fetch_frames=2).eval()
    reports: list[str] = []
    with torch.inference_mode(), PassWatch(model, reports.append):
        model(torch.rand(1, 3, 3, 16, 16))
    assert reports[-1] == "backward 5/5 · forward 5/5"


def test_repeated_labels_are_numbered_and_window_models_are_not_watched() -> None:
    two = nn.ModuleList([BasicVSR(num_feat=8, num_block=1), BasicVSR(num_feat=8, num_block=1)])
    assert [s.label for s in pass_steps(two)] == ["backward 1", "forward 1", "backward 2",
                                                  "forward 2"]
    edvr = EDVR(num_feat=8, num_frame=3, num_extract_block=1, num_reconstruct_block=1)
    assert pass_steps(edvr) == []
    with PassWatch(edvr, lambda s: None):
        assert no_hooks_left(edvr)


def test_each_call_starts_the_counts_again_and_a_failure_removes_the_hooks() -> None:
    model = tiny_sfnet_s()
    reports: list[str] = []
    with pytest.raises(RuntimeError, match="stop"), torch.inference_mode():
        with PassWatch(model, reports.append):
            model(torch.rand(1, 2, 3, 8, 8))
            model(torch.rand(1, 3, 3, 8, 8))
            raise RuntimeError("stop")
    assert "backward 2/2 · forward 2/2 · new frames 1/1" in reports
    assert reports[-1] == "backward 3/3 · forward 3/3 · new frames 2/2"
    assert no_hooks_left(model)


def test_progress_detail_follows_the_status_and_is_cleared_by_the_next() -> None:
    lines = io.StringIO()
    bar = Progress("json", 4, stream=lines)
    bar.status("segment 1/2")
    bar.detail("backward 3/9")
    assert bar.status_text == "segment 1/2 · backward 3/9"
    bar.status("segment 2/2")
    assert bar.status_text == "segment 2/2"
    bar.close()
    assert json.loads(lines.getvalue().splitlines()[-1])["status"] == "segment 2/2"


def test_upscale_reports_the_passes_of_a_chunk(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    """``stvsr upscale --progress json``: the status says how far the chunk's passes are."""
    src = tmp_path / "in.mp4"
    write_clip(src, 3, Fraction(25))
    upscale_video(src, tmp_path / "out.mp4", model=tiny_sfnet_s(), weights=None,
                  progress="json", preset="ultrafast", log=lambda s: None)
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    last = [x for x in lines if x.get("stage") == "upscale"][-1]
    assert last["frames_done"] == 5
    assert last["status"].endswith("backward 3/3 · forward 3/3 · new frames 2/2")
