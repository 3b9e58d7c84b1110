"""One engine per process, created lazily and never carried across a fork.

Celery's prefork pool and gunicorn both fork after import; a pooled connection
inherited by a child would be shared by two processes, so the engine is built on
first use and forgotten in a forked child.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from worker.core.settings import get_settings

if TYPE_CHECKING:
    import sqlite3

    from sqlalchemy.pool import ConnectionPoolEntry

_engine: Engine | None = None


def _forget_engine() -> None:
    global _engine
    _engine = None


os.register_at_fork(after_in_child=_forget_engine)


def make_engine(url: str) -> Engine:
    """Build an engine with the settings each backend needs under concurrent writers."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
            # Take over transaction control from pysqlite so BEGIN IMMEDIATE below is ours.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin_immediate(conn: sa.Connection) -> None:
            # Writers queue up at BEGIN instead of failing with "database is locked" on
            # upgrade from a read lock: SQLite's way of giving us SELECT ... FOR UPDATE.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # No pre-ping: it costs every checkout a round trip, a third of a webhook's database
    # time. A connection the server dropped (a restart, a failover) fails its first
    # statement instead; SQLAlchemy then discards every connection of the pool at once, the
    # webhook's store tries once more (`intake._store`), and worker tasks retry on
    # OperationalError. Connections are also renewed every half hour (idle-timeout proxies).
    return sa.create_engine(url, pool_size=5, max_overflow=5, pool_recycle=1800)


def get_engine() -> Engine:
    global _engine
    if _engine is None:
        _engine = make_engine(get_settings().sqlalchemy_url)
    return _engine


def reset_engine() -> None:
    """Dispose of this process's engine (tests, and after settings change)."""
    global _engine
    if _engine is not None:
        _engine.dispose()
    _engine = None


@contextmanager
def session_scope() -> Iterator[Session]:
    """One session per unit of work: commit on success, roll back on error."""
    with Session(get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
