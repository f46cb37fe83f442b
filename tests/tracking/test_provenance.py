"""What a run was made with: the code's state in a real git checkout, and the installed versions."""

from __future__ import annotations

import subprocess

import pytest

from cifarlab.tracking import provenance


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (tmp_path / "train.py").write_text("lr = 0.1\n")
    git("add", "train.py")
    git("commit", "-qm", "first")
    monkeypatch.setattr(provenance, "checkout_dir", lambda: tmp_path)
    return tmp_path


def test_a_clean_checkout_is_its_commit_and_nothing_else(checkout):
    state = provenance.code_state()
    assert state.commit and len(state.commit) == 40 and not state.dirty and state.patch == ""
    assert state.tags() == {"git_commit": state.commit, "git_dirty": "false"}


def test_uncommitted_changes_are_kept_as_a_patch(checkout):
    (checkout / "train.py").write_text("lr = 0.2\n")
    state = provenance.code_state()
    assert state.dirty and "-lr = 0.1" in state.patch and "+lr = 0.2" in state.patch
    assert state.tags()["git_dirty"] == "true"


def test_outside_a_checkout_there_is_no_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "checkout_dir", lambda: None)
    assert provenance.code_state() == provenance.CodeState(None, False, "")


def test_versions_round_trip_and_only_key_packages_are_compared():
    versions = provenance.installed_versions()
    assert versions["python"] and "tensorflow" in versions and "mlflow" in versions
    recorded = provenance.read_requirements(provenance.requirements_text(versions))
    assert recorded == versions and provenance.changed_versions(recorded, versions) == []
    older = {**recorded, "tensorflow": "2.0.0", "some-unrelated-package": "9"}
    assert provenance.changed_versions(older, versions) == [f"tensorflow 2.0.0 -> {versions['tensorflow']}"]
