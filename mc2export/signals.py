"""One way to stop: SIGINT (Ctrl-C) and SIGTERM end a command with exit 130 / 143 and one line.

While a command runs (:func:`handled`, entered by every command of :mod:`mc2export.cli`), both signals
raise :class:`Interrupted` -- a ``KeyboardInterrupt`` -- in the main thread, so the ``with``/``finally``
blocks that remove temporary folders run for SIGTERM as they do for Ctrl-C. A library may turn the
interrupt into another exception on its way up (``torch.export`` does, when it lands in one of its lazy
imports: ``AttributeError: module 'torch._dynamo' has no attribute 'exc'``); the signal is recorded, so
:func:`caused` still tells an interruption from a failure. Long loops call :func:`check` between steps:
an interrupt that some library swallowed stops the command there.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator, Optional

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: Optional[int] = None


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when SIGINT or SIGTERM arrives during a command."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum, frame) -> None:
    global _received
    if _received is None:
        _received = signum
    raise Interrupted(signum)


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` inside the block (main thread only; elsewhere a no-op)."""
    global _received
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received = None
    previous = {s: signal.signal(s, _raise) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _received = None


def received() -> Optional[int]:
    """The first signal received in the current :func:`handled` block, or None."""
    return _received


def check() -> None:
    """Raise :class:`Interrupted` again if a signal arrived (its exception may have been swallowed)."""
    if _received is not None:
        raise Interrupted(_received)


def caused(exc: BaseException) -> Optional[int]:
    """The signal that ended the command with ``exc``, or None when ``exc`` is an ordinary failure."""
    if _received is not None:
        return _received
    if isinstance(exc, KeyboardInterrupt):
        return getattr(exc, "signum", signal.SIGINT)
    return None


def exit_code(signum: int) -> int:
    """The shell's convention: 128 + the signal number (SIGINT 130, SIGTERM 143)."""
    return 128 + int(signum)


def name(signum: int) -> str:
    return signal.Signals(signum).name


__all__ = ["Interrupted", "handled", "received", "check", "caused", "exit_code", "name"]
