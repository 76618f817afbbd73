"""`linkcast up`: every part in one command, for a laptop or a demo."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

from linkcast.settings import Settings

log = logging.getLogger("linkcast")


def local_admin_token(settings: Settings, url: str) -> str:
    """The admin token kept in DATA_DIR/admin-token, created on first start.

    Only the token's hash is in the database, so the plain token is kept in a file
    readable by its owner alone; ``linkcast up`` prints it for curl and the dashboard.
    """
    from db.queries import create_token, token_scope
    from db.session import make_engine, make_sessionmaker, session_scope

    path = Path(settings.data_dir) / "admin-token"
    engine = make_engine(url, pool_size=1)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            if path.exists():
                token = path.read_text().strip()
                if token_scope(session=session, token=token) == "admin":
                    return token
            token = create_token(session=session, scope="admin", name="linkcast up").token
    finally:
        engine.dispose()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def run_up(settings: Settings, *, host: str, port: int, ui_port: int, demo: bool) -> None:
    import uvicorn

    from api.main import create_app
    from db.migrate import upgrade

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    typer.echo(
        "linkcast: starting the database"
        + ("" if settings.database_url else f" (embedded, data in {settings.data_dir})")
    )
    url = settings.resolved_database_url
    upgrade(url)
    token = local_admin_token(settings, url)
    os.environ.setdefault("LINKCAST_TOKEN", token)
    base = f"http://{host}:{port}"
    typer.echo(
        f"linkcast: API on {base} (docs at {base}/docs)\n"
        f"linkcast: admin token {token} (kept in {settings.data_dir}/admin-token)\n"
        "linkcast: Ctrl-C stops everything"
    )
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
