"""gc.freeze is the served process's step, not the app factory's.

``api.main.create_app`` (which tests call for every client) leaves the garbage
collector alone; ``linkcast.cli.served_app`` (what ``linkcast api``'s workers build)
freezes the objects loaded at start and raises the young generation's threshold
while it serves, and undoes both at shutdown.
"""

from __future__ import annotations

import gc

from fastapi.testclient import TestClient

from api.main import create_app
from linkcast.cli import GC_YOUNG_THRESHOLD, served_app


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
    before = gc.get_threshold()
    assert before[0] != GC_YOUNG_THRESHOLD
    with TestClient(served_app(settings)) as c:
        assert c.get("/healthz").status_code == 200
        assert gc.get_freeze_count() > 1000  # the modules, routes, ... loaded by now
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
