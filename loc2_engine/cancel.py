"""Stopping a localization while it runs: the caller's ``should_stop`` callable, asked at checkpoints.

`Localizer.localize(..., should_stop=...)` watches the callable for the duration of the call (`watching`);
the stages ask `checkpoint()` between themselves and inside their long loops (the ensemble's aerial passes,
RANSAC's batches of hypotheses), which raises `Cancelled` once it answers True. The callable is held per
thread and per context, so a QGIS task cancels its own run and nobody else's, and the stages need no extra
argument.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Optional

_SHOULD_STOP: ContextVar[Optional[Callable[[], bool]]] = ContextVar("loc2_should_stop", default=None)


class Cancelled(Exception):
    """The caller asked the localization to stop. Not a `Loc2Error`: a cancelled photo is neither localized
    nor failed, and nothing of it is written."""


@contextmanager
def watching(should_stop: Optional[Callable[[], bool]]):
    """Make ``should_stop`` (None: never stop) the callable `checkpoint` asks within this block."""
    token = _SHOULD_STOP.set(should_stop)
    try:
        yield
    finally:
        _SHOULD_STOP.reset(token)


def checkpoint() -> None:
    """Raise `Cancelled` when the callable being watched says stop; free when none is."""
    should_stop = _SHOULD_STOP.get()
    if should_stop is not None and should_stop():
        raise Cancelled("The localization was cancelled.")
