"""Round-trip edits of [[members]] (tomlkit keeps comments/order), validated, atomic.

Every edit reads the file, checks that it is valid now, changes the tomlkit document,
validates the text it would write with the same parser as `kairan run`, and only then
replaces the file. A refused edit leaves the file as it was.

Where comments go: tomlkit keeps the comments and blank lines that follow a table's
last key inside that table, although they introduce whatever comes next (the next
member, or the commented-out members at the end of the shipped config). Edits detach
that trailer first and put it back in front of what it introduced, so a member's
removal takes only the lines from its `[[members]]` header to its last key.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import tomlkit
import tomlkit.exceptions
from tomlkit.items import AoT, Comment, Item, Key, Table, Whitespace
from tomlkit.toml_document import TOMLDocument

from aggregator import config
from aggregator.errors import ConfigError, UsageError
from aggregator.files import fsync_directory
from aggregator.models import Member
from aggregator.settings import Settings


class _AnyEnvironment(Mapping[str, str]):
    """An environment holding every variable: edits check the file's shape, not
    whether this shell has the secrets `kairan run` will be given."""

    def __getitem__(self, key: str) -> str:
        return "set"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


_ANY_ENV = _AnyEnvironment()


# --- reading, validating, writing ---------------------------------------------------


def _validate(text: str, path: Path) -> Settings:
    return config.parse_config_text(text, path, _ANY_ENV)


def _parse(text: str, path: Path) -> TOMLDocument:
    try:
        return tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as e:  # tomllib accepted it; tomlkit did not
        raise ConfigError(str(path), "", f"cannot edit: {e}") from None


def _write_atomically(path: Path, text: str) -> None:
    """Temp file in the same directory, fsync, os.replace: a crash leaves the old
    file or the new one, never half of one. The file's mode is kept."""
    target = path.resolve()  # a symlinked config stays a symlink
    mode = stat.S_IMODE(target.stat().st_mode)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(text.encode("utf-8"))
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


@contextmanager
def _editing(
    path: Path, *, dry_run: bool = False
) -> Iterator[tuple[TOMLDocument, Settings]]:
    """Yield the document and its current settings; write it back if the block
    finished and the result is valid (with ``dry_run``, only validate it)."""
    text = config.read_config_text(path)
    current = _validate(text, path)
    doc = _parse(text, path)
    yield doc, current
    new_text = tomlkit.dumps(doc)
    if new_text != text:
        _validate(new_text, path)
        if not dry_run:
            _write_atomically(path, new_text)


# --- the trailer of a table (see the module docstring) ------------------------------

Body = list[tuple[Key | None, Item]]  # a tomlkit container's items, in file order


def _detach_trailer(table: Table) -> list[Item]:
    body = table.value.body
    end = len(body)
    while end and isinstance(body[end - 1][1], Comment | Whitespace):
        end -= 1
    trailer = [item for _, item in body[end:]]
    del body[end:]  # keyless items at the end: no index in tomlkit's key map moves
    return trailer


def _append(table: Table, items: list[Item]) -> None:
    for item in items:
        table.value.add(item)


def _prepend_to_header(table: Table, items: list[Item]) -> None:
    # tomlkit renders a table header's indent verbatim before "[[members]]"
    table.trivia.indent = "".join(i.as_string() for i in items) + table.trivia.indent


# --- finding members ----------------------------------------------------------------


def _members_aot(doc: TOMLDocument, path: Path) -> AoT | None:
    members = doc.get("members")
    if members is None or isinstance(members, AoT):
        return members
    raise ConfigError(
        str(path), "members", "cannot edit members unless written as [[members]] tables"
    )


def _find(doc: TOMLDocument, path: Path, member_id: str) -> tuple[AoT, int]:
    aot = _members_aot(doc, path)
    tables = aot.body if aot is not None else []
    index = next((i for i, t in enumerate(tables) if t.get("id") == member_id), None)
    if aot is None or index is None:
        raise UsageError(f'no member with id "{member_id}"')
    return aot, index


def _member_table(member: Member) -> Table:
    table = tomlkit.table()
    table["id"] = member.id
    table["name"] = member.name
    table["feed"] = member.feed
    for key, value in (("site", member.site), ("prefecture", member.prefecture)):
        if value:
            table[key] = value
    if member.tags:
        table["tags"] = list(member.tags)
    if member.paused:
        table["paused"] = True
    return table


# --- edits --------------------------------------------------------------------------


