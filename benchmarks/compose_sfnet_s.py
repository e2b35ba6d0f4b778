"""Write a full ``sfnet-s`` checkpoint whose store (BasicVSR) is another BasicVSR checkpoint.

Used to judge a BasicVSR store fine-tune (``configs/basicvsr_halfrate_cpu.yaml``) inside the
space-time model: the shipped head (or ``--head``), the official RIFE part, and the given
BasicVSR weights under ``vsr.``. The result loads strictly with ``--model sfnet-s --weights``::

    python benchmarks/compose_sfnet_s.py out/train/basicvsr_halfrate_cpu/model_ema.safetensors \
        --out out/sfnet_s_halfrate_store.safetensors
    stvsr eval --model sfnet-s --weights out/sfnet_s_halfrate_store.safetensors \
        --data out/val_clips --task stvsr --protocol windowed --max-frames 19
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file

from stvsr.models.sfnet_s import HEAD_WEIGHTS, SFNetS, pretrained_parts
from stvsr.weights import local_path, read_checkpoint


def compose(store: str | Path, head: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The ``sfnet-s`` state dict: official parts, then ``head`` (default: the shipped head),
    then ``store``'s BasicVSR tensors as ``vsr.*``; loaded strictly once to check it fits."""
    model = SFNetS()
    state = pretrained_parts(model)
    state.update(read_checkpoint(head or local_path(HEAD_WEIGHTS)))
    state.update({f"vsr.{k}": v for k, v in read_checkpoint(store).items()})
    model.load_state_dict(state, strict=True)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("store", help="a BasicVSR checkpoint (e.g. a run's model_ema.safetensors)")
    ap.add_argument("--head", help="an sfnet-s head or full checkpoint (default: the shipped)")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(compose(args.store, args.head), str(args.out), {"store": Path(args.store).name})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
