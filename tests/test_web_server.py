"""The web app on a real waitress server, started as `digest web` starts it: who the client
is behind a reverse proxy, and what slow or half-sent requests can do to everyone else."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import fakeredis
import pytest

from digest.cli.serve import web_server
from digest.settings import Settings
from digest.storage import Storage
from digest.web import PREVIEWS_PER_CLIENT, create_app

PROXY = "127.0.0.2"  # loopback has all of 127/8: a proxy and clients each get an address
ELSEWHERE = "127.0.0.3"


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Storage]:
    """SQLite is enough: these are about the server in front of the database."""
    store = Storage.from_url(sqlite_url)
    store.db.upgrade()
    yield store
    store.dispose()


@contextmanager
def serving(settings: Settings, store: Storage) -> Iterator[int]:
    """The app on ``web_server`` (what `digest web` runs) in a thread; yields its port."""
    app = create_app(settings, store, fakeredis.FakeRedis())
    server = web_server(app, settings, "127.0.0.1", 0, 4)

    def run() -> None:
        with suppress(OSError):  # close() from this thread pulls the socket from under select
            server.run()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield server.effective_port
    finally:
        server.close()
        thread.join(timeout=5)


def previews(port: int, source: str, forwarded_for: str, count: int) -> list[int]:
    """Status codes of ``count`` previews from address ``source``, each claiming to forward
    for ``forwarded_for``. A preview without topics is refused (400) after the client's limit
    is counted (429 beyond it): a cheap probe of who the app thinks the client is."""
    codes = []
    for _ in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
        conn.request("GET", "/preview?topics=", headers={"X-Forwarded-For": forwarded_for})
        codes.append(conn.getresponse().status)
        conn.close()
    return codes


def test_behind_the_trusted_proxy_each_forwarded_client_has_its_own_limit(
    store: Storage, settings: Settings
) -> None:
    """Waitress drops X-Forwarded-* unless told which proxy to trust: then every visitor was
    the proxy, and the whole site shared one client's limits."""
    proxied = settings.model_copy(update={"trusted_proxies": 1, "trusted_proxy_address": PROXY})
    allowed = PREVIEWS_PER_CLIENT.count
    with serving(proxied, store) as port:
        first = previews(port, PROXY, "198.51.100.1", allowed + 1)
        assert 429 not in first[:-1] and first[-1] == 429
        assert previews(port, PROXY, "198.51.100.2", 1) == [400], (
            "another visitor behind the same proxy has a limit of their own"
        )


def test_a_client_not_from_the_proxy_cannot_spoof_its_address(
    store: Storage, settings: Settings
) -> None:
    proxied = settings.model_copy(update={"trusted_proxies": 1, "trusted_proxy_address": PROXY})
    allowed = PREVIEWS_PER_CLIENT.count
    with serving(proxied, store) as port:
        assert previews(port, ELSEWHERE, "198.51.100.3", allowed)[-1] == 400
        assert previews(port, ELSEWHERE, "198.51.100.4", 1) == [429], (
            "a header from anyone but the proxy is not believed"
        )


def half_sent_requests(port: int, count: int) -> list[socket.socket]:
    """Connections that send the start of a request and then nothing, as a slow or hostile
    client does: each holds one of the server's connections until it gives up on them."""
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: digest.example.org\r\n")
        held.append(sock)
    return held


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, TimeoutError):
        return False


def test_half_sent_requests_do_not_starve_a_normal_one_beyond_the_channel_timeout(
    store: Storage, settings: Settings
) -> None:
    """Over waitress's connection limit it stops accepting: 110 half-sent requests used to
    hold every slot for waitress's default two minutes. Idle connections now go after
    DIGEST_WEB_CHANNEL_TIMEOUT (short here), and the waiting request is then served."""
    limited = settings.model_copy(
        update={"web_connection_limit": 10, "web_channel_timeout": 2, "web_cleanup_interval": 1}
    )
    with serving(limited, store) as port:
        held = half_sent_requests(port, 12)  # every slot, and more waiting to be accepted
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        waited = time.monotonic() - started
        assert waited < 2 + 1 + 3, f"a normal request waited {waited:.1f} s"
        assert closed_by_server(held[0]), "an idle half-sent request is dropped"
        for sock in held:
            sock.close()
