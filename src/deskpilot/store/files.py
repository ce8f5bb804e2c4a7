"""Files only their owner can read: the home folder, the store's databases, keys, ledgers and queues.

The store keeps redacted ticket texts, tenants' key hashes and the audit key, so nothing DeskPilot creates
under its home is readable by other local users: folders it creates are 0700 and files 0600. Existing
files of the store (a database from an earlier release, its ``-wal`` and ``-shm``) are tightened when the
store opens them; an existing folder is left as its operator made it, since the home may be a shared
directory chosen on purpose (:func:`loose_mode` lets a command warn about it).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_OTHERS = stat.S_IRWXG | stat.S_IRWXO

log = logging.getLogger(__name__)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) as 0700 folders; an existing folder keeps its mode."""
    missing: list[Path] = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    for created in missing:  # mkdir's mode goes through the umask, and parents get the default
        created.chmod(PRIVATE_DIR)
    return path


def tighten(path: Path) -> bool:
    """Make an existing file 0600 when group or others may use it; ``True`` when its mode changed."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(mode) or not mode & _OTHERS:
        return False
    path.chmod(PRIVATE_FILE)
    log.info("%s was readable by other users; now 0600", path)
    return True


def create_private(path: Path) -> bool:
    """Create an empty 0600 file unless one exists (then it is tightened); ``True`` when created."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        tighten(path)
        return False
    os.close(fd)
    return True


def open_private_append(path: Path) -> int:
    """A descriptor appending to ``path``, created 0600 (an existing file is tightened)."""
    private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
    if os.fstat(fd).st_mode & _OTHERS:
        os.fchmod(fd, PRIVATE_FILE)
    return fd


def loose_mode(path: Path) -> int | None:
    """The permission bits of a folder or file that group or others may use, else ``None``."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    return stat.S_IMODE(mode) if mode & _OTHERS else None
