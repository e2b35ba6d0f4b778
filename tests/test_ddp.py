"""DDP: two CPU processes (gloo) give the gradients of one process on the same global batch."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _helpers import write_panning_clips

TINY = {"num_feat": 8, "num_fe": 1, "num_ds": 1, "num_rec": 1, "fetch_frames": 2}


def _cfg(root: str) -> dict:
    return {
        "model": {"preset": "sfnet-lite", "overrides": dict(TINY)},
        "data": {"type": "folder", "root": root, "mode": "stvsr", "num_frames": 2,
                 "lr_patch": 4, "batch_size": 4, "reverse": True},
        "loss": {"structure_weight": 0.25},
        "schedule": {"periods": [10]},
        "train": {"total_steps": 2, "device": "cpu", "ckpt_every": 100},
    }


def _grads(root: str, out: str) -> dict[str, torch.Tensor]:
    """Gradients of the first global batch, and the parameters after two steps."""
    from stvsr.train.config import config_from_dict
    from stvsr.train.trainer import Trainer

    tr = Trainer(config_from_dict(_cfg(root)), out, progress=False)
    batch = next(iter(tr.make_loader()))
    tr.forward_backward(batch)
    grads = {f"grad/{k}": p.grad.detach().clone() for k, p in tr.module.named_parameters()}
    tr.optimizer.zero_grad(set_to_none=True)
    tr.fit()  # two full steps through the DDP path
    grads.update({f"param/{k}": v.clone() for k, v in tr.module.state_dict().items()})
    return grads


def _worker(rank: int, world: int, port: int, root: str, out: str, result: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    grads = _grads(root, out)  # the trainer joins the process group from the environment
    if rank == 0:
        torch.save(grads, result)
    if dist.is_initialized():
        dist.barrier()  # both ranks are done with their collectives before gloo is torn down
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_ddp_matches_single_process(tmp_path: Path) -> None:
    root = write_panning_clips(tmp_path / "data", 4, 5, (6, 6))
    result = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(2, _free_port(), str(root), str(tmp_path / "ddp"), str(result)),
             nprocs=2, join=True)
    ddp = torch.load(result)
    single = _grads(str(root), str(tmp_path / "single"))
    assert ddp.keys() == single.keys()
    for k, v in single.items():
        assert torch.allclose(ddp[k], v, rtol=1e-5, atol=1e-6), k
    assert any(single[k].abs().sum() > 0 for k in single if k.startswith("grad/"))
