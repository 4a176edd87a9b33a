"""One door, one passage: views of one person on two cameras of the same door become one passage.

Cameras are grouped by door in the config (`cameras[].door`). A passage of such a camera is held
for `tracking.door_join` after it ended; passages of other cameras of the same door whose time
on screen is within that of it are its partners. Partners are paired one to one, best first by
time overlap and, where both show a face, by face similarity; a pair whose faces tell the two
apart (similarity below `distinct`) is never joined, so two people walking in side by side stay
two. Passages of cameras without a door, and open tracks' early views, pass straight through.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np

from footfall.edge.decisions import Passage
from footfall.recognition.embed import l2_normalise


def gap(a: Passage, b: Passage) -> float:
    """Seconds between two passages' times on screen (0 when they overlap)."""
    return max(0.0, (max(a.first_seen, b.first_seen) - min(a.last_seen, b.last_seen)).total_seconds())


def overlap(a: Passage, b: Passage) -> float:
    """Share of the shorter passage's time on screen that the other one covers (0..1)."""
    inter = (min(a.last_seen, b.last_seen) - max(a.first_seen, b.first_seen)).total_seconds()
    shorter = min((a.last_seen - a.first_seen).total_seconds(), (b.last_seen - b.first_seen).total_seconds())
    return max(0.0, inter) / max(shorter, 1e-3) if inter > 0 else 0.0


def similarity(a: Passage, b: Passage) -> float | None:
    """Cosine of the two passages' face embeddings, or None when either has none."""
    if a.embedding is None or b.embedding is None:
        return None
    return float(a.embedding @ b.embedding)


def joined(a: Passage, b: Passage) -> Passage:
    """One passage from two views of one person: the span of both, the faces of both."""
    first = a if a.first_seen <= b.first_seen else b
    vectors = [(p.embedding, p.shots) for p in (a, b) if p.embedding is not None]
    embedding = None
    if vectors:
        embedding = l2_normalise(np.sum([v * max(n, 1) for v, n in vectors], axis=0)[None, :])[0]
    best = a if a.shots >= b.shots else b
    return replace(first, first_seen=min(a.first_seen, b.first_seen), last_seen=max(a.last_seen, b.last_seen),
                   best_shot_ts=best.best_shot_ts, embedding=embedding, shots=a.shots + b.shots,
                   direction=a.direction or b.direction)


def pairs(passages: list[Passage], window: float, distinct: float) -> list[tuple[int, int]]:
    """Index pairs of passages that are one person: other cameras, within `window` s, faces not distinct."""
    scored: list[tuple[float, int, int]] = []
    for i, a in enumerate(passages):
        for j in range(i + 1, len(passages)):
            b = passages[j]
            if a.camera_id == b.camera_id or gap(a, b) > window:
                continue
            face = similarity(a, b)
            if face is not None and face < distinct:
                continue
            scored.append((overlap(a, b) + (face or 0.0) - gap(a, b) / window, i, j))
    taken: set[int] = set()
    out = []
    for _, i, j in sorted(scored, reverse=True):
        if i not in taken and j not in taken:
            taken |= {i, j}
            out.append((i, j))
    return out


class DoorJoin:
    """Holds the passages of door cameras until their partners can no longer come, then joins them."""

    def __init__(self, doors: dict[str, str], window: timedelta, distinct: float) -> None:
        self.doors = doors
        self.window = window
        self.distinct = distinct
        self.held: list[Passage] = []
        self.joins = 0

    def add(self, passages: Iterable[Passage], now: datetime | None) -> list[Passage]:
        """Take new passages; return those ready (no door, or held long enough; all with `now`
        None), joined."""
        ready = []
        for p in passages:
            if p.early_track is not None or p.camera_id not in self.doors:
                ready.append(p)
            else:
                self.held.append(p)
        return ready + self.release(now)

    def release(self, now: datetime | None = None) -> list[Passage]:
        """The held passages whose window has passed by `now` (all with None), each joined with its
        partner if it has one (a partner still within its own window is taken along)."""
        due = {id(p) for p in self.held if now is None or p.last_seen + self.window <= now}
        if not due:
            return []
        out: list[Passage] = []
        for door in sorted({self.doors[p.camera_id] for p in self.held if id(p) in due}):
            candidates = [p for p in self.held if self.doors[p.camera_id] == door]
            matched = pairs(candidates, self.window.total_seconds(), self.distinct)
            done: set[int] = set()
            for i, j in matched:
                if id(candidates[i]) in due or id(candidates[j]) in due:
                    out.append(joined(candidates[i], candidates[j]))
                    self.joins += 1
                    done |= {i, j}
            paired = {k for pair in matched for k in pair}
            for i, p in enumerate(candidates):
                if id(p) in due and i not in paired:
                    out.append(p)
                    done.add(i)
            gone = {id(candidates[k]) for k in done}
            self.held = [p for p in self.held if id(p) not in gone]
        return out
