"""A defense's requirement on n (rows) and f (declared Byzantine rows), declared once.

`needs=AtLeast(2, 1)` reads n >= 2f+1. The harness checks it (after the plugin's own
`check`, which is left with the options), the listings and the leaderboard show its text,
and the tests take their boundary cases from `minimum`.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AtLeast:
    """n >= times·f + plus."""
    times: int = 0
    plus: int = 1

    def minimum(self, f: int) -> int:
        return self.times * f + self.plus

    def __str__(self) -> str:
        if not self.times:
            return f"n >= {self.plus}"
        factor = "f" if self.times == 1 else f"{self.times}f"
        return f"n >= {factor}+{self.plus}" if self.plus else f"n >= {factor}"

    def reason(self, name: str, n: int, f: int) -> str | None:
        """Why `name` cannot run with n rows and f, or None."""
        if n >= self.minimum(f):
            return None
        value = f" = {self.minimum(f)}" if self.times else ""
        return f"{name} needs {self}{value}"
