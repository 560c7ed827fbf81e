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
from collections.abc import Callable, Iterator, Sequence
from types import FrameType, ModuleType
from typing import Any

import orjson

from . import __version__
from ._logging import configure_cli, follow_uvicorn
from ._usercode import UserCodeError, running_user_code
from .app import Chanlite
from .config import LAYER_ENV
from .default_routes import served_routes
from .exceptions import ChanliteError, LayerError
from .layers import get_layer
from .layers.base import BaseChannelLayer
from .names import validate_channel_name, validate_group_name
from .routing import Routes
from .runtime import app_context, enter_app
from .worker import Worker

logger = logging.getLogger("chanlite")

#: Exit code for a user error.
EXIT_USAGE = 2
#: Exit code for an error raised by the user's own code.
EXIT_USER_CODE = 1
#: Exit code for a layer whose backend failed: the same command may work once the
#: backend is back, so it is not a usage error.
EXIT_LAYER = 1
#: Seconds ``chanlite serve`` waits, once it has closed every socket on SIGTERM, for
#: connections to end before it exits anyway: a client that stopped reading would
#: keep its connection, and the server, alive forever.
SHUTDOWN_TIMEOUT = 10.0
# Environment variables that carry `serve --reload` settings into the reloaded process.
_RELOAD_ENV = "CHANLITE_RELOAD_ARGS"


class UsageError(ChanliteError):
    """A command-line mistake: printed as one line, exit code 2."""


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
    serve.set_defaults(handler=cmd_serve)


def _add_worker(commands: Any) -> None:
    for name in ("worker", "runworker"):
        worker = commands.add_parser(name, help="run workers against a cross-process layer")
        worker.add_argument("target", help="module:attr, path/to/file.py:attr, or a module")
        _add_layer_option(worker)
        worker.add_argument("--threads", type=_positive_int, default=None)
        worker.add_argument("--only-channels", action="append", metavar="GLOB", default=None)
        worker.add_argument("--exclude-channels", action="append", metavar="GLOB", default=None)
        worker.set_defaults(handler=cmd_worker)


def _add_layer_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layer", default=None, metavar="URL", help=f"layer URL (or {LAYER_ENV})")


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


# -- targets --------------------------------------------------------------------


def load_app(target: str) -> Chanlite:
    """A ``Chanlite`` app from ``target``: an app, a routing table, or a module
    (see :func:`find_routable`)."""
    from ._importer import import_from_string, import_module

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if ":" in target:
        with running_user_code():
            obj: object = import_from_string(target)
    else:
        with running_user_code():
            module = import_module(target)
        obj = find_routable(module, target)
    if isinstance(obj, Chanlite):
        return obj
    try:
        routes = obj if isinstance(obj, Routes) else Routes(obj)
    except TypeError as exc:
        raise UsageError(
            f"{target!r} is neither a Chanlite app nor a routing table: {exc}"
        ) from None
    return Chanlite(routes)


def find_routable(module: ModuleType, target: str) -> Chanlite | Routes:
    """What a bare-module target serves: the module's one ``Chanlite`` app, else its
    one non-empty ``Routes`` table, else its ``@consumer``-marked functions.

    Raises UsageError when there are several apps or tables to choose from, or
    nothing routable at all, suggesting the ``module:attr`` form.
    """
    for kind in (Chanlite, Routes):
        found = _named_instances(module, kind)
        if len(found) == 1:
            only: Chanlite | Routes = next(iter(found.values()))
            return only
        if found:
            names = ", ".join(sorted(found))
            raise UsageError(
                f"module {target!r} has {len(found)} {kind.__name__} objects ({names}); "
                f"name the one to serve, e.g. {target}:{min(found)}"
            )
    routes = Routes.from_module(module)
    if not len(routes):
        raise UsageError(
            f"module {target!r} has no Chanlite app, no Routes table with routes and no "
            f"@consumer functions; name what to serve, e.g. {target}:routes"
        )
    return routes


