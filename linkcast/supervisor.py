"""uvicorn's multiprocess supervisor, made to see at once that a worker died.

``linkcast api --workers N`` runs uvicorn's supervisor (``uvicorn.supervisors.
multiprocess``): every half second it sends each worker a health ping over a pipe and
waits up to the health check's timeout for the answer
(:data:`linkcast.cli.WORKER_HEALTHCHECK_SECONDS`, 60 s); a worker that does not answer
is killed and replaced. The supervisor makes each worker's pipe and keeps both of its
ends after the worker has started. So when a worker dies while a ping to it is
unanswered (a SIGKILL mid-request under load, the OOM killer), the worker's end is
still open in the supervisor, ``poll`` sees no end of file, and the supervisor waits
out the whole timeout, one worker short: measured, a worker stopped, then killed, was
replaced after 58.2 to 59.0 s (0.1 to 0.2 s with this module); under
tests/api/test_worker_kill.py's load, 2 kills of 15 took 60 s.

The worker has its own copy of that end (handed to it when it is spawned), so
:class:`Process` closes the supervisor's copy once the worker has started. A dead
worker's pipe then reads as ended at once; uvicorn takes that for a worker that does
not answer and replaces it. uvicorn closes that end itself when it kills or stops a
worker; closing it twice does nothing.

The class lives in a module of its own because uvicorn pickles the supervisor's
``Process`` object into each worker it spawns: the class must be importable there.
"""

from __future__ import annotations

from uvicorn.supervisors import multiprocess


class Process(multiprocess.Process):
    """uvicorn's worker handle, without the supervisor's copy of the worker's end of
    the health-ping pipe once the worker has started."""

    def start(self) -> None:
        super().start()
        child_end = getattr(self, "child_conn", None)
        if child_end is not None:  # uvicorn 0.30 and later keep it
            child_end.close()


def see_worker_deaths_at_once() -> None:
    """Have uvicorn's supervisor, in this process, start its workers as
    :class:`Process` (call before ``uvicorn.run`` with ``workers`` > 1)."""
    multiprocess.Process = Process
