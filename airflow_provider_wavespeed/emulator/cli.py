"""``wavespeed-emulator`` / ``python -m airflow_provider_wavespeed.emulator``: run the emulator standalone."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
import tempfile

from airflow_provider_wavespeed.emulator.app import EmulatorApp
from airflow_provider_wavespeed.emulator.config import DEFAULT_API_KEY, EmulatorConfig
from airflow_provider_wavespeed.emulator.context import AppContext
from airflow_provider_wavespeed.emulator.models import ModelCatalogueError, ModelSpec, build_catalogue, load_models
from airflow_provider_wavespeed.emulator.server import EmulatorServer, raise_open_file_limit
from airflow_provider_wavespeed.emulator.wire import is_loopback_host

BANNER = "WaveSpeed emulator listening on {url}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wavespeed-emulator",
        description="Offline emulator of the WaveSpeedAI v3 REST API (for tests and demos).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default 0: a random free port)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help=f"accepted API key (default {DEFAULT_API_KEY})")
    parser.add_argument("--queue-seconds", type=float, default=None, help="seconds in status 'created'")
    parser.add_argument("--run-seconds", type=float, default=None, help="seconds in status 'processing'")
    parser.add_argument("--output-size", type=int, default=None, help="size of every output file in bytes")
    parser.add_argument("--balance", type=float, default=None, help="starting account balance in USD")
    parser.add_argument(
        "--models",
        action="append",
        default=[],
        metavar="FILE",
        help="JSON list of model objects (the shape GET /api/v3/models lists) to serve besides the "
        "built-in ones; repeatable; a model with a built-in id replaces it",
    )
    parser.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="allow binding an interface other than loopback (the emulator has no real security)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    config = EmulatorConfig(api_key=args.api_key)
    if args.queue_seconds is not None:
        config.queue_seconds = args.queue_seconds
    if args.run_seconds is not None:
        config.run_seconds = args.run_seconds
    if args.output_size is not None:
        config.output_size = args.output_size
    if args.balance is not None:
        config.balance = args.balance
    return config


async def serve(config: EmulatorConfig, host: str, port: int, models: list[ModelSpec] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; returns the process exit code."""
    spool_dir = tempfile.mkdtemp(prefix="wavespeed-emulator-")
    try:
        ctx = AppContext(config, spool_dir, catalogue=build_catalogue(models or []))
        server = EmulatorServer(EmulatorApp(ctx), host, port)
        try:
            await server.start()
        except OSError as exc:
            print(f"wavespeed-emulator: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
            return 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # pragma: no cover - Windows
                loop.add_signal_handler(sig, stop.set)
        print(BANNER.format(url=server.base_url), flush=True)
        conn = f'{{"conn_type":"wavespeed","password":"{config.api_key}","host":"{server.base_url}"}}'
        print(f"export AIRFLOW_CONN_WAVESPEED_DEFAULT='{conn}'", file=sys.stderr, flush=True)
        await stop.wait()
        await server.close()
        return 0
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not is_loopback_host(args.host) and not args.allow_non_loopback:
        print(
            f"wavespeed-emulator: refusing to listen on non-loopback host {args.host!r}; "
            "pass --allow-non-loopback if you really mean it",
            file=sys.stderr,
        )
        return 2
    try:
        models = [spec for path in args.models for spec in load_models(path)]
    except ModelCatalogueError as exc:
        print(f"wavespeed-emulator: {exc}", file=sys.stderr)
        return 2
    raise_open_file_limit()
    try:
        return asyncio.run(serve(config_from_args(args), args.host, args.port, models))
    except KeyboardInterrupt:  # pragma: no cover - signal arrived before the handler was installed
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