def _named_instances(module: ModuleType, kind: type[Any]) -> dict[str, Any]:
    """Public module attributes that are ``kind`` instances (empty tables left out),
    one name per object."""
    found: dict[str, Any] = {}
    for name, value in vars(module).items():
        if name.startswith("_") or not isinstance(value, kind):
            continue
        if isinstance(value, Routes) and not len(value):
            continue
        if all(value is not other for other in found.values()):
            found[name] = value
    return found


def _cross_process_layer(url: str | None, command: str) -> BaseChannelLayer:
    url = url or os.environ.get(LAYER_ENV)
    if not url:
        raise UsageError(
            f"chanlite {command} needs a cross-process layer: pass --layer redis://... "
            f"or sqlite:///path.db, or set {LAYER_ENV}"
        )
    layer = get_layer(url)
    if layer.process_local:
        raise UsageError(
            f"chanlite {command} cannot use memory:// (it lives inside one process); "
            "use redis://... or sqlite:///path.db"
        )
    return layer


# -- commands -------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    """``chanlite serve``: interface server plus in-process workers."""
    import uvicorn

    from . import _uvicorn

    app = load_app(args.target)
    app.configure(layer=args.layer, workers=_workers_option(args.no_worker), threads=args.threads)
    options = uvicorn_options(app, host=args.host, port=args.port, log_level=args.log_level)
    if args.reload:
        os.environ[_RELOAD_ENV] = orjson.dumps(
            [args.target, args.layer, args.no_worker, args.threads]
        ).decode()
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


def _workers_option(no_worker: bool) -> bool | None:
    """``--no-worker`` turns in-process workers off; without it the app's own
    ``workers`` setting holds."""
    return False if no_worker else None


def uvicorn_options(app: Chanlite, **options: Any) -> dict[str, Any]:
    """uvicorn settings for serving ``app``, with ``options`` (host, port, log_level):
    frames capped at ``max_frame_size``, request heads at
    :data:`~chanlite._uvicorn.MAX_REQUEST_HEAD`, and a shutdown that gives up on
    connections still open :data:`SHUTDOWN_TIMEOUT` seconds after every socket was
    closed."""
    from . import _uvicorn

    return {
        "ws_max_size": app.settings.max_frame_size,
        "http": _uvicorn.HTTP_PROTOCOL,
        "ws": _uvicorn.WS_PROTOCOL,
        "timeout_graceful_shutdown": SHUTDOWN_TIMEOUT,
        **options,
    }


def reload_factory() -> Chanlite:
    """Rebuild the app in a ``serve --reload`` child process."""
    from . import _uvicorn

    follow_uvicorn()
    _uvicorn.quiet_client_errors()
    target, layer, no_worker, threads = orjson.loads(os.environ[_RELOAD_ENV])
    app = load_app(target)
    app.configure(layer=layer, workers=_workers_option(no_worker), threads=threads)
    return app


