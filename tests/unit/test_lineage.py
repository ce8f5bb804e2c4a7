"""The code version a training run records: asked of the package, never of whatever checkout is around it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from deskpilot.training.lineage import code_version, environment_tags

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

COMMIT_FROM_PIP = "0123456789abcdef0123456789abcdef01234567"


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "GIT_CONFIG_GLOBAL": os.devnull,  # no signing or hooks from the machine's own git config
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def fake_package(root: Path) -> Path:
    package = root / "deskpilot"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "0.0.0"\n', encoding="utf-8")
    return package


def dist_info(root: Path, direct_url: dict[str, object] | None) -> metadata.Distribution:
    folder = root / "deskpilot-0.0.0.dist-info"
    folder.mkdir(parents=True)
    (folder / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: deskpilot\nVersion: 0.0.0\n", encoding="utf-8"
    )
    if direct_url is not None:
        (folder / "direct_url.json").write_text(json.dumps(direct_url), encoding="utf-8")
    return metadata.PathDistribution(folder)


def repository(root: Path) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q")
    return root


def test_a_package_tracked_in_git_records_its_commit(tmp_path: Path) -> None:
    repo = repository(tmp_path / "checkout")
    package = fake_package(repo / "src")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    head = git(repo, "rev-parse", "HEAD")
    # the distribution's own record loses to the work tree that holds the code
    distribution = dist_info(
        tmp_path / "site",
        {"url": "https://example.invalid/x.git", "vcs_info": {"vcs": "git", "commit_id": COMMIT_FROM_PIP}},
    )
    assert code_version(package, distribution) == head
    (package / "__init__.py").write_text('__version__ = "0.0.1"\n', encoding="utf-8")
    assert code_version(package, distribution) == f"{head}-dirty"


def test_an_install_outside_git_records_the_commit_pip_saw(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    package = fake_package(site)
    distribution = dist_info(
        site,
        {
            "url": "https://example.invalid/deskpilot.git",
            "vcs_info": {"vcs": "git", "commit_id": COMMIT_FROM_PIP},
        },
    )
    assert code_version(package, distribution) == COMMIT_FROM_PIP


def test_a_venv_inside_another_checkout_does_not_record_that_checkout(tmp_path: Path) -> None:
    repo = repository(tmp_path / "unrelated")
    (repo / ".gitignore").write_text(".venv/\n", encoding="utf-8")
    (repo / "README").write_text("something else\n", encoding="utf-8")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    site = repo / ".venv" / "lib" / "site-packages"
    package = fake_package(site)
    assert code_version(package, dist_info(site, {"url": "file:///somewhere", "dir_info": {}})) == "unknown"
    with_commit = dist_info(
        tmp_path / "elsewhere",
        {
            "url": "https://example.invalid/deskpilot.git",
            "vcs_info": {"vcs": "git", "commit_id": COMMIT_FROM_PIP},
        },
    )
    assert code_version(package, with_commit) == COMMIT_FROM_PIP


@pytest.mark.parametrize("direct_url", [None, {"url": "file:///src", "dir_info": {}}, {"vcs_info": "odd"}])
def test_nothing_to_go_by_is_unknown(tmp_path: Path, direct_url: dict[str, object] | None) -> None:
    site = tmp_path / "site-packages"
    package = fake_package(site)
    assert code_version(package, dist_info(site, direct_url)) == "unknown"


def test_the_run_tags_carry_the_running_code_version() -> None:
    tags = environment_tags()
    assert tags["deskpilot.git_commit"] == code_version()
    assert tags["deskpilot.git_commit"]
