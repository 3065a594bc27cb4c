"""Processes of one run under torchrun: which one this is, its GPU, and waiting for the others.

``torchrun --nproc_per_node N --no-python caduceus score-vcf ...`` starts N copies of the command
with RANK, WORLD_SIZE and LOCAL_RANK set. Each scores its own range of whole chunks into the
output's parts folder; rank 0 then writes the output. The processes only ever wait for each other
(a barrier), so the gloo backend serves on CPU and GPU alike and no NCCL set-up is needed.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from caduceus_cli.errors import RankError

log = logging.getLogger(__name__)

BARRIER_TIMEOUT = datetime.timedelta(days=7)  # a rank may score for days before the others see it finish


@dataclass(frozen=True)
class Ranks:
    """This process's place among the run's processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Ranks:
        """From torchrun's RANK / WORLD_SIZE / LOCAL_RANK; one process when they are not set."""
        env = os.environ if env is None else env
        try:
            world = int(env.get("WORLD_SIZE", "1"))
            rank = int(env.get("RANK", "0"))
            local = int(env.get("LOCAL_RANK", str(rank)))
        except ValueError:
            return cls()
        return cls(rank, world, local) if world > 1 else cls()

    @property
    def many(self) -> bool:
        return self.world > 1

    def label(self) -> str:
        """'' for one process, else 'rank R/N ' (1-based, for log lines)."""
        return f"rank {self.rank + 1}/{self.world} " if self.many else ""

    def device(self, requested: str) -> str:
        """The device of this rank: with several processes and ``auto`` or ``cuda``, GPU ``LOCAL_RANK``."""
        if not self.many or requested not in ("auto", "cuda"):
            return requested
        import torch

        if not torch.cuda.is_available():
            return "cpu" if requested == "auto" else requested
        return f"cuda:{self.local_rank % torch.cuda.device_count()}"

    def init(self) -> None:
        """Join the process group (gloo), once."""
        if not self.many:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
            log.info("%sjoined the process group", self.label())

    def barrier(self) -> None:
        """Wait for every rank; if one failed or stopped, stop with one line (its own message says why)."""
        if self.many:
            import torch.distributed as dist

            try:
                dist.barrier()
            except RuntimeError as exc:
                raise RankError(
                    f"{self.label()}stops: another rank failed or stopped (see its message); what is scored is "
                    "kept beside the output: rerun the same command with --resume"
                ) from exc

    def close(self) -> None:
        if self.many:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
