"""The `footfall` command line (see docs/cli.md and the external contract)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from footfall import __version__
from footfall.config.schema import Config, ConfigError, load_config, parse_config
from footfall.dedup.gallery import EnrolmentError
from footfall.edge.admin import AdminUnavailable
from footfall.models.manifest import ModelError, load_manifest, search_dirs
from footfall.storage.lock import StorageBusy
from footfall.storage.sqlite import StorageError

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2
# Packages that only head office or the benchmarks import, and the extra that installs them
# (pyproject.toml): the store box's install leaves them out.
EXTRAS = {"psycopg": "hq", "psycopg_pool": "hq", "insightface": "bench", "scipy": "bench"}


def _config(args: argparse.Namespace) -> Config:
    """The --config file if given, else the defaults."""
    return load_config(args.config) if getattr(args, "config", None) else parse_config({})


def cmd_models_verify(args: argparse.Namespace) -> int:
    from footfall.models.fetch import verify_dir

    directory = Path(args.dir) if args.dir else search_dirs(_config(args).models.dir)[0]
    verdicts = verify_dir(directory)
    print(f"models in {directory}")
    for v in verdicts:
        mark = {"ok": "ok  ", "missing": "--  "}.get(v.state, "BAD ")
        print(f"  {mark}{v.entry.file:<42} {v.entry.role:<10} {v.state:<14} {v.entry.licence_note}")
    bad = [v for v in verdicts if v.state not in ("ok", "missing")]
    present = [v for v in verdicts if v.ok]
    print(f"{len(present)} verified, {len(bad)} corrupt or altered, "
          f"{sum(v.state == 'missing' for v in verdicts)} not present")
    if bad:
        return EXIT_FAIL
    if not present:
        print(f"no known model file in {directory}", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK


def cmd_models_fetch(args: argparse.Namespace) -> int:
    from footfall.models.fetch import fetch, verify_file

    directory = Path(args.dir) if args.dir else search_dirs(_config(args).models.dir)[0]
    entries = load_manifest()
    names = args.names or [e.file for e in entries.values() if e.url and not e.shipped]
    failed = 0
    for name in names:
        entry = entries.get(name)
        if entry is None:
            print(f"unknown model {name!r}; known: {', '.join(sorted(entries))}", file=sys.stderr)
            failed += 1
            continue
        if verify_file(entry, directory / entry.file).ok:
            print(f"{entry.file}: already present and verified")
            continue
        if not entry.commercial_use:
            print(f"{entry.file}: licence: {entry.licence_note}")
        try:
            path = fetch(entry, directory, progress=not args.quiet)
            print(f"{entry.file}: fetched and verified -> {path}")
        except ModelError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
    return EXIT_FAIL if failed else EXIT_OK


def _bench_config(args: argparse.Namespace) -> Config:
    """The config with the bench's --detector/--recognizer/--models-dir overrides."""
    config = _config(args)
    overrides = {k: v for k, v in (("detector", args.detector), ("recognizer", args.recognizer),
                                   ("dir", args.models_dir)) if v}
    if overrides:
        config = config.model_copy(update={"models": config.models.model_copy(update=overrides)})
    return config


def _scenario_faces(args: argparse.Namespace) -> Path:
    """The labelled photos a generated store day is built from: `--faces`, else the sample set."""
    from footfall.tooling.demo import sample_faces_dir

    faces = Path(args.faces) if args.faces else sample_faces_dir()
    if faces is None:
        raise FileNotFoundError("no labelled photos to build the scenario from: pass --faces DIR")
    return faces


def cmd_bench_recognition(args: argparse.Namespace) -> int:
    from footfall.benchmarks.recognition import bench_recognition, format_table

    result = bench_recognition(_bench_config(args), Path(args.faces), progress=not args.json)
    print(json.dumps(result) if args.json else format_table(result))
    return EXIT_OK


def cmd_bench_pipeline(args: argparse.Namespace) -> int:
    from footfall.benchmarks.pipeline import bench_pipeline, format_table

    faces = _scenario_faces(args)
    result = bench_pipeline(_bench_config(args), faces, size=args.size, progress=not args.json,
                            door_cameras=args.door_cameras)
    print(json.dumps(result) if args.json else format_table(result))
    return EXIT_OK


def cmd_bench_soak(args: argparse.Namespace) -> int:
    from footfall.benchmarks.soak import bench_soak, format_table

    faces = _scenario_faces(args)
    if args.minutes <= 0:
        raise ValueError("--minutes must be > 0")
    result = bench_soak(_bench_config(args), faces, minutes=args.minutes, progress=not args.json)
    print(json.dumps(result) if args.json else format_table(result))
    return EXIT_OK if result["lost"] == 0 and result["exit_code"] == 0 else EXIT_FAIL


