"""One `Settings` object for the whole agent: a TOML file, overridden by `EDGE_AGENT_*` variables.

Nested fields use a double underscore in the environment, e.g. `EDGE_AGENT_DETECTOR__MIN_SCORE=0.6`.
Every model forbids unknown keys, so a typo is an error that names the key instead of a silent default.

Each section is defined beside the code it configures (`capture/settings.py` for `[camera]`,
`vision/settings.py` for `[runtime]`, `[detector]`, `[embedder]`, `[quality]`, ...), on the shared base
`edge_agent.section.Section`; this module composes them, loads them and reports what is wrong.

Environment variables: every `EDGE_AGENT_*` variable must name a setting, except `EDGE_AGENT_CONFIG` (the
config file) and those under the reserved prefix `EDGE_AGENT_TEST_` (the test suite's own switches, such
as `EDGE_AGENT_TEST_FACES` and `EDGE_AGENT_TEST_SLOW`), which are never settings.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from edge_agent.capture.settings import CameraSettings
from edge_agent.console.settings import ConsoleSettings
from edge_agent.engine.settings import DecisionSettings, TrackingSettings
from edge_agent.errors import ConfigError
from edge_agent.events.settings import EventSettings, MqttSettings
from edge_agent.section import Section
from edge_agent.vision.settings import DetectorSettings, EmbedderSettings, QualitySettings, RuntimeSettings
from edge_agent.watchlist.settings import WatchlistSettings

ENV_PREFIX = "EDGE_AGENT_"
CONFIG_VARIABLE = "EDGE_AGENT_CONFIG"  # where the config file is: read by the CLI, not a setting
# Reserved for the tests' own variables (where test photos are, whether slow tests run): never settings,
# so a new test switch needs no change here.
TEST_VARIABLE_PREFIX = "EDGE_AGENT_TEST_"
_SETTINGS_ERROR_FIELD = re.compile(r'for field "([^"]+)"')


class ServiceSettings(Section):
    purge_interval_s: float = Field(
        3600.0, ge=1.0, description="How often expired subjects and old review records are deleted."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    device_id: str = Field(
        "edge-1",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Name of this device in MQTT topics and events.",
    )
    models_dir: Path | None = Field(
        None, description="Folder with manifest.toml and the model files (default: bundled)."
    )
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    watchlist: WatchlistSettings = Field(default_factory=WatchlistSettings)
    camera: CameraSettings = Field(default_factory=CameraSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    decision: DecisionSettings = Field(default_factory=DecisionSettings)
    events: EventSettings = Field(default_factory=EventSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)


def _settings_class_for(path: Path | None, use_environment: bool) -> type[Settings]:
    """A `Settings` subclass whose lowest-priority source is the given TOML file."""

    class FileSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings]
            if use_environment:
                sources.append(env_settings)
            if path is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            return tuple(sources)

    return FileSettings


def describe_validation_error(err: ValidationError, environ: Mapping[str, str] | None = None) -> str:
    """All problems of a validation error on one line, each naming its dotted field (and the environment
    variable it came from, where one of `environ` sets it). The alternatives of a field that takes one of
    several forms (`tiles`: "auto" or two integers) are one problem."""
    problems: dict[str, list[str]] = {}
    shown_input: dict[str, str] = {}
    for problem in err.errors():
        loc = [str(p) for p in problem["loc"] if not _is_union_member(p)]
        field = ".".join(loc) or "(top level)"
        message = "unknown key" if problem["type"] == "extra_forbidden" else problem["msg"]
        messages = problems.setdefault(field, [])
        if message not in messages:
            messages.append(message)
        given = problem.get("input")
        shown_input[field] = "" if isinstance(given, dict) or given is None else f" (got {given!r})"
        variable = ENV_PREFIX + "__".join(part.upper() for part in loc)
        if environ is not None and variable in environ:
            shown_input[field] = f" (from environment variable {variable}={environ[variable]!r})"
    return "; ".join(f"{field}: {' or '.join(m)}{shown_input[field]}" for field, m in problems.items())


def _is_union_member(part: object) -> bool:
    """Whether a location part names one form of a union field (`literal['auto']`, `tuple[int, int]`)."""
    return isinstance(part, str) and "[" in part


def is_setting_variable(variable: str) -> bool:
    """Whether an environment variable must name a setting: the `EDGE_AGENT_` prefix, and neither the
    config file's variable nor one under the reserved test prefix."""
    name = variable.upper()
    return (
        name.startswith(ENV_PREFIX) and name != CONFIG_VARIABLE and not name.startswith(TEST_VARIABLE_PREFIX)
    )


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse `EDGE_AGENT_*` variables that name no setting: a typo must not pass silently."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    for variable in sorted(environ):
        if not is_setting_variable(variable):
            continue
        top = variable.upper().split("__", 1)[0]
        if top not in known:
            raise ConfigError(f"environment variable {variable} names no setting")


def load_settings(path: Path | str | None = None, use_environment: bool = True, **overrides: Any) -> Settings:
    """Read settings from `path` (TOML) and the environment; raise `ConfigError` on any problem.

    `overrides` (e.g. `detector={"tiles": (2, 2)}`) win over both and are merged key by key.
    """
    if use_environment:
        check_environment(os.environ)
    toml_path = Path(path) if path is not None else None
    where = f" in {toml_path}" if toml_path else ""
    if toml_path is not None:
        if not toml_path.is_file():
            raise ConfigError(f"config file not found: {toml_path}")
        try:
            tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {toml_path} is not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"config file {toml_path} cannot be read: {exc.strerror}") from None
    try:
        return _settings_class_for(toml_path, use_environment)(**overrides)
    except ValidationError as exc:
        environ = os.environ if use_environment else None
        raise ConfigError(f"invalid config{where}: {describe_validation_error(exc, environ)}") from None
    except SettingsError as exc:  # an environment value pydantic-settings could not even parse
        raise ConfigError(describe_settings_error(exc, os.environ)) from None


def describe_settings_error(err: SettingsError, environ: Mapping[str, str]) -> str:
    """One line naming the environment variable whose value could not be parsed: values of lists and
    tables (`tiles`, `roi`, ...) are read as JSON, so `3x3` fails before validation could name the field."""
    field = _SETTINGS_ERROR_FIELD.search(str(err))
    section = ENV_PREFIX + (field.group(1).upper() if field else "")
    named = sorted(v for v in environ if v.upper() == section or v.upper().startswith(section + "__"))
    bad = [v for v in named if not _is_json(environ[v])] or named
    if not bad:
        return f"environment: {err}"
    shown = ", ".join(f"{v}={environ[v]!r}" for v in bad)
    return (
        f"environment variable {shown}: not a valid value (lists and tables are written as JSON, e.g. [3, 3])"
    )


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def settings_as_toml(settings: Settings) -> str:
    """The effective settings as TOML text (what `edge-agent config show` prints); secrets are masked."""
    lines: list[str] = []
    _emit_table(lines, settings.model_dump(mode="json", exclude_none=True), "")
    return "\n".join(lines).lstrip("\n") + "\n"


def _emit_table(lines: list[str], table: dict[str, Any], name: str) -> None:
    """A table's plain keys under its header, then its sub-tables as [name.sub]."""
    if name:
        lines += ["", f"[{name}]"]
    plain = {key: value for key, value in table.items() if not isinstance(value, dict)}
    lines.extend(f"{key} = {_toml_value(value)}" for key, value in plain.items())
    for key, value in table.items():
        if isinstance(value, dict):
            _emit_table(lines, value, f"{name}.{key}" if name else key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
