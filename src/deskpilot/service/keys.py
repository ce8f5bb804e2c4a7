"""API keys: a raw ``dp_<key_id>_<secret>`` key maps to a tenant, and the server never keeps the raw key.

Only ``sha256(secret)`` is stored. The 8-hex ``key_id`` is public (safe in logs) and is how a presented key is
found, so checking it costs one constant-time comparison. The secret has 256 random bits, so a fast hash is
enough; no password KDF is needed. Keys come from configuration (``TENANT:KEY`` pairs) and from a JSON-lines
keys file that the CLI appends to and the server re-reads when it changes, so keys are added or revoked
without a restart. One record per line::

    {"key_id": "1a2b3c4d", "tenant": "acme", "secret_sha256": "<64 hex>",
     "created_at": "2025-01-31T12:00:00+00:00", "label": null, "revoked": false, "role": "agent"}

A key carries a role for the console: ``agent`` (the default, and what a record written before roles existed
has, as every configured key) works its tenant's queue; ``operator`` also steers models and rollouts. The API
itself treats both alike.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deskpilot.errors import ConfigError, UsageError
from deskpilot.store.files import private_dir, tighten

log = logging.getLogger(__name__)

KEY_PREFIX = "dp"
MAX_KEY_LENGTH = 256
MIN_CONFIG_KEY_LENGTH = 16
MAX_LABEL_LENGTH = 200
_TENANT_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_KEY_ID_RE = re.compile(r"[0-9a-f]{8}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_NO_MATCH = "0" * 64  # compared against when the key id is unknown, so a miss costs what a hit does
AGENT = "agent"
OPERATOR = "operator"
ROLES = (AGENT, OPERATOR)


@dataclass(frozen=True)
class Tenant:
    """Who a request acts for; ``key_id`` says which of the tenant's keys was used (safe to log)."""

    name: str
    key_id: str
    role: str = AGENT


@dataclass(frozen=True)
class KeyRecord:
    """A stored key: its public id, its tenant and the hash of its secret (kept out of repr all the same)."""

    key_id: str
    tenant: str
    secret_sha256: str = field(repr=False)
    created_at: str = ""
    label: str | None = None
    revoked: bool = False
    role: str = AGENT
    source: str = "file"  # "file" or "config"; not written to the file

    def to_json(self) -> str:
        data = asdict(self)
        del data["source"]
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> KeyRecord:
        """Parse one line of the keys file; ``ValueError`` says what is wrong without quoting the line."""
        try:
            data: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        checks: dict[str, Callable[[Any], bool]] = {
            "key_id": lambda v: isinstance(v, str) and _KEY_ID_RE.fullmatch(v) is not None,
            "tenant": lambda v: isinstance(v, str) and _TENANT_RE.fullmatch(v) is not None,
            "secret_sha256": lambda v: isinstance(v, str) and _SHA256_RE.fullmatch(v) is not None,
            "created_at": lambda v: isinstance(v, str),
            "label": lambda v: v is None or isinstance(v, str),
            "revoked": lambda v: isinstance(v, bool),
        }
        for name, ok in checks.items():
            if name not in data:
                raise ValueError(f"missing field {name!r}")
            if not ok(data[name]):
                raise ValueError(f"invalid field {name!r}")
        role = data.get("role", AGENT)  # records written before roles existed are agents' keys
        if role not in ROLES:
            raise ValueError("invalid field 'role'")
        return cls(**{name: data[name] for name in checks}, role=role)

    def public(self) -> dict[str, object]:
        """What may be shown to an operator: everything but the hash."""
        data = asdict(self)
        del data["secret_sha256"]
        return data


def validate_tenant(name: str) -> str:
    if not _TENANT_RE.fullmatch(name):
        raise UsageError(
            f"invalid tenant name {name[:80]!r}: use 1 to 64 letters, digits, '_', '.' or '-'",
            details={"tenant": name[:80]},
        )
    return name


def validate_role(role: str) -> str:
    if role not in ROLES:
        raise UsageError(
            f"invalid role {role[:40]!r}: use one of {', '.join(ROLES)}", details={"role": role[:40]}
        )
    return role


def generate_key(tenant: str, label: str | None = None, role: str = AGENT) -> tuple[str, KeyRecord]:
    """A fresh raw key and the record that stores it; the raw key is returned once and never kept."""
    validate_tenant(tenant)
    validate_role(role)
    if label is not None and (len(label) > MAX_LABEL_LENGTH or not label.isprintable()):
        raise UsageError(f"a key label must be printable text of at most {MAX_LABEL_LENGTH} characters")
    key_id, secret = secrets.token_hex(4), secrets.token_urlsafe(32)
    record = KeyRecord(
        key_id=key_id,
        tenant=tenant,
        secret_sha256=_sha256(secret),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        label=label,
        role=role,
    )
    return f"{KEY_PREFIX}_{key_id}_{secret}", record


