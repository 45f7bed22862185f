"""Git state and environment capture, on a real throwaway git repository."""

from __future__ import annotations

from pathlib import Path

from conftest import git, make_repo
from pipeline.provenance import git_state, installed_packages


def test_clean_tree_records_the_commit_and_no_diff(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    state = git_state(repo)
    assert state.commit == git(repo, "rev-parse", "HEAD").strip()
    assert state.branch == git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip()
    assert not state.dirty and state.diff == ""
    git(repo, "checkout", "-q", "--detach")
    assert git_state(repo).branch is None  # a detached HEAD is on no branch


def test_dirty_tree_records_the_diff_and_untracked_files(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "train.py").write_text("lr = 0.1\n")
    (repo / "notes.txt").write_text("new\n")
    state = git_state(repo)
    assert state.dirty
    assert "-lr = 0.001" in state.diff and "+lr = 0.1" in state.diff
    assert "#   notes.txt" in state.diff


def test_outside_a_repository_there_is_no_commit(tmp_path: Path) -> None:
    state = git_state(tmp_path)
    assert state.commit is None and not state.dirty


def test_installed_packages_lists_pinned_versions() -> None:
    lines = installed_packages().splitlines()
    assert any(line.startswith("torch==") for line in lines)
    assert lines == sorted(lines, key=str.lower)
