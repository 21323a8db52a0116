"""Files that commands write for people (``--out``, ``--chart``): checked first, published whole.

Every command that writes a file the caller named goes through here, in two steps:

1. :func:`check_output`, *before* any budget is charged or any ledger entry is made:
   the folder must exist and be writable, the path must not be a folder, must not
   point (through ``..`` or symlinks) into the vault home or at the SQLite database,
   and must not name an existing file unless ``--force`` is given. A bad path is
   ``BadInput`` (exit 2, one line), so nothing is spent on a result that could not
   be saved. Its messages name the option, never the path: what a caller types for an
   output (``--out jane-doe.json``) may name a person, and errors end up in logs.
2. :func:`publish`: the writer fills a private temporary folder next to the target
   (so sidecars such as ``FILE.csv.meta.json`` come along), then each file is moved
   into place: without ``--force`` by ``link`` (fails if a file appeared meanwhile:
   never clobbers), with ``--force`` by an atomic ``replace``. A reader never sees a
   half-written file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from vault.errors import BadInput
from vault.home import VaultHome

SIDECAR_SUFFIXES: dict[str, tuple[str, ...]] = {".csv": (".meta.json",)}


def _protected(home: VaultHome) -> tuple[list[Path], list[Path]]:
    """(folders, files) no output may land in / on: the vault home and its database."""
    from sqlalchemy.engine import make_url  # not at import: the CLI starts without SQLAlchemy

    folders = [home.root.resolve()]
    files: list[Path] = []
    try:
        url = make_url(home.db_url)
    except Exception:  # a malformed URL is reported where the database is opened
        return folders, files
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        db = Path(url.database.removeprefix("file:").split("?", 1)[0]).resolve()
        files += [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"),
                  db.with_name(db.name + "-journal")]
    return folders, files


def check_output(path: Path, *, option: str, force: bool, home: VaultHome | None = None,
                 suffixes: Sequence[str] = ()) -> Path:
    """The absolute path to write ``option``'s file to, or BadInput saying why not."""
    home = home if home is not None else VaultHome.from_env()
    if suffixes and path.suffix.lower() not in suffixes:
        raise BadInput(f"{option} must end in one of {', '.join(suffixes)}")
    if not path.name or path.name in (".", ".."):
        raise BadInput(f"{option} must name a file, not a folder")
    target = path.expanduser().absolute()
    try:
        resolved = target.resolve()
    except (OSError, RuntimeError):
        raise BadInput(f"{option}: the path cannot be resolved (symlink loop?)") from None
    folders, files = _protected(home)
    targets = [resolved] + [resolved.with_name(resolved.name + s)
                            for s in SIDECAR_SUFFIXES.get(resolved.suffix.lower(), ())]
    for t in targets:
        if any(t == f or t.is_relative_to(f) for f in folders) or t in files:
            raise BadInput(f"{option} is inside the vault home; write outputs somewhere "
                           "else")
    parent = resolved.parent
    if not parent.is_dir():
        raise BadInput(f"{option}: its folder does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"{option}: its folder is not writable (read-only file system or "
                       "permissions)")
    for t in targets:
        if t.is_dir():
            raise BadInput(f"{option} names a folder; name a file")
        if t.exists() or t.is_symlink():
            if not force:
                which = "the file" if t == resolved else f"its {t.name[len(resolved.name):]} file"
                raise BadInput(f"{option}: {which} already exists; use --force to overwrite it")
            if not t.is_file():
                raise BadInput(f"{option} names something other than a regular file; "
                               "refusing to overwrite it")
    return resolved


def publish(target: Path, write: Callable[[Path], object], *, force: bool) -> Path:
    """Run ``write(tmp_path)`` in a private folder beside ``target``, then move its files in."""
    parent = target.parent
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise BadInput(f"cannot write to the output's folder ({exc.strerror or 'OS error'})") \
            from None
    try:
        write(work / target.name)
        made = sorted(work.iterdir(), key=lambda p: p.name != target.name)  # the main file first
        for f in made:
            final = parent / f.name
            if force:
                os.replace(f, final)
                continue
            try:
                os.link(f, final)
            except FileExistsError:
                raise BadInput("an output file of that name appeared while it was being "
                               "written; use --force to overwrite it") from None
            except OSError:  # a file system without hard links: exclusive create + copy
                with open(f, "rb") as src, open(final, "xb") as dst:
                    shutil.copyfileobj(src, dst)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def publish_json(target: Path, document: object, *, force: bool) -> Path:
    """Write ``document`` as indented JSON to ``target`` through :func:`publish`."""
    return publish(target, lambda p: p.write_text(json.dumps(document, indent=1) + "\n",
                                                   encoding="utf-8"), force=force)