def _append_members(doc: TOMLDocument, path: Path, members: Sequence[Member]) -> None:
    """New tables go after the last member, before the comments that follow it."""
    existing = _members_aot(doc, path)
    aot = tomlkit.aot() if existing is None else existing
    trailer = _detach_trailer(aot.body[-1]) if aot.body else []
    for table in map(_member_table, members):
        if aot.body:
            table.trivia.indent = "\n"  # a blank line between members
        aot.append(table)
    _append(aot.body[-1], trailer)
    if existing is None:
        doc.append("members", aot)  # tomlkit puts a blank line before it


def _refuse_clash(current: Settings, member: Member) -> None:
    if current.member(member.id) is not None:
        raise UsageError(f'a member with id "{member.id}" already exists')
    key = config.feed_key(member.feed)
    owner = next((m for m in current.members if config.feed_key(m.feed) == key), None)
    if owner is not None:
        raise UsageError(f'member "{owner.id}" already has the feed {member.feed}')


def add_member(path: Path, member: Member, *, dry_run: bool = False) -> None:
    """Append a [[members]] table; a clash of id or feed URL, or a bad value, is
    refused. ``dry_run`` checks all of that and writes nothing."""
    with _editing(path, dry_run=dry_run) as (doc, current):
        _refuse_clash(current, member)
        _append_members(doc, path, [member])


def import_members(path: Path, members: Sequence[Member]) -> list[str]:
    """Add the members whose id and feed are both new (in one write); their ids."""
    with _editing(path) as (doc, current):
        ids = {m.id for m in current.members}
        feeds = {config.feed_key(m.feed) for m in current.members}
        added: list[Member] = []
        for member in members:
            if member.id not in ids and config.feed_key(member.feed) not in feeds:
                added.append(member)
                ids.add(member.id)
                feeds.add(config.feed_key(member.feed))
        if added:
            _append_members(doc, path, added)
    return [m.id for m in added]


def remove_member(path: Path, member_id: str) -> None:
    """Remove a member's table; the comments around it stay (module docstring)."""
    with _editing(path) as (doc, _):
        aot, index = _find(doc, path, member_id)
        before, blank_before = _before(doc, aot, index)
        at_end = index == len(aot.body) - 1 and _is_last_table(doc, aot)
        trailer = _detach_trailer(aot.body[index])
        # the table takes one of the blank lines around it: the one after, or, at
        # the end of the file, the one before (so add then remove is a no-op)
        if trailer and isinstance(trailer[0], Whitespace) and blank_before:
            trailer.pop(0)
        elif not trailer and at_end and before and blank_before:
            before.pop()
        del aot[index]
        if index > 0:
            _append(aot.body[index - 1], trailer)
        elif aot.body:
            _prepend_to_header(aot.body[0], trailer)
        else:
            _drop_members(doc, trailer)


def _before(doc: TOMLDocument, aot: AoT, index: int) -> tuple[Body | None, bool]:
    """The editable body that ends just above table ``index`` (None when that text
    is at the document's top level), and whether that text ends with a blank line."""
    if index > 0:
        body = aot.body[index - 1].value.body
        return body, _ends_blank(body)
    position = next(i for i, (_, item) in enumerate(doc.body) if item is aot)
    if position == 0:
        return None, True  # the start of the file
    previous = doc.body[position - 1][1]
    if isinstance(previous, Table):
        return previous.value.body, _ends_blank(previous.value.body)
    return None, isinstance(previous, Whitespace)


def _ends_blank(body: Body) -> bool:
    return bool(body) and isinstance(body[-1][1], Whitespace)


def _is_last_table(doc: TOMLDocument, aot: AoT) -> bool:
    tables = [item for _, item in doc.body if isinstance(item, Table | AoT)]
    return tables[-1] is aot


def _drop_members(doc: TOMLDocument, trailer: list[Item]) -> None:
    """The last member went: an empty AoT would render as `members = []`."""
    keys = list(doc)
    after = keys[keys.index("members") + 1 :]
    del doc["members"]
    following = next((doc[k] for k in after if isinstance(doc[k], Table | AoT)), None)
    if isinstance(following, AoT):
        following = following.body[0]
    if isinstance(following, Table):
        _prepend_to_header(following, trailer)
    else:
        for item in trailer:
            doc.add(item)


def set_paused(path: Path, member_id: str, paused: bool) -> None:
    """`paused = true`, or false where the key exists (an absent key means false)."""
    with _editing(path) as (doc, _):
        aot, index = _find(doc, path, member_id)
        table = aot.body[index]
        if paused or "paused" in table:
            trailer = _detach_trailer(table)
            table["paused"] = paused
            _append(table, trailer)
