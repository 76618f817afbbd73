"""Liveness and readiness, outside /api/v1."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import SessionDep
from api.errors import RETRY_AFTER_SECONDS, responses
from api.schemas import Health
from db.queries import ping

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses=responses(503))
def readyz(session: SessionDep) -> Health | JSONResponse:
    """The database answers too."""
    try:
        ping(session=session)
    except Exception:
        return JSONResponse(
            {"detail": "database unreachable"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return Health(status="ready")
