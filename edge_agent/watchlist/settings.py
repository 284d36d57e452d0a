"""The `[watchlist]` section: where the watchlist lives and whose bundles it trusts (base module)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from edge_agent.section import Section
from edge_agent.state_dir import default_data_path

HEX_KEY = r"^[0-9a-f]{64}$"


class WatchlistSettings(Section):
    path: Path = Field(
        default_factory=lambda: default_data_path("watchlist.db"),
        description="The watchlist database (SQLite); its vector index lives beside it in <path>.index/. "
        "Default: watchlist.db in the state directory (edge_agent/state_dir.py), so the service and the "
        "CLI run as its user share it.",
    )
    index_dtype: Literal["f32", "f16", "i8"] = Field(
        "f16",
        description="Storage of vectors in the usearch index; distances are always re-computed exactly "
        "from SQLite's float32 templates. i8 is not recommended: usearch normalises i8 vectors to unit "
        "length, so its candidates are found by angle, not Euclidean distance (docs/benchmarks.md).",
    )
    default_watchlist: str = Field(
        "default", min_length=1, max_length=64, description="Watchlist name when none is given."
    )
    search_k: int = Field(5, ge=1, le=100, description="How many subjects `watchlist search` lists.")
    signing_key: Path | None = Field(
        None, description="Ed25519 private key (PEM) that signs exported bundles (`watchlist keygen`)."
    )
    trusted_keys: list[Annotated[str, Field(pattern=HEX_KEY)]] = Field(
        default_factory=list,
        description="Ed25519 public keys (64 hex digits) whose bundles this device imports.",
    )
