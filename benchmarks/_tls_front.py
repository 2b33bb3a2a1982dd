"""A TLS front for the emulator, run as its own process: ``https://127.0.0.1:<port>`` -> ``http://127.0.0.1:<target>``.

The real API is HTTPS; the emulator speaks plain HTTP. Putting this terminator in front (in a
separate process, so its CPU never counts) makes clients pay what they pay in production: a TLS
handshake per new connection and encryption per request.

    python benchmarks/_tls_front.py --target-port 8080 --cert leaf.pem --key leaf.key
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import sys

READ_SIZE = 256 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def serve(target_port: int, context: ssl.SSLContext) -> None:
    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(on_client, "127.0.0.1", 0, ssl=context, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(f"TLS front listening on https://127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    try:
        import resource

        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(65536, hard), hard))
    except (ImportError, ValueError, OSError):
        pass
    asyncio.run(serve(args.target_port, context))
    return 0


if __name__ == "__main__":
    sys.exit(main())
