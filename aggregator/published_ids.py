"""Published ids: an entry's Atom / JSON Feed / webhook id, chosen once and stored."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import quote

import sqlite_utils

from aggregator import store

_IRI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")  # RFC 3987: a scheme, no spaces


def assign_atom_ids(db: sqlite_utils.Database, host: str) -> int:
    """Give every entry that has none its published id, once and for good.

    The id is the entry's guid, as its credited member's feed gave it, when that
    is an IRI; else a tag: URI (RFC 4151) from the site's host, the day the entry
    was first seen and its strongest identity key. Stored, so later keys, edits
    or a changed base_url never change it.
    """
    rows = db.execute(
        "SELECT id, member_id, first_seen FROM entries WHERE atom_id IS NULL"
    ).fetchall()
    keys = store.keys_of(db, [row[0] for row in rows])
    for entry_id, member_id, first_seen in rows:
        chosen = _atom_id(keys.get(entry_id, []), member_id, host, first_seen)
        db.execute("UPDATE entries SET atom_id = ? WHERE id = ?", [chosen, entry_id])
    return len(rows)


def _atom_id(keys: Sequence[str], member_id: str, host: str, first_seen: str) -> str:
    prefix = f"guid:{member_id}:"
    guid = next((k.removeprefix(prefix) for k in keys if k.startswith(prefix)), None)
    if guid is not None and _IRI.fullmatch(guid):
        return guid
    strongest = keys[0] if keys else f"entry:{first_seen}"
    return f"tag:{host},{first_seen[:10]}:{quote(strongest, safe=':/')}"


def published_ids(
    db: sqlite_utils.Database, entry_ids: Sequence[int], host: str
) -> dict[int, str]:
    """The published ids of these entries, assigning any that are missing first."""
    assign_atom_ids(db, host)
    found: dict[int, str] = {}
    for part in store.chunks(list(entry_ids)):
        marks = store.placeholders(len(part))
        rows = db.execute(
            f"SELECT id, atom_id FROM entries WHERE id IN ({marks})",  # noqa: S608 - placeholders only
            list(part),
        ).fetchall()
        found.update((int(row[0]), str(row[1])) for row in rows)
    return found
