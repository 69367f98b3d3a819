"""A PostgreSQL that stops answering (a hung network path, not a refused connection) must
not hold the web's request threads: the server's statement timeout never reaches a server
that hears nothing, so the client gives up by itself and the page is a 503 in seconds.

The hang is a relay in this test between the app and the shared server that can freeze:
stop forwarding without closing anything. The shared server itself is never touched."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import fakeredis
import pytest
from sqlalchemy.engine import make_url

from digest.settings import Settings
from digest.storage import Storage
from digest.web import create_app

pytestmark = pytest.mark.postgres

WEB_DB_TIMEOUT = 1.0


class FreezableRelay:
    """A TCP relay to ``target`` whose :meth:`freeze` stops all forwarding, both ways, while
    every socket stays open: to the client the database simply never answers again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.frozen = threading.Event()
        self.closed = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(0.1)
        while not self.closed.is_set():
            if self.frozen.is_set():
                time.sleep(0.1)
                continue
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            sink.sendall(data)

    def freeze(self) -> None:
        self.frozen.set()

    def close(self) -> None:
        self.closed.set()
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def relayed(pg_url: str) -> Iterator[tuple[Storage, FreezableRelay]]:
    """A migrated database reached through a relay, opened as the web opens it."""
    Storage.from_url(pg_url).db.upgrade()
    url = make_url(pg_url)
    relay = FreezableRelay((url.host or "127.0.0.1", url.port or 5432))
    through = url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    store = Storage.from_url(through, connect_timeout=1.0, statement_timeout=WEB_DB_TIMEOUT)
    yield store, relay
    relay.close()
    store.dispose()


def timed_get(client, path: str, limit: float) -> tuple[int | None, float]:
    """The status of GET ``path`` and its seconds, or None if it had not answered within
    ``limit`` (the request is left running in its thread: that is the bug)."""
    answer: list[int] = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: answer.append(client.get(path).status_code))
    thread.daemon = True
    thread.start()
    thread.join(limit)
    return (answer[0] if answer else None), time.monotonic() - started


def test_a_database_that_stops_answering_gives_a_503_in_seconds(
    relayed: tuple[Storage, FreezableRelay], settings: Settings
) -> None:
    store, relay = relayed
    app = create_app(settings, store, fakeredis.FakeRedis())
    client = app.test_client()
    assert client.get("/healthz").status_code == 200  # a pooled connection, through the relay
    relay.freeze()
    for attempt in ("a pooled connection", "and the next request"):
        status, seconds = timed_get(client, "/healthz", 30)
        assert status == 503, f"{attempt}: no answer after {seconds:.0f} s"
        assert seconds < WEB_DB_TIMEOUT + 5, f"{attempt}: 503 only after {seconds:.1f} s"
