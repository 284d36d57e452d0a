"""What every command group shares: settings from `--config` with a command's overrides, the configured
watchlist, argument types."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from edge_agent.config import Settings, load_settings
from edge_agent.face_metric import face_metric
from edge_agent.watchlist.store import Watchlist

if TYPE_CHECKING:
    from edge_agent.vision.embed import FaceEmbedder

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2  # 2: usage and configuration errors


def given(**options: Any) -> dict[str, Any]:
    """The options the user gave (not None): overrides for one settings section."""
    return {key: value for key, value in options.items() if value is not None}


def settings_from(args: argparse.Namespace, **sections: dict[str, Any]) -> Settings:
    """The settings of `--config` (and the environment), with per-section overrides from the command line."""
    return load_settings(args.config, True, **sections)


def open_watchlist(settings: Settings, embedder: FaceEmbedder | None = None) -> Watchlist:
    """The configured watchlist for the configured embedder's model, in its manifest metric; repairs are
    printed on stderr. Without an `embedder` already loaded, only the manifest is read for them."""
    if embedder is not None:
        dimensions, metric = embedder.spec.dimensions, embedder.metric
    else:
        from edge_agent.vision.manifest import ModelCatalog

        catalog = ModelCatalog.load(settings.models_dir)
        spec, _ = catalog.embedder(settings.embedder.model, settings.embedder.precision)
        dimensions, metric = spec.dimensions, face_metric(spec.metric)
    watchlist = Watchlist.for_settings(settings, dimensions, metric=metric)
    for notice in watchlist.notices:
        print(f"edge-agent: {notice}", file=sys.stderr)
    return watchlist


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value
