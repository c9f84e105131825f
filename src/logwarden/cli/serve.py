"""``logwarden serve``: the streaming service (HTTP API, dashboard, metrics, brokers).

logwarden serve --model model/ --store verdicts.db          # http://127.0.0.1:8080/
curl --data-binary @today.log -H 'Content-Type: text/plain' localhost:8080/api/v1/logs
"""

from __future__ import annotations

import argparse
import sys

from logwarden.cli.common import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser(
        "serve",
        help="run the streaming service: HTTP API, dashboard, metrics, brokers",
        description="Live detection over HTTP (and optionally a followed file, Redis Streams "
        "or Kafka), with a dashboard, Prometheus metrics and feedback. Binds 127.0.0.1:8080 "
        "by default; any other address needs --token-file.",
    )
    sp.add_argument("--model", metavar="MODEL", help="model bundle (needed for a new store)")
    sp.add_argument(
        "--store", required=True, metavar="DB", help="SQLite store (created if missing)"
    )
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    sp.add_argument("--port", type=int, default=8080, help="port (8080; 0 picks a free one)")
    sp.add_argument("--token-file", metavar="FILE",
                    help="bearer token for POST endpoints (required off loopback)")  # fmt: skip
    sp.add_argument("--session-timeout", type=float, default=3600.0, metavar="SECONDS",
                    help="close a session after this long without an entry, in log time "
                    "(3600; 0: only on flush)")  # fmt: skip
    sp.add_argument("--max-body", type=int, default=32 << 20, metavar="BYTES",
                    help="largest request body (32 MiB)")  # fmt: skip
    sp.add_argument("--max-line", type=int, default=64 << 10, metavar="BYTES",
                    help="longest line (64 KiB)")  # fmt: skip
    sp.add_argument("--no-fsync", action="store_true",
                    help="commit without waiting for the disk (survives a crash of the "
                    "process, perhaps not of the machine)")  # fmt: skip
    sp.add_argument("--checkpoint-seconds", type=float, default=30.0, metavar="S",
                    help="save the detector's state when it is idle, at most every S "
                    "seconds (30; under constant load every 2*S); a restart replays the "
                    "journal after it")  # fmt: skip
    sp.add_argument("--retain-days", type=float, default=30.0, metavar="DAYS",
                    help="delete anomalies stored more than DAYS ago, except those with "
                    "feedback (30; 0 keeps them all)")  # fmt: skip
    sp.add_argument("--no-parse-worker", action="store_true",
                    help="parse lines in the detector process itself (by default a second "
                    "process parses them, where the system can fork)")  # fmt: skip
    sp.add_argument(
        "--follow", metavar="FILE", help="also read lines appended to FILE (across rotation)"
    )
    sp.add_argument("--redis", metavar="URL", help="also read a Redis stream (with --stream)")
    sp.add_argument("--stream", metavar="KEY", help="Redis stream key")
    sp.add_argument("--redis-group", default="logwarden", metavar="NAME")
    sp.add_argument("--claim-idle", type=float, default=30.0, metavar="SECONDS",
                    help="Redis: take over entries another consumer has left pending this "
                    "long (30)")  # fmt: skip
    sp.add_argument(
        "--consumer", metavar="NAME", help="consumer name (Redis/Kafka; default host-pid)"
    )
    sp.add_argument("--kafka", metavar="BROKERS", help="also consume Kafka (with --topic, --group)")
    sp.add_argument("--topic", metavar="TOPIC")
    sp.add_argument("--group", metavar="GROUP", help="Kafka consumer group")
    sp.add_argument("--port-file", metavar="FILE", help=argparse.SUPPRESS)  # tests: the bound port
    sp.add_argument("-q", "--quiet", action="store_true", help="no access log")
    sp.set_defaults(func=cmd_serve)


def read_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            token = fh.read().strip()
    except OSError as exc:
        raise UsageError(f"cannot read --token-file {path}: {exc.strerror or exc}") from None
    if len(token) < 16:
        raise UsageError("the token in --token-file must be at least 16 characters")
    return token


def cmd_serve(args: argparse.Namespace) -> int:
    from logwarden.service.run import SourceOptions, run_service
    from logwarden.service.server import ServiceConfig

    if (args.redis is None) != (args.stream is None):
        raise UsageError("--redis and --stream go together")
    if args.kafka is not None and (args.topic is None or args.group is None):
        raise UsageError("--kafka needs --topic and --group")
    if not args.claim_idle > 0:
        # 0 would take over a live consumer's entries waiting for its detector: stored twice.
        raise UsageError(f"--claim-idle must be more than 0 seconds (got {args.claim_idle:g})")
    token = read_token(args.token_file) if args.token_file else None
    config = ServiceConfig(
        store=args.store,
        model=args.model,
        host=args.host,
        port=args.port,
        token=token,
        session_timeout=args.session_timeout or None,
        max_body_bytes=args.max_body,
        max_line_bytes=args.max_line,
        durable=not args.no_fsync,
        checkpoint_seconds=args.checkpoint_seconds,
        parse_worker=not args.no_parse_worker,
        retain_days=args.retain_days or None,
    )
    sources = SourceOptions(
        follow=args.follow,
        redis=args.redis,
        stream=args.stream,
        redis_group=args.redis_group,
        kafka=args.kafka,
        topic=args.topic,
        group=args.group,
        consumer=args.consumer,
        claim_idle=args.claim_idle,
    )
    return run_service(config, sources, port_file=args.port_file, quiet=args.quiet, out=sys.stderr)
