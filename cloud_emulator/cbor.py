"""CBOR (RFC 8949), the part of it that AWS fleet-provisioning requests and answers hold: maps with
text keys, arrays, text and byte strings, unsigned and negative integers, true, false and null,
each of definite length. Anything else (tags, floats, undefined, other simple values, indefinite
lengths, reserved heads), malformed or truncated input, bytes after the item, a duplicate map key,
or nesting deeper than MAX_DEPTH is a CborError, whose message never quotes the input."""

from typing import Any

MAX_DEPTH = 16  # arrays and maps inside each other, our choice: a RegisterThing request has two

_UNSIGNED, _NEGATIVE, _BYTES, _TEXT, _ARRAY, _MAP, _TAG, _SIMPLE = range(8)
_FALSE, _TRUE, _NULL = 20, 21, 22
_ARGUMENT_SIZES = {24: 1, 25: 2, 26: 4, 27: 8}  # additional information -> bytes of the argument
_INDEFINITE = 31


class CborError(ValueError):
    pass


# -- encoding -------------------------------------------------------------------------------------


def _head(major: int, argument: int) -> bytes:
    # The shortest head that holds the argument (RFC 8949 section 4.2.1, preferred serialization).
    if argument < 24:
        return bytes([major << 5 | argument])
    for info, size in _ARGUMENT_SIZES.items():
        if argument < 1 << (8 * size):
            return bytes([major << 5 | info]) + argument.to_bytes(size, "big")
    raise CborError("integer too large for CBOR")


def encode(value: Any) -> bytes:
    out = bytearray()
    _encode_into(out, value, 0)
    return bytes(out)


def _check_depth(depth: int) -> None:
    # depth: the arrays and maps around the one about to be read or written
    if depth >= MAX_DEPTH:
        raise CborError(f"nested deeper than {MAX_DEPTH} levels")


def _encode_into(out: bytearray, value: Any, depth: int) -> None:
    if value is None:
        out.append(_SIMPLE << 5 | _NULL)
    elif isinstance(value, bool):  # before int: True is an int too
        out.append(_SIMPLE << 5 | (_TRUE if value else _FALSE))
    elif isinstance(value, int):
        out += _head(_UNSIGNED, value) if value >= 0 else _head(_NEGATIVE, -1 - value)
    elif isinstance(value, (bytes, bytearray)):
        out += _head(_BYTES, len(value)) + value
    elif isinstance(value, str):
        data = value.encode()
        out += _head(_TEXT, len(data)) + data
    elif isinstance(value, (list, tuple)):
        _check_depth(depth)
        out += _head(_ARRAY, len(value))
        for item in value:
            _encode_into(out, item, depth + 1)
    elif isinstance(value, dict):
        _check_depth(depth)
        out += _head(_MAP, len(value))
        for key, item in value.items():
            if not isinstance(key, str):
                raise CborError("map keys must be text")
            _encode_into(out, key, depth)
            _encode_into(out, item, depth + 1)
    else:
        raise CborError(f"cannot encode a {type(value).__name__}")


# -- decoding -------------------------------------------------------------------------------------


def decode(data: bytes) -> Any:
    reader = _Reader(bytes(data))
    value = reader.item(0)
    if reader.position != len(reader.data):
        raise CborError("bytes after the item")
    return value


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def take(self, size: int) -> bytes:
        if size > len(self.data) - self.position:
            raise CborError("truncated")
        chunk = self.data[self.position:self.position + size]
        self.position += size
        return chunk

    def head(self) -> tuple[int, int, int]:
        """(major type, additional information, argument) of the next item."""
        initial = self.take(1)[0]
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info, info
        if info == _INDEFINITE:
            raise CborError("indefinite lengths are not supported" if major != _SIMPLE else "unexpected break")
        if info not in _ARGUMENT_SIZES:
            raise CborError("reserved additional information")
        return major, info, int.from_bytes(self.take(_ARGUMENT_SIZES[info]), "big")

    def count(self, items: int, per_item: int) -> int:
        # Every item takes a byte at least: a count the rest of the input cannot hold is truncated
        # input, found before any loop or allocation.
        if items * per_item > len(self.data) - self.position:
            raise CborError("truncated")
        return items

    def item(self, depth: int) -> Any:
        major, info, argument = self.head()
        if major == _UNSIGNED:
            return argument
        if major == _NEGATIVE:
            return -1 - argument
        if major == _BYTES:
            return self.take(argument)
        if major == _TEXT:
            try:
                return self.take(argument).decode("utf-8")
            except UnicodeDecodeError:
                raise CborError("text string is not UTF-8") from None
        if major == _ARRAY:
            _check_depth(depth)
            return [self.item(depth + 1) for _ in range(self.count(argument, 1))]
        if major == _MAP:
            _check_depth(depth)
            result: dict[str, Any] = {}
            for _ in range(self.count(argument, 2)):
                key = self.item(depth + 1)
                if not isinstance(key, str):
                    raise CborError("map keys must be text strings")
                if key in result:
                    raise CborError("duplicate map key")
                result[key] = self.item(depth + 1)
            return result
        if major == _TAG:
            raise CborError("tags are not supported")
        if info in (_FALSE, _TRUE, _NULL):
            return {_FALSE: False, _TRUE: True, _NULL: None}[info]
        if info in (25, 26, 27):  # half, single and double precision
            raise CborError("floats are not supported")
        raise CborError("simple values other than true, false and null are not supported")
