"""Input rules shared by the CLI, CSV import and the web form."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time

import pytest

from digest.subscriptions import (
    MAX_TOPICS,
    InvalidInput,
    build_subscriber_input,
    excluded_subject,
    first_digest_time,
    followed_author,
    format_subscriber_csv,
    interest_topics,
    mailbox_of,
    normalize_email,
    normalize_topic,
    normalize_topics,
    paper_of_topic,
    papers_of_topics,
    parse_subscriber_csv,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ada@Example.ORG", "ada@example.org"),
        ("  ada@example.org \n", "ada@example.org"),
        ("test@bücher.de", "test@bücher.de"),
        ("Ünïcode@EXAMPLE.com", "ünïcode@example.com"),
    ],
)
def test_normalize_email_canonical_form(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "plainaddress", "a@@b.com", "a@b", "a b@c.org", "a@-x.com", "@x.org"]
)
def test_normalize_email_rejects_bad_syntax_with_reason(raw: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        normalize_email(raw)
    assert "\n" not in str(exc.value)
    assert "email" in str(exc.value)


def test_topics_are_normalised_deduplicated_and_limited() -> None:
    assert normalize_topics(["Graph  Neural Networks", "graph neural networks", " RL "]) == (
        "graph neural networks",
        "rl",
    )
    with pytest.raises(InvalidInput, match="at most"):
        normalize_topics([f"topic {i}" for i in range(MAX_TOPICS + 1)])
    with pytest.raises(InvalidInput, match="at least one topic"):
        normalize_topics(["", "  "])
    with pytest.raises(InvalidInput, match="longer than"):
        normalize_topics(["x" * 81])


def test_build_input_validates_optional_fields() -> None:
    row = build_subscriber_input("a@example.org", ["rl"], "Europe/Paris", "8", "10")
    assert (row.timezone, row.send_hour, row.max_papers) == ("Europe/Paris", 8, 10)
    with pytest.raises(InvalidInput, match="time zone"):
        build_subscriber_input("a@example.org", ["rl"], timezone="Mars/Olympus")
    with pytest.raises(InvalidInput, match="outside 0-23"):
        build_subscriber_input("a@example.org", ["rl"], send_hour=24)
    with pytest.raises(InvalidInput, match="max papers"):
        build_subscriber_input("a@example.org", ["rl"], max_papers="ten")


def test_csv_with_bom_crlf_blank_lines_duplicates_and_bad_rows() -> None:
    text = (
        "\ufeffEmail,Topics,timezone\r\n"
        "ada@example.org,graph neural networks;efficient attention,Europe/London\r\n"
        "\r\n"
        "not-an-email,rl,\r\n"
        "ADA@example.org,rl,\r\n"
        "bob@example.org,a1;a2;a3;a4;a5;a6,\r\n"
        "carol@example.org,,\r\n"
        "dan@example.org,rl,Nowhere/Town\r\n"
        "eve@example.org,rl,UTC,extra\r\n"
        ",,\r\n"
        "fay@example.org,  Speech   Recognition ;,\r\n"
    )
    parsed = parse_subscriber_csv(text)
    assert [r.email for r in parsed.rows] == ["ada@example.org", "fay@example.org"]
    assert parsed.rows[1].topics == ("speech recognition",)
    reasons = {r.line: r.reason for r in parsed.rejections}
    assert sorted(reasons) == [4, 5, 6, 7, 8, 9]
    assert "invalid email" in reasons[4]
    assert reasons[5] == "duplicate of line 2 (ada@example.org)"
    assert "more than 5 topics given" in reasons[6]
    assert "at least one topic" in reasons[7]
    assert "unknown time zone" in reasons[8]
    assert "more fields" in reasons[9]


def test_csv_without_required_header_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="header must name the columns email, topics"):
        parse_subscriber_csv("ada@example.org,rl\n")


def test_export_format_round_trips_through_the_importer() -> None:
    rows = [
        {
            "email": "a@example.org",
            "topics": ["rl", "graph neural networks"],
            "timezone": "UTC",
            "send_hour": 7,
            "max_papers": 5,
            "status": "active",
        }
    ]
    parsed = parse_subscriber_csv(format_subscriber_csv(rows))
    assert parsed.rejections == []
    assert parsed.rows[0].topics == ("rl", "graph neural networks")


FORMULAS = [
    ("=cmd@example.org", ['=hyperlink("http://evil.example","x")', "rl"]),
    ("+a@example.org", ["+1+1", "+2-3"]),  # a topic starting "-" is an exclusion: "not: …"
    ("-a@example.org", ["@sum(1)"]),
    ("'a@example.org", ["'=x", "'plain", "''"]),  # what starts with the escape itself
    ("b@example.org", ["rl", "=after the first"]),
]


def test_spreadsheet_formulas_are_neutralised_on_export_and_restored_on_import() -> None:
    """OWASP's CSV-injection rule: a cell starting with = + - @ tab or CR is a formula to a
    spreadsheet; a leading ' makes it text. Our importer takes the ' off again."""
    rows = [
        {
            "email": email,
            "topics": topics,
            "timezone": "UTC",
            "send_hour": 7,
            "max_papers": 5,
            "status": "active",
        }
        for email, topics in FORMULAS
    ]
    exported = format_subscriber_csv(rows)
    cells = [cell for record in csv.reader(io.StringIO(exported)) for cell in record]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert "'=cmd@example.org" in cells and "''=x;'plain;''" in cells
    parsed = parse_subscriber_csv(exported)
    assert parsed.rejections == []
    assert [(row.email, list(row.topics)) for row in parsed.rows] == FORMULAS


def test_a_hand_written_quote_is_kept_unless_it_guards_a_formula() -> None:
    parsed = parse_subscriber_csv("email,topics\nada@example.org,'rl;'=x\n")
    assert parsed.rows[0].topics == ("'rl", "'=x")
    parsed = parse_subscriber_csv("email,topics\nada@example.org,'=x;'y\n")
    assert parsed.rows[0].topics == ("=x", "'y")


@pytest.mark.parametrize(
    "topic, reason",
    [
        ("rl; cheap pills", "';'"),
        ("rl\x07", "control character"),
        ("graph\u200bneural", "invisible"),
        ("rl\u2060", "invisible"),
        ("\ufeffrl", "invisible"),
        ("rl\x7fx", "control character"),
    ],
)
def test_topics_refuse_separators_control_and_invisible_characters(topic: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        normalize_topic(topic)


def test_a_subscriber_with_five_topics_round_trips_through_export() -> None:
    topics = [f"topic {i}" for i in range(5)]
    text = format_subscriber_csv(
        [
            {
                "email": "a@example.org",
                "topics": topics,
                "timezone": "UTC",
                "send_hour": 7,
                "max_papers": 5,
                "status": "active",
            }
        ]
    )
    (row,) = parse_subscriber_csv(text).rows
    assert row.topics == tuple(topics) and row.status == "active"


def test_a_header_naming_a_column_twice_is_refused() -> None:
    with pytest.raises(InvalidInput, match="names the column 'email' twice"):
        parse_subscriber_csv("email,topics,email\na@example.org,rl,b@example.org\n")


def test_a_semicolon_separated_file_gets_a_hint() -> None:
    with pytest.raises(InvalidInput, match="separated by ';'.*commas"):
        parse_subscriber_csv("email;topics\na@example.org;rl\n")


def test_a_multi_line_record_is_reported_by_the_line_it_starts_on() -> None:
    text = (
        'email,topics\na@example.org,rl\nbad-address,"first\nsecond"\nc@example.org,rl\nnope,rl\n'
    )
    parsed = parse_subscriber_csv(text)
    assert [r.line for r in parsed.rejections] == [3, 6]


def test_a_field_over_the_csv_limit_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="line 2: .*field larger than field limit"):
        parse_subscriber_csv("email,topics\na@example.org," + "x" * 200_000 + "\n")


def test_the_first_digest_time_is_said_in_the_subscribers_own_time() -> None:
    import datetime as dt

    from digest.subscriptions import first_digest_time

    early = dt.datetime(2026, 11, 26, 5, 30)  # 05:30 in London
    assert first_digest_time(early, "Europe/London", 7) == (
        "today, Thursday 26 November, at 07:00 Europe/London"
    )
    late = dt.datetime(2026, 11, 25, 22, 0)  # already Thursday 07:00 in Tokyo
    assert first_digest_time(late, "Asia/Tokyo", 6) == (
        "within minutes (today's edition), then from tomorrow, Friday 27 November, "
        "every day at 06:00 Asia/Tokyo"
    )


@pytest.mark.parametrize(
    "raw",
    [
        "2607.07953",
        "2607.07953v2",
        " arXiv:2607.07953 ",
        "https://arxiv.org/abs/2607.07953",
        "http://www.arxiv.org/pdf/2607.07953v1.pdf",
        "arxiv.org/abs/2607.07953",
        "https://huggingface.co/papers/2607.07953",
    ],
)
def test_a_paper_id_or_link_is_a_more_like_this_paper_topic(raw: str) -> None:
    assert normalize_topic(raw) == "arxiv:2607.07953"
    assert paper_of_topic(normalize_topic(raw)) == "2607.07953"


def test_old_style_ids_keep_their_archive_and_words_stay_words() -> None:
    assert normalize_topic("https://arxiv.org/abs/hep-th/9901001v3") == "arxiv:hep-th/9901001"
    assert normalize_topic("2607 ideas") == "2607 ideas"
    assert normalize_topic("https://example.org/abs/2607.07953") != "arxiv:2607.07953"
    assert papers_of_topics(["rl", "arxiv:2607.07953", "arxiv:2607.00001"]) == {
        "2607.07953",
        "2607.00001",
    }


def test_header_names_are_read_whatever_their_case_and_spacing() -> None:
    parsed = parse_subscriber_csv("  Email , TOPICS ,,\nada@example.org,rl,,\n")
    assert [r.email for r in parsed.rows] == ["ada@example.org"], "empty names are not duplicates"
    with pytest.raises(InvalidInput) as caught:
        parse_subscriber_csv("mail,subjects\nada@example.org,rl\n")
    assert (
        str(caught.value)
        == "CSV header must name the columns email, topics (found: mail, subjects)"
    )
    with pytest.raises(InvalidInput, match=r"\(found: nothing\)"):
        parse_subscriber_csv("\n\nada@example.org\n")
    with pytest.raises(InvalidInput, match="must name the columns") as plain:
        parse_subscriber_csv("email;topics,extra\nada@example.org;rl,x\n")
    assert "separated by ';'" not in str(plain.value), "the hint is for a one-column header only"


@pytest.mark.parametrize(
    ("address", "mailbox"),
    [
        ("Ada+news@Example.org", "ada@example.org"),
        ("ada+a+b@example.org", "ada@example.org"),
        ("ada@example.org", "ada@example.org"),
        ("ADA@Straße.de", "ada@strasse.de"),
        ("a.da@example.org", "a.da@example.org"),  # a dot is a different mailbox elsewhere
        ("A.d.a+news@Gmail.com", "ada@gmail.com"),  # Gmail ignores dots and tags
        ("a.da@googlemail.com", "ada@gmail.com"),  # ... and googlemail.com is gmail.com
    ],
)
def test_the_mailbox_of_an_address_drops_its_tag_and_case(address: str, mailbox: str) -> None:
    assert mailbox_of(address) == mailbox


def test_every_csv_column_reaches_the_row_and_short_or_long_rows_say_what_is_wrong() -> None:
    parsed = parse_subscriber_csv(
        "email,topics,timezone,send_hour,max_papers,status\n"
        "ada@example.org,rl;agents,Europe/Paris,9,3,paused\n"
        "bob@example.org\n"
        "cy@example.org,rl,UTC,7,5,active,surplus\n"
        "\n"
    )
    (ada,) = parsed.rows
    assert (ada.topics, ada.timezone, ada.send_hour, ada.max_papers, ada.status) == (
        ("rl", "agents"),
        "Europe/Paris",
        9,
        3,
        "paused",
    )
    assert parsed.lines == 3, "data lines, the blank one not counted"
    assert [(r.line, r.reason) for r in parsed.rejections] == [
        (3, "at least one topic is required"),
        (4, "more fields than the header has columns"),
    ]
    short = parse_subscriber_csv("topics,email\nrl\n")
    assert [(r.line, r.reason) for r in short.rejections] == [(2, "email is empty")]
    with pytest.raises(InvalidInput, match=r"\(found: nothing\)"):
        parse_subscriber_csv("")


def test_an_error_without_plain_words_gets_its_message_as_a_sentence() -> None:
    error = InvalidInput("unknown thing given", "topics")
    assert (error.field, error.plain, str(error)) == (
        "topics",
        "Unknown thing given.",
        "unknown thing given",
    )
    with pytest.raises(InvalidInput) as zone:
        build_subscriber_input("ada@example.org", ["rl"], timezone="Mars/Olympus")
    assert zone.value.field == "timezone"
    assert zone.value.plain == "Please pick a time zone from the list, like Europe/Paris."
    with pytest.raises(InvalidInput) as status:
        build_subscriber_input("ada@example.org", ["rl"], status="gone")
    assert str(status.value) == (
        "unknown status 'gone' (one of pending, active, paused, unsubscribed, bounced)"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [("x", "send hour 'x' is not a whole number 0-23"), ("24", "send hour 24 is outside 0-23")],
)
def test_a_bad_hour_names_its_field_and_says_what_fits(raw: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        build_subscriber_input("ada@example.org", ["rl"], send_hour=raw)
    assert (str(caught.value), caught.value.field, caught.value.plain) == (
        message,
        "send_hour",
        "Please enter a whole number from 0 to 23.",
    )


def test_the_first_digest_comes_within_minutes_from_the_send_hour_on() -> None:
    """At 07:30 in London, a 07:00 reader's edition is due now: the next tick sends it."""
    summer = dt.datetime(2026, 7, 2, 6, 30)  # 07:30 in London
    assert first_digest_time(summer, "Europe/London", 7).startswith("within minutes")
    assert first_digest_time(summer, "Europe/London", 8) == (
        "today, Thursday 2 July, at 08:00 Europe/London"
    )


