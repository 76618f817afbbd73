"""gc.freeze is the served process's step, not the app factory's.

``api.main.create_app`` (which tests call for every client) leaves the garbage
collector alone; ``linkcast.cli.served_app`` (what ``linkcast api``'s workers build)
freezes the objects loaded at start while it serves and unfreezes them at shutdown.
"""

from __future__ import annotations

import gc

from fastapi.testclient import TestClient

from api.main import create_app
from linkcast.cli import served_app


def test_the_app_factory_freezes_nothing(settings, clean_db) -> None:
    gc.unfreeze()
    with TestClient(create_app(settings)) as c:
        assert c.get("/healthz").status_code == 200
        assert gc.get_freeze_count() == 0
    assert gc.get_freeze_count() == 0


def test_the_served_app_freezes_while_it_serves_and_unfreezes_at_shutdown(
    settings, clean_db
) -> None:
    gc.unfreeze()
    with TestClient(served_app(settings)) as c:
        assert c.get("/healthz").status_code == 200
        assert gc.get_freeze_count() > 1000  # the modules, routes, ... loaded by now
    assert gc.get_freeze_count() == 0
