"""Request and response schemas, one family per entity."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PlainValidator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema
from typing_extensions import TypeAliasType

from forecaster.metrics import (
    APE_FLOOR_RATIO,
    TTC_HOLD_STEPS,
    TTC_MIN_POST_STEPS,
    TTC_MIN_PRE_STEPS,
    TTC_SLACK,
    TTC_TOLERANCE,
    TTC_WINDOW_STEPS,
    ConvergenceStatus,
)

INT64_MAX = 2**63 - 1  # PostgreSQL bigint: ids, offsets

# Text PostgreSQL can store: no NUL (text and jsonb refuse it) and no lone surrogate
# (a UTF-16 half JSON can escape but UTF-8 cannot encode). The document states the first
# as a pattern; the second cannot be (JSON Schema's validators, Rust's and Go's among
# them, take no surrogate in a pattern) and is not a Unicode string anyway.
STORABLE_PATTERN = r"^[^\u0000]*$"


def storable(value: str) -> str:
    """Refuse what PostgreSQL cannot store, naming it (the field is named by `loc`).

    >>> storable("r1:xe-0/0/1")
    'r1:xe-0/0/1'
    >>> storable("a" + chr(0) + "b")
    Traceback (most recent call last):
    ...
    ValueError: must not contain NUL (U+0000), at character 1
    """
    for i, c in enumerate(value):
        if c == "\x00":
            raise ValueError(f"must not contain NUL (U+0000), at character {i}")
        if "\ud800" <= c <= "\udfff":
            raise ValueError(
                f"must not contain a lone surrogate (U+{ord(c):04X}), at character {i}:"
                " not valid Unicode"
            )
    return value


@dataclass(frozen=True, eq=False)
class _Documented:
    """Adds JSON Schema keywords to a type's schema (what a validator enforces)."""

    keywords: tuple[tuple[str, Any], ...]

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.update(self.keywords)
        return schema


#: A string stored or looked up in PostgreSQL: every name, note and comment.
Text = Annotated[str, AfterValidator(storable), _Documented((("pattern", STORABLE_PATTERN),))]

_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)?")


def _rfc3339(value: object) -> object:
    if isinstance(value, datetime):  # built in Python, not parsed
        return value
    m = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError("must be an RFC 3339 date-time such as 2026-01-01T00:00:00Z")
    if m.group(2) is None:
        raise ValueError("needs a UTC offset (add Z)")
    return value


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("needs a UTC offset (add Z)")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is outside the years 1 to 9999 in UTC") from None


#: A date-time as the document states it (format date-time: RFC 3339 with an offset),
#: never epoch seconds (pydantic would read 0.5 as 1970, and 2e10 as milliseconds),
#: within the years 1 to 9999 once in UTC (Python's range), and given in UTC.
Rfc3339 = Annotated[datetime, BeforeValidator(_rfc3339), AfterValidator(_utc)]


#: Labels are shallow metadata; deeper JSON would be stored but not answered (the JSON
#: encoder's depth limit), so it is refused.
MAX_LABEL_DEPTH = 32


def _json_value(value: object, path: str) -> None:
    """A labels value: JSON PostgreSQL's jsonb stores and we can answer, at any depth."""
    stack = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_LABEL_DEPTH:
            raise ValueError(f"{where}: labels nest deeper than {MAX_LABEL_DEPTH} levels")
        if isinstance(item, str):
            try:
                storable(item)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        elif isinstance(item, bool) or item is None or isinstance(item, int):
            continue
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError(f"{where}: {item} is not a JSON number")
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(item))
        elif isinstance(item, dict):
            for k, v in item.items():
                if not isinstance(k, str):
                    raise ValueError(f"{where}: keys must be strings")
                try:
                    storable(k)
                except ValueError as exc:
                    raise ValueError(f"{where}: key {k!r} {exc}") from None
                stack.append((v, f"{where}[{k!r}]", depth + 1))
        else:
            raise ValueError(f"{where}: {type(item).__name__} is not JSON")


