"""Check, then start: every path and store a command will write to is checked before Ray or MLflow starts.

Each check either returns quietly or raises one :class:`~study.errors.UserError` naming the path and the
reason (the CLI prints it as one line and exits 2), and creates nothing: a folder that does not exist yet
is judged by the nearest folder above it that does (where it would be created), and writability is tried
with a temporary file that is removed at once (permission bits lie to root and on read-only mounts; a
real attempt does not).

- :func:`check_input_file`: a spec or config path that is a folder, a FIFO or unreadable;
- :func:`check_output_folder`: ``--storage`` and ``report --out`` (a folder, writable, or creatable);
- :func:`check_sqlite_store`: a SQLite tracking store that can be opened for writing (or, when it does not
  exist yet, created), so that MLflow's engine never spends two minutes retrying a store it cannot write.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import tempfile
from pathlib import Path

from .errors import UserError


def check_input_file(path: str | Path, what: str = "spec") -> None:
    """A file to read: it exists, is a regular file (not a folder, a FIFO that would block the read, or a
    device) and can be read."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UserError(str(path), f"no such {what} file") from None
    except OSError as err:
        raise UserError(str(path), f"cannot read the {what} file ({_reason(err)})") from None
    if stat.S_ISDIR(mode):
        raise UserError(str(path), f"is a folder, not a {what} file")
    if not stat.S_ISREG(mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise UserError(str(path), f"is {kind}, not a {what} file")
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise UserError(str(path), f"cannot read the {what} file ({_reason(err)})") from None


def check_output_folder(path: str | Path, option: str) -> None:
    """A folder this command writes into (``--storage``, ``report --out``): an existing folder it can write
    in, or a path that can be created as one (the nearest existing folder above it is writable)."""
    path = Path(path).absolute()
    existing = path
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing.exists() else "is not a folder"
        if existing == path:
            raise UserError(option, f"{path} {what}, not a folder")
        raise UserError(option, f"cannot create the folder {path}: {existing} {what}")
    problem = _write_problem(existing)
    if problem:
        if existing == path:
            raise UserError(option, f"cannot write in the folder {path} ({problem})")
        raise UserError(option, f"cannot create the folder {path}: {existing} is not writable ({problem})")


def check_sqlite_store(db: Path, uri: str) -> None:
    """A SQLite tracking store: an existing file must be a SQLite database that can be written (the file and
    its folder, where SQLite writes its journal); a new one needs a writable folder."""
    if db.is_dir():
        raise UserError("tracking", f"the SQLite store {db} of {uri} is a folder, not a file")
    if not db.parent.is_dir():
        raise UserError("tracking", f"folder {db.parent} of the SQLite store {uri} does not exist")
    problem = _write_problem(db.parent)
    if problem:
        raise UserError("tracking", f"cannot write the SQLite store {uri}: its folder {db.parent} is not writable "
                                    f"({problem})")
    if not db.exists():
        return   # MLflow creates it in the writable folder
    if not stat.S_ISREG(db.stat().st_mode):
        raise UserError("tracking", f"the SQLite store {db} of {uri} is not a regular file")
    try:
        # a write inside a transaction rolled back: SQLite opens the file for writing and creates its journal,
        # and the database is left as it was (a store locked by another writer is busy, not broken)
        con = sqlite3.connect(f"{db.as_uri()}?mode=rw", uri=True, timeout=5, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("CREATE TABLE uwm_preflight (x)")
            con.execute("ROLLBACK")
        finally:
            con.close()
    except sqlite3.OperationalError as err:
        if "locked" in str(err) or "busy" in str(err):
            return
        raise UserError("tracking", f"cannot write the SQLite store {uri} ({err})") from None
    except sqlite3.DatabaseError as err:
        raise UserError("tracking", f"{db} is not a SQLite store ({err})") from None


def _write_problem(folder: Path) -> str | None:
    """Why a file cannot be created in ``folder``, or None when it can (tried, then removed)."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".uwm-preflight-")
    except OSError as err:
        return _reason(err)
    os.close(fd)
    os.unlink(name)
    return None


def _reason(err: OSError) -> str:
    return (err.strerror or type(err).__name__).lower()