def cmd_bench_live(args: argparse.Namespace) -> int:
    from footfall.benchmarks.live import bench_live, format_table

    if args.cameras < 1 or args.seconds <= 0 or args.fps <= 0:
        raise ValueError("--cameras must be >= 1, --seconds and --fps > 0")
    result = bench_live(_bench_config(args), _scenario_faces(args), cameras=args.cameras,
                        resolution=args.resolution, stream_fps=args.stream_fps, fps=args.fps, seconds=args.seconds,
                        detect_resolution=args.detect_resolution, max_tried=args.max_cameras, progress=not args.json)
    print(json.dumps(result) if args.json else format_table(result))
    return EXIT_OK


def cmd_bench_hq(args: argparse.Namespace) -> int:
    from footfall.benchmarks.hq import bench_hq, format_table

    result = bench_hq(stores=args.stores, visits=args.visits, progress=not args.json)
    print(json.dumps(result) if args.json else format_table(result))
    return EXIT_OK if result["lost"] == 0 and result["duplicated"] == 0 else EXIT_FAIL


def cmd_bench_calibration(args: argparse.Namespace) -> int:
    from footfall.benchmarks.calibration import calibrate, format_report

    crowd = Path(args.crowd) if args.crowd else None
    result = calibrate(_bench_config(args), Path(args.faces), crowd, renditions=args.renditions,
                       shots=args.shots, trials=args.trials, progress=not args.json)
    print(json.dumps(result) if args.json else format_report(result))
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from footfall.cli.doctor import run_checks

    return run_checks(load_config(args.config))


def cmd_camera_snapshot(args: argparse.Namespace) -> int:
    from footfall.cli.snapshot import SnapshotError, snapshot

    try:
        print(snapshot(load_config(args.config), args.camera, Path(args.out)))
    except SnapshotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    from footfall.edge.daemon import Daemon
    from footfall.edge.logs import log_to_stdout
    from footfall.edge.sources import SourceError

    log_to_stdout(logging.DEBUG if args.verbose else logging.INFO)
    try:
        daemon = Daemon(config, once=args.once)
    except StorageError as exc:  # never recreated behind the operator's back
        print(f"error: {exc}\n`footfall doctor --config {args.config}` checks every state file and says how "
              f"to recover", file=sys.stderr)
        return EXIT_FAIL
    except SourceError as exc:  # a camera's video file missing or unreadable: one line of the log
        logging.getLogger("footfall.edge.daemon").error("not started: %s", exc)
        return EXIT_FAIL
    return daemon.run()


def cmd_enroll(args: argparse.Namespace) -> int:
    from footfall.cli.people import enroll

    print(enroll(load_config(args.config), person_id=args.member_id, name=args.name, role=args.role,
                 tier=args.tier, consent=args.consent, photos=[Path(p) for p in args.images]))
    return EXIT_OK


