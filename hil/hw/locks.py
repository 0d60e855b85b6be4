"""Lock files: one exclusive flock per thing two runs must not share (a board, a probe being flashed).

Where: `$HIL_LOCK_DIR` if set, else /tmp/hil-locks-<uid>: one folder per user that every run of
that user finds, from a login shell, cron or a CI runner alike ($XDG_RUNTIME_DIR is not used: runs
without a login session lack it, and logging out wipes it while a run may still hold its locks).
A lab whose physical boards several users drive sets HIL_LOCK_DIR to one folder for all of them
(docs/labs.md, "Locks").

The folder sits in a place every user can write to, so nothing in it is trusted blindly:
- it is made with mode 0700 and must be a real folder (not a symlink) that belongs to us and that
  nobody else can write to; a shared $HIL_LOCK_DIR may instead belong to root and be writable by its
  group if it is setgid (chmod 2770), never by everyone. Anything else is refused with one line.
- lock files are opened through the checked folder's descriptor, with O_NOFOLLOW and O_CLOEXEC, mode
  0600 (0660 in a group folder); a symlink, anything but a regular file, or a file with a second hard
  link is refused before anything is written to it.

No stale files, no races: a lock is released by unlinking its file while the flock is still held,
then closing it. Whoever opened that file before and then gets its flock finds that the name no
longer names its file, and opens the name again; so two holders never hold two different files of
one name. A file left by a killed process is no longer locked: the next taker writes its own name
into it and removes it at release.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import time
from pathlib import Path

from hil.errors import HilError

DEFAULT_PARENT = Path("/tmp")
_HOLDER_BYTES = 4096  # what a holder wrote: "pid 123 (slot)"
_HOLDER_WAIT_S = 0.02
_RETAKES = 100  # a file released between our open and our flock is opened again; not forever


class LockError(HilError):
    """The lock folder or a lock file is not safe to use (exit code 2)."""


def default_lock_dir() -> Path:
    return DEFAULT_PARENT / f"hil-locks-{os.geteuid()}"


def lock_dir() -> Path:
    configured = os.environ.get("HIL_LOCK_DIR")
    return Path(configured) if configured else default_lock_dir()


def _folder_problem(info: os.stat_result, shared: bool) -> str | None:
    """Why nobody should trust this folder with locks, and what to do; None if it is sound.
    `shared`: a folder chosen with HIL_LOCK_DIR, which may be a group's."""
    me = os.geteuid()
    if info.st_uid not in ((me, 0) if shared else (me,)):
        return (f"belongs to uid {info.st_uid}, not to you (uid {me}); remove it (another user may have made it) "
                "or set HIL_LOCK_DIR to a folder of yours")
    if info.st_mode & stat.S_IWOTH:
        return "is writable by every user; chmod 700 it (2770 for a group's folder in HIL_LOCK_DIR)"
    if info.st_mode & stat.S_IWGRP and not (shared and info.st_mode & stat.S_ISGID):
        return ("is writable by its group; chmod 700 it or, for a folder shared by a group, "
                "set HIL_LOCK_DIR to it and chmod 2770 it")
    return None


