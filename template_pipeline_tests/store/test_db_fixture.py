"""The session database fixture gives a working, private PostgreSQL database."""

import psycopg

from template_pipeline.store import db


def test_database_is_reachable_and_private(database_url):
    with psycopg.connect(db.libpq_conninfo(database_url)) as conn:
        name = conn.execute("select current_database()").fetchone()[0]
    assert name.startswith("tp_test_")


def test_sqlalchemy_url_forces_psycopg3():
    assert db.sqlalchemy_url("postgres://u:p@h:5/d").drivername == "postgresql+psycopg"
    assert db.sqlalchemy_url("postgresql+psycopg2://u@h/d").drivername == "postgresql+psycopg"
