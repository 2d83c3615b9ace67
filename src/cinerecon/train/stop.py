"""SIGTERM as a clean stop of ``cinerecon train`` (``kill``, ``timeout``, a batch scheduler's stop).

:func:`on_sigterm` installs, for the duration of a block, a handler that records the request,
puts back the default action (a second SIGTERM kills at once) and raises ``SystemExit(143)``.
An exception raised from a signal handler is lost when the signal arrives while Python runs a
callback (a weakref's, a finaliser's), so the training loop also calls :func:`check` between
steps: the run then stops there. Either way it ends as an exception does, so a new run that
had set a previous run's files aside puts them back (:class:`cinerecon.train.loop._RunStart`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_REQUESTED = threading.Event()


def check() -> None:
    """Raise ``SystemExit(128 + SIGTERM)`` if a SIGTERM arrived under :func:`on_sigterm` (no host sync)."""
    if _REQUESTED.is_set():
        raise SystemExit(128 + signal.SIGTERM)


def _handler(signum: int, frame) -> None:  # noqa: ANN001 - signal handler
    _REQUESTED.set()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def on_sigterm() -> Iterator[None]:
    """SIGTERM raises SystemExit in the block (main thread, where SIGTERM had its default action only).

    Elsewhere (another thread, or a program with its own SIGTERM handler) nothing is changed.
    The previous handler is restored when the block ends.
    """
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    _REQUESTED.clear()
    signal.signal(signal.SIGTERM, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _REQUESTED.clear()