def test_the_first_digest_time_does_not_depend_on_the_servers_time_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert first_digest_time(dt.datetime(2026, 7, 2, 6, 30), "Europe/London", 8) == (
            "today, Thursday 2 July, at 08:00 Europe/London"
        )
    finally:
        monkeypatch.undo()
        time.tzset()


def test_the_export_uses_one_newline_per_line() -> None:
    text = format_subscriber_csv([{"email": "ada@example.org", "topics": ["rl"]}])
    assert "\r" not in text and text.count("\n") == 2


def test_the_semicolon_hint_says_what_to_do() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_subscriber_csv("email;topics\nada@example.org;rl\n")
    assert str(caught.value) == (
        "the columns seem separated by ';' (as some spreadsheet programs export): "
        "save the file as CSV with commas, or UTF-8 CSV"
    )


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("not: Surveys", "not: surveys"),
        ("-surveys", "not: surveys"),
        ("- Surveys ", "not: surveys"),
        ("NOT:benchmarks", "not: benchmarks"),
        ("author: Yann  LeCun", "author: Yann LeCun"),  # capitals kept: a reason quotes them
        ("Authors: LeCun, Yann", "author: LeCun, Yann"),
        ("x-ray imaging", "x-ray imaging"),  # a hyphen inside is no exclusion
    ],
)
def test_exclusions_and_authors_are_written_one_way_from_every_entry_point(
    raw: str, stored: str
) -> None:
    assert normalize_topic(raw) == stored
    assert excluded_subject(stored) == (stored[5:] if stored.startswith("not: ") else None)
    assert followed_author(stored) == (stored[8:] if stored.startswith("author: ") else None)


def test_the_kinds_keep_the_checks_and_fit_the_topic_column() -> None:
    with pytest.raises(InvalidInput, match="too short"):
        normalize_topic("-")
    with pytest.raises(InvalidInput, match="longer than 72"):
        normalize_topic("author: " + "a" * 75)
    with pytest.raises(InvalidInput, match="only exclusions"):
        normalize_topics(["-surveys"])
    assert normalize_topics(["author: yann lecun", "Author: Yann LeCun", "-surveys"]) == (
        "author: yann lecun",
        "not: surveys",
    )
    assert interest_topics(["rl", "not: surveys", "author: Yann LeCun"]) == ["rl"]


def test_a_csv_import_reads_exclusions_and_authors_and_export_gives_them_back() -> None:
    text = 'email,topics\nada@example.org,"rl;-surveys;author: LeCun, Yann"\n'
    (row,) = parse_subscriber_csv(text).rows
    assert row.topics == ("rl", "not: surveys", "author: LeCun, Yann")
    exported = format_subscriber_csv([{"email": row.email, "topics": list(row.topics)}])
    assert parse_subscriber_csv(exported).rows[0].topics == row.topics
