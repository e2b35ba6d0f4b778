"""``python tests/_dist_upscale.py upscale ...``: the ``stvsr`` command line with test hooks, as
the worker script of ``torchrun`` (or of an ``srun``-like launch) in test_upscale_distributed.

Environment hooks (none of them exists in the library):

* ``STVSR_TEST_ENCODE_LOG=FILE``: append ``"RANK SEGMENT"`` to FILE for every segment encode;
* ``STVSR_TEST_SEGMENT_SLEEP=S``: wait S seconds before each segment (every rank gets some);
* ``STVSR_TEST_KILL_RANK=R``: rank R exits hard (``os._exit``) right after the first frame of
  its first segment was written;
* ``STVSR_TEST_BLIND_RANK=R``: rank R looks for rank 0's token under another name, as if the
  work folder were not on a filesystem it shares.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import torch

from stvsr.cli import main
from stvsr.infer import distributed, execute

RANK = distributed.launch_env().rank
restore_segment = execute.restore_segment


class _DieAfterFirstFrame:
    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def update(self, n: int = 1) -> None:
        self.bar.update(n)
        sys.stderr.flush()
        os._exit(9)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bar, name)


def hooked_restore_segment(*args: Any, **kw: Any) -> None:
    seg = args[1]
    log = os.environ.get("STVSR_TEST_ENCODE_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{RANK} {seg.index}\n")
    time.sleep(float(os.environ.get("STVSR_TEST_SEGMENT_SLEEP") or 0))
    if os.environ.get("STVSR_TEST_KILL_RANK") == str(RANK):
        kw["bar"] = _DieAfterFirstFrame(kw["bar"])
    restore_segment(*args, **kw)


execute.restore_segment = hooked_restore_segment
if os.environ.get("STVSR_TEST_BLIND_RANK") == str(RANK):
    distributed.DistributedScheduler.token_prefix = ".not-the-token-"

if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main(sys.argv[1:]))
