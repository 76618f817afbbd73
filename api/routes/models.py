"""The models: versions, retrains, recent error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter

from api.deps import ReaderDep, SessionDep, SettingsDep
from api.errors import AUTH, responses
from api.schemas import ModelPublic, ModelsPublic
from db import queries
from db.models import ModelName

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", response_model=ModelsPublic, responses=responses(*AUTH))
def list_models(session: SessionDep, settings: SettingsDep, _: ReaderDep) -> ModelsPublic:
    """Every model with its version, last retrain and one-step error over the last hour,
    and the forecast grid they run on (step in seconds, horizon in steps)."""
    since = datetime.now(UTC) - timedelta(hours=1)
    found = {r["name"]: r for r in queries.model_summaries(session=session, since=since)}
    data = [
        ModelPublic(
            **(
                found.get(name)
                or {
                    "name": name,
                    "version": None,
                    "last_retrain": None,
                    "retrains": 0,
                    "rmse_bps": None,
                    "mae_bps": None,
                    "scored": 0,
                }
            )
        )
        for name in ModelName.ALL
    ]
    return ModelsPublic(
        data=data, count=len(data), step_seconds=settings.step_seconds, horizon=settings.horizon
    )
