"""The live loop's state store: one SQLite file, one transaction per bar (SPEC §13.3).

``<state dir>/live.sqlite`` (WAL journal, ``synchronous=FULL``) holds:

* ``meta`` — schema version, the config (JSON) and its hash, run id, mode, the run's first bar and
  the anchor of its history (the first warm-up day);
* ``bars`` — the anchored history: every market bar the run has seen, from the anchor on (the
  signals of bar t are computed from exactly these rows, as in the backtest), in chunks of
  columns (:func:`pack`): one per committed bar, the warm-up in chunks of 250,000 rows, so a
  restart reads millions of rows in a second;
* ``journal`` — per committed step: the per-bar output rows, fills, lifecycle events, kernel
  alerts (numpy arrays in one blob, :func:`pack`), allocation records and net orders (JSON);
* ``snapshot`` — the engine's persistent state after the last committed bar (:func:`pack`);
* ``orders`` — live orders: the intent is committed **before** the order is sent, the result in
  the bar's transaction (:mod:`orchestra.live.trading`);
* ``outbox`` — the bar's notifications (:mod:`orchestra.monitoring.notify`) and whether they
  were delivered (``pending``, ``sent``, ``refused``, or ``unsent`` without a webhook).

A bar's market rows, journal row and snapshot are written in **one** transaction, so a process
killed at any point (SIGKILL included) leaves either the whole bar or none of it; the restart
resumes after the last committed bar and never books a fill twice. Arrays round-trip bit for bit
(raw bytes of each array; floats in JSON use Python's shortest round-trip repr).

A test hook, ``ORCHESTRA_CRASH_AT=<bar>:<point>`` with point ``mid-write`` (inside the bar's
transaction, after its rows are written) or ``after-commit``, kills the process with SIGKILL there;
the crash-safety tests use it to land kills inside the write.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

SCHEMA_VERSION = 3  # 2: packed arrays (not .npz), journal rows carry their timestamps;
# 3: kernel alerts name their pod, the state records pods denied for min_pod_capital
DB_NAME = "live.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bars (
    chunk INTEGER PRIMARY KEY, rows INTEGER NOT NULL, arrays BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    first_bar INTEGER PRIMARY KEY, end_bar INTEGER NOT NULL, ts INTEGER NOT NULL,
    arrays BLOB NOT NULL, allocations TEXT NOT NULL, orders TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshot (
    id INTEGER PRIMARY KEY CHECK (id = 1), next_bar INTEGER NOT NULL, arrays BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    client_id TEXT PRIMARY KEY, bar INTEGER NOT NULL, ts INTEGER NOT NULL, symbol TEXT NOT NULL,
    side TEXT NOT NULL, amount REAL NOT NULL, status TEXT NOT NULL, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, bar INTEGER NOT NULL,
    kind TEXT NOT NULL, severity TEXT NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, body TEXT NOT NULL
);
"""
_TABLES = {"meta", "bars", "journal", "snapshot", "outbox", "orders"}


from orchestra.live.lock import StateLock, StoreError  # noqa: E402  (re-exported)


def _damaged(path: Path, exc: BaseException) -> StoreError:
    return StoreError(
        f"{path} is damaged or unreadable ({type(exc).__name__}: {exc}): restore it from a "
        "backup, or start a new run with another --state directory"
    )


_MAGIC = b"ORCA1\n"


def pack(arrays: dict[str, np.ndarray]) -> bytes:
    """Named arrays → bytes: a JSON header (name, dtype, shape per array) and the arrays' raw
    bytes, in order. Numbers round-trip bit for bit; object arrays (pickles) are refused.
    (``np.savez`` wrote a zip entry per array, most of a bar's commit.)"""
    header, chunks = [], []
    for name, value in arrays.items():
        a = np.ascontiguousarray(value)
        if a.dtype.hasobject:
            raise TypeError(f"{name}: object arrays are not stored")
        header.append([name, a.dtype.str, list(a.shape)])
        chunks.append(a.tobytes())
    head = json.dumps(header).encode()
    return b"".join([_MAGIC, len(head).to_bytes(8, "little"), head, *chunks])


def unpack(blob: bytes) -> dict[str, np.ndarray]:
    """The arrays of :func:`pack` (copies: writable, not views of the blob)."""
    if not blob.startswith(_MAGIC):
        raise ValueError("not a packed array blob")
    at = len(_MAGIC)
    size = int.from_bytes(blob[at : at + 8], "little")
    at += 8
    header = json.loads(blob[at : at + size])
    at += size
    out = {}
    for name, dtype, shape in header:
        dt = np.dtype(dtype)
        n = dt.itemsize * int(np.prod(shape, dtype=np.int64))
        out[name] = (
            np.frombuffer(blob, dt, n // dt.itemsize if dt.itemsize else 0, at)
            .reshape(shape)
            .copy()
        )
        at += n
    return out


@dataclass
class Committed:
    """What the store holds: enough to rebuild the engine exactly (see :meth:`Store.load`)."""

    meta: dict[str, Any]
    bars: pl.DataFrame
    snapshot: dict[str, np.ndarray] | None
    journal: list[dict[str, Any]]  # per step: arrays (dict), allocations (list), orders (list)


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection. SQLite's WAL mode needs to create ``-shm`` beside the file even to
    read; on a read-only copy (no WAL, a read-only folder) the file is opened as immutable."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return db
    except sqlite3.OperationalError:
        if Path(f"{path}-wal").exists() and os.access(path.parent, os.W_OK):
            raise
    return sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, isolation_level=None)