def cmd_erase(args: argparse.Namespace) -> int:
    from footfall.cli.people import erase

    print(erase(load_config(args.config), args.member_id))
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from footfall.cli.imports import import_file
    from footfall.sync import events

    topic = events.MEMBERS_UPSERT if args.kind == "members" else events.APPOINTMENTS_UPSERT
    path = Path(args.file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    done = import_file(load_config(args.config), path, topic, report=lambda line: print(line, file=sys.stderr))
    print(done.summary(path))
    return EXIT_FAIL if done.skipped else EXIT_OK


def cmd_counts(args: argparse.Namespace) -> int:
    from footfall.cli.counts import counts_table

    print(counts_table(load_config(args.config), args.from_, args.to, args.by))
    return EXIT_OK


def cmd_console(args: argparse.Namespace) -> int:
    from footfall.console import server as console
    from footfall.web.passwords import print_password_hash

    if args.hash_password:
        return print_password_hash()
    if not args.config:
        print("error: --config is required (or --hash-password)", file=sys.stderr)
        return EXIT_CONFIG
    from footfall.edge.logs import log_to_stdout

    log_to_stdout(logging.DEBUG if args.verbose else logging.INFO)
    return console.Console(load_config(args.config), listen=args.listen).serve_forever()


def cmd_demo(args: argparse.Namespace) -> int:
    from footfall.tooling.demo import run_demo

    return run_demo(keep=args.keep)


def _keep_seconds(text: str) -> float:
    """`demo --keep`: 0 to 86400 seconds."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 <= seconds <= 86400:
        raise argparse.ArgumentTypeError(f"{text} is outside 0 to 86400 seconds")
    return seconds


def cmd_render(args: argparse.Namespace) -> int:
    from footfall.sync.events import parse_iso
    from footfall.tooling.render import RenderError, parse_resolution, render

    try:
        start = parse_iso(args.start) if args.start else None
    except ValueError as exc:
        raise RenderError(f"--start {exc}, got {args.start!r}") from None
    done = render(Path(args.out), seconds=args.seconds, people=args.people, fps=args.fps,
                  size=parse_resolution(args.resolution), start=start,
                  faces_dir=Path(args.faces) if args.faces else None, config=_config(args))
    print(done.summary(), end="")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="footfall", description="In-store edge foot-traffic recognition.")
    parser.add_argument("--version", action="version", version=f"footfall {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="the store daemon")
    p.add_argument("--config", required=True)
    p.add_argument("--once", action="store_true", help="process file sources to the end, then exit")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("console", help="the guide console: arrivals and today's counts in a browser")
    p.add_argument("--config")
    p.add_argument("--listen", metavar="HOST:PORT", help="overrides console.listen")
    p.add_argument("--hash-password", action="store_true",
                   help="read a password (or a guide's token) from stdin, print its hash for the config, exit")
    p.set_defaults(func=cmd_console)

    p = sub.add_parser("demo", help="zero-configuration demo")
    p.add_argument("--keep", type=_keep_seconds, metavar="SECONDS",
                   help="keep the console, dashboard, broker and database up this long after the day "
                        "(default: until Enter in a terminal, else 0)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("render", help="write a test entrance clip (people walking in) to try a box without a camera")
    p.add_argument("out", metavar="OUT.avi", help="the video file to write (MJPG in .avi)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of the clip (5 to 600)")
    p.add_argument("--people", type=int, default=6, help="people walking in, one every 4 s")
    p.add_argument("--resolution", default="540p", help="360p, 540p, 720p, 1080p or WIDTHxHEIGHT")
    p.add_argument("--fps", type=float, default=10.0, help="frames per second of the clip (5 to 30)")
    p.add_argument("--faces", metavar="DIR", help="photos DIR/<person>/<photo>: walkers show these faces "
                                                  "(default: everyone seen from behind, no face)")
    p.add_argument("--start", metavar="ISO",
                   help="wall-clock time of the first frame, with offset (default: the clip ends now)")
    p.add_argument("--config", help="a config whose models cut the faces out (default: the shipped pack)")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("enroll", help="enrol a member or staff from photos")
    p.add_argument("--config", required=True)
    p.add_argument("--member-id", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--role", choices=["member", "staff"], default="member")
    p.add_argument("--tier")
    p.add_argument("--consent", action="store_true", help="the person's separate consent is recorded")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("erase", help="remove a person from every gallery and store on this box")
    p.add_argument("--config", required=True)
    p.add_argument("--member-id", required=True)
    p.set_defaults(func=cmd_erase)

    for kind, what in (("members", "bulk enrolment from a CRM export"), ("appointments", "appointments")):
        group = sub.add_parser(kind, help=f"{what} (JSON lines)").add_subparsers(dest="action", required=True)
        p = group.add_parser("import", help=f"import {what}: one JSON object a line")
        p.add_argument("--config", required=True)
        p.add_argument("file", metavar="FILE.jsonl")
        p.set_defaults(func=cmd_import, kind=kind)

    p = sub.add_parser("counts", help="visit counts from the local store")
    p.add_argument("--config", required=True)
    p.add_argument("--from", dest="from_", help="ISO 8601 (default: today's local midnight)")
    p.add_argument("--to", help="ISO 8601 (default: now)")
    p.add_argument("--by", choices=["hour", "day"], default="hour")
    p.set_defaults(func=cmd_counts)

    from footfall.hq.cli import add_hq_parser

    add_hq_parser(sub)

    camera = sub.add_parser("camera", help="help for installing a camera").add_subparsers(dest="action", required=True)
    p = camera.add_parser("snapshot", help="one frame with the entry line drawn (people pixelated)")
    p.add_argument("--config", required=True)
    p.add_argument("--camera", required=True, help="the camera's id in the config")
    p.add_argument("--out", required=True, help="a .png or .jpg file to write")
    p.set_defaults(func=cmd_camera_snapshot)

    p = sub.add_parser("doctor", help="check config, models, cameras, broker and disk")
    p.add_argument("--config", required=True)
    p.set_defaults(func=cmd_doctor)

    models = sub.add_parser("models", help="verify or fetch model files").add_subparsers(dest="action", required=True)
    p = models.add_parser("verify", help="check presence, size and SHA-256 of known models")
    p.add_argument("--dir", help="directory to check (default: models.dir, $FOOTFALL_MODELS_DIR, or the shipped pack)")
    p.add_argument("--config")
    p.set_defaults(func=cmd_models_verify)
    p = models.add_parser("fetch", help="download models with pinned SHA-256")
    p.add_argument("names", nargs="*", help="model files (default: every downloadable model not shipped)")
    p.add_argument("--dir")
    p.add_argument("--config")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_models_fetch)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="suite", required=True)
    p = bench.add_parser("recognition", help="detect/align/embed speed and TAR@FAR against a naive baseline")
    _bench_options(p)
    p.set_defaults(func=cmd_bench_recognition)
    p = bench.add_parser("pipeline", help="a generated store day: frames/s and counting accuracy against a naive loop")
    _bench_options(p, faces_required=False)
    p.add_argument("--size", choices=["day", "small"], default="day", help="scenario size")
    p.add_argument("--door-cameras", type=int, choices=[1, 2], default=1,
                   help="2: a second camera on the door films every walk again (one person, one passage)")
    p.set_defaults(func=cmd_bench_pipeline)
    p = bench.add_parser("soak", help="the daemon on a generated store day looped for N minutes: memory, "
                                      "threads, files, outbox backlog and lost events")
    _bench_options(p, faces_required=False)
    p.add_argument("--minutes", type=float, default=10.0, help="how long to run (fractions allowed)")
    p.set_defaults(func=cmd_bench_soak)
    p = bench.add_parser("live", help="the daemon on N live H.264 cameras over RTSP in real time: analysed "
                                      "frames/s, CPU by stage, latency, the most cameras the box sustains")
    _bench_options(p, faces_required=False)
    p.add_argument("--cameras", type=int, default=4, help="cameras of the detailed report")
    p.add_argument("--resolution", default="1080p", help="1080p, 720p, 360p or WIDTHxHEIGHT of the main streams")
    p.add_argument("--detect-resolution", help="analyse a sub-stream of this size instead (detect_source)")
    p.add_argument("--stream-fps", type=int, default=25, help="frames/s the cameras send")
    p.add_argument("--fps", type=float, default=10.0, help="frames/s analysed per camera")
    p.add_argument("--seconds", type=float, default=30.0, help="measured seconds per number of cameras tried")
    p.add_argument("--max-cameras", type=int, help="most cameras tried for max_cameras (default: --cameras + 2)")
    p.set_defaults(func=cmd_bench_live)
    p = bench.add_parser("calibration", help="dedup/member thresholds: error rates and the false-merge curve")
    _bench_options(p)
    p.add_argument("--crowd", help="ignored (kept for old scripts): the labelled sets hold enough strangers")
    p.add_argument("--renditions", type=int, default=4, help="degraded renditions (passages) per photo")
    p.add_argument("--shots", type=int, default=5, help="shots rendered per passage (the tracker keeps tracking.shots)")
    p.add_argument("--trials", type=int, default=2000, help="stranger passages per point of the curve")
    p.set_defaults(func=cmd_bench_calibration)
    p = bench.add_parser("hq", help="a chain's day through Mosquitto into one, then two HQ collectors (one "
                                    "killed mid-run): events/s, publish->commit latency, lost, duplicated")
    p.add_argument("--stores", type=int, default=500, help="simulated stores")
    p.add_argument("--visits", type=int, default=60, help="visits per store and day (plus arrivals and acks)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_bench_hq)
    return parser


def _bench_options(p: argparse.ArgumentParser, faces_required: bool = True) -> None:
    p.add_argument("--faces", required=faces_required, help="labelled photos: DIR/<identity>/<photo>")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--config")
    p.add_argument("--detector", help="detector file name (overrides the config)")
    p.add_argument("--recognizer", help="recognizer file name (overrides the config)")
    p.add_argument("--models-dir", help="model directory (overrides the config)")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `footfall` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader reports which CPU build it found
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ModelError as exc:
        print(f"model error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except (EnrolmentError, StorageError, StorageBusy, AdminUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except ModuleNotFoundError as exc:
        extra = EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        command = " ".join(str(getattr(args, a)) for a in ("command", "action", "suite") if getattr(args, a, None))
        print(f"error: `footfall {command}` needs {exc.name}, which comes with the extra footfall[{extra}]: "
              f"pip install 'footfall[{extra}]'", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130
