"""One SQLite file that several processes open, kept usable: the connection follows the file at
its path (a file deleted while in use is made again, empty, under a lock file; one replaced is
reopened), and SQLite's errors are said as what they mean for a caller: ``JobsUnavailable``
(locked by another process, damaged), never a bare ``sqlite3.Error``.

Synchronous and short: callers run it in one thread of their own. Nothing here opens the
database file itself (only ``stat``s it): closing any descriptor of a file drops every POSIX
lock the process holds on it, SQLite's included.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from .model import JobsUnavailable

log = logging.getLogger("figserve.jobs")
T = TypeVar("T")
Prepare = Callable[[sqlite3.Connection], None]


class SQLiteFile:
    """One connection, used under a lock by one thread at a time; see the module's notes.
    ``prepare`` makes a connection's schema (run under the file's write lock at each open)."""

    def __init__(self, path: Path, prepare: Prepare, busy_timeout: float = 1.5) -> None:
        self.path = path
        self.prepare = prepare
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._ident: tuple[int, int] | None = None

    # -- the file -----------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> sqlite3.Connection:
        """The connection to the file now at ``path``: made again if it went away."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._recreate()
            st = os.stat(self.path)
        if self._conn is not None and (st.st_dev, st.st_ino) != self._ident:
            log.warning("job database %s was replaced; opening the new one", self.path)
            self.close()
        if self._conn is None:
            self._connect()
        assert self._conn is not None
        return self._conn

    def _recreate(self) -> None:
        """Make the database file again (it was deleted, or this is the first start), with the
        other workers kept out by a lock file while it happens."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path.with_name(self.path.name + ".lock")):
            if self.path.exists():
                return  # another worker made it meanwhile
            if self._conn is not None:
                log.warning(
                    "job database %s was deleted while in use: made a new, empty one (the jobs "
                    "it held are lost)",
                    self.path,
                )
                self.close()
            # The write-ahead log of the deleted file must not be applied to the new one.
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.path}{suffix}")
            self._connect()

    def _connect(self) -> None:
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            st = os.stat(self.path)
            # Workers start together and all open the file; switching a new database to WAL
            # fails at once with "locked" while another worker does it, so retry briefly.
            deadline = time.monotonic() + max(5.0, self.busy_timeout)
            while True:
                try:
                    self.prepare(conn)
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        except BaseException:
            conn.close()
            raise
        self._conn, self._ident = conn, (st.st_dev, st.st_ino)

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` under the lock, its SQLite errors said as what they mean."""
        with self._lock:
            try:
                return fn(self._connection())
            except sqlite3.Error as exc:
                raise self._unavailable(exc) from exc
            except OSError as exc:  # the folder cannot be made or read
                raise JobsUnavailable(f"the job database cannot be opened ({exc})", 5) from exc

    def _unavailable(self, exc: sqlite3.Error) -> JobsUnavailable:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return JobsUnavailable("the job database is locked by another process", 2)
        self.close()  # the next call opens it again: it may have been restored meanwhile
        return JobsUnavailable(
            f"the job database {self.path.name} cannot be used ({text}); restore it, or move "
            "it away to start with an empty one",
            10,
        )

    def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def tx(conn: sqlite3.Connection) -> T:
            # IMMEDIATE takes the write lock first, so two workers cannot both pass a check.
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn)
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # the error may have ended it
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return out

        return self.run(tx)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
