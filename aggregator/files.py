"""Small file-system helpers shared by the modules that write durably."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Make a rename or new link in `directory` durable: the entry itself is on
    disk only once the directory is (POSIX leaves it to the file system)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
