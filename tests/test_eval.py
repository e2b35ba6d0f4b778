"""The evaluation package: protocols as data, the one clip finder, the frame source, the loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import stvsr
from stvsr.data.chain import parse_chain
from stvsr.data.images import natural_key
from stvsr.errors import DataError, StvsrError
from stvsr.eval import evaluate_spacetime, evaluate_svsr, find_clips
from stvsr.eval.protocols import (
    SEPTUPLET,
    Run,
    Target,
    full_runs,
    spacetime_runs,
    svsr_runs,
    windowed_runs,
)
from stvsr.eval.source import ClipSource, clip_generator


def _clips(root: Path, lengths: dict[str, int], size: int = 24) -> Path:
    rng = np.random.default_rng(1)
    for name, n in lengths.items():
        folder = root / "GT" / name
        folder.mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(img).save(folder / f"Frame {i + 1}.png")
    return root


def _targets(runs: list[Run]) -> list[Target]:
    return [t for run in runs for t in run.targets]


@pytest.mark.parametrize("n", [3, 4, 7, 8, 9, 13, 14, 41])
def test_each_frame_is_the_target_of_one_run(n: int) -> None:
    for runs in (svsr_runs(n), full_runs(n), spacetime_runs("windowed", n)):
        assert sorted(t.frame for t in _targets(runs)) == list(range(n))
    for t in _targets(spacetime_runs("windowed", n)) + _targets(full_runs(n)):
        assert t.kind == ("input" if t.output % 2 == 0 else "new")
    assert {t.kind for t in _targets(svsr_runs(n))} == {"input"}


def test_protocols_as_data() -> None:
    assert svsr_runs(3) == [Run((0, 1, 2), (Target(0, 0, "input"), Target(1, 1, "input"),
                                            Target(2, 2, "input")))]
    # 8 frames, full: frames 0..6 from one stream, frame 7 from the 2-frame tail run (5, 7)
    main, tail = full_runs(8)
    assert main.inputs == (0, 2, 4, 6) and [t.frame for t in main.targets] == list(range(7))
    assert tail == Run((5, 7), (Target(2, 7, "input"),))
    # 9 frames, windowed: window [0, 7), then the tail window [2, 9) scores frames 7 and 8
    first, last = windowed_runs(9)
    assert last.inputs == (2, 4, 6, 8)
    assert last.targets == (Target(5, 7, "new"), Target(6, 8, "input"))
    # a Vimeo septuplet: im1, im3, im5, im7 in, all 7 scored; both protocols agree on 7 frames
    assert SEPTUPLET == (Run((0, 2, 4, 6), tuple(Target(t, t, "input" if t % 2 == 0 else "new")
                                                 for t in range(7))),)
    assert tuple(windowed_runs(7)) == tuple(full_runs(7)) == SEPTUPLET
    assert spacetime_runs("windowed", 7, window=5, vimeo=True) == list(SEPTUPLET)
    assert spacetime_runs("windowed", 5) == full_runs(5)  # shorter than the window
    with pytest.raises(StvsrError, match="unknown protocol"):
        spacetime_runs("half", 9)


def test_one_clip_finder_for_both_tasks(tmp_path: Path) -> None:
    root = _clips(tmp_path, {"b": 3, "a": 4})
    for data in (root, root / "GT"):
        assert [c.name for c in find_clips(data)] == ["a", "b"]
    assert [c.name for c in find_clips(root, ["b"])] == ["b"]
    assert [f.name for f in find_clips(root / "GT" / "a")[0].files] == [
        f"Frame {i}.png" for i in range(1, 5)]
    with pytest.raises(DataError, match="not found"):
        find_clips(root, ["c"])
    # S-VSR takes a folder holding GT, as ST-VSR does
    res = evaluate_svsr(stvsr.create_model("bicubic"), root, progress=False)
    assert list(res["clips"]) == ["a", "b"]
    assert sorted(["f10", "F9", "f1"], key=natural_key) == ["f1", "F9", "f10"]


def test_random_draws_do_not_depend_on_the_protocol(tmp_path: Path) -> None:
    """Frames are degraded once each, in order: a noisy chain gives every frame the same LR
    under the S-VSR stream and under the windows of the windowed protocol."""
    files = find_clips(_clips(tmp_path, {"a": 9}))[0].files
    chain = parse_chain("bi+noise:sigma=0.05").with_scale(4)

    def lr_by_frame(runs: list[Run]) -> dict[int, torch.Tensor]:
        source = ClipSource(files, chain, clip_generator(0, "a"), runs)
        return {i: lr for run in runs for i, lr in zip(run.inputs, source.stream(run))}

    whole = lr_by_frame(svsr_runs(9))
    windows = lr_by_frame(windowed_runs(9))
    assert set(windows) == {0, 2, 4, 6, 8}
    for i, lr in windows.items():
        assert torch.equal(lr, whole[i])
    assert not torch.equal(whole[0], whole[2])


def test_source_keeps_a_frame_only_while_it_is_needed(tmp_path: Path) -> None:
    files = find_clips(_clips(tmp_path, {"a": 13}))[0].files
    runs = windowed_runs(13)  # windows [0, 7) and [6, 13): frame 6 is fed twice
    source = ClipSource(files, parse_chain("bi").with_scale(4), clip_generator(0, "a"), runs)
    first = list(source.stream(runs[0]))
    assert source.held == [6]
    second = list(source.stream(runs[1]))
    assert torch.equal(first[-1], second[0]) and source.held == []
    assert source.gt(12).shape == (24, 24, 3)
    with pytest.raises(KeyError):
        source.gt(12)  # each HR frame is taken once


def test_each_task_rejects_the_other_kind(tmp_path: Path) -> None:
    root = _clips(tmp_path, {"a": 3})
    with pytest.raises(StvsrError, match="space-time model"):
        evaluate_svsr(stvsr.create_model("stvsr-bicubic"), root, progress=False)
    with pytest.raises(StvsrError, match="needs a space-time model"):
        evaluate_spacetime(stvsr.create_model("bicubic"), root, progress=False)
