"""``import vault`` / ``ledger`` / ``policies`` offer their public names, lazily (issue 13)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("presidio_analyzer", "spacy", "opendp", "prefect", "sqlalchemy", "polars")


def test_importing_the_packages_loads_no_heavy_library() -> None:
    code = ("import sys, vault, ledger, policies, ledger.errors, vault.vocab, policies.vocab; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("package", ["vault", "ledger", "policies"])
def test_every_public_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__, f"{package} offers no names"
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError):
        _ = module.no_such_name


def test_a_name_is_the_object_of_its_module() -> None:
    import ledger
    import policies
    import vault
    from ledger.entry import EntryDraft
    from policies.model import Policy
    from vault.dp import run_release

    assert ledger.EntryDraft is EntryDraft and policies.Policy is Policy
    assert vault.run_release is run_release
    from vault import access  # a submodule stays a submodule

    assert hasattr(access, "authenticate")
