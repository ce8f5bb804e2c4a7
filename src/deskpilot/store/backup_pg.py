"""Back up and restore a PostgreSQL store with the client tools, ``pg_dump`` and ``pg_restore``.

The dump runs in a snapshot exported by a repeatable-read transaction that reads the manifest's facts (row
counts, audit head) too, so the counts describe exactly the rows dumped, however busy the service is.
Restores run ``pg_restore --clean --if-exists --single-transaction``: a restore that fails part-way rolls
back and leaves the database as it was. Owners and grants are not restored (``--no-owner
--no-privileges``); the caller migrates afterwards, which grants the runtime role its rights again.

The tools are looked up on ``PATH``, then under ``/usr/lib/postgresql/*/bin`` (newest first), and must be at
least as new as the server (``pg_dump``) or as the ``pg_dump`` that wrote the archive (``pg_restore``). The
password never reaches a command line: it goes in ``PGPASSWORD``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from deskpilot.errors import ConfigError, StoreError, StoreUnavailableError
from deskpilot.store.backup import StoreFacts, store_facts
from deskpilot.store.engine import make_engine, parse_url, safe_url, translated
from deskpilot.store.tables import metadata

CLIENT_DIRS = Path("/usr/lib/postgresql")
LOCK_TIMEOUT = "30s"
_VERSION = re.compile(r"\(PostgreSQL\) (\d+)")
_TOC_TABLE = re.compile(r"^\d+; \d+ \d+ TABLE \S+ (\S+) ", re.MULTILINE)
_UNREACHABLE = ("could not connect", "connection refused", "could not translate host name", "timeout expired")


@dataclass(frozen=True)
class PgTool:
    path: Path
    major: int
    version: str
    """What ``--version`` prints, e.g. ``pg_dump (PostgreSQL) 15.18``."""


def find_tool(name: str, *, at_least: int) -> PgTool:
    """``name`` at version ``at_least`` or newer; :class:`ConfigError` saying what to install otherwise."""
    candidates = [Path(found)] if (found := shutil.which(name)) else []
    candidates += sorted(CLIENT_DIRS.glob(f"*/bin/{name}"), key=_dir_major, reverse=True)
    tools = [tool for path in candidates if (tool := _probe(path)) is not None]
    for tool in tools:
        if tool.major >= at_least:
            return tool
    if not tools:
        raise ConfigError(
            f"{name} is not on PATH nor under {CLIENT_DIRS}/*/bin: install the PostgreSQL {at_least} client "
            f"tools (Debian: postgresql-client-{at_least})",
            details={"tool": name},
        )
    newest = max(tools, key=lambda tool: tool.major)
    raise ConfigError(
        f"{newest.path} is PostgreSQL {newest.major}, older than the {at_least} it must handle: install "
        f"the PostgreSQL {at_least} client tools (Debian: postgresql-client-{at_least}), first on PATH",
        details={"tool": name, "found": newest.major, "needed": at_least},
    )


def _dir_major(path: Path) -> int:
    version = path.parent.parent.name
    return int(version) if version.isdigit() else 0


def _probe(path: Path) -> PgTool | None:
    try:
        done = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(done.stdout)
    if done.returncode != 0 or match is None:
        return None
    return PgTool(path, int(match.group(1)), done.stdout.strip().split(" (Debian")[0])


def libpq(url: URL) -> tuple[str, dict[str, str]]:
    """The libpq URL of a SQLAlchemy one (no driver, no password) and the environment carrying the
    password."""
    bare = URL.create(
        "postgresql",
        username=url.username,
        host=url.host,
        port=url.port,
        database=url.database,
        query=url.query,
    )  # built afresh: ``URL.set(password=None)`` would keep the password
    conninfo = bare.render_as_string(hide_password=False)
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    return conninfo, env


def server_major(conn: Connection) -> int:
    return int(conn.execute(sa.text("SHOW server_version_num")).scalar_one()) // 10000


def dump(url: str, dest: Path) -> tuple[StoreFacts, PgTool]:
    """``pg_dump --format=custom`` of the whole database into ``dest``, with the facts of its snapshot."""
    parsed = parse_url(url)
    engine = make_engine(url)
    try:
        with translated("backing up the store", parsed), engine.connect() as plain:
            conn = plain.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                snapshot = conn.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one()
                facts = store_facts(conn)
                tool = find_tool("pg_dump", at_least=server_major(conn))
                conninfo, env = libpq(parsed)
                args = ["--format=custom", f"--file={dest}", f"--snapshot={snapshot}", "--no-password"]
                args += [f"--lock-wait-timeout={LOCK_TIMEOUT}", f"--dbname={conninfo}"]
                _run(tool, args, env, parsed)
    finally:
        engine.dispose()
    return facts, tool


def facts(url: str) -> StoreFacts:
    parsed = parse_url(url)
    engine = make_engine(url)
    try:
        with translated("reading the store", parsed), engine.connect() as conn:
            return store_facts(conn)
    finally:
        engine.dispose()


def restore(url: str, archive: Path, *, archive_major: int) -> list[str]:
    """Restore ``archive`` into the database at ``url`` in one transaction, then drop the store's tables
    that the archive does not have (created by migrations newer than the backup, holding rows from after
    it): migrating creates them again, empty. Returns the tables dropped."""
    parsed = parse_url(url)
    tool = find_tool("pg_restore", at_least=archive_major)
    conninfo, env = libpq(parsed)
    env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} -c lock_timeout={LOCK_TIMEOUT}".strip()
    listed = _run(tool, ["--list", str(archive)], env, parsed)
    in_archive = set(_TOC_TABLE.findall(listed))
    args = ["--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction"]
    args += ["--exit-on-error", "--no-password", f"--dbname={conninfo}", str(archive)]
    try:
        _run(tool, args, env, parsed)
    except StoreError as error:
        message = f"{error.message}; the restore rolled back, the store is as it was"
        raise type(error)(message, details=error.details) from None
    return _drop_newer_tables(url, in_archive)


def _drop_newer_tables(url: str, in_archive: set[str]) -> list[str]:
    parsed = parse_url(url)
    engine = make_engine(url)
    try:
        with translated("dropping tables newer than the backup", parsed), engine.begin() as conn:
            present = set(sa.inspect(conn).get_table_names())
            newer = [t.name for t in reversed(metadata.sorted_tables) if t.name in present - in_archive]
            quote = conn.dialect.identifier_preparer.quote
            for name in newer:
                conn.execute(sa.text(f"DROP TABLE {quote(name)} CASCADE"))
            return newer
    finally:
        engine.dispose()


def _run(tool: PgTool, args: list[str], env: dict[str, str], url: URL) -> str:
    """Run a client tool; its stderr's last lines become the error (they never hold the password)."""
    try:
        done = subprocess.run([str(tool.path), *args], capture_output=True, text=True, env=env, check=False)
    except OSError as error:
        raise StoreError(f"cannot run {tool.path}: {error}") from None
    if done.returncode == 0:
        return done.stdout
    lines = [line.strip().rstrip(";") for line in done.stderr.splitlines() if line.strip()]
    first = next((i for i, line in enumerate(lines) if "error" in line.lower()), max(len(lines) - 3, 0))
    reason = "; ".join(lines[first : first + 3]) or f"exit status {done.returncode}"
    details = {"database": safe_url(url), "tool": str(tool.path), "reason": reason}
    name = tool.path.name
    if any(marker in reason.lower() for marker in _UNREACHABLE):
        raise StoreUnavailableError(
            f"{name}: the store at {safe_url(url)} is unreachable: {reason}", details=details
        )
    hint = ""
    if "lock timeout" in reason.lower():
        hint = " (the store is in use: stop the service, then try again)"
    raise StoreError(f"{name} failed on {safe_url(url)}: {reason}{hint}", details=details)
