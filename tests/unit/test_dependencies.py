"""Every third-party module the package imports comes with the install that runs it, not with the dev extra.

The tests run with the dev extra installed, so an import of a dev-only package (an HTTP client, a test
library) passes every other test and fails only for a user: ``make demo`` installs ``.[ml]``.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "deskpilot"


def declared(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        found += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return found


def closure(requirements: list[Requirement]) -> set[str]:
    """Distribution names the requirements pull in, following the installed metadata."""
    seen: set[str] = set()
    pending = [(r, set(r.extras)) for r in requirements]
    while pending:
        requirement, extras = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(requirement.name) or []:
            child = Requirement(text)
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in extras | {""}):
                pending.append((child, set(child.extras)))
    return seen


def imported_top_level_modules() -> dict[str, set[str]]:
    """Top-level module -> the files that import it, for every absolute import in the package."""
    modules: dict[str, set[str]] = {}
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                modules.setdefault(name.partition(".")[0], set()).add(str(path.relative_to(ROOT)))
    return modules


# Modules that only an optional engine imports, with the extra that installs them: the engine checks for the
# import itself and tells the user which extra to install (``deskpilot predict --engine ray``).
OPTIONAL_ENGINES = {"src/deskpilot/batch/ray_engine.py": "ray"}


def test_every_import_is_a_declared_runtime_or_training_dependency() -> None:
    allowed = closure(declared(("ml",)))
    providers = metadata.packages_distributions()
    missing = {}
    for module, files in sorted(imported_top_level_modules().items()):
        if module in sys.stdlib_module_names or module in {"deskpilot", "__future__"}:
            continue
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        for where in sorted(files):
            extra = OPTIONAL_ENGINES.get(where)
            if not dists & (closure(declared(("ml", extra))) if extra else allowed):
                missing[module] = (where, sorted(dists))
    assert not missing, f"imported but only installed by the dev/bench extras (or not at all): {missing}"


def test_the_check_sees_a_dev_only_import() -> None:
    dev_only = closure(declared(("dev",))) - closure(declared(("ml",)))
    assert "pytest" in dev_only  # the set the first test guards against is not empty
