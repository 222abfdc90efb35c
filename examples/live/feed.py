"""Your data, changing: appends an order to orders.db every second, as a shop's system would.

Run ``python feed.py`` (ten minutes of orders, or until Ctrl-C), or ``python feed.py --count 5``.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import time

from orders import DB, REGIONS

SCHEMA = """CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, region TEXT NOT NULL, amount REAL NOT NULL)"""


def order(rng: random.Random, ts: float) -> tuple[float, str, float]:
    region = rng.choices(REGIONS, weights=(4, 3, 2, 1))[0]
    return ts, region, round(min(199.0, rng.lognormvariate(3.5, 0.6)), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between orders")
    parser.add_argument("--count", type=int, default=600, help="orders to add (0: forever)")
    args = parser.parse_args()
    rng = random.Random()
    db = sqlite3.connect(DB, timeout=5)
    db.execute("PRAGMA journal_mode=WAL")  # readers (the figures) never wait for this writer
    db.execute(SCHEMA)
    if db.execute("SELECT count(*) FROM orders").fetchone()[0] == 0:
        # A shop that has been open for half an hour.
        now = time.time()
        past = sorted(now - rng.uniform(0, 1800) for _ in range(300))
        db.executemany("INSERT INTO orders (ts, region, amount) VALUES (?, ?, ?)",
                       [order(rng, ts) for ts in past])  # fmt: skip
        db.commit()
    added = 0
    while not args.count or added < args.count:
        db.execute("INSERT INTO orders (ts, region, amount) VALUES (?, ?, ?)",
                   order(rng, time.time()))  # fmt: skip
        db.commit()
        added += 1
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