def _labels(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("labels must be a JSON object")
    _json_value(value, "labels")
    return value


#: A JSON object whose keys are Text (documented: a NUL key is as unstorable as a value).
_KEYS = _Documented((("propertyNames", {"pattern": STORABLE_PATTERN}),))
#: Any JSON value whose strings (keys too) are Text: the labels' schema, recursive.
LabelValue = TypeAliasType(
    "LabelValue",
    "Text | float | bool | None | list[LabelValue] | Annotated[dict[str, LabelValue], _KEYS]",
)
#: Checked by one walk (a union's errors would bury the one that matters); documented
#: as an object of LabelValue.
Labels = Annotated[
    dict[str, Any],
    PlainValidator(_labels, json_schema_input_type=Annotated[dict[str, LabelValue], _KEYS]),
]


class ErrorPublic(BaseModel):
    detail: str | list[dict[str, Any]] = Field(
        description="What was wrong; for 422, a list of {loc, msg, type} naming sample and field."
    )


class SampleIn(BaseModel):
    """A sample as POST /telemetry reads it (api/ingest.py checks it; this documents it)."""

    link: str = Field(
        min_length=1,
        max_length=255,
        examples=["ATLAng>HSTNng"],
        description="printable: no control character, no NUL, no lone surrogate (else 422)",
    )
    ts: datetime | Annotated[float, Field(ge=0)] = Field(
        description="RFC 3339 with offset, or epoch seconds; from 1970, and not later than"
        " LINKCAST_MAX_FUTURE_SECONDS from now (else 422)",
        examples=["2026-01-01T00:00:00Z"],
    )
    value: float = Field(ge=0, le=1e15, description="link load in bit/s", examples=[1.2e9])


class TelemetryIn(BaseModel):
    samples: list[SampleIn] = Field(max_length=50_000)


def inline_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its ``$defs`` written in place of their ``$ref``s: whole,
    for a document that has no ``#/$defs`` (an OpenAPI requestBody). Not for recursive
    models.

    >>> inline_defs(TelemetryIn.model_json_schema())["properties"]["samples"]["items"]["title"]
    'SampleIn'
    """
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out: dict[str, Any] = walk(schema)
    return out


#: POST /telemetry's body as the document states it (the route parses it itself).
TELEMETRY_BODY_SCHEMA = inline_defs(TelemetryIn.model_json_schema())


class TelemetryAccepted(BaseModel):
    accepted: int = Field(description="samples in the request, all stored")
    quarantined: int = Field(
        description="of them, stored but marked `over_line_rate`: above the link's capacity"
        " x (1 + LINKCAST_LINE_RATE_MARGIN), never learned from"
    )


class LinkCreate(BaseModel):
    name: Text = Field(min_length=1, max_length=255, examples=["ATLAng>HSTNng"])
    src: Text | None = Field(default=None, description="source node; from `A>B` names if unset")
    dst: Text | None = None
    # strict: a JSON number, not true (read as 1.0) or "1e9"
    capacity_bps: float | None = Field(default=None, gt=0, le=1e15, strict=True)
    labels: Labels = Field(
        default_factory=dict,
        description=f"any JSON object, at most {MAX_LABEL_DEPTH} levels deep; no string in it,"
        " key or value at any depth, may hold NUL (U+0000) or a lone surrogate (else 422)",
    )


class LinkPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    src: str | None
    dst: str | None
    capacity_bps: float | None
    labels: dict[str, Any]
    created_at: datetime


class LinksPublic(BaseModel):
    data: list[LinkPublic]
    count: int
    total: int


class SamplePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    ts: datetime
    value_bps: float
    quality: Literal["ok", "over_line_rate", "excursion"] = Field(
        description="ok: learned from. Quarantined, stored as sent but fed to no model or "
        "alert: over_line_rate (above the link's capacity x (1 + LINKCAST_LINE_RATE_MARGIN), "
        "marked at ingest), excursion (one bucket far outside the link's recent range that "
        "reverted at once, marked by the engine a bucket or more later)"
    )


class SamplesPublic(BaseModel):
    data: list[SamplePublic]
    count: int
    next_start: datetime | None = Field(
        default=None, description="set when the page is full: pass it as `start` for the next"
    )


class Health(BaseModel):
    status: str


class ForecastPublic(BaseModel):
    issued_at: datetime
    model: str
    step: int = Field(description="1-based horizon step")
    ts: datetime = Field(description="start of the bucket the step forecasts")
    value: float = Field(description="bit/s")
    lower: float
    upper: float


class ForecastsPublic(BaseModel):
    data: list[ForecastPublic]
    count: int


class ErrorRowPublic(BaseModel):
    ts: datetime
    model: str
    step: int
    error_bps: float = Field(description="forecast - actual")
    actual_bps: float


class ErrorsPublic(BaseModel):
    data: list[ErrorRowPublic]
    count: int


class AlertPublic(BaseModel):
    id: int
    kind: str = Field(description="drift, failure or capacity")
    state: str = Field(description="pending, firing or resolved")
    link: str | None
    links: list[str]
    model: str | None
    onset: datetime
    magnitude: float | None = Field(description="relative change, or utilisation for capacity")
    message: str
    created_at: datetime
    updated_at: datetime
    firing_at: datetime | None
    resolved_at: datetime | None
    parent_id: int | None = Field(
        default=None,
        description="the failure alert this one is part of (its drift on a re-routed link); "
        "only alerts without a parent are notified",
    )
    silenced: bool = Field(
        default=False, description="a silence active now matches it: no notification goes out"
    )


class AlertsPublic(BaseModel):
    data: list[AlertPublic]
    count: int


class EventCreate(BaseModel):
    kind: Literal["failure", "repair", "maintenance"]
    links: list[Annotated[Text, Field(min_length=1, max_length=255)]] = Field(
        min_length=1, description="known links (422 names those that are not)"
    )
    ts: Rfc3339 = Field(description="RFC 3339 with offset (years 1 to 9999 in UTC)")
    end_ts: Rfc3339 | None = Field(
        default=None, description="end of a maintenance window; after `ts` (else 422)"
    )
    note: Text = Field(default="", max_length=2000)


class EventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    links: list[str]
    ts: datetime
    end_ts: datetime | None
    note: str
    source: str = Field(
        description="operator; detector (a re-route it saw); engine (a cut or repair it"
        " read off the loads)"
    )
    created_at: datetime


class EventsPublic(BaseModel):
    data: list[EventPublic]
    count: int


class AlignedErrorPublic(BaseModel):
    model: str
    offset_steps: int = Field(description="steps since the event (negative: before)")
    ape: float = Field(
        description=(
            "mean over the affected links of the one-step absolute percentage error, "
            "|error| / max(|actual|, floor), as a ratio of the current load (0.05 = 5 %); "
            f"floor: {APE_FLOOR_RATIO:.0%} of the link's mean load. Time to convergence "
            "is computed on this curve (forecaster.metrics.convergence)"
        )
    )
    rel_error: float = Field(
        description=(
            "mean over links of |error| / link's pre-event mean load (older scale: on a "
            "link whose load changed it does not return to its pre-event level; see ape)"
        )
    )
    mae_bps: float = Field(description="mean over links of |error|, bit/s")
    links: int = Field(description="affected links with an error at this offset")


class ConvergencePublic(BaseModel):
    status: ConvergenceStatus = Field(
        description=(
            "converged (ttc_steps set); not_converged (not back within the data after "
            f"the event); pending (fewer than {TTC_MIN_POST_STEPS} steps after the event "
            f"yet: not yet known); no_baseline (fewer than {TTC_MIN_PRE_STEPS} errors "
            "before the event)"
        )
    )
    ttc_steps: int | None = Field(description="time to convergence in steps, if converged")
    ttc_seconds: float | None = Field(description="the same in seconds")
    baseline_ape: float | None = Field(description="mean ape over the steps before the event")
    threshold_ape: float | None = Field(
        description=f"{TTC_TOLERANCE} x baseline_ape + {TTC_SLACK}: the mean of ape over "
        f"the {TTC_WINDOW_STEPS} steps from an offset on must be at or below it, at "
        f"ttc_steps and at every offset up to {TTC_HOLD_STEPS} steps later"
    )
    post_steps: int = Field(description="steps from the event to the last error")


TTC_DESCRIPTION = (
    "time to convergence in steps (forecaster.metrics.convergence): the smallest k >= 0 "
    f"such that the mean of ape over the {TTC_WINDOW_STEPS} steps [k, k + "
    f"{TTC_WINDOW_STEPS}) is at most {TTC_TOLERANCE} x its mean before the event + "
    f"{TTC_SLACK}, at k and at every offset up to k + {TTC_HOLD_STEPS} (or to the end of "
    "the data)"
)


class EventErrorsPublic(BaseModel):
    event: EventPublic
    step_seconds: int
    affected: list[str] = Field(description="links whose load shifted (failed ones excluded)")
    data: list[AlignedErrorPublic]
    count: int
    ttc_steps: dict[str, int | None] = Field(
        description=(f"per model: {TTC_DESCRIPTION}; null unless converged (convergence says why)")
    )
    convergence: dict[str, ConvergencePublic] = Field(
        description=f"per model: {TTC_DESCRIPTION}, with its status"
    )


class ModelPublic(BaseModel):
    name: str
    version: int | None
    last_retrain: datetime | None
    retrains: int
    rmse_bps: float | None = Field(description="one-step RMSE over the last hour")
    mae_bps: float | None
    scored: int


class ModelsPublic(BaseModel):
    data: list[ModelPublic]
    count: int
    step_seconds: int = Field(description="the forecast grid's step (s)")
    horizon: int = Field(description="steps forecast ahead at each issue")


class LinkLatestPublic(BaseModel):
    name: str
    capacity_bps: float | None
    ts: datetime | None = Field(description="newest plausible (quality ok) sample's time")
    value_bps: float | None = Field(description="newest plausible (quality ok) sample's load")
    issued_at: datetime | None = Field(description="newest forecast issue of the model")
    peak_bps: float | None = Field(description="highest forecast value within the horizon")
    peak_upper_bps: float | None = Field(description="highest upper bound within the horizon")


class LinksLatestPublic(BaseModel):
    data: list[LinkLatestPublic]
    count: int


class SilenceCreate(BaseModel):
    """Matchers (null matches any) and an end: exactly one of ``ends_at`` and
    ``duration_seconds`` (else 422)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt matcher must not silence all

    link: Text | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="exact link name, a known link (else 422); null: any link",
    )
    kind: Literal["drift", "failure", "capacity"] | None = Field(
        default=None, description="alert kind; null: any kind"
    )
    starts_at: Rfc3339 | None = Field(
        default=None, description="RFC 3339 with offset (years 1 to 9999 in UTC); null: now"
    )
    ends_at: Rfc3339 | None = Field(
        default=None,
        description="RFC 3339 with offset (years 1 to 9999 in UTC), in the future and after"
        " starts_at (else 422)",
    )
    duration_seconds: float | None = Field(  # strict: a JSON number, not true or "60"
        default=None,
        gt=0,
        le=366 * 86_400,
        strict=True,
        description="instead of ends_at: from starts_at",
    )
    comment: Text = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _one_end(self) -> SilenceCreate:
        if (self.ends_at is None) == (self.duration_seconds is None):
            raise ValueError("give exactly one of ends_at and duration_seconds")
        return self


class SilencePublic(BaseModel):
    id: int
    link: str | None = Field(description="null: any link")
    kind: str | None = Field(description="null: any kind")
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str = Field(description="the name of the token that created it")
    created_at: datetime
    active: bool = Field(description="started and not yet ended")


class SilencesPublic(BaseModel):
    data: list[SilencePublic]
    count: int
