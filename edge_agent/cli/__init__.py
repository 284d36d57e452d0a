"""The `edge-agent` command: one module per command group; thin (parses, calls, prints)."""

from edge_agent.cli.main import main

__all__ = ["main"]
