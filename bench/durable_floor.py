"""The durable floor for ingest: the least a "2xx only after a durable store" receiver does.

One Flask route that stores the raw body with one ``INSERT … COMMIT`` into the same
database callhook uses, then answers 200. Served by the same gunicorn config as callhook's
`web` process (`bench/ingest.py` starts both), it is the yardstick of issue #12's first
goal: callhook's ingest as a fraction of this.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from flask import Flask, request

TABLE = "bench_floor_deliveries"


def create_app() -> Flask:
    url = os.environ["DATABASE_URL"].replace("postgres://", "postgresql+psycopg://", 1)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    engine = sa.create_engine(url, pool_size=16, max_overflow=16, pool_pre_ping=False)
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"CREATE TABLE IF NOT EXISTS {TABLE} (id BIGSERIAL PRIMARY KEY, body TEXT)")
        )
    insert = sa.text(f"INSERT INTO {TABLE} (body) VALUES (:body)")
    app = Flask(__name__)

    @app.post("/ingest")
    def ingest():  # type: ignore[no-untyped-def]
        body = request.get_data(as_text=True)
        with engine.begin() as conn:  # one INSERT, one COMMIT
            conn.execute(insert, {"body": body})
        return {"status": "ok"}

    @app.get("/hello")
    def hello():  # type: ignore[no-untyped-def]
        return {"status": "ok"}

    return app
