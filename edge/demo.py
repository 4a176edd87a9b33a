"""`footfall demo`: a store day replayed through the whole recognition pipeline, zero configuration.

The package ships no face photos (their rights belong to their owners). The demo builds its
entrance clips from a labelled photo set: $FOOTFALL_SAMPLE_FACES, or `shared/data/faces`
beside the working directory or the checkout. Clips and state live in a temporary directory
that is deleted at the end.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from footfall.config.schema import parse_config
from footfall.edge.pipeline import Decision, build_pipeline
from footfall.edge.scenario import STORE_TZ, SpriteBank, build_scenario, enrolment, expected_counts
from footfall.edge.sources import merge_by_time
from footfall.recognition.analyzer import FaceAnalyzer

CHECKOUT = Path(__file__).resolve().parents[1]


def sample_faces_dir() -> Path | None:
    """Where labelled sample photos are, if anywhere."""
    env = os.environ.get("FOOTFALL_SAMPLE_FACES")
    candidates = [Path(env)] if env else []
    candidates += [base / "shared" / "data" / "faces" for base in (Path.cwd().parent, CHECKOUT.parent)]
    return next((c for c in candidates if c.is_dir()), None)


def describe(d: Decision) -> str:
    """One line for a decision, as a store manager would read it."""
    when = d.passage.first_seen.strftime("%m-%d %H:%M:%S")
    if d.kind == "staff":
        return f"{when}  {d.passage.camera_id}  staff ({d.person.name}): not counted"
    who = f"member {d.member_id} ({d.person.tier})" if d.member_id else f"visitor {d.visitor_id[:8]}"
    kind = "new visit" if d.kind == "visit" else "re-entry "
    since = "" if d.kind == "visit" else f", visit began {d.visit_started.astimezone(d.passage.first_seen.tzinfo):%H:%M}"
    return f"{when}  {d.passage.camera_id}  {kind}  {who}{since}"


def run_demo() -> int:
    """Replay a generated store day and print every decision and a summary."""
    faces_dir = sample_faces_dir()
    if faces_dir is None:
        print("footfall demo needs labelled photos to build its entrance clips: "
              "set FOOTFALL_SAMPLE_FACES to a folder of <identity>/<photo> images")
        return 1
    with tempfile.TemporaryDirectory(prefix="footfall-demo-") as tmp:
        config = parse_config({"store_id": "demo-store", "timezone": STORE_TZ, "storage": {"dir": f"{tmp}/state"}})
        analyzer = FaceAnalyzer.from_config(config)
        pack = analyzer.pack
        print(f"footfall demo: {pack.detector.file} + {pack.recognizer.file}; store day in {STORE_TZ}")
        print("rendering entrance clips from the labelled photos ...")
        bank = SpriteBank(faces_dir, analyzer)
        scenario = build_scenario(bank, Path(tmp), config.dedup.window, size="small")
        pipeline = build_pipeline(config, analyzer)
        decisions: list[Decision] = []
        try:
            for person, vectors in enrolment(scenario, analyzer):
                pipeline.gallery.enroll(person, vectors)
                print(f"enrolled {person.role} {person.person_id}")
            frames = 0
            for frame in merge_by_time(scenario.sources()):
                frames += 1
                for d in pipeline.process(frame):
                    decisions.append(d)
                    if d.kind != "same_entry":
                        print(describe(d))
            for d in pipeline.finish():
                decisions.append(d)
                if d.kind != "same_entry":
                    print(describe(d))
        finally:
            pipeline.close()
    truth = expected_counts(scenario.walks, scenario.window, scenario.tz)
    counted = {k: sum(d.kind == k for d in decisions) for k in ("visit", "reentry", "staff")}
    members = sum(d.kind == "visit" and d.member_id is not None for d in decisions)
    print()
    print(f"summary of {len(scenario.clips)} clips, {frames} frames, {len(scenario.walks)} walk-ins:")
    print(f"  {'':<14}{'counted':>8}{'expected':>10}")
    print(f"  {'visits':<14}{counted['visit']:>8}{truth.get('visits', 0):>10}")
    print(f"  {'re-entries':<14}{counted['reentry']:>8}{truth.get('reentries', 0):>10}")
    print(f"  {'member visits':<14}{members:>8}{truth.get('member_visits', 0):>10}")
    print(f"  {'staff passages':<14}{counted['staff']:>8}{sum(w.role == 'staff' for w in scenario.walks):>10}")
    print("MQTT publishing (visits, alerts, counts) is not part of this release yet.")
    return 0
