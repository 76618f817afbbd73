"""Compressed request bodies, decompressed within a bound.

Collectors compress what they push: Telegraf's InfluxDB outputs and the OpenTelemetry
exporters send ``Content-Encoding: gzip`` (RFC 1952). A small gzip body can expand
a thousandfold, so the output is bounded while it is produced, never after.
"""

from __future__ import annotations

import zlib


class Undecodable(ValueError):
    """The body is not what its ``Content-Encoding`` says (corrupt or cut short)."""


class Oversized(ValueError):
    """The body, decompressed, would exceed the bound."""


def gunzip(data: bytes, limit: int) -> bytes:
    """The gzip ``data`` decompressed, at most ``limit`` bytes of it.

    Members written one after another (RFC 1952 section 2.2) are joined, as ``gzip -d``
    does. Raises :class:`Oversized` as soon as the output passes ``limit`` bytes, and
    :class:`Undecodable` for a bad header, a bad checksum, trailing garbage or a
    stream cut short.

    >>> import gzip
    >>> gunzip(gzip.compress(b"a" * 10) + gzip.compress(b"b"), limit=11)
    b'aaaaaaaaaab'
    >>> gunzip(gzip.compress(b"a" * 10), limit=9)
    Traceback (most recent call last):
    ...
    api.compression.Oversized: decompressed body exceeds 9 bytes
    """
    if not data:
        return b""
    out: list[bytes] = []
    size = 0
    rest = data
    while True:
        inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip header and trailer
        chunk = rest
        try:
            while True:  # with no input left, zlib may still hold output back
                piece = inflate.decompress(chunk, limit - size + 1)
                size += len(piece)
                if size > limit:
                    raise Oversized(f"decompressed body exceeds {limit} bytes")
                out.append(piece)
                chunk = inflate.unconsumed_tail
                if inflate.eof or not (chunk or piece):
                    break
        except zlib.error as exc:
            raise Undecodable(f"not valid gzip: {exc}") from None
        if not inflate.eof:
            raise Undecodable("not valid gzip: the stream ends before its trailer")
        rest = inflate.unused_data
        if not rest.strip(b"\0"):  # some writers pad the last member with zeros
            return b"".join(out)
