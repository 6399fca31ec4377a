"""Progress while a run goes: photos/s, ETA and skipped count -- a live line on a terminal, a line every
30 s in a log -- and the per-stage times (read, decode, infer, write) of the summary and ``stats.json``."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Dict, Optional, TextIO

STAGES = ("scan", "read", "decode", "infer", "write")


@dataclass
class Progress:
    total: int
    out: TextIO = field(default_factory=lambda: sys.stderr)
    every: Optional[float] = None          # seconds between lines; None: 0.5 on a terminal, 30 otherwise
    done: int = 0
    ok: int = 0
    skipped: int = 0
    stages: Dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    start: float = field(default_factory=time.perf_counter)

    def __post_init__(self):
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        if self.every is None:
            self.every = 0.5 if self.tty else 30.0
        self._last = self.start

    def add(self, stage: str, seconds: float) -> None:
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds

    def update(self, ok: int = 0, skipped: int = 0) -> None:
        self.ok += ok
        self.skipped += skipped
        self.done += ok + skipped
        now = time.perf_counter()
        if now - self._last >= self.every:
            self._last = now
            self._print(self.line(now))

    def rate(self, now: Optional[float] = None) -> float:
        dt = (now or time.perf_counter()) - self.start
        return self.done / dt if dt > 0 else 0.0

    def line(self, now: Optional[float] = None) -> str:
        rate = self.rate(now)
        left = self.total - self.done
        eta = f"{left / rate:.0f} s" if rate > 0 else "?"
        return (f"indexed {self.done}/{self.total}  {rate:.1f} photos/s  ETA {eta}  skipped {self.skipped}")

    def _print(self, text: str) -> None:
        if self.tty:
            self.out.write("\r" + text + "\x1b[K")
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def finish(self) -> None:
        if self.tty and self.done:
            self.out.write("\n")
            self.out.flush()

    def seconds(self) -> float:
        return time.perf_counter() - self.start


__all__ = ["Progress", "STAGES"]
