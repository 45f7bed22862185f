"""Which process of a distributed run this is, known before Lightning sets up the process group.

The MLflow run must be opened before training, by exactly one process. Launchers say who is
who in the environment: torchrun sets RANK, SLURM sets SLURM_PROCID, and Lightning's own DDP
launcher starts the other ranks of a node with LOCAL_RANK (and NODE_RANK on other nodes).
Processes that `ddp_spawn` starts are not counted here: they only run the fit or test loop.
"""

from __future__ import annotations

import os


def launched_rank(devices_per_node: int) -> int:
    """The global rank this process will have; 0 for a plain (or the first) process."""
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"])
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return int(env["SLURM_PROCID"])
    node_rank = int(env.get("NODE_RANK", env.get("GROUP_RANK", "0")))
    return node_rank * devices_per_node + int(env.get("LOCAL_RANK", "0"))


def run_folder_name() -> str:
    """One Hydra output folder per job, shared by every process of a job started from outside.

    torchrun (with `--rdzv-id`) and SLURM give all processes of a job the same id; other runs
    get a timestamp. (Lightning's own DDP launcher passes its ranks the first rank's folder.)
    """
    elastic_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    if elastic_id != "none":
        return f"torchrun-{elastic_id}"
    if "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return f"slurm-{os.environ['SLURM_JOB_ID']}"
    from datetime import datetime

    return datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")
