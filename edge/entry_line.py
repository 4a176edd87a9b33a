"""Which way a person went: their feet against a camera's entry line (pure geometry).

The line and a point on the store's side of it are set per camera in fractions of the frame
(`cameras[].entry_line`, `cameras[].inside`). A track whose feet went from the outer side to the
store's side, crossing the line between its ends, came in; the other way, went out; anything
else (staying on one side, passing beside the line's ends) crossed nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Direction = Literal["in", "out"]
END_SLACK = 0.05  # a crossing this share of the line's length beyond either end still counts


@dataclass(frozen=True)
class EntryLine:
    """A camera's entry line (x1, y1, x2, y2) and a point inside, all in fractions of the frame."""

    line: tuple[float, float, float, float]
    inside: tuple[float, float]

    def side(self, point: np.ndarray) -> float:
        """> 0 on the store's side, < 0 outside, 0 on the line (fractions of the frame)."""
        x1, y1, x2, y2 = self.line
        cross = lambda px, py: (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)  # noqa: E731
        return float(np.sign(cross(*self.inside)) * cross(float(point[0]), float(point[1])))

    def crossing(self, start: np.ndarray, end: np.ndarray) -> Direction | None:
        """Where a walk from `start` to `end` (feet, fractions of the frame) crossed the line, if it did."""
        before, after = self.side(start), self.side(end)
        if before == after or before * after > 0 or (before == 0 and after == 0):
            return None
        x1, y1, x2, y2 = self.line
        a, b = np.array([x1, y1]), np.array([x2, y2])
        path, along = end - start, b - a
        denom = along[0] * path[1] - along[1] * path[0]
        if abs(denom) < 1e-12:
            return None
        # where on the line (0 = first end, 1 = second end) the walk met it
        t = ((start[0] - a[0]) * path[1] - (start[1] - a[1]) * path[0]) / denom
        if not -END_SLACK <= t <= 1 + END_SLACK:
            return None
        return "in" if after > 0 else "out"


def line_of(camera_line: tuple[float, float, float, float] | None,
            inside: tuple[float, float] | None) -> EntryLine | None:
    """The camera's entry line from its config keys, or None when it has none."""
    if camera_line is None or inside is None:
        return None
    return EntryLine(camera_line, inside)
