"""The long-running servers: `digest web` (the subscription pages) and `digest smtp-sink`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from digest.cli.common import AppContext, pass_app

if TYPE_CHECKING:
    from waitress.server import BaseWSGIServer

    from digest.settings import Settings

PORT = click.IntRange(1, 65535)
FORWARDED_HEADERS = "x-forwarded-for x-forwarded-proto x-forwarded-host"


@click.command("smtp-sink")
@click.option("--port", type=PORT, default=1025, show_default=True)
@click.option(
    "--maildir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also keep each message here.",
)
def smtp_sink(port: int, maildir: Path | None) -> None:
    """A local SMTP server that accepts everything, for demos and tests (Ctrl-C stops).

    Point Paper Digest at it with DIGEST_SMTP_HOST=127.0.0.1 DIGEST_SMTP_PORT=1025.

    \b
    Example:
      digest smtp-sink --port 1025
    """
    from digest.smtp_sink import PortBusy, run_sink
    from digest.subscriptions import InvalidInput

    try:
        run_sink("127.0.0.1", port, maildir)
    except PortBusy as exc:
        raise InvalidInput(str(exc)) from None


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=PORT, default=8000, show_default=True)
@click.option("--threads", type=int, default=8, show_default=True)
@pass_app
def web(app: AppContext, host: str, port: int, threads: int) -> None:
    """Serve the subscribe, unsubscribe and preferences pages (waitress).

    Links in emails point at DIGEST_BASE_URL: set it to where this server is reachable.

    \b
    Example:
      DIGEST_BASE_URL=https://digest.example.org digest web --port 8000
    """
    from digest.subscriptions import InvalidInput
    from digest.web import create_app

    application = create_app(
        app.settings, app.open_store(statement_timeout=app.settings.web_db_timeout)
    )
    try:
        server = web_server(application, app.settings, host, port, threads)
    except OSError as exc:
        raise InvalidInput(
            f"cannot listen on {host}:{port} ({exc.strerror}): is another server there? "
            "Pick another with --port"
        ) from None
    click.echo(f"serving on http://{host}:{port} (links in emails use {app.settings.base_url})")
    server.run()


def web_server(
    application: Any, settings: Settings, host: str, port: int, threads: int
) -> BaseWSGIServer:
    """The waitress server `digest web` runs (tests start the same one)."""
    from waitress.server import BaseWSGIServer, create_server

    server = create_server(
        application,
        host=host,
        port=port,
        threads=threads,
        **proxy_options(settings),
        **connection_options(settings),
    )
    assert isinstance(server, BaseWSGIServer)  # one host and port: one socket, one server
    return server


def connection_options(settings: Settings) -> dict[str, Any]:
    """Bounds on what one connection can hold. Waitress stops accepting at its connection
    limit, so idle (half-sent) requests must go soon, not after its default two minutes,
    or a hundred of them lock everyone out; a body is read into memory up to its limit,
    never spooled to disk. A client that trickles bytes is the reverse proxy's to stop
    (docs/operations.md)."""
    return {
        "connection_limit": settings.web_connection_limit,
        "channel_timeout": settings.web_channel_timeout,
        "cleanup_interval": settings.web_cleanup_interval,
        "max_request_header_size": settings.web_max_header_bytes,
        "max_request_body_size": settings.web_max_body_bytes,
        "inbuf_overflow": settings.web_max_body_bytes,
    }


def proxy_options(settings: Settings) -> dict[str, Any]:
    """Waitress removes every X-Forwarded-* header unless told which proxy sends them, so
    without these the app would see each visitor as the proxy, and all visitors would share
    one client's limits. Waitress then sets the client's address and scheme itself."""
    if not settings.trusted_proxies:
        return {}
    return {
        "trusted_proxy": settings.trusted_proxy_address,
        "trusted_proxy_count": settings.trusted_proxies,
        "trusted_proxy_headers": FORWARDED_HEADERS,
    }
