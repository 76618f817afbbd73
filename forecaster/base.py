"""The interface every link-load model implements, and the helpers they share.

Conventions (river style): constructor arguments are stored as given, learned state
is underscored. Models are batched over links: ``observe`` takes the newest grid value
of every link, ``forecast`` returns steps ``t+1 .. t+H`` for every link, in bit/s.
"""

from __future__ import annotations

import abc
import pickle
import zlib
from typing import ClassVar, Self

import numpy as np

#: Model names, as in DESIGN.md.
MODEL_NAMES = ("liquid", "incremental", "persistence", "seasonal", "hybrid")

#: Header of a saved state; the digit changes whenever the models' state changes
#: shape (LCF2: the liquid model's seasonal context, replay reservoir and averaged
#: weights, the hybrid's shock cap), so an older state is refused, never half-loaded.
_FORMAT = b"LCF2"
_MAGIC = b"LCF"


class IncompatibleState(ValueError):
    """A state saved by another version of the models (a checkpoint from before an upgrade)."""


def check_observation(
    y: np.ndarray, mask: np.ndarray | None, n_links: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validate one grid observation; return ``(values, observed)`` as new arrays.

    ``values`` is float64 with 0.0 where not observed (never NaN), ``observed`` is
    True where the link has a finite value and ``mask`` (if any) is True.
    """
    y = np.asarray(y, dtype=np.float64)
    if y.shape != (n_links,):
        raise ValueError(f"y must have shape ({n_links},), got {y.shape}")
    observed = np.isfinite(y)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (n_links,):
            raise ValueError(f"mask must have shape ({n_links},), got {mask.shape}")
        observed &= mask
    values = np.where(observed, y, 0.0)
    return values, observed


def dumps(obj: object) -> bytes:
    """Serialise a whole object graph (weights, optimizer, buffers, RNG) to bytes.

    Pickle keeps shared references (a module's parameters and its optimizer's state
    stay linked). The payload is zlib-compressed. Only load bytes this code wrote.
    """
    return _FORMAT + zlib.compress(pickle.dumps(obj, protocol=5), 1)


def loads(b: bytes) -> object:
    """Inverse of :func:`dumps`.

    Raises
    ------
    IncompatibleState
        The bytes are a state of another format version.
    ValueError
        The bytes are not a linkcast state at all.
    """
    if not b.startswith(_FORMAT):
        if b.startswith(_MAGIC):
            raise IncompatibleState(
                f"forecaster state of format {b[:4].decode(errors='replace')}, this version "
                f"reads {_FORMAT.decode()}"
            )
        raise ValueError("not a linkcast forecaster state (bad header)")
    return pickle.loads(zlib.decompress(b[len(_FORMAT) :]))  # noqa: S301 (our own state)


class Stateful:
    """Whole-state save and load: what models and the suite share."""

    def to_bytes(self) -> bytes:
        """The whole state, so that ``from_bytes`` gives identical forecasts."""
        return dumps(self)

    @classmethod
    def from_bytes(cls, b: bytes) -> Self:
        """Restore an object saved with :meth:`to_bytes`."""
        obj = loads(b)
        if not isinstance(obj, cls):
            raise TypeError(f"state holds a {type(obj).__name__}, not a {cls.__name__}")
        return obj


class Forecaster(Stateful, abc.ABC):
    """A batched link-load forecaster.

    Subclasses set ``name`` and implement :meth:`observe`, :meth:`forecast` and
    :meth:`add_links`. The base class provides the whole-state (de)serialisation.

    Attributes
    ----------
    name
        One of :data:`MODEL_NAMES`.
    """

    name: ClassVar[str]
    #: Number of steps forecast ahead (a constructor argument, stored as given).
    horizon: int

    @property
    @abc.abstractmethod
    def n_links(self) -> int:
        """Number of links in the batch (grows with :meth:`add_links`)."""

    @abc.abstractmethod
    def observe(self, y: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Take the newest grid value of each link (bit/s, shape ``(n_links,)``).

        ``mask`` is True where observed; NaN values count as missing too. Inputs are
        never mutated.
        """

    @abc.abstractmethod
    def forecast(self) -> np.ndarray:
        """Forecast steps ``t+1 .. t+H``: float64 bit/s, shape ``(n_links, horizon)``.

        No side effects; always finite, even for links never observed.
        """

    @abc.abstractmethod
    def add_links(self, n: int) -> None:
        """Append ``n`` cold links to the batch."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_links={self.n_links}, horizon={self.horizon})"
