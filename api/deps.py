"""Dependencies, declared once: routes only name these aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.requests import HTTPConnection

from api.tokens import TokenCache
from db.models import Scope
from db.queries import token_name, token_scope
from linkcast.settings import Settings

# `Token` is how InfluxDB clients and Telegraf send a token: the same linkcast token.
TOKEN_SCHEMES = ("bearer", "token")


class _BearerOrToken(HTTPBearer):
    """`Authorization: Bearer <token>` or `Token <token>`; None otherwise."""

    async def __call__(self, request: HTTPConnection) -> HTTPAuthorizationCredentials | None:
        scheme, credentials = get_authorization_scheme_param(request.headers.get("Authorization"))
        if scheme.lower() not in TOKEN_SCHEMES or not credentials:
            return None
        return HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials)


_bearer = _BearerOrToken(
    auto_error=False,
    scheme_name="HTTPBearer",
    description="`Authorization: Bearer <token>` (or `Token <token>`, as InfluxDB clients send)",
)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessionmaker() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SessionDep = Annotated[Session, Depends(get_session)]


def _scope_of(request: Request, token: str) -> str | None:
    """Look the token up. The answers are cached (api/tokens.py: a push costs no extra
    query) and a revoked token stops working within a second in every process."""
    cache: TokenCache = request.app.state.token_cache

    def lookup() -> str | None:
        with request.app.state.sessionmaker() as session:
            return token_scope(session=session, token=token)

    return cache.scope(token, lookup)


def require(needed: str):  # noqa: ANN201 - returns a dependency
    def check(
        request: Request,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> str:
        if creds is None or creds.scheme.lower() not in TOKEN_SCHEMES or not creds.credentials:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing bearer token (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        scope = _scope_of(request, creds.credentials)
        if scope is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "invalid or revoked token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not Scope.grants(scope, needed):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"token scope '{scope}' lacks '{needed}'"
            )
        return scope

    return check


def get_token_name(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The name of the request's token (declare it after a scope check, which rejects
    a request without a valid one)."""
    if creds is None:
        return ""
    with request.app.state.sessionmaker() as session:
        return token_name(session=session, token=creds.credentials) or ""


TokenNameDep = Annotated[str, Depends(get_token_name)]
# The request's Bearer/Token credentials, None if absent: for routes that also take others.
CredentialsDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]

ReaderDep = Annotated[str, Depends(require(Scope.READ))]
WriterDep = Annotated[str, Depends(require(Scope.WRITE))]
AdminDep = Annotated[str, Depends(require(Scope.ADMIN))]