class GracefulServer:
    """uvicorn's server, draining chanlite before uvicorn closes connections.

    uvicorn closes sockets with 1012 as its first shutdown step; chanlite first stops
    accepting connections (one opened now would only be closed again), lets
    in-flight consumers finish and deliver their replies, then closes with 1001.
    """

    def __init__(self, config: Any, app: Chanlite) -> None:
        import uvicorn

        chanlite_app = app

        class _Server(uvicorn.Server):
            async def shutdown(self, sockets: Any = None) -> None:
                for server in self.servers:
                    server.close()  # uvicorn closes them again, harmlessly
                await chanlite_app.drain()
                await super().shutdown(sockets)

        self._server = _Server(config)

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    def run(self) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully and return."""
        with _signals_absorbed():
            self._server.run()


@contextlib.contextmanager
def _signals_absorbed() -> Iterator[None]:
    """Handle SIGTERM and SIGINT by doing nothing while the server runs.

    uvicorn replaces these handlers while it serves, and once it has stopped it
    raises the signal that stopped it again, into the handlers it found, so that
    the process ends as the signal's default would. A graceful stop is a normal
    end here (exit code 0), so the handlers uvicorn finds absorb that signal.
    """
    handled = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, _absorb) for sig in handled}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _absorb(sig: int, frame: FrameType | None) -> None:
    logger.debug("%s arrived after the server stopped", signal.Signals(sig).name)


def cmd_worker(args: argparse.Namespace) -> int:
    """``chanlite worker``: run consumers against a cross-process layer."""
    app = load_app(args.target)
    url = args.layer or (app.layer_setting if isinstance(app.layer_setting, str) else None)
    _cross_process_layer(url, "worker")
    app.configure(layer=url, workers=False)
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
    )
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(_run_worker(worker, app))
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


async def _run_worker(worker: Worker, app: Chanlite) -> None:
    assert app.layer is not None
    loop = asyncio.get_running_loop()
    # Consumers, and the threads of def consumers, find the app in this task's context.
    enter_app(app.run_on(loop))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _stop_worker, worker, sig)
    try:
        await worker.run()
    finally:
        await app.close_store()
        await app.layer.aclose()
        logger.info("worker stopped")


def _stop_worker(worker: Worker, sig: signal.Signals) -> None:
    logger.info("received %s; finishing in-flight consumers", sig.name)
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


def cmd_send(args: argparse.Namespace) -> int:
    """``chanlite send``: one message to a channel or group."""
    try:
        content = orjson.loads(args.json)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"the message is not valid JSON: {exc}") from None
    if not isinstance(content, dict):
        raise UsageError('the message must be a JSON object, e.g. \'{"text": "hi"}\'')
    if args.group:
        validate_group_name(args.channel)
    else:
        validate_channel_name(args.channel)
    layer = _cross_process_layer(args.layer, "send")
    asyncio.run(_send(layer, args.channel, content, args.group))
    kind = "group" if args.group else "channel"
    print(f"sent {args.json} to {kind} {args.channel!r} on {layer!r}")
    return 0


async def _send(layer: BaseChannelLayer, name: str, content: dict[str, Any], group: bool) -> None:
    try:
        if group:
            await layer.group_send(name, content)
        else:
            await layer.send(name, content)
    finally:
        await layer.aclose()


def cmd_stats(args: argparse.Namespace) -> int:
    """``chanlite stats``: channel depths and group sizes, where the layer can tell."""
    layer = _cross_process_layer(args.layer, "stats")
    stats = asyncio.run(_stats(layer))
    if stats is None:
        print(f"{type(layer).__name__} cannot report statistics")
        return 0
    for section in ("channels", "groups"):
        print(f"{section}:")
        for name, size in sorted(stats.get(section, {}).items()):
            print(f"  {name:<40} {size}")
    return 0


async def _stats(layer: BaseChannelLayer) -> dict[str, Any] | None:
    try:
        return await layer.stats()
    finally:
        await layer.aclose()


def cmd_flush(args: argparse.Namespace) -> int:
    """``chanlite flush``: delete every message and group of the layer, after asking
    on a terminal (``--yes`` does not ask; without a terminal nothing is asked).

    What it reports deleting was counted just before: a message sent meanwhile is
    deleted too.
    """
    layer = _cross_process_layer(args.layer, "flush")
    contents = _describe(asyncio.run(_stats(layer)))
    if not args.yes and sys.stdin.isatty():
        question = (
            f"Delete {contents} from {layer!r}? Live sockets lose their group memberships. [y/N] "
        )
        if input(question).strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 0
    asyncio.run(_flush(_cross_process_layer(args.layer, "flush")))
    print(f"deleted {contents} from {layer!r}")
    return 0


def _describe(stats: dict[str, Any] | None) -> str:
    """``stats`` in words: how many messages, channels, groups and members."""
    if stats is None:
        return "every channel and group"
    channels, groups = stats.get("channels", {}), stats.get("groups", {})
    return (
        f"{_count(sum(channels.values()), 'message')} in {_count(len(channels), 'channel')} "
        f"and {_count(len(groups), 'group')} with {_count(sum(groups.values()), 'member')}"
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


async def _flush(layer: BaseChannelLayer) -> None:
    try:
        await layer.flush()
    finally:
        await layer.aclose()
