"""File-system helpers shared by every command that writes: modes that follow the user's umask."""
from __future__ import annotations

import os


def umask_mode(directory: bool) -> int:
    """The mode a plain mkdir/open would give: temp folders and files (0o700/0o600) are renamed into
    place, so they get this mode first, or group members could not read what the user shares."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask
