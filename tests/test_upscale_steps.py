"""``stvsr upscale`` as named steps: the options records, the resolved job, the schedulers, one
optimisation per run, and no private names imported across the engine's modules."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
from fractions import Fraction
from pathlib import Path

import pytest
from _helpers import interrupt_after
from _upscale_clips import make_clip

from stvsr.cli import build_parser
from stvsr.infer.distributed import DistributedScheduler
from stvsr.infer.engine import upscale_video
from stvsr.infer.job import resolve_job
from stvsr.infer.optimize import OptimizedModel
from stvsr.infer.options import EncoderOptions, UpscaleOptions
from stvsr.infer.scheduler import LocalScheduler, Scheduler

FAST = {"preset": "ultrafast", "progress": "none", "log": lambda s: None}
INFER = Path(__file__).resolve().parents[1] / "src" / "stvsr" / "infer"


def test_options_from_the_command_line_and_from_keywords_agree() -> None:
    args = build_parser().parse_args(
        ["upscale", "in.mp4", "out.mkv", "--codec", "ffv1", "--crf", "20", "--chunk", "7",
         "--fps-factor", "5/2", "--no-scene-detect", "--fps", "29.97", "--tile", "64"])
    from_cli = UpscaleOptions.from_args(args)
    from_kw = UpscaleOptions.from_kwargs(
        codec="ffv1", crf=20, chunk=7, fps_factor="5/2", scene_detect=False,
        fps_for_folders=Fraction(2997, 100), tile=64)
    assert from_cli == from_kw
    assert from_cli.encoder == EncoderOptions(codec="ffv1", crf=20)
    with pytest.raises(TypeError, match="unknown upscale option"):
        UpscaleOptions.from_kwargs(frame_rate=2)


def test_every_upscale_flag_lands_in_the_options_or_the_run() -> None:
    """A new ``stvsr upscale`` flag must reach the options record (or be a run setting)."""
    run_settings = {"input", "output", "model", "weights", "device", "precision", "progress",
                    "dry_run", "quiet", "report", "help"}
    renamed = {"no_scene_detect": "scene_detect", "fps": "fps_for_folders"}
    fields = {f.name for f in dataclasses.fields(UpscaleOptions)} | {
        f.name for f in dataclasses.fields(EncoderOptions)}
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["upscale"]
    for action in sub._actions:  # argparse has no public list of actions
        if action.dest in run_settings:
            continue
        assert renamed.get(action.dest, action.dest) in fields, action.dest


def test_resolved_job_fills_the_defaults_and_the_manifest_is_the_record(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    make_clip(src, 4)
    job = resolve_job(src, tmp_path / "out.mkv", UpscaleOptions.from_kwargs(codec="x264"),
                      model="stvsr-bicubic", say=lambda s: None)
    o = job.options
    assert (o.chunk, o.overlap, o.segment_frames) == (30, 5, 120)
    assert o.scale == 4.0 and o.fps_factor == 2 and o.encoder.codec == "libx264"
    assert job.interpolate and not job.retime and job.out_rate == 50
    key = job.key()
    assert key["options"] == {**json.loads(json.dumps(o.manifest())), "mode": "video"}
    assert key["options"]["encoder"] == dataclasses.asdict(o.encoder)


def test_one_scheduler_interface_for_one_process_and_for_many() -> None:
    local = LocalScheduler()
    assert isinstance(local, Scheduler)
    assert local.claim(3) and local.claimed == [3]
    assert local.finish(None, [3], "", None)  # type: ignore[arg-type]
    assert local.report() == {} and local.is_main and (local.rank, local.world) == (0, 1)
    for name in ("prepare", "claim", "finish", "report"):
        want = inspect.signature(getattr(Scheduler, name)).parameters
        got = inspect.signature(getattr(DistributedScheduler, name)).parameters
        assert list(got) == list(want), name


def test_the_model_is_optimized_once_per_run(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Three segments, one :class:`OptimizedModel`; interrupted and resumed, the same frames."""
    built: list[object] = []
    real_init = OptimizedModel.__init__

    def counting_init(self, *args, **kwargs) -> None:
        built.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(OptimizedModel, "__init__", counting_init)
    src = tmp_path / "in.mp4"
    make_clip(src, 6)
    one = tmp_path / "one"
    s = upscale_video(src, one, model="stvsr-bicubic", segment_frames=2, **FAST)
    assert s["segments"] == 3 and len(built) == 1
    two = tmp_path / "two"
    with pytest.raises(KeyboardInterrupt):
        upscale_video(src, two, model="stvsr-bicubic", segment_frames=2,
                      on_segment_done=interrupt_after(1), **FAST)
    s = upscale_video(src, two, model="stvsr-bicubic", segment_frames=2, **FAST)
    assert s["resumed_segments"] == 1
    a, b = sorted(one.glob("*.png")), sorted(two.glob("*.png"))
    assert [p.name for p in a] == [p.name for p in b]
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(a, b, strict=True))


def test_no_private_name_is_imported_across_modules() -> None:
    """The engine's modules (and this package) import only public names from each other."""
    bad = []
    for path in sorted(INFER.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stvsr"):
                bad += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                        if a.name.startswith("_")]
    assert bad == []
