"""Who walked in: a passage (one person through the entrance, as one camera saw them) against the
gallery of members and staff and the window of recent visitors, to a decision.

The pipeline (`edge/pipeline.py`) turns frames into passages; the store (`edge/store.py`), which owns
the gallery and the window, decides on them with `decide` and applies the rules (`edge/rules.py`)
to the decisions.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np

from footfall.dedup.gallery import Gallery, Match, Person
from footfall.dedup.window import VisitWindow


@dataclass(frozen=True)
class Passage:
    """One person walking through the entrance once, as one camera saw them.

    `early_track` is set on a view of a track still open (its first shots): such a passage is only
    matched against the gallery, and the track is settled when it matches (`Pipeline.settle`).
    """

    camera_id: str
    first_seen: datetime
    last_seen: datetime
    best_shot_ts: datetime
    embedding: np.ndarray | None  # None: no usable shot (turned away, blurred), or privacy.mode count_only
    shots: int                    # usable shots kept: 0 when the face was never usable
    early_track: int | None = None
    direction: Literal["in", "out"] | None = None  # across the camera's entry line; None: it has none


@dataclass(frozen=True)
class Decision:
    """What a passage means for the store's counts."""

    kind: Literal["visit", "reentry", "same_entry", "staff", "exit"]
    passage: Passage
    visitor_id: str | None
    member_id: str | None
    person: Person | None
    visit_started: datetime | None
    score: float | None
    recognised_late: bool = False  # the member's first recognition in a visit they began unrecognised

    @property
    def identified(self) -> bool:
        """False for an entrant counted without a usable face (never matched to anyone)."""
        return self.passage.shots > 0

    @property
    def role(self) -> str:
        """"staff", else the role the visit is published with (`role`)."""
        return "staff" if self.kind == "staff" else role(self.member_id)


def role(member_id: str | None) -> Literal["member", "visitor"]:
    """The role a visit is published with: "member" when it carries a member id, else "visitor"."""
    return "member" if member_id else "visitor"


def decide(passages: Iterable[Passage], gallery: Gallery, window: VisitWindow) -> list[Decision]:
    """Staff, member, re-entry or new visit for each ended passage, in order of entry time (a
    passage out through the entry line is an exit, matched to no one); then the open tracks'
    views (`early_track`) that the gallery recognises (the others wait for their end)."""
    passages = list(passages)
    ended = sorted((p for p in passages if p.early_track is None), key=lambda p: p.first_seen)
    decisions = [Decision("exit", p, None, None, None, None, None) if p.direction == "out"
                 else _ended(p, gallery, window) for p in ended]
    for passage in passages:
        if passage.early_track is not None and passage.embedding is not None:
            match = gallery.match(passage.embedding)
            if match is not None:
                decisions.append(_known(passage, match, window))
    return decisions


def _ended(passage: Passage, gallery: Gallery, window: VisitWindow) -> Decision:
    if passage.embedding is None:
        # counted, never matched (no usable face, or count_only): a new visit by a new id
        return Decision("visit", passage, uuid.uuid4().hex, None, None, passage.first_seen, None)
    match = gallery.match(passage.embedding)
    if match:
        return _known(passage, match, window)
    entry = window.enter_anonymous(passage.embedding, passage.first_seen)
    # An unrecognised passage can re-enter a member's open visit (another camera, a turned head).
    person = gallery.get(entry.member_id) if entry.member_id else None
    return Decision(entry.kind, passage, entry.visitor_id, entry.member_id, person, entry.visit_started, entry.score)


def _known(passage: Passage, match: Match, window: VisitWindow) -> Decision:
    """The decision for a gallery match: staff are not counted, members enter by their id."""
    if match.person.role == "staff":
        return Decision("staff", passage, None, None, match.person, None, match.score)
    entry = window.enter_member(match.person.person_id, passage.first_seen, passage.embedding)
    return Decision(entry.kind, passage, entry.visitor_id, entry.member_id, match.person,
                    entry.visit_started, match.score, entry.recognised_late)