def open_folder(directory: Path) -> int:
    """A descriptor of the lock folder, made (mode 0700) if missing, once it is safe to lock in."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        what = ("is a symbolic link" if directory.is_symlink() else "is not a folder"
                if error.errno in (errno.EEXIST, errno.ENOTDIR) else f"cannot be made or opened ({error.strerror})")
        raise LockError(f"{directory}: the lock folder {what}; remove it (someone else may have made it) "
                        "or set HIL_LOCK_DIR to a folder of yours") from None
    problem = _folder_problem(os.fstat(fd), shared=directory != default_lock_dir())
    if problem is not None:
        os.close(fd)
        raise LockError(f"{directory}: the lock folder {problem}")
    return fd


def _open_file(folder_fd: int, path: Path) -> int:
    """The lock file `path` (in the folder of `folder_fd`), made if missing; refused unless a plain file."""
    group = bool(os.fstat(folder_fd).st_mode & stat.S_IWGRP)
    try:
        fd = os.open(path.name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o660 if group else 0o600,
                     dir_fd=folder_fd)
    except OSError as error:
        what = {errno.ELOOP: "is a symbolic link", errno.EISDIR: "is not a regular file"}.get(
            error.errno, f"cannot be opened ({error.strerror})")
        raise LockError(f"{path}: the lock file {what}; nothing was written to it: remove it, "
                        "and find out who made it if it is not yours") from None
    info = os.fstat(fd)
    problem = ("is not a regular file" if not stat.S_ISREG(info.st_mode)
               else "has another hard link" if info.st_nlink > 1 else None)  # 0: just released, taken anew below
    if problem is not None:
        os.close(fd)
        raise LockError(f"{path}: the lock file {problem}; nothing was written to it: remove it, "
                        "and find out who made it if it is not yours")
    if group and info.st_uid == os.geteuid():
        os.fchmod(fd, 0o660)  # through the umask: the group's other users must be able to take it too
    return fd


def _names(folder_fd: int, name: str, fd: int) -> bool:
    """Whether `name` in the folder is still the very file open as `fd`."""
    try:
        now = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def _holder(fd: int) -> str:
    """What the holder of a taken lock wrote into it. It writes just after it took the lock: a run
    that lost a race by a hair gives it a moment, to name the winner rather than "another process"."""
    deadline = time.monotonic() + _HOLDER_WAIT_S
    while not (text := os.pread(fd, _HOLDER_BYTES, 0).decode(errors="replace").strip()):
        if time.monotonic() >= deadline:
            return "another process"
        time.sleep(0.001)
    return text


class Lock:
    """An exclusive flock on `<folder>/<name>.lock`, taken without waiting. It is held until
    `release()`, or until this process and every child given `fd` have ended, however they end."""

    def __init__(self, name: str, folder: Path | None = None):
        self.folder = lock_dir() if folder is None else Path(folder)
        self.path = self.folder / (re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".lock")
        self.fd: int | None = None  # while held: a child that must hold the lock with us inherits it
        self._folder_fd: int | None = None

    def try_acquire(self, holder: str) -> str | None:
        """Take the lock and write `holder` into it for whoever finds it taken; None then. If another
        holds it, what that one wrote ("another process" if nothing yet)."""
        assert self.fd is None, f"{self.path} is already held"
        folder_fd = open_folder(self.folder)
        try:
            fd, taken_by = self._take(folder_fd)
        except BaseException:
            os.close(folder_fd)
            raise
        if fd is None:
            os.close(folder_fd)
            return taken_by
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        self.fd, self._folder_fd = fd, folder_fd
        return None

    def _take(self, folder_fd: int) -> tuple[int | None, str]:
        """(descriptor, "") with the flock held on the file that has the name, or (None, its holder)."""
        for _ in range(_RETAKES):
            fd = _open_file(folder_fd, self.path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _names(folder_fd, self.path.name, fd):
                    return fd, ""
            except BlockingIOError:
                taken_by = _holder(fd)
                os.close(fd)
                return None, taken_by
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # released (unlinked) since we opened it: lock the file that has the name now
        raise LockError(f"{self.path}: the lock file was replaced {_RETAKES} times while hil took it; "
                        f"find out what else writes to {self.folder}")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            if _names(self._folder_fd, self.path.name, self.fd):
                os.unlink(self.path.name, dir_fd=self._folder_fd)  # still locked: see the module's doc
        except OSError:
            pass  # e.g. another user's file in a sticky group folder: it stays, and is still a sound lock file
        finally:
            os.close(self.fd)  # closing drops the flock
            os.close(self._folder_fd)
            self.fd = self._folder_fd = None
