"""`digest web` and `digest smtp-sink`: the refusals that happen before anything serves."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import one_error_line

from digest.cli import cli
from digest.settings import Settings


def test_web_refuses_to_serve_a_public_site_with_the_development_key(settings: Settings) -> None:
    result = CliRunner().invoke(
        cli,
        ["web", "--port", "8765"],
        env={
            "DIGEST_DATA_DIR": str(settings.data_dir),
            "DIGEST_BASE_URL": "https://digest.example.org",
        },
    )
    assert result.exit_code == 1 and "serving on" not in result.output
    assert result.output.startswith("Error: invalid settings: DIGEST_SECRET_KEY is not set")


@pytest.mark.parametrize("command", ["web", "smtp-sink"])
def test_a_busy_port_is_one_clear_line_before_anything_says_serving(
    settings: Settings, command: str
) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            cli, [command, "--port", str(port)], env={"DIGEST_DATA_DIR": str(settings.data_dir)}
        )
    assert str(port) in one_error_line(result) and "serving on" not in result.output
