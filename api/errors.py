"""Error responses shared by routes, and the handlers the app installs."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError, TimeoutError

from api.schemas import ErrorPublic
from db.session import is_connection_problem

log = logging.getLogger(__name__)

# A commit can reach the database just before the connection is lost: say what is true.
UNAVAILABLE = (
    "database unreachable; retry later (a retry is safe: the same samples are stored once)"
)

# A transaction PostgreSQL rolled back to break a deadlock or a serialization failure:
# the database is up, the request can be sent again as it was.
CONFLICT = (
    "database conflict (a deadlock or serialization failure), nothing of this request"
    " stored; retry later (a retry is safe)"
)

RETRY_AFTER_SECONDS = 5


def unavailable_message(exc: BaseException) -> str:
    """What a 503 for ``exc`` says: :data:`CONFLICT` for a transaction PostgreSQL rolled
    back (SQLSTATE class 40: a deadlock, a serialization failure), else
    :data:`UNAVAILABLE`.

    >>> import psycopg
    >>> unavailable_message(psycopg.errors.DeadlockDetected()) == CONFLICT
    True
    >>> unavailable_message(psycopg.OperationalError("connection refused")) == UNAVAILABLE
    True
    """
    cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
    if (getattr(cause, "sqlstate", None) or "").startswith("40"):
        return CONFLICT
    return UNAVAILABLE


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer."""
    text = {
        400: "Malformed JSON",
        401: "Missing, invalid or revoked bearer token",
        403: "Token scope too low",
        404: "Not found",
        413: "Body or batch too large",
        422: "A field is invalid: `loc` names the sample index and field",
        503: "Database unreachable: retry after `Retry-After` seconds",
    }
    return {c: {"model": ErrorPublic, "description": text[c]} for c in codes}


AUTH = (401, 403, 503)


def logged_unavailable(request: Request, exc: BaseException) -> str:
    """Log why ``request`` is answered 503 (a conflict, or the database unreachable) and
    return what the answer says (:func:`unavailable_message`)."""
    message = unavailable_message(exc)
    what = "database conflict" if message == CONFLICT else "database unreachable"
    log.warning("%s on %s %s: %s", what, request.method, request.url.path, exc)
    return message


def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    message = logged_unavailable(request, exc)
    return JSONResponse(
        {"detail": message},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


async def _method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    """405 with `Allow` naming every method the path takes (RFC 9110): Starlette's names
    those of the first route matching the path only (GET of /links, not its POST)."""
    from starlette.routing import Match

    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    ]
    return JSONResponse(
        {"detail": f"method {request.method} not allowed here; allowed: {', '.join(allowed)}"},
        status_code=405,
        headers={"Allow": ", ".join(allowed)},
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(405, _method_not_allowed)

    async def db_error(request: Request, exc: Exception) -> JSONResponse:
        if is_connection_problem(exc):
            return _unavailable(request, exc)
        raise exc

    import psycopg

    for exc_type in (OperationalError, TimeoutError, DBAPIError, psycopg.OperationalError):
        app.add_exception_handler(exc_type, db_error)
