"""Downloads go where the one httpx client sends them: proxies from the environment, TLS, no API key, resumes.

``api/download.py`` reads a big body straight from the connection's socket (``recv_into``), but the
connection itself is always httpx's: these tests put a tiny forward proxy on 127.0.0.1 (it counts and
records every request and relays the bytes) in ``HTTP_PROXY`` / ``HTTPS_PROXY`` and check that the
output still arrives bit-identical through it, that ``NO_PROXY`` bypasses it, that no ``Authorization``
header reaches it, that an https output is verified against ``SSL_CERT_FILE`` (through a ``CONNECT``
tunnel, read from the TLS socket), and that a cut inside the socket-read part resumes with ``Range``
from the exact byte.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from airflow_provider_wavespeed.api import download as download_module
from airflow_provider_wavespeed.api.client import ClientSettings, WaveSpeedClient
from airflow_provider_wavespeed.api.errors import WaveSpeedConnectionError
from airflow_provider_wavespeed.api.models import Prediction
from airflow_provider_wavespeed.api.retry import RetryPolicy
from airflow_provider_wavespeed.destinations import Destination
from airflow_provider_wavespeed.output_downloads import store_outputs
from benchmarks._common import make_test_ca  # the throwaway CA the download benchmark's TLS front uses

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
#: Larger than one socket read, so most of the body takes the ``recv_into`` path.
SIZE = 3 * download_module.READ_BYTES + 12_345
FAST_RETRIES = RetryPolicy(max_attempts=4, max_elapsed=20.0, initial_wait=0.01, max_wait=0.02)


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]


@dataclass
class ForwardProxy:
    """A plain-http forward proxy (absolute-form requests), one request per client connection."""

    listener: socket.socket = field(default_factory=lambda: socket.create_server(("127.0.0.1", 0)))
    requests: list[Seen] = field(default_factory=list)
    relayed: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed: the test is over
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        client.settimeout(10)
        with client:
            seen = read_head(client)
            if seen is None:
                return
            self.requests.append(seen)
            if seen.method == "CONNECT":  # an https URL: a tunnel of TLS bytes the proxy cannot read
                host, port = seen.target.rsplit(":", 1)
                with socket.create_connection((host, int(port)), timeout=10) as upstream:
                    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    onward = threading.Thread(target=pipe, args=(client, upstream), daemon=True)
                    onward.start()
                    self.relayed += pipe(upstream, client)
                    onward.join(10)
                return
            parts = urlsplit(seen.target)
            self.relayed += forward(client, seen, parts.hostname or "", parts.port or 80)


def stop_serving(listener: socket.socket, thread: threading.Thread) -> None:
    """Wake the thread blocked in ``accept()`` (a bare ``close()`` does not, on Linux) and wait for it."""
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    thread.join(10)
    assert not thread.is_alive(), "the test server's accept loop did not stop"


def read_head(client: socket.socket) -> Seen | None:
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 65536:
        data = client.recv(4096)
        if not data:
            return None
        head += data
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return Seen(method, target, headers)


def forward(client: socket.socket, seen: Seen, host: str, port: int) -> int:
    """Send a bodiless request on to ``host:port`` (origin form, ``Connection: close``); relay the reply."""
    parts = urlsplit(seen.target)
    lines = [f"{seen.method} {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in seen.headers.items() if not k.startswith("proxy-") and k != "connection"]
    lines += ["Connection: close", "", ""]
    with socket.create_connection((host, port), timeout=10) as upstream:
        upstream.sendall("\r\n".join(lines).encode("latin-1"))
        return pipe(upstream, client)


def pipe(source: socket.socket, sink: socket.socket) -> int:
    """Copy until ``source`` ends (or is cut: closing ``sink`` then passes the cut on); bytes copied."""
    copied = 0
    while True:
        try:
            data = source.recv(1 << 16)
        except OSError:
            return copied
        if not data:
            return copied
        try:
            sink.sendall(data)
        except OSError:
            return copied
        copied += len(data)


class TlsFront:
    """``https://127.0.0.1:<port>`` in front of the emulator, with a leaf of a throwaway CA (``ca_file``)."""

    def __init__(self, folder: Path, target_port: int) -> None:
        self.target_port = target_port
        ca_file, cert, key = make_test_ca(folder)
        self.ca_file = str(ca_file)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(raw,), daemon=True).start()

    def _handle(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            with self.context.wrap_socket(raw, server_side=True) as client:
                seen = read_head(client)
                if seen is not None:
                    forward(client, seen, "127.0.0.1", self.target_port)
        except (OSError, ssl.SSLError):
            return  # e.g. a client that refused our certificate

    def close(self) -> None:
        stop_serving(self.listener, self.thread)


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    proxy = ForwardProxy()
    thread = threading.Thread(target=proxy.serve, daemon=True)
    thread.start()
    yield proxy
    stop_serving(proxy.listener, thread)


@pytest.fixture
def tls_front(wavespeed_emulator, tmp_path_factory) -> Iterator[TlsFront]:
    front = TlsFront(tmp_path_factory.mktemp("tls"), wavespeed_emulator.port)
    yield front
    front.close()


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (*PROXY_VARIABLES, "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def completed(emulator, size: int) -> Prediction:
    """A completed prediction with one ``size``-byte output, fetched before any proxy is configured."""
    emulator.config.output_size = size
    with WaveSpeedClient(ClientSettings(api_key=emulator.api_key, base_url=emulator.base_url)) as client:
        prediction = client.send_submit(
            "wavespeed-ai/hunyuan-avatar",
            {"image": "https://example.com/portrait.png", "audio": "https://example.com/voice.mp3"},
        ).prediction
        deadline = time.monotonic() + 20
        while prediction.status != "completed" and time.monotonic() < deadline:
            time.sleep(0.02)
            prediction = client.get_prediction(prediction.id)
    assert prediction.status == "completed", prediction
    return prediction


def store(emulator, prediction: Prediction, folder: Path) -> Path:
    """What the download operator runs, with a client built now (httpx reads the proxy variables then)."""
    settings = ClientSettings(api_key=emulator.api_key, base_url=emulator.base_url, retry=FAST_RETRIES)
    with WaveSpeedClient(settings) as client:
        [stored] = store_outputs(client, prediction, Destination(str(folder)))
    return Path(stored)


def test_a_download_goes_through_the_proxy_in_http_proxy_bit_identical_and_without_the_api_key(
    wavespeed_emulator, proxy, no_proxy_env, tmp_path
):
    prediction = completed(wavespeed_emulator, SIZE)
    no_proxy_env.setenv("HTTP_PROXY", proxy.url)

    stored = store(wavespeed_emulator, prediction, tmp_path)

    assert stored.read_bytes() == wavespeed_emulator.expected_output_bytes(prediction.id)
    assert [(r.method, r.target) for r in proxy.requests] == [("GET", wavespeed_emulator.output_url(prediction.id))]
    assert proxy.relayed > SIZE  # the body (and the headers) came through the proxy
    for request in proxy.requests:
        assert "authorization" not in request.headers
        assert not any(wavespeed_emulator.api_key in value for value in request.headers.values())


def test_no_proxy_sends_a_download_straight_to_the_host(wavespeed_emulator, proxy, no_proxy_env, tmp_path):
    prediction = completed(wavespeed_emulator, SIZE)
    no_proxy_env.setenv("HTTP_PROXY", proxy.url)
    no_proxy_env.setenv("NO_PROXY", "127.0.0.1")

    stored = store(wavespeed_emulator, prediction, tmp_path)

    assert stored.read_bytes() == wavespeed_emulator.expected_output_bytes(prediction.id)
    assert proxy.requests == []
    assert proxy.relayed == 0


def test_a_download_cut_mid_socket_read_resumes_through_the_proxy_from_the_exact_byte(
    wavespeed_emulator, proxy, no_proxy_env, tmp_path
):
    prediction = completed(wavespeed_emulator, SIZE)
    cut = 2 * download_module.READ_BYTES + 777  # deep inside the recv_into part, not on a read boundary
    wavespeed_emulator.config.cut_downloads = 1
    wavespeed_emulator.config.cut_after_bytes = cut
    wavespeed_emulator.stats.reset()
    no_proxy_env.setenv("HTTP_PROXY", proxy.url)

    stored = store(wavespeed_emulator, prediction, tmp_path)

    assert stored.read_bytes() == wavespeed_emulator.expected_output_bytes(prediction.id)
    assert wavespeed_emulator.stats.cut_downloads == 1
    assert [r.headers.get("range") for r in proxy.requests] == [None, f"bytes={cut}-"]
    assert wavespeed_emulator.stats.bytes_served == SIZE  # every byte served once: nothing lost, nothing twice
    assert list(tmp_path.glob(".*.part")) == []


def test_a_server_that_ignores_range_after_a_cut_is_downloaded_again_from_the_start(
    wavespeed_emulator, no_proxy_env, tmp_path
):
    prediction = completed(wavespeed_emulator, SIZE)
    wavespeed_emulator.config.cut_downloads = 1
    wavespeed_emulator.config.cut_after_bytes = 2 * download_module.READ_BYTES + 777
    wavespeed_emulator.config.range_support = False
    wavespeed_emulator.stats.reset()

    stored = store(wavespeed_emulator, prediction, tmp_path)

    assert stored.read_bytes() == wavespeed_emulator.expected_output_bytes(prediction.id)
    assert wavespeed_emulator.stats.downloads_started == 2
    assert list(tmp_path.glob(".*.part")) == []


def over_https(prediction: Prediction, emulator, front: TlsFront) -> Prediction:
    """The same prediction with its output URL on the TLS front (as a real CDN URL is https)."""
    http_url = emulator.output_url(prediction.id)
    https_url = http_url.replace(f"http://127.0.0.1:{emulator.port}", f"https://127.0.0.1:{front.port}")
    assert https_url != http_url
    return dataclasses.replace(prediction, outputs=[https_url])


def test_an_https_download_goes_through_the_connect_tunnel_in_https_proxy_verified_and_bit_identical(
    wavespeed_emulator, proxy, tls_front, no_proxy_env, tmp_path
):
    prediction = over_https(completed(wavespeed_emulator, SIZE), wavespeed_emulator, tls_front)
    no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
    no_proxy_env.setenv("SSL_CERT_FILE", tls_front.ca_file)

    stored = store(wavespeed_emulator, prediction, tmp_path)

    assert stored.read_bytes() == wavespeed_emulator.expected_output_bytes(prediction.id)
    assert [(r.method, r.target) for r in proxy.requests] == [("CONNECT", f"127.0.0.1:{tls_front.port}")]
    assert proxy.relayed > SIZE  # the encrypted body came through the tunnel


def test_an_https_output_whose_certificate_is_not_trusted_is_refused_and_nothing_is_stored(
    wavespeed_emulator, tls_front, no_proxy_env, tmp_path
):
    prediction = over_https(completed(wavespeed_emulator, SIZE), wavespeed_emulator, tls_front)

    with pytest.raises(WaveSpeedConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        store(wavespeed_emulator, prediction, tmp_path)

    assert list(tmp_path.iterdir()) == []
