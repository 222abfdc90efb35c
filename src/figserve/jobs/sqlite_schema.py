"""The job database's schema, and how a database of an earlier release is brought up to date
when it is opened (under the write lock, so workers opening it together change it once)."""

from __future__ import annotations

import contextlib
import sqlite3

from .model import ACTIVE

COLUMNS = (
    "id, state, output, total, done, created, started, finished, heartbeat, owner, error, "
    "result_bytes, expires, attempts, client, bucket, paper"
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    output TEXT NOT NULL,
    total INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    heartbeat REAL,
    owner TEXT,
    error TEXT,
    result_bytes INTEGER,
    expires REAL,
    items TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state_created ON jobs (state, created);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created);
"""
# Added after the first release: added to an existing database when it is opened.
_ADDED_COLUMNS = {
    "attempts": "INTEGER NOT NULL DEFAULT 0",
    "client": "TEXT",
    "bucket": "TEXT",
    "paper": "TEXT",
}
_ADDED = """
CREATE INDEX IF NOT EXISTS jobs_client_created ON jobs (client, created);
CREATE INDEX IF NOT EXISTS jobs_bucket_state ON jobs (bucket, state);
CREATE TABLE IF NOT EXISTS job_items (
    job TEXT NOT NULL, idx INTEGER NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY (job, idx)
) WITHOUT ROWID;
"""
# Jobs of a release that counted items kept (0 to done - 1) instead of listing them.
_LIST_COUNTED_ITEMS = """
WITH RECURSIVE n(i) AS (
    SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < (SELECT MAX(done) FROM jobs)
)
INSERT OR IGNORE INTO job_items (job, idx, bytes)
SELECT jobs.id, n.i, 0 FROM jobs JOIN n ON n.i < jobs.done WHERE jobs.state IN (?, ?)
"""


def prepare(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL loses at most the last commits on power loss, never consistency.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(_SCHEMA)
    # Under the write lock, so two workers opening an older file do not both change it.
    conn.execute("BEGIN IMMEDIATE")
    try:
        have = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
        for name, kind in _ADDED_COLUMNS.items():
            if name not in have:
                conn.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
        listed = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'job_items'"
        ).fetchone()
        for statement in _ADDED.strip().split(";"):
            if statement.strip():
                conn.execute(statement)
        if not listed:
            conn.execute(_LIST_COUNTED_ITEMS, ACTIVE)
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
