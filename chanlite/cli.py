"""The ``chanlite`` command: a thin layer over the library.

Every user error (a bad target, URL, option or JSON) prints one line naming it and
exits with code 2, with no traceback. An error raised by the user's own code while
it is imported is shown as the user's traceback (their frames only) and exits with
code 1. A layer whose backend failed (say, Redis is down) prints one line and exits
with code 1. SIGTERM and SIGINT stop gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from . import __version__
from ._logging import configure_cli, follow_uvicorn
from ._usercode import UserCodeError
from .app import Chanlite
from .config import LAYER_ENV
from .default_routes import served_routes
from .exceptions import ChanliteError, LayerError
from .health import Readiness, worker_endpoints
from .layer_commands import cmd_flush, cmd_send, cmd_stats
from .runtime import app_context, enter_app
from .serving import GracefulServer, uvicorn_options
from .stats_watch import DEFAULT_INTERVAL, interval_seconds, metrics_url
from .targets import cross_process_layer, load_app
from .worker import Worker

logger = logging.getLogger("chanlite")

#: Exit code for a user error.
EXIT_USAGE = 2
#: Exit code for an error raised by the user's own code.
EXIT_USER_CODE = 1
#: Exit code for a layer whose backend failed: the same command may work once the
#: backend is back, so it is not a usage error.
EXIT_LAYER = 1
# Environment variables that carry `serve --reload` settings into the reloaded process.
_RELOAD_ENV = "CHANLITE_RELOAD_ARGS"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` and return the exit code: 2 for a usage error, 1 for
    an error in the user's code or a layer whose backend failed (one line, no
    traceback: say, Redis is down)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.handler is not cmd_serve:  # uvicorn sets up logging for serve
        configure_cli(args.log_level)
    try:
        result: int = args.handler(args)
    except UserCodeError as exc:
        print(exc.report, end="", file=sys.stderr)
        return EXIT_USER_CODE
    except LayerError as exc:
        print(f"chanlite: error: the channel layer failed: {exc}", file=sys.stderr)
        return EXIT_LAYER
    except ChanliteError as exc:
        print(f"chanlite: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return result


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = argparse.ArgumentParser(
        prog="chanlite", description="Serve and operate chanlite apps (Channels 1.x model)."
    )
    parser.add_argument("--version", action="version", version=f"chanlite {__version__}")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve(commands)
    _add_worker(commands)
    routes = commands.add_parser("routes", help="print the flattened routing table")
    routes.add_argument("target", help="module:attr, path/to/file.py:attr, or a module")
    routes.set_defaults(handler=cmd_routes)
    send = commands.add_parser("send", help="send a JSON message to a channel or group")
    send.add_argument("channel", help="channel name (or group name with --group)")
    send.add_argument("json", help="the message content, a JSON object")
    send.add_argument("--group", action="store_true", help="send to a group")
    _add_layer_option(send)
    send.set_defaults(handler=cmd_send)
    stats = commands.add_parser("stats", help="show channel depths and group sizes")
    _add_layer_option(stats)
    stats.add_argument("--watch", action="store_true", help="refresh in place until Ctrl-C")
    stats.add_argument(
        "--interval",
        type=interval_seconds,
        default=None,
        metavar="SECONDS",
        help=f"seconds between refreshes with --watch (default {DEFAULT_INTERVAL:g})",
    )
    stats.add_argument(
        "--metrics",
        action="append",
        type=metrics_url,
        default=None,
        metavar="URL",
        help="a /metrics endpoint to show connections and rates from (repeatable)",
    )
    stats.set_defaults(handler=cmd_stats)
    flush = commands.add_parser("flush", help="delete every message and group of the layer")
    flush.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _add_layer_option(flush)
    flush.set_defaults(handler=cmd_flush)
    return parser


def _add_serve(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the interface server (and workers)")
    serve.add_argument("target", help="module:attr, path/to/file.py:attr, or a module")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8000)
    _add_layer_option(serve)
    serve.add_argument("--threads", type=_positive_int, default=None, help="worker threads")
    serve.add_argument("--no-worker", action="store_true", help="run no in-process workers")
    serve.add_argument("--reload", action="store_true", help="restart when code changes")
    serve.add_argument(
        "--metrics", action="store_true", help="serve Prometheus metrics at /metrics"
    )
    serve.add_argument("--health", action="store_true", help="serve /healthz and /readyz")
    _add_tracing_option(serve)
    serve.set_defaults(handler=cmd_serve)


def _add_worker(commands: Any) -> None:
    for name in ("worker", "runworker"):
        worker = commands.add_parser(name, help="run workers against a cross-process layer")
        worker.add_argument("target", help="module:attr, path/to/file.py:attr, or a module")
        _add_layer_option(worker)
        worker.add_argument("--threads", type=_positive_int, default=None)
        worker.add_argument("--only-channels", action="append", metavar="GLOB", default=None)
        worker.add_argument("--exclude-channels", action="append", metavar="GLOB", default=None)
        worker.add_argument(
            "--metrics-port",
            type=_port,
            default=None,
            metavar="N",
            help="serve /metrics, /healthz and /readyz on this port",
        )
        worker.add_argument("--metrics-host", default="127.0.0.1", help="(default: 127.0.0.1)")
        _add_tracing_option(worker)
        worker.set_defaults(handler=cmd_worker)


def _add_layer_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layer", default=None, metavar="URL", help=f"layer URL (or {LAYER_ENV})")


def _add_tracing_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracing", action="store_true", help="trace with OpenTelemetry (chanlite[otel])"
    )


def _port(value: str) -> int:
    port = _positive_int(value)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, got {value}")
    return port


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


# -- commands -------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    """``chanlite serve``: interface server plus in-process workers."""
    import uvicorn

    from . import _uvicorn

    app = load_app(args.target)
    settings = [args.layer, args.no_worker, args.threads, args.metrics, args.health, args.tracing]
    _configure_served(app, *settings)
    options = uvicorn_options(app, host=args.host, port=args.port, log_level=args.log_level)
    if args.reload:
        os.environ[_RELOAD_ENV] = orjson.dumps([args.target, *settings]).decode()
        reload_options = {"factory": True, "reload": True, **options}
        uvicorn.Config("chanlite.cli:reload_factory", **reload_options)  # sets up logging
        follow_uvicorn()
        app.check()
        uvicorn.run("chanlite.cli:reload_factory", **reload_options)
        return 0
    config = uvicorn.Config(app, lifespan="on", **options)  # sets up logging
    follow_uvicorn()
    _uvicorn.quiet_client_errors()
    app.check()
    server = GracefulServer(config, app)
    server.run()
    return 0 if server.started else 1


def _configure_served(
    app: Chanlite,
    layer: str | None,
    no_worker: bool,
    threads: int | None,
    metrics: bool,
    health: bool,
    tracing: bool,
) -> None:
    """Apply ``chanlite serve``'s options to ``app``. A switch that is off
    (``--no-worker``, ``--metrics``, ``--health``, ``--tracing`` not given) keeps the
    app's own setting."""
    app.configure(
        layer=layer,
        workers=False if no_worker else None,
        threads=threads,
        metrics=metrics or None,
        health=health or None,
        tracing=tracing or None,
    )


