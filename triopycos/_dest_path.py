"""The default ``dest_path``: where files from peers land when none is given.

pycos uses the shared temporary directory, which every user of the machine can
write to: another user could read what peers send, or plant the folder (or a
symlink) first and have files land where they choose.  The default here is a
folder of the user's own, ``$XDG_DATA_HOME/triopycos/files`` (normally
``~/.local/share/triopycos/files``), or, with no usable home, a per-user folder in
the temporary directory, ``triopycos-<uid>``.  It is made with mode 0700; one that
exists must be a real folder owned by the user, and is made 0700 again if it is not.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile

from .values import PycosError

__all__ = ["default_dest_path", "make_private"]

log = logging.getLogger("triopycos.files")


def default_dest_path() -> str:
    """The folder received files go to when ``dest_path`` is not given."""
    data = os.environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(data):  # the XDG rule: a relative value is ignored
        home = os.path.expanduser("~")
        if not os.path.isabs(home) or not os.path.isdir(home):
            # No home to keep files in (a service account): a folder of this
            # user's own in the temporary directory, checked like any other.
            uid = _uid()
            return os.path.join(
                tempfile.gettempdir(), f"triopycos-{'user' if uid is None else uid}"
            )
        data = os.path.join(home, ".local", "share")
    return os.path.join(data, "triopycos", "files")


def make_private(path: str) -> None:
    """Make ``path`` a folder only this user can enter (mode 0700), or check that
    it is one.  ``PycosError`` if it is a symlink, not a folder, or owned by another
    user; group or other permission bits are taken away (with a warning)."""
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, exist_ok=True)
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise PycosError(f"cannot make the default dest_path {path}: {exc}") from exc
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a folder"
        raise PycosError(
            f"the default dest_path {path} is {what}: remove it, or pass dest_path=..."
        )
    uid = _uid()
    if uid is not None and st.st_uid != uid:
        raise PycosError(
            f"the default dest_path {path} belongs to uid {st.st_uid}, not to this "
            f"user (uid {uid}): its owner could read or replace received files; "
            "remove it, or pass dest_path=..."
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode != 0o700:
        os.chmod(path, 0o700)
        if mode & 0o077:
            log.warning(
                "the default dest_path %s was open to other users (mode %o): made it 0700",
                path,
                mode,
            )


def _uid() -> int | None:
    getuid = getattr(os, "getuid", None)  # (not on Windows)
    return getuid() if getuid is not None else None
