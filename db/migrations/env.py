"""Alembic environment: migrations run online against the configured URL."""

from alembic import context
from sqlalchemy import create_engine, pool

from db.models import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is not set"
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("linkcast migrations run online only: set LINKCAST_DATABASE_URL")
run_migrations_online()
