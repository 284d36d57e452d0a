"""The base of every settings section, wherever the section lives.

Each package keeps the settings of its own parts beside them (`capture/settings.py`,
`vision/settings.py`, ...) and `config.py` composes them into one `Settings`. They all derive from
`Section`, so every section forbids unknown keys (a typo is an error that names the key instead of a
silent default) and validates assignments too. Settings modules import only base modules and pydantic:
`edge-agent config validate` must not load OpenCV, picamera2 or a model runtime.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base of every config section: strict keys, validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
