"""Storage keys, the directory storage and durable file writes (real files in tmp dirs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backlane.clients.files import append_at, atomic_write, publish
from backlane.clients.storage import DirectoryStorage, InvalidKey, safe_key
from backlane.errors import PermanentError


@pytest.mark.parametrize("key", ["", "  ", "/etc/passwd", "../x", "a/../../x", "a/..", ".", "./", "a\\b", "a\x00b"])
def test_unsafe_keys_are_permanent_errors(key: str) -> None:
    with pytest.raises(InvalidKey) as info:
        safe_key(key)
    assert isinstance(info.value, PermanentError)


def test_safe_keys_normalise() -> None:
    assert str(safe_key("audio/./x.mp3")) == "audio/x.mp3"
    assert str(safe_key("a..b/c")) == "a..b/c"


def test_directory_storage_put_exists_delete(tmp_path: Path) -> None:
    storage = DirectoryStorage(tmp_path / "root")
    storage.put("audio/1.mp3", b"abc")

    assert storage.exists("audio/1.mp3") and (tmp_path / "root/audio/1.mp3").read_bytes() == b"abc"
    assert storage.delete("audio/1.mp3") is True
    assert storage.delete("audio/1.mp3") is False, "already gone counts as deleted"
    assert not storage.exists("audio/1.mp3")
    assert storage.delete("never/there") is False


def test_a_symlink_out_of_the_root_is_rejected(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x").write_bytes(b"keep")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside)

    with pytest.raises(InvalidKey):
        DirectoryStorage(root).delete("link/x")
    assert (outside / "x").read_bytes() == b"keep"


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "d" / "f.txt"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]


def test_append_at_drops_bytes_written_after_the_recorded_offset(tmp_path: Path) -> None:
    partial = tmp_path / "export.csv.partial"
    size = append_at(partial, 0, b"header\n")
    size = append_at(partial, size, b"page1\n")
    with open(partial, "ab") as handle:  # a crash after writing page 2 but before recording it
        handle.write(b"page2-unrecorded\n")

    size = append_at(partial, size, b"page2\n")

    assert partial.read_bytes() == b"header\npage1\npage2\n" and size == len(b"header\npage1\npage2\n")


def test_append_at_refuses_progress_that_is_not_on_disk(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        append_at(tmp_path / "missing", 10, b"x")
    short = tmp_path / "short"
    short.write_bytes(b"abc")
    with pytest.raises(ValueError):
        append_at(short, 10, b"x")


def test_publish_moves_the_partial_file_into_place(tmp_path: Path) -> None:
    partial, final = tmp_path / "x.partial", tmp_path / "x"
    final.write_bytes(b"old")
    partial.write_bytes(b"new plus junk")

    publish(partial, final, 3)

    assert final.read_bytes() == b"new" and not partial.exists()


@pytest.mark.parametrize("path", ["\udcff\udcfe.csv", "a\tb.csv", "a\x1b[31m.csv", "x\u202e.csv"])
def test_a_path_that_is_not_text_a_file_may_have_is_refused_in_one_line(path: str) -> None:
    """Bytes a terminal passed that are not UTF-8 arrive as lone surrogates; control and bidi
    characters would reach an operator's terminal or a file name: each is refused, not crashed on."""
    from backlane.clients.files import relative_parts
    from backlane.errors import PermanentError

    with pytest.raises(PermanentError, match="control characters or is not valid UTF-8"):
        relative_parts(path, "export path")
