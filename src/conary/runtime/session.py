"""Opening a root: lock it, check the runtime's own directories, open the database, recover.

Every runtime command goes through ``open_root``, so a transaction a crash interrupted is finished
or undone before anything else reads or changes the root.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from conary.runtime.cas import ContentStore
from conary.runtime.db import Database
from conary.runtime.errors import RuntimeStateError
from conary.runtime.journal import Journal
from conary.runtime.layout import CAS_DIR, STATE_DIR, Layout, layout
from conary.runtime.safefs import RootFS, ensure_private_dir
from conary.runtime.transaction import Engine, OpCounter


@dataclass
class RootSession:
    root: Path
    layout: Layout
    fs: RootFS
    db: Database
    cas: ContentStore
    journal: Journal
    engine: Engine
    lock_fd: int
    recovered: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.db.close()
        self.fs.close()
        os.close(self.lock_fd)

    def installed(self):
        return self.db.installed()


def _check_root(root: Path) -> None:
    try:
        st = root.stat()
    except FileNotFoundError:
        raise RuntimeStateError(
            "root directory does not exist",
            where=str(root),
            hint=f"create it, then run 'conary --root {root} system init'",
        )
    if not stat.S_ISDIR(st.st_mode):
        raise RuntimeStateError("root is not a directory", where=str(root))


def _is_initialised(root: Path) -> bool:
    return (root / STATE_DIR / "conary.db").is_file()


def init_root(root: str | os.PathLike[str], *, dry_run: bool = False) -> bool:
    """Create the database, content store and journal directory. Returns False if already there
    (under DRY_RUN only says whether it would create them)."""
    path = Path(root).absolute()
    if dry_run:
        return not _is_initialised(path)
    path.mkdir(parents=True, exist_ok=True)
    existed = _is_initialised(path)
    with open_root(path, create=True):
        pass
    return not existed


@contextlib.contextmanager
def open_root(
    root: str | os.PathLike[str], *, create: bool = False, recover: bool = True
) -> Iterator[RootSession]:
    """Lock ROOT, open its database and content store, and recover an interrupted transaction
    (unless RECOVER is False: then ``session.recovered`` says what recovery would do)."""
    lay = layout(root)
    _check_root(lay.root)
    if not create and not _is_initialised(lay.root):
        raise RuntimeStateError(
            "root has no Conary state",
            where=str(lay.root),
            hint=f"initialise it with 'conary --root {lay.root} system init'",
        )
    fs = RootFS(lay.root)
    try:
        # The runtime's own directories must be real directories: a symlink planted there would
        # redirect the database or the content store out of the root.
        ensure_private_dir(fs, STATE_DIR)
        ensure_private_dir(fs, STATE_DIR + "/journal", 0o700)
        ensure_private_dir(fs, CAS_DIR)
        ensure_private_dir(fs, CAS_DIR + "/packs")
        fs.dir_fd(CAS_DIR + "/packs")  # so syncfs() flushes the packs' filesystem when it is a mount
        lock_fd = os.open(lay.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except BaseException:
        fs.close()
        raise
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        db = Database.open(lay.db_path, create=create)
    except BaseException:
        os.close(lock_fd)
        fs.close()
        raise
    counter = OpCounter()
    cas = ContentStore(lay.cas_dir, db, on_mutation=counter)
    journal = Journal(lay.journal_dir)
    engine = Engine(str(lay.root), fs, db, cas, journal, counter)
    session = RootSession(lay.root, lay, fs, db, cas, journal, engine, lock_fd)
    try:
        session.recovered = engine.recover() if recover else engine.pending()
        yield session
    finally:
        session.close()
