"""Where a model came from: code version and environment, recorded as run tags."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import deskpilot
from deskpilot import tags

_LIBRARIES = ("numpy", "scikit-learn", "onnxruntime", "tokenizers", "torch", "transformers", "mlflow")
_DISTRIBUTION = "deskpilot"
# variables that point git at another repository than the one around the directory it is asked about
_GIT_REDIRECTS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR")


def code_version(package_dir: Path | None = None, distribution: metadata.Distribution | None = None) -> str:
    """The commit of the running code: ``unknown`` when nothing says which.

    Asked of the package itself, not of a folder near it: a non-editable install lives in site-packages,
    maybe in a virtual environment inside some unrelated checkout whose commit says nothing about this code.
    First the git work tree that tracks the package's files (a source checkout or an editable install): its
    HEAD, ``-dirty`` when tracked files have local changes. Else the commit pip recorded when it installed
    from version control (PEP 610 ``direct_url.json``). Defaults: the running package and its distribution.
    """
    if package_dir is None:
        package_dir = Path(deskpilot.__file__).resolve().parent
    if distribution is None:
        try:
            distribution = metadata.distribution(_DISTRIBUTION)
        except metadata.PackageNotFoundError:
            distribution = None
    return _tracked_commit(package_dir) or _installed_commit(distribution) or "unknown"


def _tracked_commit(package_dir: Path) -> str | None:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_REDIRECTS}

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(package_dir), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
            env=env,
        ).stdout.strip()

    try:
        git("ls-files", "--error-unmatch", "__init__.py")  # fails unless this work tree tracks the package
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def _installed_commit(distribution: metadata.Distribution | None) -> str | None:
    if distribution is None:
        return None
    text = distribution.read_text("direct_url.json")
    if not text:
        return None
    try:
        direct_url = json.loads(text)
    except ValueError:
        return None
    vcs_info = direct_url.get("vcs_info") if isinstance(direct_url, dict) else None
    commit = vcs_info.get("commit_id") if isinstance(vcs_info, dict) else None
    return commit if isinstance(commit, str) and commit else None


def environment_tags() -> dict[str, str]:
    recorded = {
        tags.VERSION: deskpilot.__version__,
        tags.GIT_COMMIT: code_version(),
        "env.python": platform.python_version(),
        "env.platform": platform.platform(),
    }
    for library in _LIBRARIES:
        try:
            recorded[f"env.{library}"] = metadata.version(library)
        except metadata.PackageNotFoundError:
            continue
    return recorded
