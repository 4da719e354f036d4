"""`--stop-after-hours`: stop between folds before a session limit (Kaggle's 12 h GPU session) cuts a fold off.

The projection is the slowest fold this launch has trained so far (its wall time, validations included): a fold
only starts when that much time is still left. The first fold of a launch always starts, as nothing is measured
yet. Folds already finished are skipped as usual, so `--resume` trains exactly what was left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kaggle_kit.train.distributed import Dist

clock: Callable[[], float] = time.monotonic  # tests replace it with a fake clock


class SessionLimit:
    """Measures the folds of one launch and says whether the next one would end past the limit."""

    def __init__(self, hours: float | None):
        self.hours = hours
        self.started = clock()
        self.fold_seconds: list[float] = []

    def fold_done(self, seconds: float) -> None:
        self.fold_seconds.append(seconds)

    def elapsed(self) -> float:
        return clock() - self.started

    def projected_end(self) -> float:
        """Seconds from the launch's start at which the next fold would end."""
        return self.elapsed() + max(self.fold_seconds, default=0.0)

    def stop_reason(self) -> str | None:
        """Why the next fold must not start, or None."""
        if self.hours is None or not self.fold_seconds:
            return None
        limit = self.hours * 3600
        end = self.projected_end()
        if end <= limit:
            return None
        return (f"--stop-after-hours {self.hours:g}: {self.elapsed() / 3600:.2f} h elapsed, the next fold would end "
                f"at {end / 3600:.2f} h (slowest fold so far {max(self.fold_seconds) / 60:.1f} min)")

    def agreed_stop_reason(self, dist: Dist) -> str | None:
        """`stop_reason` as rank 0 decides it, on every rank: each rank measures its own folds on its own clock, and
        ranks that disagreed would leave one waiting in a collective forever (--nproc-per-node)."""
        return dist.broadcast(self.stop_reason())
