"""Protobuf message classes built from a table of fields, in a pool of their own.

The push decoders read the collectors' messages through views of their own making: the
same field numbers and wire types as the spec's ``.proto``, with some fields declared
otherwise (a message's bytes left undecoded, repeated messages declared singular so
that protobuf merges them). A view is a table, message -> fields, turned into a
``FileDescriptorProto`` and into classes by ``message_factory`` in a private
``DescriptorPool`` (no clash with another library's messages of the same names in the
default pool, and no generated ``_pb2`` module tied to one protobuf runtime).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto

# message -> its fields: (name, number, a scalar type of F or another message's name,
# repeated)
Layout = Mapping[str, tuple[tuple[str, int, int | str, bool], ...]]


def message_classes(package: str, layout: Layout) -> dict[str, Any]:
    """Classes of the messages of ``layout``, by message name, in package ``package``.

    >>> Pair = message_classes("x.demo", {"Pair": (("a", 1, F.TYPE_INT64, True),)})["Pair"]
    >>> list(Pair.FromString(b"\\x08\\x01\\x08\\x02").a)  # field 1 twice: both kept
    [1, 2]
    """
    proto = descriptor_pb2.FileDescriptorProto(
        name=f"{package.replace('.', '/')}.proto", package=package, syntax="proto3"
    )
    for name, fields in layout.items():
        message = proto.message_type.add(name=name)
        for field_name, number, kind, repeated in fields:
            f = message.field.add(
                name=field_name,
                number=number,
                label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL,
            )
            if isinstance(kind, str):
                f.type, f.type_name = F.TYPE_MESSAGE, f".{package}.{kind}"
            else:
                f.type = kind  # type: ignore[assignment]
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    found = message_factory.GetMessageClassesForFiles([proto.name], pool)
    return {name: found[f"{package}.{name}"] for name in layout}


def canonical(message: Any, raw: bytes) -> bool:
    """Whether ``raw`` is exactly what protobuf writes for ``message``, its parse, once
    the fields ``message``'s class does not know are left out: every field once, in
    order, with its declared wire type, and no value that proto3 leaves out written.

    Only of such a body does a view whose repeated messages are declared singular
    (their fields concatenated into columns) say what protobuf reads message by
    message: a field given twice (protobuf keeps the last) or with a wrong wire type
    (an unknown field to protobuf) would move values between samples or data points.
    Every protobuf library's encoder writes canonical bodies; others (explicit zeros,
    padded lengths) are to be read message by message. ``message`` loses its unknown
    fields.

    >>> Pair = message_classes("x.canon", {"Pair": (("a", 1, F.TYPE_INT64, False),)})["Pair"]
    >>> canonical(Pair.FromString(b"\\x08\\x01"), b"\\x08\\x01")
    True
    >>> canonical(Pair.FromString(b"\\x08\\x01\\x08\\x02"), b"\\x08\\x01\\x08\\x02")  # a twice
    False
    """
    message.DiscardUnknownFields()
    same: bool = message.SerializeToString() == raw
    return same
