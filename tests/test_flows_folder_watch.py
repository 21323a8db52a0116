"""The watch folder's file handling, on real files and a real vault (no Prefect): ingested
files are shredded (or kept on request), refused ones quarantined 0600 outside the folder
with a retention limit, and a failure that may pass is retried, never lost."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from flows.folder_watch import (
    KEPT_DIR,
    FolderWatcher,
    IngestOne,
    purge_quarantine,
    quarantine,
    shred,
)
from ledger.errors import BadInput


def _write(folder: Path, name: str, text: str = "a,b\n1,2\n") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _watcher(tmp_path: Path, ingest: IngestOne, **kw: Any) -> FolderWatcher:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    return FolderWatcher(folder=inbox, quarantine_dir=tmp_path / "home" / "quarantine",
                         ingest=ingest, **kw)


def test_shred_overwrites_before_unlinking(tmp_path: Path) -> None:
    path = _write(tmp_path, "v.csv", "name\nsecret person\n" * 100)
    linked = tmp_path / "other-name"
    os.link(path, linked)  # a second name sees what happened to the bytes
    shred(path)
    assert not path.exists()
    assert linked.read_bytes() == b""  # zeroed and truncated, not just unlinked


def test_settled_file_is_ingested_once_then_nothing_is_left_in_the_folder(
    tmp_path: Path
) -> None:
    seen: list[str] = []
    w = _watcher(tmp_path, lambda p: seen.append(p.name) or {"rows_added": 1})
    _write(w.folder, "v.csv")
    _write(w.folder, "ignored.csv.part")
    _write(w.folder, ".hidden.csv")
    assert w.poll() == 0  # first sight: not settled yet
    assert w.poll() == 1
    assert seen == ["v.csv"] and w.totals.files == 1 and w.totals.counts["rows_added"] == 1
    assert sorted(p.name for p in w.folder.iterdir()) == [".hidden.csv", "ignored.csv.part"]


def test_a_file_still_being_written_waits(tmp_path: Path) -> None:
    w = _watcher(tmp_path, lambda p: {})
    path = _write(w.folder, "v.csv")
    w.poll()
    with path.open("a") as fh:
        fh.write("3,4\n")
    assert w.poll() == 0  # changed since the last poll
    assert w.poll() == 1


def test_refused_file_is_quarantined_0600_outside_the_watch_folder(tmp_path: Path) -> None:
    def refuse(path: Path) -> dict[str, int]:
        raise BadInput("binary content")

    w = _watcher(tmp_path, refuse)
    _write(w.folder, "jane-doe-donors.csv")
    w.poll()
    w.poll()
    assert list(w.folder.iterdir()) == []
    [kept] = list(w.quarantine_dir.iterdir())
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(w.quarantine_dir.stat().st_mode) == 0o700
    assert "jane" not in kept.name  # the original name may be a person's
    assert w.totals.rejected == 1


def test_quarantine_retention_and_size_limit(tmp_path: Path) -> None:
    qdir = tmp_path / "q"
    src = tmp_path / "src"
    src.mkdir()
    files = [quarantine(_write(src, f"f{i}.csv"), qdir) for i in range(5)]
    old = time.time() - 10 * 86400
    os.utime(files[0], (old, old))
    assert purge_quarantine(qdir, retention_seconds=7 * 86400, max_files=10) == 1
    assert purge_quarantine(qdir, retention_seconds=7 * 86400, max_files=2) == 2
    assert len(list(qdir.iterdir())) == 2


def test_keep_policy_moves_the_file_aside_with_a_warning(tmp_path: Path) -> None:
    warnings: list[str] = []
    w = _watcher(tmp_path, lambda p: {}, after_ingest="keep", warn=warnings.append)
    assert warnings and "plaintext" in warnings[0]
    _write(w.folder, "v.csv")
    w.poll()
    w.poll()
    kept = w.folder / KEPT_DIR / "v.csv"
    assert kept.exists() and stat.S_IMODE(kept.stat().st_mode) == 0o600


def test_unknown_after_ingest_policy_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput):
        _watcher(tmp_path, lambda p: {}, after_ingest="archive")


def test_a_transient_failure_keeps_the_file_and_retries_later(tmp_path: Path) -> None:
    calls: list[int] = []

    def flaky(path: Path) -> dict[str, int]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        return {}

    w = _watcher(tmp_path, flaky, retry_seconds=0.3)
    path = _write(w.folder, "v.csv")
    w.poll()
    w.poll()
    assert path.exists() and w.totals.retried == 1
    w.poll()
    assert len(calls) == 1  # not before the retry delay
    time.sleep(0.35)
    w.poll()
    assert not path.exists() and w.totals.files == 1


def test_watcher_on_a_real_vault_stores_and_ledgers_then_shreds(tmp_path: Path) -> None:
    from flows import demo_data
    from vault.access import authenticate
    from vault.db import make_engine
    from vault.home import VaultHome
    from vault.ingest import ingest_path
    from vault.setup import init_home

    home = VaultHome(root=tmp_path / "home")
    init_home(home)
    engine = make_engine(home.db_url)
    admin = authenticate(engine, home, None)

    def ingest(path: Path) -> dict[str, int]:
        r = ingest_path(engine, home, admin, path, "voters")
        return {"rows_added": r.rows_added, "batches": r.batches}

    (tmp_path / "inbox").mkdir()
    w = FolderWatcher(folder=tmp_path / "inbox", quarantine_dir=home.root / "quarantine",
                      ingest=ingest)
    demo_data.write_csv(w.folder / "v.csv", 30, seed=3)
    (w.folder / "bad.csv").write_bytes(b"\x00\x01\x02 not a table")
    w.poll()
    w.poll()
    engine.dispose()
    assert w.totals.files == 1 and w.totals.counts["rows_added"] == 30
    assert w.totals.rejected == 1
    assert [p for p in w.folder.rglob("*")] == []
