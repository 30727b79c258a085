"""Engine, sessions and migrations.

SQLite runs in WAL mode with `BEGIN IMMEDIATE` transactions: writers queue on the lock
instead of failing when a read transaction tries to upgrade. Inside one process, writers
also queue on a threading lock first: SQLite's own busy handler waits by sleeping (up to
100 ms a try), which turned lock contention between the SMTP intake and the processor into
seconds of latency. Other processes (the CLI) still meet on busy_timeout.
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from maild.errors import StoreError, TransientStoreError
from store.prepared import Dynamic

MIGRATIONS = Path(__file__).parent / "migrations"
AUTOCHECKPOINT_PAGES = 8000  # ~32 MB of WAL


class FifoLock:
    """A lock granted in arrival order. threading.Lock lets the thread that just released it
    take it again at once, so the processor's back-to-back transactions starved the SMTP
    intake (p99 acceptance latency in the hundreds of ms)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._next_ticket = 0
        self._serving = 0

    def __enter__(self) -> FifoLock:
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            while ticket != self._serving:
                self._cond.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()


class WriterLock:
    """The in-process FIFO lock, then an flock on a file beside the database, held for the
    whole write transaction. Between processes (the listener and the workers of `maild
    run`) the kernel wakes a waiter as soon as the lock is free, where SQLite's busy handler
    would sleep 1, 2, 5 … 100 ms between tries."""

    def __init__(self, path: Path) -> None:
        self._local = FifoLock()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        weakref.finalize(self, os.close, self._fd)

    def __enter__(self) -> WriterLock:
        self._local.__enter__()
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._local.__exit__()


_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, FifoLock | WriterLock] = (
    weakref.WeakKeyDictionary())


def make_engine(url: str, *, echo: bool = False, synced: bool = True) -> Engine:
    """`synced=False` (SQLite only): commits reach the disk at the next synced commit or
    checkpoint, so a power cut may undo the last ones (a crash of the process does not).
    Only for writers whose work can be redone from what synced commits keep."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url, echo, synced)
    # A server that vanishes (a cut network, a failover) must fail the statement, not hang
    # it: bounded connects, TCP keepalives, and a pool wait bounded too.
    connect_args = ({"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10,
                     "keepalives_interval": 5, "keepalives_count": 3}
                    if url.startswith("postgresql") else {})
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=10,
                         pool_timeout=10, connect_args=connect_args)


def _sqlite_engine(url: str, echo: bool, synced: bool) -> Engine:
    path = url.split(":///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False,
                                                          "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is fsynced at every commit, so a 250 answered after the journal
        # commit survives a power cut, not only a crash of the process.
        cur.execute(f"PRAGMA synchronous={'FULL' if synced else 'NORMAL'}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        # The journal processor checkpoints the WAL itself (`checkpoint`), off the intake's
        # commits; this larger automatic threshold is the backstop when nothing does.
        cur.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Readers (marked by read_only_factory) take no write lock; writers take it up front.
        readonly = conn.get_execution_options().get("maild_readonly", False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    on_disk = bool(path) and path != ":memory:"
    _WRITE_LOCKS[engine] = WriterLock(Path(path + ".lock")) if on_disk else FifoLock()
    return engine


def checkpoint(engine: Engine) -> None:
    """Copy the SQLite WAL into the database file without waiting for anyone (PASSIVE: no
    writer is blocked, frames still being read are left for next time). Left to SQLite's
    automatic checkpoint, whichever commit crossed the threshold paid for it: often an SMTP
    session waiting for its 250. Nothing to do on other databases."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as conn:  # the DBAPI connection itself: no BEGIN is issued
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute("PRAGMA wal_checkpoint(PASSIVE)")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def read_only_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that only read: on SQLite they do not queue behind writers."""
    return sessionmaker(engine.execution_options(maild_readonly=True), expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error, DB errors translated."""
    bind = factory.kw.get("bind")
    lock: AbstractContextManager[object] = nullcontext()
    if isinstance(bind, Engine) and bind in _WRITE_LOCKS:
        lock = _WRITE_LOCKS[bind]
    session = factory()
    try:
        with lock, session.begin():
            yield session
    except (OperationalError, InterfaceError) as exc:  # unreachable, dropped, locked
        raise TransientStoreError(str(exc.orig)) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:  # the connection died under the statement
            raise TransientStoreError(str(exc.orig)) from exc
        raise StoreError(str(exc.orig)) from exc
    except PoolTimeout as exc:  # every pooled connection busy (or hung on a dead server)
        raise TransientStoreError(str(exc)) from exc
    finally:
        session.close()


_PING = Dynamic(text("SELECT 1"))


def ping(factory: sessionmaker[Session]) -> str | None:
    """Whether the database answers: None, or why not (for health and supervisors)."""
    try:
        with transaction(factory) as s:
            _PING.scalar(s)
    except StoreError as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
    return None


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (a new database gets every one)."""
    command.upgrade(alembic_config(engine), "head")


def needs_upgrade(engine: Engine) -> bool:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(engine))
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_heads()
    return set(current) != set(script.get_heads())


def is_empty(engine: Engine) -> bool:
    return not inspect(engine).get_table_names()
