"""Whether a data directory can be used, and disk errors as one line."""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path

from labctl.core.errors import StorageError

UNUSABLE_FIX = "give --data-dir (or storage.data_dir in the lab file) a folder labctl can use"


def check_data_dir(data_dir: Path, *, write: bool) -> bool:
    """Raise :class:`StorageError` if ``data_dir`` cannot be used; return whether it is writable.

    A writer (``labctl run``) needs a directory it can write (created if missing); a reader
    (``runs``, ``show``, ``report``, ``export``) needs an existing one and works read-only.
    """
    if data_dir.exists() and not data_dir.is_dir():
        raise StorageError(data_dir, "is a file, not a data directory", UNUSABLE_FIX)
    if not data_dir.exists():
        if not write:
            raise StorageError(data_dir, "does not exist (no runs stored there)",
                               "give --data-dir the folder that holds journal/, assets/ and tiled/")
        try:
            data_dir.mkdir(parents=True)
        except OSError as error:
            raise StorageError(data_dir, f"cannot be created ({error.strerror})", UNUSABLE_FIX) from None
    can_write = _can_write(data_dir)
    if write and not can_write:
        raise StorageError(data_dir, "is not writable (a read-only disk, or its permissions)",
                           UNUSABLE_FIX + "; runs, show, report and export still read this one")
    if write:
        for sub in ("journal", "assets", "tiled"):
            if (data_dir / sub).exists() and not _can_write(data_dir / sub):
                raise StorageError(data_dir / sub, "is not writable", UNUSABLE_FIX)
    return can_write


def _can_write(directory: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False


def disk_error(error: OSError, doing: str) -> StorageError:
    """A one-line :class:`StorageError` for an ``OSError`` met while ``doing`` something with a file."""
    path = error.filename or "the data directory"
    if error.errno == errno.ENOSPC:
        fix = "free space on that disk (nothing journalled is lost), then `labctl recover`"
    elif error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = "use a writable folder (--out or --data-dir)"
    elif error.errno == errno.ENOENT:
        fix = "restore the file from a backup or a copy of the data directory"
    else:
        fix = "check the disk and the path"
    return StorageError(path, f"{doing} failed: {error.strerror or error}", fix)
