"""Training state kept beside a shipped weights file, so that the next run continues it.

*Design.* A shipped file such as ``pretrained/sfnet_s2_head.safetensors`` holds the EMA weights
of the run that produced it: enough to use the model, not to go on training it as that run
would have (the raw weights and Adam's moments are lost, and the next run starts its optimizer
from zero). When ``stvsr ledger RUN --ship --state`` ships a checkpoint, it also writes
``<weights>.train.pt`` beside it (one per model, replaced with the weights; not part of the
wheel) holding, for the trained parameters only:

- ``model``: their raw (non-EMA) values at the shipped step;
- ``optimizer``: the optimizer's per-parameter state (Adam moments and step counts), keyed by
  the parameter's position in ``model.parameters()``, with ``param_names`` to check the order;
- ``weights_sha256``: the sha256 of the shipped file it pairs with (a state never continues
  weights it was not saved with);
- ``steps`` / ``samples``: the training the shipped file has seen, summed over every run in its
  ledger, so that a continued run's ledger row counts on from there.

A config continues it with ``model.init: <the shipped weights>`` and ``model.init_state:
auto`` (use the state beside the init file when it is there and pairs with it; otherwise start
a fresh optimizer and say so) or an explicit path (then it must exist and pair). The learning
rate schedule is the new run's own: a continued run is a new run that starts where the last
one's weights and moments stood.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stvsr.errors import CheckpointError
from stvsr.weights import read_checkpoint, sha256_file

__all__ = ["FORMAT", "export_train_state", "load_train_state", "read_lineage",
           "resolve_init_state", "state_beside", "write_lineage"]

FORMAT = "stvsr-train-state-1"


def state_beside(weights: str | Path) -> Path:
    """The training-state file that belongs beside ``weights`` (``x.safetensors`` ->
    ``x.train.pt``)."""
    p = Path(weights)
    return p.with_name(p.name.split(".")[0] + ".train.pt")


def export_train_state(module: nn.Module, checkpoint: str | Path, dest: str | Path, *,
                       weights_sha256: str, steps: int, samples: int) -> Path:
    """Write the training state of trainer checkpoint ``checkpoint`` (its ``step_N.pt``; the
    raw weights are read from ``step_N.safetensors`` beside it) to ``dest``.

    ``module`` is a model of the same preset: it gives the parameter names in the order the
    optimizer indexed them. Only parameters with optimizer state (the trained ones) are kept.
    """
    path = Path(checkpoint)
    state = torch.load(path, map_location="cpu", weights_only=False)
    raw = read_checkpoint(path.with_suffix(".safetensors"))
    names = [n for n, _ in module.named_parameters()]
    opt = state["optimizer"]
    trained = sorted(int(i) for i in opt["state"])
    if not trained or trained[-1] >= len(names):
        raise CheckpointError(f"{path}: its optimizer state does not fit a "
                              f"{type(module).__name__} ({len(names)} parameters)")
    missing = [names[i] for i in trained if names[i] not in raw]
    if missing:
        raise CheckpointError(f"{path}: raw weights lack {missing[0]}; wrong model?")
    out = {
        "format": FORMAT, "weights_sha256": weights_sha256, "steps": int(steps),
        "samples": int(samples), "param_names": names,
        "model": {names[i]: raw[names[i]].contiguous() for i in trained},
        "optimizer": {"state": {int(i): opt["state"][i] for i in opt["state"]}},
    }
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    torch.save(out, tmp)
    tmp.replace(dest)
    return dest


def resolve_init_state(init_state: str | None, init_weights: Path | None) -> Path | None:
    """The state file a run starts from: ``None`` for none, ``"auto"`` for the one beside the
    init weights when it exists (else ``None``), or an explicit path (which must exist)."""
    if not init_state:
        return None
    if init_state == "auto":
        if init_weights is None:
            return None
        p = state_beside(init_weights)
        return p if p.is_file() else None
    p = Path(init_state)
    if not p.is_file():
        raise CheckpointError(f"model.init_state {p} does not exist; ship a run with "
                              "`stvsr ledger RUN --ship --state` or set model.init_state: auto")
    return p


def load_train_state(module: nn.Module, optimizer: torch.optim.Optimizer, path: str | Path,
                     init_weights: Path, *, strict: bool) -> dict[str, Any] | None:
    """Load the raw weights and optimizer state of ``path`` into ``module`` / ``optimizer``.

    The state must pair with ``init_weights`` (the run's ``model.init`` file, by sha256) and
    with ``module``'s parameter order. When it does not: with ``strict`` a one-line error,
    else ``None`` (the caller starts a fresh optimizer and says so). Returns the state's
    ``steps`` / ``samples`` / ``source``.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    names = [n for n, _ in module.named_parameters()]
    problem = None
    if state.get("format") != FORMAT:
        problem = f"{path} is not a training state ({FORMAT})"
    elif state["weights_sha256"] != sha256_file(init_weights):
        problem = (f"{path} was saved with other weights than {init_weights} (sha256 "
                   f"{state['weights_sha256'][:12]}...)")
    elif state["param_names"] != names:
        problem = f"{path} belongs to another model than {type(module).__name__}"
    if problem:
        if strict:
            raise CheckpointError(problem + "; point model.init_state at the state saved with "
                                            "model.init, or remove it")
        return None
    params = dict(module.named_parameters())
    with torch.no_grad():
        for k, v in state["model"].items():
            params[k].copy_(v.to(params[k].dtype))
    own = optimizer.state_dict()
    own["state"] = state["optimizer"]["state"]
    optimizer.load_state_dict(own)
    return {"steps": state["steps"], "samples": state["samples"], "source": str(path)}


def write_lineage(out_dir: Path, info: dict[str, Any]) -> None:
    """Record in the run folder what the run continued (read by the ledger)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "init_state.json").write_text(json.dumps(info, indent=1) + "\n")


def read_lineage(run_dir: Path) -> dict[str, Any]:
    """What :func:`write_lineage` recorded (``{}`` for a run that continued nothing)."""
    p = run_dir / "init_state.json"
    return json.loads(p.read_text()) if p.is_file() else {}
