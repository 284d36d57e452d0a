"""Tool-written regions of `models/manifest.toml`, between `# >>> NAME` and `# <<< NAME` lines.

Each tool owns its region and rewrites it whole; the hand-written rest of the manifest is left alone.
"""

from __future__ import annotations

from pathlib import Path


def replace_block(manifest: Path, name: str, body: str) -> None:
    """Replaces (or appends) the region `name` with `body`, writing the file atomically."""
    start, end = f"# >>> {name} (generated: do not edit by hand)", f"# <<< {name}"
    text = manifest.read_text(encoding="utf-8")
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    partial = manifest.with_suffix(".toml.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(manifest)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def file_entry(fields: dict[str, object]) -> str:
    lines = ["[[files]]"] + [f"{key} = {toml_value(value)}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"
