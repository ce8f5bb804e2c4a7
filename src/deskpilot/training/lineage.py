"""Where a model came from: code version and environment, recorded as run tags."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

from deskpilot import __version__

_LIBRARIES = ("numpy", "scikit-learn", "onnxruntime", "tokenizers", "torch", "transformers", "mlflow")


def git_commit(directory: Path) -> str:
    """The checked-out commit (with ``-dirty`` for local changes), or ``unknown`` outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, check=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def environment_tags(code_dir: Path) -> dict[str, str]:
    tags = {
        "deskpilot.version": __version__,
        "deskpilot.git_commit": git_commit(code_dir),
        "env.python": platform.python_version(),
        "env.platform": platform.platform(),
    }
    for library in _LIBRARIES:
        try:
            tags[f"env.{library}"] = metadata.version(library)
        except metadata.PackageNotFoundError:
            continue
    return tags
