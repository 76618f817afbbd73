"""Path and query parameters shared by routes, bounded as the database can take them.

Each states in the document what is checked: an integer past PostgreSQL's bigint, a
NUL in a name or a number where a date-time is due is a 422 naming the parameter,
never a database error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import HTTPException, Path, Query

from api.schemas import INT64_MAX, Rfc3339, Text

MAX_PAGE = 10_000

RANGE_422 = "A parameter is invalid (`loc` names it), or `end` is not after `start`"

#: A link's name in a path: `/`, `:` and `>` may appear, percent-encoded or not.
LinkPath = Annotated[Text, Path(description="the link's name")]
#: A stored row's id (bigint): 1 to 2^63 - 1.
IdPath = Annotated[int, Path(ge=1, le=INT64_MAX)]
Offset = Annotated[int, Query(ge=0, le=INT64_MAX, description="rows to skip")]
Start = Annotated[
    Rfc3339 | None,
    Query(description="RFC 3339 with offset (years 1 to 9999 in UTC): from (inclusive)"),
]
End = Annotated[
    Rfc3339 | None,
    Query(
        description="RFC 3339 with offset (years 1 to 9999 in UTC): to (exclusive); after"
        " `start` (else 422)"
    ),
]


def validate_range(start: datetime | None, end: datetime | None) -> None:
    """`end` after `start` (their offsets and formats are checked by Rfc3339)."""
    if start is not None and end is not None and end <= start:
        raise HTTPException(422, "end must be after start")
