"""A reader for dlib's portable binary serialisation (`dlib/serialize.h`), enough for model files.

dlib writes every integer the same way: one control byte whose low 4 bits give how many
little-endian magnitude bytes follow (1..8; 0 is invalid) and whose 0x80 bit marks a negative
value, then those bytes. Everything else is built from integers:

- floating point values are a `float_details`: an int64 mantissa and an int16 exponent, value =
  mantissa * 2**exponent; the exponents 32000, 32001 and 32002 stand for +inf, -inf and NaN.
  (dlib also reads an older ASCII float format, recognisable by bits 0x70 of the first byte;
  current dlib never writes it, and this reader rejects it.)
- strings and `std::vector`: the size as an unsigned integer, then the bytes / the items.
- `dlib::matrix`: the row and column counts, written negated (a marker of the newer format; older
  files wrote them positive), then the elements in row-major order.
- `dlib::vector<T, 2>` (a point): x then y, so a std::vector of points is a size then 2n floats.

Malformed input raises `ModelError` naming the file and the byte offset.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from edge_agent.errors import ModelError

T = TypeVar("T")

_SIZE_MASK = 0x0F
_NEGATIVE = 0x80
# dlib never sets these bits in an integer's control byte; a float whose first byte has them is
# in dlib's old ASCII format. Either way this reader treats them as corruption.
_RESERVED_BITS = 0x70
_FLOAT_SPECIALS = {32000: math.inf, 32001: -math.inf, 32002: math.nan}


def decode_floats(ints: Sequence[int]) -> npt.NDArray[np.float64]:
    """Floating point values from their (mantissa, exponent) integer pairs, flattened.

    Raises ValueError for a mantissa beyond int64 or an exponent that is neither an int16 below
    dlib's special codes nor one of them.
    """
    if len(ints) % 2:
        raise ValueError("float data must come in (mantissa, exponent) pairs")
    try:
        pairs = np.array(ints, dtype=np.int64).reshape(-1, 2)
    except OverflowError:
        raise ValueError("float mantissa does not fit in 64 bits") from None
    mantissa, exponent = pairs[:, 0], pairs[:, 1]
    special = exponent >= min(_FLOAT_SPECIALS)
    if np.any(exponent < -32768) or np.any(special & ~np.isin(exponent, list(_FLOAT_SPECIALS))):
        raise ValueError("float exponent is outside int16 and not one of dlib's inf/nan codes")
    with np.errstate(over="ignore"):
        values = np.ldexp(mantissa.astype(np.float64), np.where(special, 0, exponent).astype(np.int32))
    for code, replacement in _FLOAT_SPECIALS.items():
        values[exponent == code] = replacement
    return values


class DlibReader:
    """Reads values one after another from the bytes of a dlib-serialised object."""

    def __init__(self, data: bytes, source: str = "<bytes>") -> None:
        self._data = data
        self._pos = 0
        self.source = source

    @classmethod
    def open(cls, path: Path) -> DlibReader:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"{path}: cannot read model file ({exc.strerror or exc})") from exc
        return cls(data, str(path))

    @property
    def at_end(self) -> bool:
        return self._pos >= len(self._data)

    def error(self, message: str) -> ModelError:
        """A `ModelError` naming the file and where in it the reader stands."""
        return ModelError(f"{self.source}: {message} (at byte {self._pos} of {len(self._data)})")

    # ---- integers -----------------------------------------------------------------------------

    def read_int(self) -> int:
        """One signed integer."""
        return self.read_ints(1)[0]

    def read_uint(self) -> int:
        """One unsigned integer (sizes, indices): a negative sign is an error, as in dlib."""
        if self._pos < len(self._data) and self._data[self._pos] & _NEGATIVE:
            raise self.error("negative value where an unsigned integer was expected")
        return self.read_int()

    def read_ints(self, count: int) -> list[int]:
        """`count` integers in a row (the fast path for long homogeneous runs)."""
        data, pos, end_of_data = self._data, self._pos, len(self._data)
        from_bytes = int.from_bytes
        out: list[int] = []
        append = out.append
        for _ in range(count):
            if pos >= end_of_data:
                self._pos = pos
                raise self.error("truncated: expected an integer")
            control = data[pos]
            size = control & _SIZE_MASK
            end = pos + 1 + size
            if size == 0 or size > 8 or control & _RESERVED_BITS:
                self._pos = pos
                raise self.error(f"invalid integer control byte 0x{control:02x}")
            if end > end_of_data:
                self._pos = pos
                raise self.error("truncated inside an integer")
            value = from_bytes(data[pos + 1 : end], "little")
            append(-value if control & _NEGATIVE else value)
            pos = end
        self._pos = pos
        return out

    # ---- floating point -----------------------------------------------------------------------

    def read_float(self) -> float:
        """One float or double, stored as a `float_details` (mantissa, exponent)."""
        return float(self.read_floats(1)[0])

    def read_floats(self, count: int) -> npt.NDArray[np.float64]:
        """`count` floating point values in a row, as float64 (exact for dlib's float and double)."""
        start = self._pos
        ints = self.read_ints(2 * count)
        try:
            return decode_floats(ints)
        except ValueError as exc:
            self._pos = start
            raise self.error(str(exc)) from None

    # ---- containers ---------------------------------------------------------------------------

    def read_size(self, limit: int | None = None) -> int:
        """A container size; `limit` guards against absurd sizes from a corrupt file."""
        size = self.read_uint()
        remaining = len(self._data) - self._pos
        # Every serialised item takes at least one byte, so a size beyond the rest is corrupt.
        if size > remaining and size > 0:
            raise self.error(f"container size {size} exceeds the {remaining} bytes left")
        if limit is not None and size > limit:
            raise self.error(f"container size {size} exceeds the expected maximum {limit}")
        return size

    def read_string(self) -> bytes:
        """A `std::string`: its size, then that many raw bytes."""
        size = self.read_size()
        end = self._pos + size
        value = self._data[self._pos : end]
        self._pos = end
        return value

    def read_vector(self, read_item: Callable[[DlibReader], T]) -> list[T]:
        """A `std::vector`: its size, then each item read by `read_item`."""
        return [read_item(self) for _ in range(self.read_size())]

    def read_matrix_shape(self) -> tuple[int, int]:
        """The (rows, columns) header of a `dlib::matrix` (negated in the current format)."""
        rows, cols = self.read_int(), self.read_int()
        if (rows < 0) != (cols < 0) and rows != 0 and cols != 0:
            raise self.error(f"inconsistent matrix header ({rows}, {cols})")
        rows, cols = abs(rows), abs(cols)
        if rows * cols > len(self._data) - self._pos:
            raise self.error(f"matrix of {rows}x{cols} is larger than the rest of the file")
        return rows, cols

    def read_matrix(self) -> npt.NDArray[np.float64]:
        """A floating point `dlib::matrix` as a (rows, columns) float64 array."""
        rows, cols = self.read_matrix_shape()
        return self.read_floats(rows * cols).reshape(rows, cols)

    def expect_end(self) -> None:
        """Raise unless every byte has been read (trailing bytes mean a different format)."""
        if not self.at_end:
            raise self.error(f"{len(self._data) - self._pos} unexpected trailing bytes")