def key_id_of(raw_key: str) -> str | None:
    """The public id of a ``dp_`` key, or None when the text is not one."""
    parts = raw_key.split("_", 2)
    if len(parts) == 3 and parts[0] == KEY_PREFIX and _KEY_ID_RE.fullmatch(parts[1]) and parts[2]:
        return parts[1]
    return None


def bearer_token(authorization: str | None) -> str | None:
    """The key in an ``Authorization: Bearer <key>`` header value, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _fingerprint(raw_key: str) -> tuple[str, str]:
    """(key_id, hash) of a presented key: ``dp_`` keys hash their secret; other configured keys hash whole."""
    key_id = key_id_of(raw_key)
    if key_id is not None:
        return key_id, _sha256(raw_key.split("_", 2)[2])
    digest = _sha256(raw_key)
    return digest[:8], digest


def config_key_records(entries: Iterable[str]) -> list[KeyRecord]:
    """Hash ``TENANT:KEY`` entries from configuration; errors name the entry's position, never its text."""
    records: list[KeyRecord] = []
    seen: set[str] = set()
    for position, entry in enumerate(entries, start=1):
        tenant, sep, raw_key = entry.strip().partition(":")
        tenant, raw_key = tenant.strip(), raw_key.strip()
        where = f"API key entry {position} (DESKPILOT_API_KEYS)"
        if not sep or not tenant or not raw_key:
            raise ConfigError(f"{where}: expected TENANT:KEY")
        if not _TENANT_RE.fullmatch(tenant) or key_id_of(tenant) is not None:
            raise ConfigError(f"{where}: invalid tenant name (1 to 64 letters, digits, '_', '.' or '-')")
        if not MIN_CONFIG_KEY_LENGTH <= len(raw_key) <= MAX_KEY_LENGTH:
            raise ConfigError(f"{where}: a key needs {MIN_CONFIG_KEY_LENGTH} to {MAX_KEY_LENGTH} characters")
        key_id, digest = _fingerprint(raw_key)
        if digest in seen:
            raise ConfigError(f"{where}: the same key is configured twice")
        seen.add(digest)
        records.append(KeyRecord(key_id=key_id, tenant=tenant, secret_sha256=digest, source="config"))
    return records


def _parse_lines(path: Path, text: str) -> list[KeyRecord]:
    """Records of a keys file; malformed lines are skipped with a warning naming the file and line."""
    records: list[KeyRecord] = []
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(KeyRecord.from_json(line))
        except ValueError as exc:
            if number == len(lines):
                # no newline yet: most likely a record being appended right now; the next reload sees it whole
                log.debug("%s:%d: incomplete last line skipped", path, number)
                continue
            log.warning("%s:%d: skipped malformed key record: %s", path, number, exc)
    return records


