"""Token lookups cached in each API process, and a revocation seen by all within a second.

Why this design. A push must not cost a query to check its token, and a revoked token
must stop working within a second in every worker process. The options:

* a cache of at most 1 s: a collector pushing every 10 or 60 s would pay the query on
  nearly every push;
* LISTEN/NOTIFY on a revocation: instant, but a listening connection that died quietly
  (a NAT or firewall dropping an idle connection, a pooler in transaction mode) delivers
  nothing and looks healthy, so it needs a heartbeat to be trusted anyway, plus a
  trigger (a migration) to catch a token revoked by hand in SQL;
* this: each process reads the *generation* of the token table (a digest of every
  token's hash, scope and revocation, ``db.tokens.GENERATION_SQL``) from a thread of
  its own every ``poll_seconds`` (0.25 s). A cached answer is tagged with the
  generation read before its lookup, and used only while the table still has that
  generation *and* that generation was read by a poll that began less than
  ``trust_seconds`` (1 s) ago.

So a push costs no query once its token is cached, whatever the push rate; the cost
is one query on a table of a few rows, four times a second per process. A revocation
committed at time t is seen by every poll that begins after t, and from t + 1 s on an
answer is only trusted if such a poll has confirmed it: a revoked token gets 401 within
1 s in every process, by the CLI or by SQL alike. When the polls stop (database down or
slow, poller not started, as under a TestClient without its lifespan) nothing is
trusted and every check queries the database, as without a cache.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

import psycopg

from db.tokens import GENERATION_SQL

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
TRUST_SECONDS = 1.0
MAX_ENTRIES = 10_000


class TokenCache:
    """Token -> scope (None: invalid or revoked), checked against the table's generation."""

    def __init__(
        self,
        database_url: str,
        *,
        poll_seconds: float = POLL_SECONDS,
        trust_seconds: float = TRUST_SECONDS,
    ) -> None:
        self._url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.poll_seconds = poll_seconds
        self.trust_seconds = trust_seconds
        self._entries: dict[str, tuple[str | None, str]] = {}
        # The generation read last and when (monotonic) the poll that read it began.
        self._confirmed: tuple[str, float] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the lookups ------------------------------------------------------------------

    def scope(self, token: str, lookup: Callable[[], str | None]) -> str | None:
        """The token's scope, from the cache while the table's generation is confirmed
        recent, else from ``lookup()`` (the database), remembered under the generation
        read before it."""
        confirmed = self._confirmed  # one read: the poller replaces the tuple whole
        generation = None
        if confirmed is not None and time.monotonic() - confirmed[1] < self.trust_seconds:
            generation = confirmed[0]
            hit = self._entries.get(token)
            if hit is not None and hit[1] == generation:
                return hit[0]
        scope = lookup()
        if generation is not None:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            # Tagged with the generation read *before* the lookup: if the table changed
            # in between, the next poll reads another one and this answer is not used.
            self._entries[token] = (scope, generation)
        return scope

    # --- the poller -------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, name="token-generation", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._confirmed = None

    def _poll(self) -> None:
        conn: psycopg.Connection | None = None
        failing = False
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(
                        self._url,
                        autocommit=True,  # each read its own snapshot
                        connect_timeout=5,
                        application_name="linkcast-api-tokens",
                        options="-c statement_timeout=5000",
                        # a half-open connection must not hang the poll for ever
                        keepalives=1,
                        keepalives_idle=5,
                        keepalives_interval=2,
                        keepalives_count=2,
                        tcp_user_timeout=10_000,
                    )
                row = conn.execute(GENERATION_SQL.text).fetchone()
                assert row is not None
                self._confirmed = (str(row[0]), began)
                if failing:
                    log.info("token generation readable again: cached token checks resume")
                    failing = False
            except Exception as exc:  # noqa: BLE001 - the poller must outlive anything
                if not failing:  # once per outage: checks query the database meanwhile
                    log.warning("cannot read the token generation (%s): no cached checks", exc)
                    failing = True
                if conn is not None:
                    conn.close()
                    conn = None
            pause = 1.0 if failing else self.poll_seconds  # a down database: retry slower
            self._stop.wait(max(0.0, pause - (time.monotonic() - began)))
        if conn is not None:
            conn.close()

    @property
    def confirmed_age(self) -> float:
        """Seconds since the poll that read the current generation began (inf: none)."""
        confirmed = self._confirmed
        return math.inf if confirmed is None else time.monotonic() - confirmed[1]
