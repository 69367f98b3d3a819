"""A plain `pip install .` (a wheel: pipx, a Docker image) carries everything digest needs:
templates, static files, migrations and the sample papers, and renders from them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from digest.storage import Storage

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        cwd=build,
        capture_output=True,
    )
    (built,) = out.glob("paper_digest-*.whl")
    return built


def test_the_wheel_holds_templates_static_files_migrations_and_samples(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (ROOT / "templates").rglob("*"):
        if template.is_file():
            assert f"digest/templates/{template.relative_to(ROOT / 'templates')}" in names
    assert {
        "digest/migrations/env.py",
        "digest/migrations/versions/0003_claim_tokens.py",
        "digest/sample_data/hf_daily_papers_2026-07-13.json",
        "digest/sample_data/minilm_vectors.npz",
        "workers/celery_app.py",
    } <= names


def test_an_installed_wheel_renders_emails_and_migrates(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import digest.rendering as r, digest.storage as s\n"
        "assert r.TEMPLATES_DIR.is_relative_to({!r}), r.TEMPLATES_DIR\n"
        "email = r.render_confirmation(r.ConfirmationContent('a@example.org', ('rl',), 'https://x/c', 7))\n"
        "store = s.Storage.from_url('sqlite:///{}'); store.db.upgrade()\n"
        "print(email.subject, store.db.schema_revision())\n"
    ).format(str(site), tmp_path / "d.db")
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    head = Storage.from_url(f"sqlite:///{tmp_path / 'head.db'}").db.head_revision()
    assert result.stdout.split()[-1] == head and "Confirm" in result.stdout
