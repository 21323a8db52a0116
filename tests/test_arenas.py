"""vault.arenas: an ingest keeps the object allocator's freed arenas for the next batch
instead of unmapping them and faulting them in again (vault/_arenas.c), within a cap,
and leaves the allocator as it found it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.vault_helpers import LAYOUT, file_keyring, voters
from vault import arenas

ROOT = Path(__file__).resolve().parents[1]
native = pytest.mark.skipif(not arenas.NATIVE, reason="vault/_arenas.c not built")


def test_the_module_is_built_where_pip_could_build_it() -> None:
    """The install builds it (gcc and Python's headers are here); a silent fallback would
    cost every ingest its page faults again."""
    assert arenas.NATIVE, "pip install did not build vault._arenas (see its build log)"


# A process of its own: its allocator's state is only this script's. Each round makes and
# drops 1M small bytes objects (~90 arenas); a round's page faults are counted.
_CHURN = textwrap.dedent("""
    import json, resource, sys
    from vault import arenas

    def churn():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(3):
            xs = [bytes(40) + i.to_bytes(8, "little") for i in range(1_000_000)]
            del xs
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    churn()  # the interpreter's own first growth
    out = {"without": churn()}
    with arenas.retained(int(sys.argv[1])):
        churn()  # fills the cache
        out["with"] = churn()
        out["inside"] = arenas.stats()
    out["after"] = arenas.stats()
    out["without_again"] = churn()
    print(json.dumps(out))
""")


def _churn(cap: int) -> dict[str, object]:
    import json

    proc = subprocess.run([sys.executable, "-c", _CHURN, str(cap)], cwd=ROOT, text=True,
                          capture_output=True, timeout=120,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert proc.returncode == 0, proc.stderr
    out: dict[str, object] = json.loads(proc.stdout)
    return out


@native
def test_kept_arenas_are_reused_instead_of_faulted_in_again() -> None:
    out = _churn(arenas.DEFAULT_CAP)
    without, with_, again = out["without"], out["with"], out["without_again"]
    assert isinstance(without, int) and isinstance(with_, int) and isinstance(again, int)
    # without the cache every round maps its arenas afresh: one fault per 4 KiB page
    assert without > 50_000 and again > 50_000
    assert with_ < without / 5, out
    inside, after = out["inside"], out["after"]
    assert isinstance(inside, dict) and isinstance(after, dict)
    assert inside["installed"] == 1 and inside["depth"] == 1
    assert 0 < inside["kept"] <= arenas.DEFAULT_CAP
    assert inside["reused"] > inside["fresh"] > 0
    # given back at the end, the previous allocator in place again
    assert after["installed"] == 0 and after["depth"] == 0 and after["kept"] == 0


@native
def test_the_cap_bounds_what_is_kept() -> None:
    out = _churn(4)
    inside = out["inside"]
    assert isinstance(inside, dict)
    assert inside["cap"] == 4 and inside["kept"] <= 4
    with_, without = out["with"], out["without"]
    assert isinstance(with_, int) and isinstance(without, int)
    assert with_ > without / 2  # 4 arenas of ~90 spare few faults


@native
def test_retained_nests_and_only_the_outermost_gives_back() -> None:
    from vault import _arenas

    outer = arenas.stats()["depth"]  # another test's ingest may not be collected yet
    with arenas.retained(8):
        with arenas.retained(16):
            assert arenas.stats()["depth"] == outer + 2 and arenas.stats()["cap"] >= 16
            xs = [bytes(40) + i.to_bytes(8, "little") for i in range(200_000)]
            del xs
            assert arenas.stats()["kept"] <= arenas.stats()["cap"]
        state = arenas.stats()
        assert state["depth"] == outer + 1 and state["installed"] == 1
    assert arenas.stats()["depth"] == outer
    if outer == 0:
        assert arenas.stats() | {"reused": 0, "fresh": 0} == {
            "installed": 0, "depth": 0, "cap": 0, "kept": 0, "reused": 0, "fresh": 0}
        with pytest.raises(RuntimeError, match="without retain"):
            _arenas.release()
    with pytest.raises(ValueError, match="cap"):
        _arenas.retain(-1)


def test_without_the_module_retained_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(arenas, "_arenas", None)
    with arenas.retained():
        assert arenas.stats()["installed"] == 0


@native
def test_an_ingest_keeps_arenas_while_it_runs_and_leaves_the_allocator_as_it_was(
    engine: Engine, tmp_path: Path,
) -> None:
    from tests.test_vault_pipeline import _source, _verified
    from vault.store import IdentityCache, write_batches

    kr = file_keyring(tmp_path)
    outer = arenas.stats()["depth"]  # another test's ingest may not be collected yet
    ds, src = _source(engine, batches=3)
    results = write_batches(engine.begin, kr, ds_id=ds, dataset="voters", source_id=src,
                            batches=enumerate(voters(300, start=300 * k) for k in range(3)),
                            layout=LAYOUT, actor="tester", cache=IdentityCache())
    first = next(results)
    assert first.added == 300
    assert arenas.stats()["depth"] == outer + 1  # while it runs
    assert [r.added for r in results] == [300, 300]
    assert arenas.stats()["depth"] == outer
    _verified(engine)
    # an ingest given up midway (its generator closed) gives the arenas back too
    ds2, src2 = _source(engine, dataset="more", batches=3)
    partial = write_batches(engine.begin, kr, ds_id=ds2, dataset="more", source_id=src2,
                            batches=enumerate(voters(100, start=9000 + 100 * k)
                                              for k in range(3)),
                            layout=LAYOUT, actor="tester", cache=IdentityCache())
    next(partial)
    assert arenas.stats()["depth"] == outer + 1
    partial.close()
    assert arenas.stats()["depth"] == outer
    if outer == 0:
        assert arenas.stats()["installed"] == 0 and arenas.stats()["kept"] == 0
