"""The ``roadpulse`` command. Each subcommand parses its flags, loads inputs, and hands over.

Exit status: 0 on success; 2 with a one-line reason on stderr for bad arguments or unreadable or
invalid input files (the reason names the file, line or key, and what is wrong).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .camera_cmd import add_camera_commands
from .config import ConfigError, Settings, load_config, parse_host_port, reference_markdown
from .inputs import UsageError, load_inputs


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except (UsageError, ConfigError) as exc:
        print(f"roadpulse {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roadpulse", description="Real-time traffic congestion and camera-feed analytics engine."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="the live engine: MQTT in, congestion out")
    _add_config_flags(run)
    run.add_argument("--broker", metavar="HOST:PORT", help="MQTT broker (overrides mqtt.host/port)")
    run.add_argument("--listen", metavar="HOST:PORT", help="HTTP address (overrides api.listen)")
    run.add_argument("--tick-s", type=float, help="seconds between ticks (overrides engine.tick_s)")
    run.set_defaults(handler=_cmd_run)

    worker = sub.add_parser(
        "ingest-worker", help="validate readings from a shared subscription (see ingest.from_workers)"
    )
    _add_config_flags(worker)
    worker.add_argument("--broker", metavar="HOST:PORT", help="MQTT broker (overrides mqtt.host/port)")
    worker.add_argument(
        "--group", help="shared-subscription group (overrides ingest.shared_group; default 'ingest')"
    )
    worker.add_argument(
        "--worker-id", default="1", help="stable id of this worker (its persistent MQTT session); default 1"
    )
    worker.set_defaults(handler=_cmd_ingest_worker)

    demo = sub.add_parser("demo", help="the whole system on a bundled city with generated traffic")
    demo.add_argument("--config", metavar="TOML", help="configuration file (default: built-in defaults)")
    demo.add_argument("--broker", metavar="HOST:PORT", help="broker to try first (default 127.0.0.1:1883)")
    demo.add_argument(
        "--duration", type=float, metavar="S", help="stop after S wall seconds (default: Ctrl-C)"
    )
    demo.add_argument("--speedup", type=float, help="simulated seconds per wall second (default 120)")
    demo.add_argument(
        "--listen", metavar="HOST:PORT", help="dashboard and API address (overrides api.listen)"
    )
    demo.add_argument(
        "--no-screen", action="store_true", help="print one line per tick instead of a live screen"
    )
    demo.set_defaults(handler=_cmd_demo)

    replay = sub.add_parser("replay", help="run the engine in event time over recorded readings")
    _add_config_flags(replay)
    replay.add_argument(
        "--readings",
        required=True,
        metavar="JSONL",
        help="one reading per line (.gz ok), or SUMO induction-loop output as SUMO wrote it (.xml)",
    )
    replay.add_argument(
        "--out", required=True, metavar="JSONL", help="messages out, one per line ('-': stdout)"
    )
    replay.add_argument(
        "--tick-s", type=float, default=None, help="tick length in event seconds (default 60)"
    )
    replay.add_argument("--full", action="store_true", help="write every segment's state at every tick")
    replay.add_argument(
        "--lateness-s", type=float, default=0.0, help="wait this long in event time before running a tick"
    )
    replay.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    replay.set_defaults(handler=_cmd_replay)

    add_camera_commands(sub)  # camera-replay, camera-worker (roadpulse/camera_cmd.py)

    route = sub.add_parser("route", help="fastest route on live or given travel times")
    route.add_argument("--network", required=True)
    route.add_argument("--from", dest="from_", metavar="LON,LAT")
    route.add_argument("--to", metavar="LON,LAT")
    route.add_argument("--from-segment")
    route.add_argument("--to-segment")
    route.add_argument("--weights", metavar="CSV")
    route.add_argument("--alternatives", type=int, default=0, metavar="K", help="up to K alternative routes")
    route.add_argument(
        "--max-snap-m", type=float, default=100.0, metavar="M", help="farthest a point may lie from a road"
    )
    route.add_argument("--no-u-turns", action="store_true", help="forbid U-turns except at dead ends")
    route.set_defaults(handler=_cmd_route)

    sumo = sub.add_parser("sumo-readings", help="convert SUMO induction-loop (E1) output to readings JSONL")
    sumo.add_argument("e1_output", metavar="E1.xml")
    sumo.add_argument("--out", default="-", metavar="JSONL", help="output file (default: stdout)")
    sumo.add_argument("--epoch-base", type=float, default=0.0, help="added to SUMO times (default 0)")
    sumo.set_defaults(handler=_cmd_sumo_readings)

    cfg = sub.add_parser("config", help="print the configuration reference, or check a file")
    cfg.add_argument("--check", metavar="TOML", help="validate this file and exit")
    cfg.set_defaults(handler=_cmd_config)
    return parser


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="TOML", help="configuration file (default: ./config.toml if present)")
    p.add_argument("--network", metavar="PATH", help="road network (.osm, .osm.bz2, .net.xml, .geojson)")
    p.add_argument("--detectors", metavar="PATH", help="detector registry (CSV or SUMO additional file)")


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    path = getattr(args, "config", None)
    if path is None and Path("config.toml").is_file() and args.command != "demo":
        path = "config.toml"
    clean = {k: v for k, v in overrides.items() if v is not None}
    return load_config(path, overrides=clean)


def _cmd_run(args: argparse.Namespace) -> int:
    from .live import run_service

    overrides: dict[str, Any] = {"network.path": args.network, "network.detectors": args.detectors}
    if args.broker:
        host, port = parse_host_port(args.broker, key="--broker")
        overrides.update({"mqtt.host": host, "mqtt.port": port})
    if args.listen:
        parse_host_port(args.listen, key="--listen")
        overrides["api.listen"] = args.listen
    if args.tick_s is not None:
        overrides["engine.tick_s"] = args.tick_s
    settings = _settings(args, **overrides)
    network, detectors = load_inputs(settings)
    return run_service(network, detectors, settings)


def _cmd_ingest_worker(args: argparse.Namespace) -> int:
    from .ingest_worker import run_worker

    overrides: dict[str, Any] = {"network.path": args.network, "network.detectors": args.detectors}
    if args.broker:
        host, port = parse_host_port(args.broker, key="--broker")
        overrides.update({"mqtt.host": host, "mqtt.port": port})
    settings = _settings(args, **overrides)
    _network, detectors = load_inputs(settings)
    group = args.group or settings["ingest"]["shared_group"] or "ingest"
    return run_worker(detectors, settings, group=group, worker_id=args.worker_id)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    overrides: dict[str, Any] = {"demo.duration_s": args.duration, "demo.speedup": args.speedup}
    if args.listen:
        parse_host_port(args.listen, key="--listen")
        overrides["api.listen"] = args.listen
    if args.broker:
        host, port = parse_host_port(args.broker, key="--broker")
        overrides.update({"mqtt.host": host, "mqtt.port": port})
    settings = _settings(args, **overrides)
    return run_demo(settings, screen=not args.no_screen and sys.stdout.isatty())


def _cmd_replay(args: argparse.Namespace) -> int:
    from ingest.sumo_e1 import SumoOutputError

    from .replay import run_replay, stderr_progress

    overrides: dict[str, Any] = {"network.path": args.network, "network.detectors": args.detectors}
    if args.tick_s is not None:
        overrides["engine.tick_s"] = args.tick_s
    settings = _settings(args, **overrides)
    if not settings["network"]["path"]:
        raise UsageError("--network is required (or network.path in the config)")
    readings = Path(args.readings)
    if not readings.is_file():
        raise UsageError(f"{readings}: readings file not found")
    network, detectors = load_inputs(settings)
    try:
        run_replay(
            network,
            detectors,
            settings,
            readings_path=readings,
            out_path=args.out,
            tick_s=float(settings["engine"]["tick_s"]),
            full=args.full,
            lateness_s=args.lateness_s,
            progress=None if args.quiet else stderr_progress,
        )
    except OSError as exc:
        raise UsageError(f"{exc.filename or args.readings}: {exc.strerror or exc}") from None
    except SumoOutputError as exc:  # a .xml readings file that is not SUMO E1 output
        raise UsageError(str(exc)) from None
    return 0


def _cmd_route(args: argparse.Namespace) -> int:
    from .route_cmd import run_route

    return run_route(args)


def _cmd_sumo_readings(args: argparse.Namespace) -> int:
    from ingest.sumo_e1 import SumoOutputError, convert_e1

    if not Path(args.e1_output).is_file():
        raise UsageError(f"{args.e1_output}: file not found")
    try:
        if args.out == "-":
            n = convert_e1(args.e1_output, sys.stdout, epoch_base=args.epoch_base)
        else:
            with open(args.out, "w", encoding="utf-8") as out:
                n = convert_e1(args.e1_output, out, epoch_base=args.epoch_base)
    except SumoOutputError as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {n} readings", file=sys.stderr)
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    if args.check:
        load_config(args.check)
        print(f"{args.check}: ok")
        return 0
    print(reference_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
