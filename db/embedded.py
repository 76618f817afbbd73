"""An embedded PostgreSQL server (``pgserver``) for when no database URL is set."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_servers: dict[Path, Any] = {}


def embedded_url(data_dir: Path | str, *, database: str = "postgres") -> str:
    """Start (or reuse) a PostgreSQL server whose data lives under ``data_dir/pg``.

    The data survives restarts; the server stops when the last process using it exits.
    Returns a ``postgresql://`` URL that connects through its Unix socket.
    """
    import warnings

    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pgserver  # imported here: only needed without LINKCAST_DATABASE_URL
    logging.getLogger("pgserver").setLevel(logging.WARNING)

    pgdata = (Path(data_dir) / "pg").resolve()
    server = _servers.get(pgdata)
    if server is None:
        pgdata.mkdir(parents=True, exist_ok=True)
        log.info("starting embedded PostgreSQL in %s", pgdata)
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
        _servers[pgdata] = server
    uri: str = server.get_uri(database)
    return uri
