"""Embedding vectors as the photos table stores them, and their comparison: pure functions.

A vector is kept portably, the same on SQLite and PostgreSQL: its float32 values
little-endian in one BLOB/bytea (4 bytes per dimension: 4 KiB for Azure's 1024) beside
its Euclidean norm, so a cosine similarity is one dot product divided by two stored
norms. :func:`checked_vector` is the one gate every reply passes: a vector is stored only
when it has exactly the expected length and every value is a finite number that float32
can hold; anything else is a :class:`BadVector` naming what was wrong.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Sequence
from typing import Any

#: The largest magnitude float32 holds; a larger value would be stored as inf.
FLOAT32_MAX = 3.4028234663852886e38


class BadVector(ValueError):
    """A reply's vector that cannot be stored (wrong length, not numbers, NaN or infinite)."""


def checked_vector(values: Any, dimensions: int) -> list[float]:
    """``values`` as a list of floats when it is exactly ``dimensions`` finite numbers, else BadVector."""
    if not isinstance(values, list):
        raise BadVector(f"the vector is a {type(values).__name__}, not a list of numbers")
    if len(values) != dimensions:
        raise BadVector(f"the vector has {len(values)} values, {dimensions} expected")
    floats: list[float] = []
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadVector(f"value {index} of the vector is {type(value).__name__}, not a number")
        number = float(value) if isinstance(value, float) or abs(value) <= FLOAT32_MAX else math.inf
        if not math.isfinite(number) or abs(number) > FLOAT32_MAX:
            raise BadVector(f"value {index} of the vector is {value!r}, not a finite float32")
        floats.append(number)
    if not any(floats):
        raise BadVector("the vector is all zeros: it has no direction to compare")
    return floats


def pack(values: Sequence[float]) -> bytes:
    """float32 little-endian bytes of ``values`` (what the ``vector`` column holds)."""
    packed = array("f", values)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def unpack(data: bytes) -> array[float]:
    """The float32 values of a stored vector."""
    if len(data) % 4:
        raise BadVector(f"a stored vector of {len(data)} bytes is not float32 values")
    values = array("f")
    values.frombytes(data)
    if sys.byteorder != "little":
        values.byteswap()
    return values


def norm(values: Sequence[float]) -> float:
    """The Euclidean norm of the values as stored (float32), so a vector's cosine with itself is 1."""
    return math.sqrt(math.fsum(v * v for v in unpack(pack(values))))


def cosine(a: Sequence[float], a_norm: float, b: Sequence[float], b_norm: float) -> float:
    """Cosine similarity of two vectors of one length, from their stored norms."""
    if not a_norm or not b_norm:
        return 0.0
    return math.fsum(map(float.__mul__, map(float, a), map(float, b))) / (a_norm * b_norm)
