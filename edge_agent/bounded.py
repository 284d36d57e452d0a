"""Bounds on everything that arrives from outside (the network, a docking folder, a file a user names).

One place for the limits and the checks that apply them, used by commands, bundles and media alike:

- **Size** is checked first, on the raw bytes, before anything is decoded.
- **JSON** is parsed only after a linear, non-recursive scan has measured its nesting depth: Python's
  decoder recurses once per level, so `'[' * 2000` would raise `RecursionError` from deep inside it (or,
  with a raised recursion limit, overflow the C stack). NaN and Infinity are refused.
- **base64** is measured from its length before it is decoded, and decoded strictly.

Every refusal is an `InputRefusedError` (a `ValueError` and an `EdgeAgentError`) with one line saying what
was refused and which bound it broke; callers re-raise it as their own kind of error.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_agent.errors import EdgeAgentError

KIB = 1024
MIB = 1024 * KIB

# The deepest nesting any of our formats needs is 4 (envelope → payload → subjects → subject → list);
# 32 leaves room for future fields and is far below what the decoder's recursion could reach.
MAX_JSON_DEPTH = 32


class InputRefusedError(EdgeAgentError, ValueError):
    """Input that breaks a bound or is not of its format; the message is one line."""


@dataclass(frozen=True)
class JsonLimits:
    """How much JSON one kind of input may hold."""

    max_bytes: int
    max_depth: int = MAX_JSON_DEPTH


ENVELOPE_OVERHEAD = 4 * KIB  # a signed envelope's fields besides its payload (format, signer, signature)

# A bundle subject with one 128-d template is about 700 bytes of JSON: 16 MiB holds over 20,000 of them.
MAX_BUNDLE_PAYLOAD = 16 * MIB
# A fleet command other than apply_bundle is a few hundred bytes; apply_bundle carries a signed bundle.
MAX_COMMAND_PAYLOAD = 64 * KIB


def base64_length(size: int) -> int:
    """Characters of the base64 text of `size` bytes."""
    return 4 * ((size + 2) // 3)


MAX_BUNDLE_ENVELOPE = base64_length(MAX_BUNDLE_PAYLOAD) + ENVELOPE_OVERHEAD
MAX_BUNDLE_COMMAND_PAYLOAD = base64_length(MAX_BUNDLE_ENVELOPE) + ENVELOPE_OVERHEAD

# A string literal; one left open runs to the end (possessive, so no input can make the scan quadratic).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_OPEN = np.zeros(256, np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


def check_size(data: bytes, max_bytes: int, what: str) -> None:
    if len(data) > max_bytes:
        raise InputRefusedError(f"{what} is {len(data):,} bytes, over the limit of {max_bytes:,}")


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in `data`, without recursion (strings are skipped, so a
    bracket inside a string does not count). Linear time: a regex pass and a cumulative sum."""
    outside = _STRING.sub(b'""', data)
    steps = _OPEN[np.frombuffer(outside, np.uint8)]
    if steps.size == 0:
        return 0
    return int(np.cumsum(steps, dtype=np.int64).max(initial=0))


def refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def load_json(data: bytes, limits: JsonLimits, what: str) -> Any:
    """`data` parsed as UTF-8 JSON within `limits`, or `InputRefusedError` saying why not."""
    check_size(data, limits.max_bytes, what)
    depth = json_depth(data)
    if depth > limits.max_depth:
        raise InputRefusedError(f"{what} nests {depth} levels deep, over the limit of {limits.max_depth}")
    try:
        return json.loads(data.decode("utf-8"), parse_constant=refuse_constant)
    except (ValueError, RecursionError):
        raise InputRefusedError(f"{what} is not UTF-8 JSON") from None


def b64decode(text: str, max_bytes: int, what: str) -> bytes:
    """Strict base64 of at most `max_bytes` decoded bytes (the length is checked before decoding)."""
    if len(text) > base64_length(max_bytes):
        raise InputRefusedError(f"{what} decodes to over {max_bytes:,} bytes, the limit")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputRefusedError(f"{what} is not base64") from None


# ---- images ---------------------------------------------------------------------------------------------

# The largest real camera still is about 50 MP (full-frame and phone sensors of 2024: 8192x5464 = 44.8 MP,
# 8160x6120 = 49.9 MP); an 8K video frame is 33 MP. Decoded to RGB, 50 MP is 150 MB, which a Pi can hold.
# A picture's size is checked from its header before any pixel is decoded: a 109 kB PNG can claim
# 30000x30000 and decode to 2.7 GB (5.4 GB peak with the colour conversion).
MAX_IMAGE_PIXELS = 50_000_000


def check_pixels(width: int, height: int, what: str, limit: int = MAX_IMAGE_PIXELS) -> None:
    """Refuse a picture or video frame of more than `limit` pixels (or with no size at all)."""
    if width <= 0 or height <= 0:
        raise InputRefusedError(f"{what} has no size ({width}x{height})")
    if width * height > limit:
        raise InputRefusedError(
            f"{what} is {width}x{height} = {width * height:,} pixels, over the limit of {limit:,} pixels"
        )
