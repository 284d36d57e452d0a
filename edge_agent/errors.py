"""Errors a user can cause and fix: the CLI prints them as one line, never as a traceback."""


class EdgeAgentError(Exception):
    """Base class for every error caused by input, configuration or environment."""


class ConfigError(EdgeAgentError):
    """The configuration file or environment holds a value the agent cannot use."""


class ModelError(EdgeAgentError):
    """A model file is missing, corrupt, of the wrong kind, or no runtime can load it."""


class MediaError(EdgeAgentError):
    """An image or video cannot be read (missing, empty, truncated, not a picture)."""


class CaptureError(EdgeAgentError):
    """A camera or stream cannot be opened or stopped delivering frames."""
