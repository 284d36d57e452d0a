"""The README's examples as data: its command lines (with the output shown after `$ ` lines) and its
JSON payloads, and two checks on them: an output line has the shape of a shown one, and an abridged
payload (`{...}`, `"..."`) names only fields its pydantic model has, with values it accepts.

Used by tests/test_readme_examples.py, which runs every example or lists why it cannot."""

from __future__ import annotations

import re
import shlex
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SHELL = {"sh", "bash", "console"}
COMMENT = re.compile(r"(^|\s)#.*$")
ELIDED = "..."  # what an abridged payload shows instead of a value ({...} is read as "...")


@dataclass(frozen=True)
class Example:
    """One example: a command (continuation lines joined, comments dropped) or a JSON payload."""

    line: int  # where its block starts in the README
    kind: str  # "command" or "json"
    text: str
    output: tuple[str, ...] = ()  # the lines a `$ ` example shows after itself

    @property
    def id(self) -> str:
        return f"L{self.line}: {self.text[:60]}"


def _commands(line: int, body: str) -> list[Example]:
    """The commands of an ```sh / ```bash / ```console block: a line starting with spaces, or after a
    trailing backslash, continues the command above it; comment-only lines are dropped."""
    found: list[str] = []
    continued = False
    for raw in body.splitlines():
        text = COMMENT.sub("", raw).strip()
        if not text:
            continued = False
            continue
        text = text.removeprefix("$ ")
        if found and (continued or raw[:1].isspace()):
            found[-1] = f"{found[-1].removesuffix(chr(92)).rstrip()} {text}"
        else:
            found.append(text)
        continued = text.endswith("\\")
    return [Example(line, "command", " ".join(command.split())) for command in found]


def _shown(line: int, body: str) -> list[Example]:
    """The `$ command` lines of a ```text or ```console block, each with the output lines below it."""
    found: list[Example] = []
    for raw in body.splitlines():
        if raw.startswith("$ "):
            found.append(Example(line, "command", raw[2:].strip()))
        elif found:
            last = found[-1]
            found[-1] = Example(line, "command", last.text, (*last.output, raw))
    return found


def readme_examples(readme: Path) -> list[Example]:
    """Every example of the README, in order. A ```text block without `$ ` lines is output, not an
    example: the test that runs its command reads it with `text_block`."""
    source = readme.read_text()
    found: list[Example] = []
    for match in FENCE.finditer(source):
        language, body = match.group(1), match.group(2)
        line = source.count("\n", 0, match.start()) + 1
        if language == "console" or (language == "text" and "\n$ " in f"\n{body}"):
            found += _shown(line, body)
        elif language in SHELL:
            found += _commands(line, body)
        elif language == "json":
            found.append(Example(line, "json", body.strip()))
    return found


def text_block(readme: Path, containing: str) -> list[str]:
    """The lines of the one ```text block of the README that contains `containing`."""
    blocks = [match.group(2) for match in FENCE.finditer(readme.read_text()) if match.group(1) == "text"]
    (block,) = [body for body in blocks if containing in body]
    return block.splitlines()


def argv(command: str, words: dict[str, str]) -> list[str]:
    """A README command line as arguments: optional `[...]` groups dropped, `PATH...` read as `PATH`,
    each placeholder word replaced from `words`, the leading `edge-agent` removed."""
    while (stripped := re.sub(r"\s*\[[^\[\]]*\]", "", command)) != command:
        command = stripped
    parts = [word.removesuffix("...") for word in shlex.split(command)]
    assert parts[0] == "edge-agent", command
    return [words.get(word, word) for word in parts[1:]]


# ---- the shape of output -----------------------------------------------------------------------------

# A number, or a word of hex digits with at least one digit (an id, a hash, a shortened uuid).
VARYING = re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]+\b|\d+(?:\.\d+)?")


def shape(shown: str) -> re.Pattern[str]:
    """A pattern for lines like `shown`: numbers and hex ids may differ, `...` stands for anything."""
    parts = []
    for piece in shown.strip().split(ELIDED):
        literal = [re.escape(text) for text in VARYING.split(piece)]
        varying = ["[0-9a-f.]+"] * (len(literal) - 1)
        parts.append("".join(part for pair in zip(literal, [*varying, ""], strict=True) for part in pair))
    return re.compile(".*".join(parts))


def unmatched(shown: list[str], printed: list[str]) -> list[str]:
    """The shown lines that no printed line has the shape of (each printed line is used once)."""
    left = [line.strip() for line in printed]
    missing = []
    for line in (line for line in shown if line.strip()):
        pattern = shape(line)
        hit = next((n for n, candidate in enumerate(left) if pattern.fullmatch(candidate)), None)
        if hit is None:
            missing.append(line)
        else:
            del left[hit]
    return missing


# ---- abridged payloads -------------------------------------------------------------------------------


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation is (or is optionally), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [_model_of(arg) for arg in typing.get_args(annotation)]
        return next((model for model in models if model is not None), None)
    return None


def check_abridged(model: type[BaseModel], data: dict[str, Any], where: str = "") -> list[str]:
    """What is wrong with `data` as an abridged `model` payload: unknown keys, and values (other than
    the elided ones) that the field refuses. Required fields may be left out: the example is abridged."""
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    problems = []
    for key, value in data.items():
        if key not in fields:
            problems.append(f"{where}{key}: no such field in {model.__name__}")
            continue
        annotation: Any = fields[key].annotation
        inner = _model_of(annotation)
        if value == ELIDED:
            continue
        if inner is not None and isinstance(value, dict):
            problems += check_abridged(inner, value, f"{where}{key}.")
        elif typing.get_origin(annotation) is dict and isinstance(value, dict):
            item = typing.get_args(annotation)[1]
            for name, each in value.items():
                if each == ELIDED:
                    continue
                try:
                    TypeAdapter(item).validate_python(each)
                except ValueError as error:
                    problems.append(f"{where}{key}.{name}: {error}")
        else:
            try:
                TypeAdapter(annotation).validate_python(value)
            except ValueError as error:
                problems.append(f"{where}{key}: {error}")
    return problems
