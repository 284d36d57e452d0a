"""edge-agent: an on-device face-watchlist agent that publishes only watchlist matches.

`__version__` is the installed distribution's version. The public Python API is a handful of names,
imported on first use (PEP 562) so that `import edge_agent` stays cheap for the base modules that need
only the version:

- `load_settings`, `Settings`: the configuration (`edge_agent.config`)
- `FacePipeline`: detect, align and embed faces in a picture (`edge_agent.vision.faces`)
- `Watchlist`: the local watchlist store (`edge_agent.watchlist.store`)
- `LivePipeline`: the live decision pipeline (`edge_agent.engine.live`)
- `Agent`: the daemon (`edge_agent.service`)
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_agent.config import Settings, load_settings
    from edge_agent.engine.live import LivePipeline
    from edge_agent.service import Agent
    from edge_agent.vision.faces import FacePipeline
    from edge_agent.watchlist.store import Watchlist

_PUBLIC = {
    "Settings": "edge_agent.config",
    "load_settings": "edge_agent.config",
    "FacePipeline": "edge_agent.vision.faces",
    "Watchlist": "edge_agent.watchlist.store",
    "LivePipeline": "edge_agent.engine.live",
    "Agent": "edge_agent.service",
}

__all__ = ["Agent", "FacePipeline", "LivePipeline", "Settings", "Watchlist", "__version__", "load_settings"]


def agent_version() -> str:
    """The installed version of edge-agent (`0+unknown` when run from a tree that is not installed)."""
    try:
        return version("edge-agent")
    except PackageNotFoundError:
        return "0+unknown"


__version__ = agent_version()


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'edge_agent' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
