"""The pure modules stay pure: importing one pulls in no database, web, queue or network code."""

from __future__ import annotations

import subprocess
import sys

import pytest

PURE = (
    "announcements",
    "sources",
    "ranking",
    "editions",
    "emails",
    "rendering",
    "messages",
    "subscriptions",
    "lists",
    "evaluation",
    "records",
    "text",
    "wire",
    "runs",
)
SHELL_PACKAGES = (
    "sqlalchemy",
    "psycopg",
    "flask",
    "werkzeug",
    "celery",
    "kombu",
    "redis",
    "httpx",
    "smtplib",
)


@pytest.mark.parametrize("module", PURE)
def test_a_pure_module_imports_no_io_layer(module: str) -> None:
    probe = (
        f"import sys, digest.{module}\n"
        f"shells = {SHELL_PACKAGES!r}\n"
        "print(' '.join(sorted({m for m in sys.modules if m.split('.')[0] in shells or m == 'digest.storage'})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.split() == [], f"digest.{module} imports {loaded.strip()}"


def test_the_probe_sees_a_shell_module() -> None:
    probe = "import sys, digest.storage; print('sqlalchemy' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip()
        == "True"
    )
