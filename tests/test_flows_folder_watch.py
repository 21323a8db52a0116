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
    kw.setdefault("settle_seconds", 0.0)  # these tests poll back to back
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
                      ingest=ingest, settle_seconds=0.0)
    demo_data.write_csv(w.folder / "v.csv", 30, seed=3)
    (w.folder / "bad.csv").write_bytes(b"\x00\x01\x02 not a table")
    w.poll()
    w.poll()
    engine.dispose()
    assert w.totals.files == 1 and w.totals.counts["rows_added"] == 30
    assert w.totals.rejected == 1
    assert [p for p in w.folder.rglob("*")] == []


def test_a_file_written_recently_is_not_taken_until_it_has_been_quiet(tmp_path: Path) -> None:
    """A writer that pauses between two writes (same size on two polls 0.25 s apart) is
    not caught half-way: the file must also be unwritten for ``settle_seconds``."""
    seen: list[bytes] = []
    w = _watcher(tmp_path, lambda p: seen.append(p.read_bytes()) or {"rows_added": 1},
                 settle_seconds=0.8)
    path = w.folder / "v.csv"
    with path.open("wb") as fh:
        fh.write(b"a,b\n1,2\n")
        fh.flush()
        assert w.poll() == 0 and w.poll() == 0  # same stamp twice, but written just now
        fh.write(b"3,4\n")
    time.sleep(0.9)
    assert w.poll() == 0  # the second write changed the stamp: seen once more
    assert w.poll() == 1
    assert seen == [b"a,b\n1,2\n3,4\n"]


def test_a_file_that_changes_while_ingested_is_neither_shredded_nor_quarantined(
    tmp_path: Path
) -> None:
    """If the file grows during the ingest, the part read may be incomplete: the file is
    kept and taken again, whole, once it settles; a refusal of the partial read does not
    quarantine it."""
    reads: list[bytes] = []

    def ingest(p: Path) -> dict[str, int]:
        reads.append(p.read_bytes())
        if len(reads) == 1:
            with p.open("ab") as fh:  # the writer is still going
                fh.write(b"5,6\n")
            os.utime(p, ns=(time.time_ns(), time.time_ns() - 10**9))  # a new stamp
            raise BadInput("ragged row")
        return {"rows_added": 3}

    w = _watcher(tmp_path, ingest)
    _write(w.folder, "v.csv", "a,b\n1,2\n3,")
    assert w.poll() == 0 and w.poll() == 1
    assert w.totals.rejected == 0 and w.totals.retried == 1
    assert (w.folder / "v.csv").exists()
    assert not (tmp_path / "home" / "quarantine").exists()
    assert w.poll() == 0  # the new stamp is seen for the first time
    assert w.poll() == 1
    assert reads[-1] == b"a,b\n1,2\n3,5,6\n" and w.totals.files == 1
    assert list(w.folder.iterdir()) == []
