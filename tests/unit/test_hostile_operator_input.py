"""Operators' numbers and paths, and text the CLI prints: bounded, unique, escaped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from actors.exports.commands import parse_interval
from actors.exports.files import export_paths, path_conflict
from backlane.clients.files import append_at
from backlane.errors import PermanentError
from backlane.operations.terminal import escape_controls, json_text, say
from backlane.problems import Problem
from backlane.settings import RetrySettings


@pytest.mark.parametrize("text", ["4000000d", "0", "0.5", "-5m", "inf", "nan", "1e9", "367d", "9" * 40, "5 weeks"])
def test_interval_out_of_range_or_garbage_is_one_line(text: str) -> None:
    with pytest.raises(Problem) as refused:
        parse_interval(text)
    assert refused.value.line.startswith("--interval ") and "from 1s to 366d" in refused.value.line


@pytest.mark.parametrize(
    ("text", "seconds"), [("300", 300), ("30s", 30), ("5m", 300), ("1h", 3600), ("366d", 366 * 86400)]
)
def test_interval_in_range(text: str, seconds: float) -> None:
    assert parse_interval(text) == seconds


def test_a_duration_setting_out_of_range_names_itself() -> None:
    with pytest.raises(ValueError, match="max_delay_seconds"):
        RetrySettings(max_delay_seconds=10**12)
    with pytest.raises(ValueError, match="max_backoff_ms"):
        RetrySettings(max_backoff_ms=10**15)


@pytest.mark.parametrize(
    ("path", "other"),
    [
        ("same.csv", "same.csv"),
        ("same.csv", "./same.csv"),
        ("a/./b.csv", "a/b.csv"),
        ("x.csv.partial", "x.csv"),  # one's destination is the other's partial file
        ("x.csv", "x.csv.partial"),
        ("Same.CSV", "same.csv"),  # one file on a case-insensitive disk
        ("d", "d/x.csv"),  # a file where the other needs a directory
    ],
)
def test_colliding_export_paths(path: str, other: str) -> None:
    conflict = path_conflict(path, [("other", other)])
    assert conflict is not None and "collides with export 'other'" in conflict


def test_distinct_export_paths_and_unreadable_others() -> None:
    assert path_conflict("a.csv", [("b", "b.csv"), ("c", "a.csv.bak"), ("bad", "../x")]) is None


def test_append_refuses_a_symlink_in_place_of_the_partial_file(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"keep")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "e.csv.partial").symlink_to(outside)
    with pytest.raises(OSError):
        append_at(tmp_path / "out" / "e.csv.partial", 0, b"page")
    assert outside.read_bytes() == b"keep"


def test_a_directory_swapped_for_a_symlink_is_refused_at_the_next_write(tmp_path: Path) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside"
    (out / "sub").mkdir(parents=True)
    outside.mkdir()
    export_paths(str(out), "sub/e.csv")  # confined at the start of the run
    os.rmdir(out / "sub")
    (out / "sub").symlink_to(outside, target_is_directory=True)  # swapped mid-run
    with pytest.raises(PermanentError, match="through a symlink"):
        export_paths(str(out), "sub/e.csv")


HOSTILE = "id\x1b]0;pwned\x07\x1b[2J\x9b31m\x7f\u202etxt.exe\u2066\x00\r\nforged line"


def test_escape_controls_leaves_no_control_character() -> None:
    shown = escape_controls(HOSTILE)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u202e\u2066" for c in shown)
    assert shown == "id\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\x7f\\u202etxt.exe\\u2066\\x00\\x0d\\x0aforged line"
    assert escape_controls("a\nb", keep_newlines=True) == "a\nb"
    assert escape_controls("plain ünïcode ✓") == "plain ünïcode ✓"


def test_json_text_is_valid_json_without_control_characters() -> None:
    text = json_text({"reason": HOSTILE}, indent=2)
    assert json.loads(text) == {"reason": HOSTILE}
    assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F for c in text)


def test_say_escapes(capsys: pytest.CaptureFixture[str]) -> None:
    say("line1\nline2 " + HOSTILE)
    out = capsys.readouterr().out
    assert out.count("\n") == 3 and "\x1b" not in out and "\x07" not in out


def test_dead_letters_list_prints_hostile_fields_escaped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from types import SimpleNamespace

    from backlane import cli
    from backlane.operations import dead_letters

    row = {
        "failed_at": "2026-01-01T00:00:00",
        "queue": "orders",
        "actor": "process_orders",
        "message_id": HOSTILE,
        "item": {"id": HOSTILE},
        "kind": "malformed",
        "reason": "bad \x1b]8;;file:///etc/passwd\x07click\x1b]8;;\x07\nforged",
    }
    monkeypatch.setattr(dead_letters, "display_row", lambda letter: row)
    listing = SimpleNamespace(xq="orders.XQ", total=1, letters=[object()])
    for as_json in (False, True):
        cli._list_dead_letters(SimpleNamespace(json=as_json, limit=100), [listing])  # type: ignore[arg-type]
        captured = capsys.readouterr()
        for text in (captured.out, captured.err):
            assert not any(c in text for c in "\x1b\x07\x9b\x7f\u202e\x00\r")
        if as_json:
            assert json.loads(captured.out)[0]["message_id"] == HOSTILE
        else:
            assert captured.out.count("\n") == 2  # the letter's line and the summary, nothing forged
