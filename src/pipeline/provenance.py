"""What a rerun needs to know about the code and the machine: git state, versions, threads."""

from __future__ import annotations

import platform
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from pipeline.hardware import cpu_features, cpu_model


@dataclass(frozen=True)
class GitState:
    commit: str | None
    dirty: bool
    diff: str  # `git diff HEAD` when dirty, including staged changes; untracked files are listed
    branch: str | None = None  # None on a detached HEAD


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(repo: Path) -> GitState:
    head = _git(repo, "rev-parse", "HEAD", "--abbrev-ref", "HEAD")  # the commit, then the branch (HEAD if detached)
    if head is None:
        return GitState(commit=None, dirty=False, diff="")
    commit, branch = head.split()
    branch = None if branch == "HEAD" else branch
    status = _git(repo, "status", "--porcelain") or ""
    if not status.strip():
        return GitState(commit=commit, dirty=False, diff="", branch=branch)
    untracked = [line[3:] for line in status.splitlines() if line.startswith("??")]
    diff = _git(repo, "diff", "HEAD") or ""
    if untracked:
        diff += "\n# untracked files:\n" + "\n".join(f"#   {path}" for path in untracked) + "\n"
    return GitState(commit=commit, dirty=True, diff=diff, branch=branch)


def installed_packages() -> str:
    """`name==version` of every installed distribution, sorted: the environment's lock.

    Read from the `<name>-<version>.dist-info` folder names (PEP 376): parsing every
    package's METADATA instead costs a quarter of a second at each start.
    """
    lines = set()
    for entry in sys.path:
        folder = Path(entry)
        if folder.is_dir():
            for info in folder.glob("*.dist-info"):
                name, _, version = info.name.removesuffix(".dist-info").partition("-")
                lines.add(f"{name}=={version}")
    return "\n".join(sorted(lines, key=str.lower)) + "\n"


def runtime_versions() -> dict[str, str]:
    import pytorch_lightning
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": pytorch_lightning.__version__,
        "mlflow": metadata.version("mlflow"),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_features": " ".join(cpu_features()),
        "torch_threads": str(torch.get_num_threads()),
    }
