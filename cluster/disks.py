"""A node's own small disk, for disk-full drills: its data directory on a size-limited tmpfs
(mounted as root by the launcher, unmounted by `down`), filled with a ballast file and
released again.

A ballast is refused on a data directory that is not its own mounted filesystem: filling
the shared root filesystem would fill the disk of every process on the machine.
A tmpfs lives in memory: its data is gone after `cluster down` (the node comes back empty
and healing refills it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import subprocess
from pathlib import Path

__all__ = ["BALLAST", "DiskError", "fill", "is_own_filesystem", "mount_tmpfs", "parse_size",
           "release", "unmount"]

BALLAST = "ballast.fill"  # at the top of the data dir, where the node keeps nothing of its own
_SIZE = re.compile(r"^(\d+)([KMG]?)i?B?$", re.IGNORECASE)
_CHUNK = 1 << 20


class DiskError(RuntimeError):
    """A mount or a fill could not be done; the message says why in one line."""


def parse_size(text: str) -> int:
    """'64M', '512MiB', '1G', '1048576' -> bytes."""
    match = _SIZE.match(text.strip())
    if not match:
        raise DiskError(f"{text!r} is not a size like 64M or 1G")
    return int(match.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[
        match.group(2).upper()]


def mount_tmpfs(path: Path, size: str) -> bool:
    """Mounts a tmpfs of `size` on `path` (created if needed); False if already mounted."""
    path.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(path):
        return False
    if os.geteuid() != 0:
        raise DiskError(f"cannot mount a tmpfs on {path}: mounting needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={parse_size(size)},mode=0700",
                           "tmpfs", str(path)], capture_output=True, text=True, timeout=30,
                          check=False)
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise DiskError(f"cannot mount a {size} tmpfs on {path}: "
                        f"{reason[-1] if reason else f'mount exited {done.returncode}'}")
    return True


def unmount(path: Path) -> bool:
    """Unmounts `path` if it is a mount point (its tmpfs data is gone); True if it was."""
    if not os.path.ismount(path):
        return False
    done = subprocess.run(["umount", str(path)], capture_output=True, text=True, timeout=30,
                          check=False)
    if done.returncode != 0:  # something still holds a file open: detach it now, free later
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30,
                       check=False)
    return True


def is_own_filesystem(path: Path) -> bool:
    """`path` is a mount point of its own, not on the root filesystem."""
    return os.path.ismount(path) and os.stat(path).st_dev != os.stat("/").st_dev


def fill(path: Path, leave: int = 0) -> int:
    """Grows the ballast until at most `leave` bytes are free; returns the bytes added."""
    if not is_own_filesystem(path):
        raise DiskError(f"{path} is not on a filesystem of its own (it shares the root "
                        "filesystem): refusing to fill it; give the node a small disk with "
                        "`python -m cluster up --node-tmpfs NODE=64M`")
    st = os.statvfs(path)
    want = max(0, st.f_bavail * st.f_frsize - leave)
    ballast = path / BALLAST
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    added = 0
    try:
        start = os.fstat(fd).st_size
        try:
            if want:
                os.posix_fallocate(fd, start, want)
            added = want
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            added = os.fstat(fd).st_size - start
            added += _write_until_full(fd, want - added)
    finally:
        os.close(fd)
    return added


def _write_until_full(fd: int, want: int) -> int:
    zeros = bytes(_CHUNK)
    written = 0
    with contextlib.suppress(OSError):  # ENOSPC: as full as it gets
        while written < want:
            written += os.write(fd, zeros[: min(_CHUNK, want - written)])
    return written


def release(path: Path) -> int:
    """Removes the ballast; returns the bytes it held."""
    ballast = path / BALLAST
    try:
        size = ballast.stat().st_size
    except FileNotFoundError:
        return 0
    ballast.unlink()
    return size
