"""config_edit.py: [[members]] edits keep comments and order, are validated, atomic."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from aggregator import config, config_edit
from aggregator.errors import ConfigError, UsageError
from aggregator.models import Member

REPO = Path(__file__).parents[2]

BASE = """\
# Kairan test config
[site]
title = "Test"  # an inline comment

[storage]
data_dir = "data"

# --- members ---

[[members]]
# source: a's page
id = "a"
name = "A 市"
feed = "https://a.example/rss"
paused = false  # resumed on 11/2

[[members]]
# source: b's page
id = "b"
name = "B"
feed = "https://b.example/rss"
tags = ["x"]

# Not yet known:
# [[members]]
# id = "c"
"""

NEW = Member(
    "z", "横須賀市", "https://z.example/rss", prefecture="神奈川県", tags=("t",)
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    file = tmp_path / "config.toml"
    file.write_text(BASE, encoding="utf-8")
    return file


def ids(path: Path) -> list[str]:
    return [m.id for m in config.load_settings(path, {}).members]


# --- add ----------------------------------------------------------------------------


def test_add_appends_after_the_last_member_before_the_trailing_comments(
    path: Path,
) -> None:
    config_edit.add_member(path, NEW)
    text = path.read_text(encoding="utf-8")
    assert text == BASE.replace(
        "\n# Not yet known:",
        '\n[[members]]\nid = "z"\nname = "横須賀市"\nfeed = "https://z.example/rss"\n'
        'prefecture = "神奈川県"\ntags = ["t"]\n\n# Not yet known:',
    )
    assert config.load_settings(path, {}).member("z") == NEW


def test_add_then_remove_gives_back_the_file(path: Path) -> None:
    config_edit.add_member(path, NEW)
    config_edit.remove_member(path, "z")
    assert path.read_text(encoding="utf-8") == BASE


def test_add_writes_only_the_keys_that_are_set(path: Path) -> None:
    config_edit.add_member(path, Member("q", "Q", "https://q.example/rss", paused=True))
    text = path.read_text(encoding="utf-8")
    assert '[[members]]\nid = "q"\nname = "Q"\nfeed = "https://q.example/rss"\n' in text
    assert 'feed = "https://q.example/rss"\npaused = true\n' in text


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (
            Member("b", "B2", "https://new.example/rss"),
            'a member with id "b" already exists',
        ),
        (
            Member("new", "New", "https://B.EXAMPLE/rss"),
            'member "b" already has the feed https://B.EXAMPLE/rss',
        ),
    ],
)
def test_add_refuses_a_clash_and_leaves_the_file(
    path: Path, member: Member, message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        config_edit.add_member(path, member)
    assert str(caught.value) == message
    assert path.read_text(encoding="utf-8") == BASE


def test_add_of_an_invalid_member_is_refused_and_the_file_untouched(
    path: Path,
) -> None:
    before = os.stat(path)
    with pytest.raises(ConfigError) as caught:
        config_edit.add_member(path, Member("Bad Id", "X", "https://x.example/rss"))
    assert str(caught.value).startswith(f"{path}: members[2].id: must be a slug")
    assert path.read_text(encoding="utf-8") == BASE
    assert os.stat(path).st_ino == before.st_ino
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.toml"]


def test_add_to_a_config_without_members(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(config.INIT_TEMPLATE, encoding="utf-8")
    config_edit.add_member(path, NEW)
    text = path.read_text(encoding="utf-8")
    assert text.startswith(config.INIT_TEMPLATE)
    assert text.endswith(
        '\n\n[[members]]\nid = "z"\nname = "横須賀市"\n'
        'feed = "https://z.example/rss"\nprefecture = "神奈川県"\n'
        'tags = ["t"]\n'
    )
    config_edit.remove_member(path, "z")
    assert path.read_text(encoding="utf-8") == config.INIT_TEMPLATE


def test_edits_do_not_need_the_secrets_of_the_daemon(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[email]\npassword = "env:KAIRAN_UNSET_PW"\n', encoding="utf-8")
    config_edit.add_member(path, NEW)
    settings = config.load_settings(path, {"KAIRAN_UNSET_PW": "set-later"})
    assert [m.id for m in settings.members] == ["z"]
    assert 'password = "env:KAIRAN_UNSET_PW"' in path.read_text(encoding="utf-8")


# --- remove -------------------------------------------------------------------------


def test_remove_first_member_takes_only_its_own_lines(path: Path) -> None:
    config_edit.remove_member(path, "a")
    removed = (
        '[[members]]\n# source: a\'s page\nid = "a"\nname = "A 市"\n'
        'feed = "https://a.example/rss"\npaused = false  # resumed on 11/2\n\n'
    )
    assert path.read_text(encoding="utf-8") == BASE.replace(removed, "")
    assert ids(path) == ["b"]


def test_remove_last_member_keeps_the_comments_that_follow_it(path: Path) -> None:
    config_edit.remove_member(path, "b")
    removed = (
        '[[members]]\n# source: b\'s page\nid = "b"\nname = "B"\n'
        'feed = "https://b.example/rss"\ntags = ["x"]\n\n'
    )
    assert path.read_text(encoding="utf-8") == BASE.replace(removed, "")
    assert ids(path) == ["a"]


def test_remove_every_member_leaves_a_valid_file_with_all_comments(path: Path) -> None:
    config_edit.remove_member(path, "a")
    config_edit.remove_member(path, "b")
    text = path.read_text(encoding="utf-8")
    assert "[[members]]\nid" not in text
    assert "members = []" not in text
    assert '# --- members ---\n\n# Not yet known:\n# [[members]]\n# id = "c"\n' in text
    assert 'title = "Test"  # an inline comment' in text
    assert ids(path) == []


def test_remove_a_middle_member(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(BASE, encoding="utf-8")
    config_edit.add_member(path, NEW)  # a, b, z
    config_edit.remove_member(path, "b")
    assert ids(path) == ["a", "z"]
    assert "# source: a's page" in path.read_text(encoding="utf-8")
    assert "# source: b's page" not in path.read_text(encoding="utf-8")


def test_remove_unknown_member_is_a_usage_error(path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        config_edit.remove_member(path, "x")
    assert str(caught.value) == 'no member with id "x"'
    assert path.read_text(encoding="utf-8") == BASE


# --- pause / resume -----------------------------------------------------------------


def test_pause_adds_the_key_after_the_last_key(path: Path) -> None:
    config_edit.set_paused(path, "b", True)
    assert path.read_text(encoding="utf-8") == BASE.replace(
        'tags = ["x"]\n', 'tags = ["x"]\npaused = true\n'
    )
    assert config.load_settings(path, {}).member("b") == Member(
        "b", "B", "https://b.example/rss", tags=("x",), paused=True
    )


def test_pause_keeps_an_existing_keys_comment(path: Path) -> None:
    config_edit.set_paused(path, "a", True)
    assert "paused = true  # resumed on 11/2\n" in path.read_text(encoding="utf-8")
    config_edit.set_paused(path, "a", False)
    assert path.read_text(encoding="utf-8") == BASE


def test_resume_of_a_member_without_the_key_changes_nothing(path: Path) -> None:
    before = os.stat(path)
    config_edit.set_paused(path, "b", False)
    assert path.read_text(encoding="utf-8") == BASE
    assert os.stat(path).st_ino == before.st_ino  # not even rewritten


def test_pause_unknown_member_is_a_usage_error(path: Path) -> None:
    with pytest.raises(UsageError, match=r'^no member with id "nobody"$'):
        config_edit.set_paused(path, "nobody", True)


# --- import -------------------------------------------------------------------------


def test_import_adds_only_members_whose_id_and_feed_are_new(path: Path) -> None:
    added = config_edit.import_members(
        path,
        [
            Member("a", "Same id", "https://other.example/rss"),
            Member("dup-feed", "Same feed", "https://a.example/rss"),
            Member("n1", "N1", "https://n1.example/rss"),
            Member("n2", "N2", "https://n2.example/rss"),
            Member("n3", "N3", "https://n1.example/rss"),  # clashes within the import
        ],
    )
    assert added == ["n1", "n2"]
    assert ids(path) == ["a", "b", "n1", "n2"]
    assert path.read_text(encoding="utf-8").endswith(
        '\n\n# Not yet known:\n# [[members]]\n# id = "c"\n'
    )


def test_import_of_nothing_new_does_not_write(path: Path) -> None:
    before = os.stat(path)
    assert config_edit.import_members(path, [Member("a", "A", "https://x/rss")]) == []
    assert os.stat(path).st_ino == before.st_ino


# --- the file itself ----------------------------------------------------------------


def test_write_is_atomic_and_keeps_the_mode(path: Path) -> None:
    path.chmod(0o640)
    before = os.stat(path)
    config_edit.add_member(path, NEW)
    after = os.stat(path)
    assert after.st_ino != before.st_ino  # replaced by a new file, not rewritten
    assert stat.S_IMODE(after.st_mode) == 0o640
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.toml"]


def test_a_symlinked_config_stays_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.toml"
    real.write_text(BASE, encoding="utf-8")
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    config_edit.add_member(link, NEW)
    assert link.is_symlink()
    assert 'id = "z"' in real.read_text(encoding="utf-8")


def test_crlf_line_endings_survive(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(BASE.replace("\n", "\r\n").encode("utf-8"))
    config_edit.set_paused(path, "a", True)
    raw = path.read_bytes()
    assert b"paused = true  # resumed on 11/2\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")


def test_an_invalid_file_is_not_edited(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(BASE + "\n[poll]\ninterval = 10\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"poll\.interval: must be at least 5 min"):
        config_edit.add_member(path, NEW)
    assert 'id = "z"' not in path.read_text(encoding="utf-8")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file; run `kairan init`"):
        config_edit.remove_member(tmp_path / "config.toml", "a")


def test_inline_members_array_is_not_edited(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        'members = [{id = "a", name = "A", feed = "https://a.example/rss"}]\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"members: cannot edit members unless"):
        config_edit.add_member(path, NEW)


def test_shipped_config_round_trips(tmp_path: Path) -> None:
    original = (REPO / "config.toml").read_text(encoding="utf-8")
    path = tmp_path / "config.toml"
    path.write_text(original, encoding="utf-8")
    config_edit.add_member(path, Member("toda", "戸田市", "https://toda.example/rss"))
    text = path.read_text(encoding="utf-8")
    kuwana_end = text.index('tags = ["municipality"]', text.index('id = "kuwana"'))
    assert (
        kuwana_end < text.index('id = "toda"') < text.index("# Members of the magazine")
    )
    config_edit.set_paused(path, "kobe", True)
    config_edit.set_paused(path, "kobe", False)
    config_edit.remove_member(path, "toda")
    assert path.read_text(encoding="utf-8") == original.replace(
        'prefecture = "兵庫県"\ntags = ["municipality"]\n',
        'prefecture = "兵庫県"\ntags = ["municipality"]\npaused = false\n',
    )
    config_edit.remove_member(path, "kuwana")
    text = path.read_text(encoding="utf-8")
    assert "桑名市" not in text
    assert text.count("# feed not yet known;") == 5


def test_members_followed_by_another_table(tmp_path: Path) -> None:
    head = '[[members]]\nid = "a"\nname = "A"\nfeed = "https://a.example/rss"\n\n'
    tail = "# the server follows\n[server]\nport = 9000\n"
    path = tmp_path / "config.toml"
    path.write_text(head + tail, encoding="utf-8")
    config_edit.add_member(path, Member("b", "B", "https://b.example/rss"))
    assert path.read_text(encoding="utf-8") == (
        head
        + '[[members]]\nid = "b"\nname = "B"\nfeed = "https://b.example/rss"\n\n'
        + tail
    )
    config_edit.remove_member(path, "a")
    config_edit.remove_member(path, "b")
    assert path.read_text(encoding="utf-8") == tail
    assert config.load_settings(path, {}).server.port == 9000