def list_keys(path: Path) -> list[KeyRecord]:
    """Every record in the keys file, revoked ones included; a missing file holds no keys."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the keys file: {exc}") from exc
    return _parse_lines(path, text)


@contextmanager
def _writer_lock(path: Path) -> Iterator[None]:
    """Serialize CLI writers (append vs rewrite); the server only reads and needs no lock. The folder is
    created 0700 and a keys file from an earlier release tightened to 0600."""
    private_dir(path.parent)
    tighten(path)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_key(path: Path, tenant: str, label: str | None = None, role: str = AGENT) -> tuple[str, KeyRecord]:
    """Append a new key for ``tenant`` to the keys file (mode 0600) and return the raw key, shown once."""
    with _writer_lock(path):
        taken = {record.key_id for record in list_keys(path)}
        raw_key, record = generate_key(tenant, label, role)
        while record.key_id in taken:
            raw_key, record = generate_key(tenant, label, role)
        existed = path.exists()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            lead = b"\n" if size and os.pread(fd, 1, size - 1) != b"\n" else b""
            data = lead + (record.to_json() + "\n").encode("utf-8")
            if os.write(fd, data) != len(data):
                raise ConfigError(f"{path}: short write while adding a key (disk full?)")
            os.fsync(fd)
        finally:
            os.close(fd)
        if not existed:
            _fsync_dir(path.parent)
    return raw_key, record


def revoke_key(path: Path, key_id: str) -> KeyRecord:
    """Mark a key revoked by rewriting the file (temp file, then an atomic replace); other lines are kept."""
    key_id = key_id_of(key_id) or key_id.strip()
    if not _KEY_ID_RE.fullmatch(key_id):
        raise UsageError("a key id is 8 hex digits, as `deskpilot keys list` shows")
    with _writer_lock(path):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the keys file: {exc}") from exc
        found: KeyRecord | None = None
        for index, line in enumerate(lines):
            try:
                record = KeyRecord.from_json(line)
            except ValueError:
                continue
            if record.key_id == key_id:
                found = replace(record, revoked=True)
                lines[index] = found.to_json()
        if found is None:
            raise UsageError(f"no key {key_id} in {path}", details={"key_id": key_id})
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write("".join(line + "\n" for line in lines))
                handle.flush()
                os.fsync(handle.fileno())
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
    return found


class KeyRing:
    """Authenticates raw keys against configured keys plus the keys file, re-read when it changes.

    The file is checked with one ``os.stat`` at most every ``check_interval_s``; a changed file is parsed into
    a new index that replaces the old one in a single assignment, so readers never lock. An unreadable file
    keeps the last good keys; a deleted file drops its keys (failing closed).
    """

    def __init__(
        self,
        keys_file: Path | None = None,
        config_keys: Iterable[str] = (),
        *,
        check_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = keys_file
        self._config = config_key_records(config_keys)
        self._interval = check_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._signature: tuple[int, ...] | None = None
        self._problem: str | None = None
        self._next_check = float("-inf")
        self._index = self._build_index([])
        self.refresh(force=True)

    def __repr__(self) -> str:
        return f"KeyRing(keys_file={str(self._path)!r}, active_keys={len(self)})"

    def __len__(self) -> int:
        return sum(len(records) for records in self._index.values())

    @property
    def tenants(self) -> frozenset[str]:
        return frozenset(r.tenant for records in self._index.values() for r in records)

    def authenticate(self, raw_key: str | None) -> Tenant | None:
        """The tenant a raw key belongs to, or None for a missing, malformed, unknown or revoked key."""
        if not raw_key or len(raw_key) > MAX_KEY_LENGTH:
            return None
        self.refresh()
        key_id, digest = _fingerprint(raw_key)
        candidates = self._index.get(key_id, ())
        if not candidates:
            hmac.compare_digest(_NO_MATCH, digest)
            return None
        match: KeyRecord | None = None
        for record in candidates:
            if hmac.compare_digest(record.secret_sha256, digest) and match is None:
                match = record
        return None if match is None else Tenant(name=match.tenant, key_id=match.key_id, role=match.role)

    def active(self, key_id: str, tenant: str) -> Tenant | None:
        """The tenant (with its current role) of an active key known by its id, or None once it is revoked,
        deleted or moved to another tenant: how a console session learns its key no longer counts."""
        self.refresh()
        for record in self._index.get(key_id, ()):
            if record.tenant == tenant:
                return Tenant(name=record.tenant, key_id=record.key_id, role=record.role)
        return None

    def refresh(self, *, force: bool = False) -> None:
        """Re-read the keys file if it changed; cheap enough to call on every request."""
        if self._path is None:
            return
        now = self._clock()
        if not force and now < self._next_check:
            return
        if not self._lock.acquire(blocking=force):
            return  # another thread is checking right now; the current keys serve meanwhile
        try:
            self._next_check = now + self._interval
            self._check(self._path)
        finally:
            self._lock.release()

    def _check(self, path: Path) -> None:
        try:
            stat = path.stat()
        except FileNotFoundError:
            if self._signature is not None:
                log.warning("%s: keys file is gone; its keys no longer authenticate", path)
            self._signature = None
            self._index = self._build_index([])
            return
        except OSError as exc:
            self._report(f"{path}: cannot stat the keys file, keeping the previous keys: {exc}")
            return
        signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        if signature == self._signature:
            return
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self._report(f"{path}: cannot read the keys file, keeping the previous keys: {exc}")
            return
        self._signature, self._problem = signature, None
        self._index = self._build_index(r for r in _parse_lines(path, text) if not r.revoked)
        log.info("%s: loaded %d active API keys", path, len(self))

    def _report(self, problem: str) -> None:
        """Warn once per distinct problem; the check repeats every interval until it clears."""
        if problem != self._problem:
            log.warning("%s", problem)
            self._problem = problem

    def _build_index(self, file_records: Iterable[KeyRecord]) -> dict[str, tuple[KeyRecord, ...]]:
        index: dict[str, tuple[KeyRecord, ...]] = {}
        for record in [*self._config, *file_records]:
            index[record.key_id] = (*index.get(record.key_id, ()), record)
        return index