def _crash_point(bar: int, point: str) -> None:
    spec = os.environ.get("ORCHESTRA_CRASH_AT")
    if spec and spec == f"{bar}:{point}":
        os.kill(os.getpid(), signal.SIGKILL)


class Store:
    """The SQLite store of one state directory."""

    def __init__(self, directory: str | Path, readonly: bool = False):
        """Open the store; a writer (``readonly`` False) takes the directory's lock first.

        A reader opens the file read-only and takes no lock: it works while the loop runs and on
        a read-only copy (with no WAL beside it, it opens the file as immutable)."""
        self.dir = Path(directory)
        self.path = self.dir / DB_NAME
        self.lock: StateLock | None = None
        if readonly:
            if not self.path.is_file():
                raise StoreError(f"{self.dir} has no live state ({DB_NAME})")
            try:
                self.db = _connect_readonly(self.path)
            except sqlite3.DatabaseError as exc:
                raise _damaged(self.path, exc) from None
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.lock = StateLock(self.dir)
            try:
                self.db = sqlite3.connect(self.path, isolation_level=None)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                self.db.executescript(_SCHEMA)
            except sqlite3.DatabaseError as exc:
                self._release()
                raise _damaged(self.path, exc) from None
        try:
            self._check_schema()
        except StoreError:
            self.db.close()
            self._release()
            raise

    def _release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def close(self) -> None:
        self.db.close()
        self._release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ checks
    def _check_schema(self) -> None:
        try:
            names = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master")}
            self.db.execute("PRAGMA quick_check(1)").fetchone()
        except sqlite3.DatabaseError as exc:
            raise _damaged(self.path, exc) from None
        if not _TABLES <= names:
            raise StoreError(f"{self.path}: missing table(s) {sorted(_TABLES - names)}")
        version = self.meta().get("schema_version")
        if version is not None and int(version) != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by state schema {version}; this orchestra reads "
                f"{SCHEMA_VERSION}: finish that run with the orchestra version that started it"
            )

    def meta(self) -> dict[str, Any]:
        try:
            rows = self.db.execute("SELECT key, value FROM meta").fetchall()
            return {k: json.loads(v) for k, v in rows}
        except (sqlite3.DatabaseError, ValueError) as exc:
            raise _damaged(self.path, exc) from None

    @property
    def initialized(self) -> bool:
        return bool(self.meta().get("initialized"))

    # ------------------------------------------------------------------ writes
    def initialize(self, meta: dict[str, Any], history: pl.DataFrame) -> None:
        """Write the run's meta and its warm-up history in one transaction."""
        with self._transaction():
            for key, value in {**meta, "schema_version": SCHEMA_VERSION}.items():
                self.db.execute(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value))
                )
            self._insert_bars(history)
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('initialized', 'true')")

    def commit(
        self,
        first_bar: int,
        end_bar: int,
        ts: int,
        bars: pl.DataFrame,
        arrays: dict[str, np.ndarray],
        allocations: list[dict[str, Any]],
        orders: list[dict[str, Any]],
        snapshot: dict[str, np.ndarray],
        outbox: list[dict[str, Any]] | None = None,
        outbox_status: str | Callable[[dict[str, Any]], str] = "pending",
        order_results: list[dict[str, Any]] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Bars ``first_bar .. end_bar-1`` (clock time ``ts`` = the last one's open): all or nothing."""
        journal_blob, snap_blob = pack(arrays), pack(snapshot)
        with self._transaction():
            self._insert_bars(bars)
            self.db.execute(
                "INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?)",
                (first_bar, end_bar, ts, journal_blob, json.dumps(allocations), json.dumps(orders)),
            )
            self.db.execute(
                "INSERT OR REPLACE INTO snapshot VALUES (1, ?, ?)", (end_bar, snap_blob)
            )
            self.db.executemany(
                "INSERT INTO outbox (id, bar, kind, severity, status, body) VALUES (?,?,?,?,?,?)",
                [
                    (f"{first_bar}-{i}", first_bar, m["kind"], m["severity"],
                     outbox_status(m) if callable(outbox_status) else outbox_status,
                     json.dumps(m))
                    for i, m in enumerate(outbox or [])
                ],
            )  # fmt: skip
            for o in order_results or []:
                self.db.execute(
                    "INSERT OR REPLACE INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (o["client_order_id"], o["bar"], o["ts"], o["symbol"], o["side"],
                     o["amount"], o["status"], json.dumps(o)),
                )  # fmt: skip
            for key, value in (meta or {}).items():
                self.db.execute(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value))
                )
            _crash_point(first_bar, "mid-write")
        _crash_point(first_bar, "after-commit")

    def _insert_bars(self, bars: pl.DataFrame, chunk_rows: int = 250_000) -> None:
        for lo in range(0, bars.height, chunk_rows):
            part = bars.slice(lo, chunk_rows)
            arrays = {
                "symbol": np.array(part["symbol"].to_list(), dtype=np.str_),
                "ts": part["timestamp"].dt.epoch("ms").to_numpy(),
                **{c: part[c].to_numpy() for c in ("open", "high", "low", "close", "volume")},
            }
            self.db.execute(
                "INSERT INTO bars (rows, arrays) VALUES (?, ?)", (part.height, pack(arrays))
            )

    def _transaction(self):  # a damaged page met while writing: see _Tx
        db, self_path = self.db, self.path

        class _Tx:
            def __enter__(self_inner):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self_inner, exc_type, exc, tb):
                try:
                    db.execute("COMMIT" if exc_type is None else "ROLLBACK")
                except sqlite3.DatabaseError as err:
                    raise _damaged(self_path, err) from None
                if isinstance(exc, sqlite3.DatabaseError):
                    raise _damaged(self_path, exc) from None
                return False

        return _Tx()

    def record_intent(self, order: dict[str, Any]) -> None:
        """Commit an order's intent before it is sent (a restart then looks it up first)."""
        with self._transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO orders VALUES (?, ?, ?, ?, ?, ?, 'intent', ?)",
                (order["client_order_id"], order["bar"], order["ts"], order["symbol"],
                 order["side"], order["amount"], json.dumps(order)),
            )  # fmt: skip

    def set_meta(self, values: dict[str, Any]) -> None:
        with self._transaction():
            for key, value in values.items():
                self.db.execute(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value))
                )

    def order(self, client_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT status, body FROM orders WHERE client_id=?", (client_id,)
        ).fetchone()
        return None if row is None else {**json.loads(row[1]), "status": row[0]}

    def orders(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT status, body FROM orders ORDER BY bar, symbol").fetchall()
        return [{**json.loads(b), "status": st} for st, b in rows]

    # ------------------------------------------------------------------ reads
    def outbox(self, status: str | None = None) -> list[dict[str, Any]]:
        """The notifications, oldest first (optionally only those with ``status``)."""
        sql = "SELECT id, bar, status, attempts, body FROM outbox"
        rows = self.db.execute(
            sql + (" WHERE status=? ORDER BY seq" if status else " ORDER BY seq"),
            (status,) if status else (),
        ).fetchall()
        return [
            {**json.loads(b), "id": i, "bar": bar, "status": st, "attempts": a}
            for i, bar, st, a, b in rows
        ]

    def load(self) -> Committed:
        """Everything committed, read in one transaction (consistent while a writer runs); a
        damaged file is a :class:`StoreError` naming it."""
        try:
            return self._load()
        except (sqlite3.DatabaseError, ValueError, KeyError, TypeError) as exc:
            raise _damaged(self.path, exc) from None

    def _load(self) -> Committed:
        self.db.execute("BEGIN")
        try:
            meta = self.meta()
            chunks = [
                unpack(r[0]) for r in self.db.execute("SELECT arrays FROM bars ORDER BY chunk")
            ]
            snap = self.db.execute("SELECT next_bar, arrays FROM snapshot").fetchone()
            journal = self.db.execute(
                "SELECT first_bar, end_bar, ts, arrays, allocations, orders FROM journal "
                "ORDER BY first_bar"
            ).fetchall()
        finally:
            self.db.execute("COMMIT")
        from orchestra.data.schema import BAR_SCHEMA

        def column(name: str) -> np.ndarray:
            return np.concatenate([c[name] for c in chunks]) if chunks else np.zeros(0)

        bars = (
            pl.DataFrame(
                {
                    "timestamp": pl.Series(column("ts"), dtype=pl.Int64).cast(
                        pl.Datetime("ms", "UTC")
                    ),
                    "symbol": pl.Series(column("symbol").astype(str), dtype=pl.String),
                    **{
                        name: pl.Series(column(name), dtype=pl.Float64)
                        for name in ("open", "high", "low", "close", "volume")
                    },
                }
            )
            .select(list(BAR_SCHEMA))
            .sort("symbol", "timestamp")
        )
        steps = [
            {
                "first_bar": r[0],
                "end_bar": r[1],
                "ts": r[2],
                "arrays": unpack(r[3]),
                "allocations": json.loads(r[4]),
                "orders": json.loads(r[5]),
            }
            for r in journal
        ]
        expected = 0
        for s in steps:  # the journal is contiguous: each step starts where the last one ended
            if s["first_bar"] != expected:
                raise StoreError(f"{self.path}: journal gap at bar {expected}")
            expected = s["end_bar"]
        snapshot = None
        if snap is not None:
            if snap[0] != expected:
                raise StoreError(
                    f"{self.path}: snapshot at bar {snap[0]} but the journal ends at {expected}"
                )
            snapshot = unpack(snap[1])
        return Committed(meta, bars, snapshot, steps)
