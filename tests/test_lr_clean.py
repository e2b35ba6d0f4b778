"""LRClean (compression removal at LR size), the two-stage restorers and compressed evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stvsr import create_model
from stvsr.cli import main
from stvsr.data.chain import parse_chain
from stvsr.data.video import write_image
from stvsr.eval.compressed import compressed_chain
from stvsr.eval.protocols import svsr_runs
from stvsr.eval.source import ClipSource, clip_generator
from stvsr.frames import frame_to_tensor, to_uint8
from stvsr.models.lr_clean import CleanThenRestore, LRClean, window_indices


def test_window_indices_mirror_at_the_ends() -> None:
    assert window_indices(6, 2) == [[2, 1, 0, 1, 2], [1, 0, 1, 2, 3], [0, 1, 2, 3, 4],
                                    [1, 2, 3, 4, 5], [2, 3, 4, 5, 4], [3, 4, 5, 4, 3]]
    assert window_indices(1, 2) == [[0, 0, 0, 0, 0]]
    assert window_indices(2, 2) == [[0, 1, 0, 1, 0], [1, 0, 1, 0, 1]]


def _trained_like(**kw) -> LRClean:
    torch.manual_seed(0)
    net = LRClean(num_feat=16, frame_feat=8, num_block=2, **kw).double()
    torch.nn.init.normal_(net.conv_last.weight, std=0.05)  # not the identity it starts as
    return net


def test_starts_as_identity_and_groups_do_not_change_the_result() -> None:
    x = torch.rand(2, 7, 3, 12, 10, dtype=torch.float64)
    assert torch.equal(LRClean(num_feat=16, frame_feat=8, num_block=2).double()(x), x)
    net = _trained_like(group=8)
    ref = net(x)
    net.group = 3
    assert torch.allclose(net(x), ref, atol=1e-12, rtol=0)
    assert not torch.allclose(ref, x)


def test_each_output_reads_exactly_its_window() -> None:
    net = _trained_like(radius=2)
    x = torch.rand(1, 9, 3, 8, 8, dtype=torch.float64)
    ref = net(x)
    y = x.clone()
    y[:, 4] += 0.5  # frame 4 is in the windows of frames 2..6 only
    changed = [(not torch.equal(a, b)) for a, b in zip(net(y)[0], ref[0], strict=True)]
    assert changed == [False, False, True, True, True, True, True, False, False]


def test_clean_then_restore_takes_the_restorer_contract() -> None:
    cleaner = LRClean(num_feat=8, frame_feat=4, num_block=1)
    st = CleanThenRestore(cleaner, create_model("stvsr-bicubic"))
    assert (st.kind, st.scale) == ("spacetime", 4)
    x = torch.rand(1, 3, 3, 8, 8)
    assert st(x).shape == (1, 5, 3, 32, 32)
    # an identity cleaner leaves the restorer's output unchanged
    assert torch.equal(st(x), create_model("stvsr-bicubic")(x))
    with pytest.raises(Exception, match="recurrent or space-time"):
        CleanThenRestore(cleaner, create_model("edvr-m", weights=None))


def _clip_folder(root: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    base = rng.random((3, 9, 12))
    big = torch.nn.functional.interpolate(torch.from_numpy(base)[None], size=(72, 96 + 4 * n),
                                          mode="bicubic", align_corners=False)[0].clamp(0, 1)
    folder = root / "clip"
    folder.mkdir(parents=True)
    for t in range(n):
        write_image(folder / f"f{t:02d}.png", to_uint8(big[:, :, 4 * t: 4 * t + 96]))
    return folder


def test_eval_encodes_each_clip_as_one_stream(tmp_path: Path) -> None:
    folder = _clip_folder(tmp_path)
    files = sorted(folder.iterdir())
    chain = parse_chain("bd+h264:crf=30").with_scale(4)
    runs = svsr_runs(len(files))
    source = ClipSource(files, chain, clip_generator(0, "clip"), runs)
    frames = list(source.stream(runs[0]))
    hr = torch.stack([frame_to_tensor(source.gt(i)) for i in range(len(files))])
    assert len(frames) == len(files)
    assert torch.equal(torch.stack(frames), chain.apply(hr, np.random.default_rng(0)))
    per_frame = parse_chain("bd").with_scale(4)
    clean = list(ClipSource(files, per_frame, clip_generator(0, "clip"), runs).stream(runs[0]))
    assert not torch.equal(torch.stack(clean), torch.stack(frames))


def test_compressed_protocol_cli(tmp_path: Path, capsys) -> None:
    _clip_folder(tmp_path / "data")
    out = tmp_path / "c.json"
    assert main(["eval", "--model", "bicubic", "--data", str(tmp_path / "data"), "--protocol",
                 "compressed", "--crf", "10,40", "--json", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "CAVSR (published)" in text and "bicubic (stvsr)" in text
    res = json.loads(out.read_text())
    assert res["protocol"] == "compressed" and sorted(res["runs"]) == ["10", "40"]
    assert res["runs"]["10"]["degradation"] == compressed_chain(10)
    assert res["mean"]["10"]["psnr_y"] > res["mean"]["40"]["psnr_y"]
    code = main(["eval", "--model", "stvsr-bicubic", "--task", "stvsr", "--data",
                 str(tmp_path / "data"), "--protocol", "compressed", "--quiet"])
    assert code == 2 and "\n" not in capsys.readouterr().err.strip()


def test_spacetime_eval_with_a_codec_chain(tmp_path: Path) -> None:
    from stvsr.eval import evaluate_spacetime

    _clip_folder(tmp_path / "data", n=7)
    model = create_model("stvsr-bicubic")
    kw = dict(protocol="full", progress=False)
    clean = evaluate_spacetime(model, tmp_path / "data", degradation="bi", **kw)
    coded = evaluate_spacetime(model, tmp_path / "data", degradation="bi+h264:crf=40", **kw)
    again = evaluate_spacetime(model, tmp_path / "data", degradation="bi+h264:crf=40", **kw)
    assert coded["mean"]["psnr_y"] < clean["mean"]["psnr_y"]
    assert coded["mean"]["psnr_y"] == again["mean"]["psnr_y"]


def test_parameter_count_stated_in_the_card() -> None:
    card = (Path(__file__).resolve().parents[1] / "docs" / "models" / "lr-clean.md").read_text()
    count = sum(p.numel() for p in LRClean().parameters())
    assert f"{count:,} parameters" in card
