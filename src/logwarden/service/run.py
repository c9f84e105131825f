"""Running the service: the store, the detector process, sources and the web server."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from logwarden.errors import LogwardenError
from logwarden.service.server import Service, ServiceConfig

__all__ = ["SourceOptions", "run_service"]


@dataclass
class SourceOptions:
    follow: str | None = None
    redis: str | None = None
    stream: str | None = None
    redis_group: str = "logwarden"
    kafka: str | None = None
    topic: str | None = None
    group: str | None = None
    consumer: str | None = None
    claim_idle: float = 10.0


def start_sources(service: Service, opts: SourceOptions) -> None:
    from logwarden.service.sources import FollowSource, KafkaSource, RedisSource

    if opts.follow:
        service.sources.append(FollowSource(service, opts.follow))
    if opts.redis and opts.stream:
        service.sources.append(
            RedisSource(
                service, opts.redis, opts.stream, opts.redis_group, opts.consumer, opts.claim_idle
            )
        )
    if opts.kafka and opts.topic and opts.group:
        service.sources.append(
            KafkaSource(service, opts.kafka, opts.topic, opts.group, opts.consumer)
        )
    for s in service.sources:
        s.start()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # The protocol named: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    # connections of a socket whose protocol is TCP, and a socket made with protocol 0
    # says 0. With Nagle on, a response written as headers then body waited for the
    # client's delayed acknowledgement: 40 ms for every request after the first on a
    # kept-alive connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = exc.strerror or str(exc)
        raise LogwardenError(
            f"cannot listen on {host}:{port}: {why} (choose another --port)"
        ) from None
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


def run_service(
    config: ServiceConfig,
    sources: SourceOptions | None = None,
    *,
    port_file: str | None = None,
    quiet: bool = False,
    out: TextIO | None = None,
    on_start: Callable[[Service, str], None] | None = None,
) -> int:
    """Serve until interrupted (SIGINT/SIGTERM); returns the exit code."""
    import uvicorn

    from logwarden.service.app import create_app

    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)  # the web side does no heavy algebra; spare the cores
    except ImportError:
        pass
    sock = bind(config.host, config.port)
    service = Service(config)
    try:
        service.start()
        start_sources(service, sources or SourceOptions())
        app = create_app(service)
        host, port = sock.getsockname()[:2]
        if port_file:
            with open(port_file + ".tmp", "w", encoding="utf-8") as fh:
                fh.write(str(port))
            import os

            os.replace(port_file + ".tmp", port_file)
        shown = f"[{host}]" if ":" in host else host
        if out is not None:
            print(f"logwarden: serving on http://{shown}:{port}/ (store {config.store})", file=out)
        if on_start is not None:
            on_start(service, f"http://{shown}:{port}")
        server = uvicorn.Server(
            uvicorn.Config(
                app, log_level="warning", access_log=not quiet, timeout_graceful_shutdown=5,
                limit_concurrency=1000,
            )
        )  # fmt: skip
        server.run(sockets=[sock])
    finally:
        service.close()
        sock.close()
    return 0