def reload_factory() -> Chanlite:
    """Rebuild the app in a ``serve --reload`` child process."""
    from . import _uvicorn

    follow_uvicorn()
    _uvicorn.quiet_client_errors()
    target, *settings = orjson.loads(os.environ[_RELOAD_ENV])
    app = load_app(target)
    _configure_served(app, *settings)
    return app


def cmd_worker(args: argparse.Namespace) -> int:
    """``chanlite worker``: run consumers against a cross-process layer."""
    app = load_app(args.target)
    url = args.layer or (app.layer_setting if isinstance(app.layer_setting, str) else None)
    cross_process_layer(url, "worker")
    app.configure(
        layer=url,
        workers=False,
        metrics=args.metrics_port is not None,
        tracing=args.tracing or None,  # without --tracing, the app's own setting holds
    )
    app.check()  # the secret key is required across processes
    assert app.layer is not None
    # The worker's ordering store is the app's, which it finds in the context.
    worker = app_context(app.services()).run(
        Worker,
        served_routes(app.routes),
        app.layer,
        threads=args.threads or app.threads,
        only_channels=args.only_channels,
        exclude_channels=args.exclude_channels,
        consumer_timeout=app.consumer_timeout,
        metrics=app.metrics,
        tracing=app.observability.tracing,
    )
    endpoints = None if args.metrics_port is None else (args.metrics_host, args.metrics_port)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(_run_worker(worker, app, endpoints))
    return 0


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop ``chanlite worker`` runs on: uvloop where it is installed (it
    comes with ``uvicorn[standard]``), as ``chanlite serve`` gets from uvicorn's
    ``loop="auto"``; else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


async def _run_worker(worker: Worker, app: Chanlite, endpoints: tuple[str, int] | None) -> None:
    """Run ``worker`` until SIGTERM or SIGINT, serving its metrics and health on
    ``endpoints`` (host, port) if given."""
    assert app.layer is not None
    loop = asyncio.get_running_loop()
    # Consumers, and the threads of def consumers, find the app in this task's context.
    enter_app(app.run_on(loop))
    try:
        async with contextlib.AsyncExitStack() as serving:
            readiness = None
            if endpoints is not None:
                readiness = await serving.enter_async_context(
                    worker_endpoints(
                        app.layer,
                        worker.metrics,
                        in_flight=lambda: worker.in_flight,
                        running=lambda: worker.running,
                        address=endpoints,
                    )
                )
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, _stop_worker, worker, readiness, sig)
            await worker.run()
    finally:
        await app.close_store()
        await app.layer.aclose()
        logger.info("worker stopped")


def _stop_worker(worker: Worker, readiness: Readiness | None, sig: signal.Signals) -> None:
    logger.info("received %s; finishing in-flight consumers", sig.name)
    if readiness is not None:
        readiness.stopping = True
    worker.stop()


def cmd_routes(args: argparse.Namespace) -> int:
    """``chanlite routes``: print the flattened table, defaults last."""
    app = load_app(args.target)
    rows = [
        (
            ",".join(item.channels),
            " ".join(f"{key}={value!r}" for key, value in item.patterns.items()),
            item.name,
        )
        for item in served_routes(app.routes)
    ]
    channels_width = max(len(channels) for channels, _, _ in rows)
    filters_width = max(len(filters) for _, filters, _ in rows)
    for channels, filters, name in rows:
        print(f"{channels:<{channels_width}}  {filters:<{filters_width}}  -> {name}")
    return 0
