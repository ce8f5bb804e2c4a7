"""Audit keys and the head ledger: what keeps the chain honest against someone who can write its table.

The hashes of :mod:`deskpilot.store.audit` are public, so on their own they cannot tell a forged entry
appended with a correct hash, a deleted tail or a chain rewritten from some entry on. Two things the
database never holds close that gap:

- **Audit keys.** Every new entry carries ``key_id`` and ``mac = HMAC-SHA256(key, "deskpilot-audit-mac-v1"
  NUL key_id NUL hash)``; ``hash`` already covers the entry's fields, its ``seq`` and its predecessor. Keys
  come from ``DESKPILOT_AUDIT_KEY`` (comma-separated, the first signs) or a key file (default
  ``DESKPILOT_HOME/audit.key``, 0600, created with a random key on the first signed append; one hex key a
  line, the last one signs). A key's id is a hash of it, so an entry names its key without revealing it;
  rotation adds a key and keeps the old ones for verifying old entries.
- **The head ledger.** Every committed append is also written, as ``{"store", "seq", "hash", "key_id",
  "at"}``, to a JSON-lines file (default ``DESKPILOT_HOME/audit-heads.jsonl``, 0600, append-only), and
  verification checks every head recorded there for its store: a deleted tail, a wiped log or a rewritten
  chain no longer holds a recorded head. The database role cannot reach that file; point the setting at
  storage with its own write protection (an append-only mount, a synced folder) to survive the loss of the
  host as well.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from deskpilot.errors import ConfigError
from deskpilot.store.audit_entry import AuditEntry, format_time
from deskpilot.store.audit_verify import PROBLEM_KEY, PROBLEM_MAC, AuditAnchor
from deskpilot.store.files import PRIVATE_FILE, open_private_append, private_dir, tighten

log = logging.getLogger(__name__)

KEY_BYTES = 32
MIN_SECRET_CHARS = 32
_KEY_ID_CONTEXT = b"deskpilot-audit-key-id\x00"
_MAC_CONTEXT = b"deskpilot-audit-mac-v1\x00"
_DIGEST_CONTEXT = b"deskpilot-audit-digest-v1\x00"
_HEX_KEY = re.compile(r"(?:[0-9a-fA-F]{2}){32,}")
_HASH = re.compile(r"[0-9a-f]{64}")


def parse_secret(text: str) -> bytes:
    """A configured key: hex of at least 32 bytes, or any text of at least 32 characters."""
    text = text.strip()
    if _HEX_KEY.fullmatch(text):
        return bytes.fromhex(text)
    if len(text) < MIN_SECRET_CHARS:
        raise ValueError(f"an audit key needs at least {MIN_SECRET_CHARS} characters (or 64 hex digits)")
    return text.encode("utf-8")


def key_id_of(secret: bytes) -> str:
    """The public name of a key: a hash of it, safe to store beside every entry."""
    return hashlib.sha256(_KEY_ID_CONTEXT + secret).hexdigest()[:12]


def entry_mac(secret: bytes, key_id: str, entry_hash: str) -> str:
    message = _MAC_CONTEXT + key_id.encode("ascii") + b"\x00" + entry_hash.encode("ascii")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class AuditKeys:
    """The keys a process knows, by id, and the one that signs new entries (``None``: it cannot sign)."""

    keys: Mapping[str, bytes] = field(repr=False)
    signing_id: str | None
    origin: str
    """Where the keys come from, for messages (a setting's name, a file's path; never a key)."""

    def _signing(self) -> tuple[str, bytes]:
        if self.signing_id is None:
            raise ConfigError(
                f"no audit key to sign with ({self.origin}): set DESKPILOT_AUDIT_KEY or let DeskPilot "
                "create the key file"
            )
        return self.signing_id, self.keys[self.signing_id]

    def seal(self, entry: AuditEntry) -> AuditEntry:
        key_id, secret = self._signing()
        return replace(entry, key_id=key_id, mac=entry_mac(secret, key_id, entry.hash))

    def check(self, entry: AuditEntry) -> tuple[str, str] | None:
        if entry.mac is None:
            return None
        secret = self.keys.get(entry.key_id or "")
        if secret is None:
            return PROBLEM_KEY, (
                f"entry {entry.seq} is signed with key {entry.key_id}, which is not among the keys of "
                f"{self.origin}"
            )
        if not hmac.compare_digest(entry_mac(secret, entry.key_id or "", entry.hash), entry.mac):
            return PROBLEM_MAC, f"entry {entry.seq}'s MAC is not the one key {entry.key_id} gives"
        return None

    def digest(self, purpose: str, text: str) -> tuple[str, str]:
        """(key id, keyed hash) of ``text``: an audit entry can name a value (a ticket id) without keeping
        it, and only someone holding the key can test a guess against it."""
        key_id, secret = self._signing()
        message = _DIGEST_CONTEXT + purpose.encode("utf-8") + b"\x00" + text.encode("utf-8", "surrogatepass")
        return key_id, hmac.new(secret, message, hashlib.sha256).hexdigest()


def read_key_file(path: Path) -> list[bytes]:
    """The keys of a key file, oldest first; a malformed line is an error naming its number only."""
    tighten(path)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the audit key file: {error}") from None
    keys = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not _HEX_KEY.fullmatch(line):
            raise ConfigError(f"{path}:{number}: not an audit key (expected 64 or more hex digits)")
        keys.append(bytes.fromhex(line))
    return keys


def create_key_file(path: Path) -> None:
    """Create the key file with one random key (0600), unless another process just did."""
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(_key_line())
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(PRIVATE_FILE)
        with contextlib.suppress(FileExistsError):  # a racing process won: use its key
            os.link(tmp, path)
            log.info("created the audit key file %s", path)
    finally:
        Path(tmp).unlink()


def rotate_key_file(path: Path) -> tuple[str | None, str]:
    """Add a new key to the key file, which signs from now on; (previous signing key id, new key id)."""
    with _locked(path.with_name(path.name + ".lock")):
        previous = read_key_file(path) if path.exists() else []
        fd = open_private_append(path)
        try:
            os.write(fd, _key_line().encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
    keys = read_key_file(path)
    return (key_id_of(previous[-1]) if previous else None), key_id_of(keys[-1])


def _key_line() -> str:
    return secrets.token_bytes(KEY_BYTES).hex() + "\n"


def load_keys(configured: Sequence[str], key_file: Path, *, create: bool) -> AuditKeys:
    """The configured keys (the first signs) and the key file's (its last signs when none is configured);
    with ``create``, a missing key file is created when no key is configured."""
    from_config = []
    for position, text in enumerate(configured, start=1):
        try:
            from_config.append(parse_secret(text))
        except ValueError as error:
            raise ConfigError(f"DESKPILOT_AUDIT_KEY entry {position}: {error}") from None
    if create and not from_config and not key_file.exists():
        create_key_file(key_file)
    from_file = read_key_file(key_file) if key_file.exists() else []
    signing = from_config[0] if from_config else (from_file[-1] if from_file else None)
    origins = (["DESKPILOT_AUDIT_KEY"] if from_config else []) + ([str(key_file)] if from_file else [])
    return AuditKeys(
        keys={key_id_of(secret): secret for secret in [*from_file, *from_config]},
        signing_id=None if signing is None else key_id_of(signing),
        origin=" and ".join(origins) or f"no DESKPILOT_AUDIT_KEY, no key file at {key_file}",
    )


class HeadLedger:
    """Heads of the audit chain recorded outside the database, one JSON object a line, per store."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, entry: AuditEntry, location: str) -> None:
        line = {
            "store": location,
            "seq": entry.seq,
            "hash": entry.hash,
            "key_id": entry.key_id,
            "at": format_time(entry.at),
        }
        data = (json.dumps(line, sort_keys=True) + "\n").encode("utf-8")
        fd = open_private_append(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def anchors(self, location: str) -> list[AuditAnchor]:
        """The heads recorded for the store at ``location``; a malformed line (other than a last line cut
        short by a crash) is an error: the ledger itself was tampered with."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{self.path}: cannot read the audit head ledger: {error}") from None
        lines = text.split("\n")
        found = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                head = _parse_head(line)
            except ValueError:
                if number == len(lines):  # no newline yet: a write cut short
                    continue
                raise ConfigError(f"{self.path}:{number}: not a recorded audit head") from None
            if head[0] == location:
                found.append(head[1])
        return found

    def count(self, location: str) -> int:
        return len(self.anchors(location))


def _parse_head(line: str) -> tuple[str, AuditAnchor]:
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("not an object")
    store, seq, digest, key_id = data.get("store"), data.get("seq"), data.get("hash"), data.get("key_id")
    if not isinstance(store, str) or not isinstance(seq, int) or not isinstance(digest, str):
        raise ValueError("missing fields")
    if not _HASH.fullmatch(digest) or not (key_id is None or isinstance(key_id, str)):
        raise ValueError("bad fields")
    return store, AuditAnchor(seq, digest, key_id)


class ChainSeal:
    """The :class:`~deskpilot.store.audit.AuditSeal` of a process: its keys (loaded on first use, again
    when ``key_file`` changes, as a rotation does) and its head ledger."""

    def __init__(
        self, keys: Callable[[], AuditKeys], ledger: HeadLedger | None, *, key_file: Path | None = None
    ) -> None:
        self._load = keys
        self._key_file = key_file
        self._loaded: tuple[tuple[int, int, int] | None, AuditKeys] | None = None
        self.ledger = ledger

    @property
    def keys(self) -> AuditKeys:
        signature = _signature(self._key_file)
        if self._loaded is None or self._loaded[0] != signature:
            keys = self._load()
            self._loaded = (_signature(self._key_file), keys)
        return self._loaded[1]

    def prepare(self) -> None:
        """Load (or create) the signing key now, so that an action fails before it changes anything."""
        self.keys._signing()

    def seal(self, entry: AuditEntry) -> AuditEntry:
        return self.keys.seal(entry)

    def check(self, entry: AuditEntry) -> tuple[str, str] | None:
        return self.keys.check(entry)

    def witness(self, entry: AuditEntry, location: str) -> None:
        if self.ledger is None:
            return
        try:
            self.ledger.record(entry, location)
        except OSError as error:  # the entry is committed; only this record of it is missing
            log.error(
                "audit entry %d is written but not recorded in %s: %s", entry.seq, self.ledger.path, error
            )
        log.info("audit head %d:%s", entry.seq, entry.hash)

    def anchors(self, location: str) -> list[AuditAnchor]:
        return [] if self.ledger is None else self.ledger.anchors(location)


def _signature(path: Path | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
