"""The SMTP sink the tests, the demo and the benchmark send to: a real server over TCP."""

from __future__ import annotations

import smtplib

from digest.smtp_sink import SinkHandler, SmtpSink

MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"


def send(port: int, recipients: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="test") as smtp:
        for rcpt in recipients:
            smtp.sendmail("digest@example.org", [rcpt], MESSAGE)


def test_records_each_message_by_recipient() -> None:
    sink = SmtpSink().start()
    try:
        send(sink.port, ["a@example.org", "b@example.org", "a@example.org"])
        assert sink.handler.accepted == 3
        assert sink.handler.by_recipient() == {"a@example.org": 2, "b@example.org": 1}
        assert sink.handler.received[0].message()["Subject"] == "hi"
    finally:
        sink.stop()


def test_long_running_sink_counts_without_keeping_messages(tmp_path) -> None:
    sink = SmtpSink(handler=SinkHandler(keep=False, maildir=tmp_path)).start()
    try:
        send(sink.port, [f"u{n}@example.org" for n in range(5)])
        assert sink.handler.accepted == 5 and sink.handler.received == []
        assert len(list(tmp_path.glob("*.eml"))) == 5  # --maildir still writes every message
    finally:
        sink.stop()


def test_the_sink_command_reports_only_when_its_count_changes(tmp_path) -> None:
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = subprocess.Popen(
        [sys.executable, "-m", "digest", "smtp-sink", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                send(port, ["b@example.org"])
                break
            except OSError:
                assert time.monotonic() < deadline, "the sink did not start"
                time.sleep(0.1)
        time.sleep(2.5)  # two report periods pass: only one of them saw a change
    finally:
        sink.terminate()
        output = sink.communicate(timeout=10)[0]
    assert output.splitlines()[1:] == ["1 message received"], output
