"""Settings come from DIGEST_* variables; bad values fail early and name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.settings import DEV_SECRET_KEY, Settings, SettingsError, load_settings

EXAMPLE_ENV = Path(__file__).parent.parent / "config" / "example.env"
GOOD_KEY = "k" * 32


def test_defaults_run_locally(settings: Settings) -> None:
    assert settings.resolved_database_url.startswith("sqlite:///")
    assert settings.resolved_database_url.endswith("var/digest.db")
    assert settings.smtp_host == ""
    assert settings.outbox_dir == settings.data_dir / "outbox"
    assert settings.uses_dev_secret


def test_environment_overrides(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SMTP_PORT", "2525")
    monkeypatch.setenv("DIGEST_SMTP_TLS", "starttls")
    monkeypatch.setenv("DIGEST_BASE_URL", "https://digest.example.org/")
    monkeypatch.setenv("DIGEST_SECRET_KEY", GOOD_KEY)
    monkeypatch.setenv("DIGEST_ARXIV_ANNOUNCE_TYPES", "new, replace")
    loaded = load_settings()
    assert (loaded.smtp_port, loaded.smtp_tls) == (2525, "starttls")
    assert loaded.base_url == "https://digest.example.org"
    assert loaded.announce_types == {"new", "replace"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DIGEST_SMTP_PORT", "seventy"),
        ("DIGEST_SMTP_TLS", "maybe"),
        ("DIGEST_SEND_HOUR", "25"),
        ("DIGEST_RATE_LIMIT_PER_SECOND", "0"),
    ],
)
def test_invalid_values_name_the_variable(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings()


def test_dotenv_file_is_read(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DIGEST_SMTP_HOST=mail.example.org\nDIGEST_SECRET_KEY=\n")
    loaded = load_settings()
    assert loaded.smtp_host == "mail.example.org"
    assert loaded.secret_key == DEV_SECRET_KEY


def test_example_env_documents_every_setting() -> None:
    documented = {
        line.split("=", 1)[0].removeprefix("DIGEST_").lower()
        for line in EXAMPLE_ENV.read_text().splitlines()
        if line.startswith("DIGEST_")
    }
    assert documented == set(Settings.model_fields)


def test_a_blank_relevance_threshold_means_the_default_of_the_ranking_mode(monkeypatch) -> None:
    monkeypatch.setenv("DIGEST_RELEVANCE_THRESHOLD", "")
    assert load_settings().relevance_threshold is None
    monkeypatch.setenv("DIGEST_RELEVANCE_THRESHOLD", "0.4")
    assert load_settings().relevance_threshold == 0.4


@pytest.mark.parametrize(
    ("base_url", "secret_key", "problem"),
    [
        ("https://digest.example.org", "", "is not set"),
        ("http://digest.example.org", "", "is not set"),  # plain http is public too
        ("HTTPS://digest.example.org", "", "is not set"),
        ("https://digest.example.org", "x", "is 1 bytes long"),
        ("http://192.0.2.7:8000", "k" * 31, "is 31 bytes long"),
        ("https://digest.example.org", DEV_SECRET_KEY, "is not set"),
    ],
)
def test_a_public_site_needs_a_secret_key_of_32_bytes(
    settings: Settings, base_url: str, secret_key: str, problem: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(base_url=base_url, secret_key=secret_key)
    message = str(refused.value)
    assert f"DIGEST_SECRET_KEY {problem}" in message and "at least 32 bytes" in message
    assert 'python -c "import secrets; print(secrets.token_urlsafe(48))"' in message


@pytest.mark.parametrize(
    "base_url",
    ["http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000", "HTTP://LocalHost"],
)
def test_this_machine_needs_no_secret_key(settings: Settings, base_url: str) -> None:
    assert load_settings(base_url=base_url).uses_dev_secret


def test_the_scheme_of_the_base_url_is_read_whatever_its_case(settings: Settings) -> None:
    loaded = load_settings(base_url="HTTPS://Digest.example.org/Path/", secret_key=GOOD_KEY)
    assert loaded.base_url == "https://Digest.example.org/Path"
