"""Native libraries' own log lines kept off stderr: the TFLite runtime's `INFO: Created TensorFlow Lite
XNNPACK delegate for CPU.` (written by C++ straight to file descriptor 2 when tensors are allocated; no
environment variable of LiteRT's silences it, TF_CPP_MIN_LOG_LEVEL included) and the image decoders'
warnings. The CLI turns them back on with `-v` (`show_native_logs`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

_shown = False


def show_native_logs(shown: bool) -> None:
    """Whether `quiet_stderr` lets native log lines through (the CLI's `-v`)."""
    global _shown
    _shown = shown


def native_logs_shown() -> bool:
    return _shown


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """File descriptor 2 on /dev/null for the block, where that hides only the native library's own lines
    (the runtime's XNNPACK line; libpng's "libpng warning: iCCP: CRC error", libjpeg's "Corrupt JPEG
    data"): only when no other Python thread is running, since another thread's line would be lost too.
    Elsewhere (the live agent), nothing."""
    if _shown or threading.active_count() > 1:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no fd 2, or stderr already closed
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
