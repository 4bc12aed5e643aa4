"""Reading files in job directories, which belong to the jobs' owners, safely as root."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def read_job_file(path: Path, offset: int = 0, limit: int | None = None, tail: int | None = None) -> bytes | None:
    """The bytes of a file in a job directory (from ``offset``, at most ``limit``; or its last
    ``tail`` bytes at most, however fast it grows); None if missing.

    The directory is the job owner's: the file may be a link (or a second name) the owner made
    to a file only root may read. Such files, and anything but a plain file, raise PermissionError.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:  # ELOOP: a symbolic link
        raise PermissionError(f"{path.name} is not a plain file") from e
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise PermissionError(f"{path.name} is not a plain file")
        if limit is not None and st.st_size > limit:
            raise OverflowError(st.st_size)
        if tail is not None:
            f.seek(max(0, st.st_size - tail))
            return f.read(tail)
        f.seek(offset)
        return f.read() if limit is None else f.read(limit + 1)
