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


# A fleet command other than apply_bundle is a few hundred bytes; apply_bundle carries a whole bundle.
COMMAND_JSON = JsonLimits(max_bytes=64 * KIB)
BUNDLE_COMMAND_JSON = JsonLimits(max_bytes=32 * MIB)
# A bundle of 50,000 subjects with 5 templates of 128 float32 each is about 22 MiB of JSON.
BUNDLE_JSON = JsonLimits(max_bytes=32 * MIB)

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


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def load_json(data: bytes, limits: JsonLimits, what: str) -> Any:
    """`data` parsed as UTF-8 JSON within `limits`, or `InputRefusedError` saying why not."""
    check_size(data, limits.max_bytes, what)
    depth = json_depth(data)
    if depth > limits.max_depth:
        raise InputRefusedError(f"{what} nests {depth} levels deep, over the limit of {limits.max_depth}")
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise InputRefusedError(f"{what} is not UTF-8 JSON") from None


def b64decode(text: str, max_bytes: int, what: str) -> bytes:
    """Strict base64 of at most `max_bytes` decoded bytes (the length is checked before decoding)."""
    if len(text) > 4 * ((max_bytes + 2) // 3):
        raise InputRefusedError(f"{what} decodes to over {max_bytes:,} bytes, the limit")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputRefusedError(f"{what} is not base64") from None
