"""The audit report gets the workbench's charts and names the saved checkpoint and this
run's verification apart (each with its size and its root in hex and base64)."""

from __future__ import annotations

import base64
import re
from fractions import Fraction
from pathlib import Path

import pytest

from flows.cli import main
from tests.web_helpers import build
from vault.dp.request import ReleaseRequest
from vault.service import Vault


def test_report_has_charts_and_names_checkpoint_and_verification(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wv = build(tmp_path, monkeypatch)  # saves a checkpoint at the end
    with Vault.open(wv.home, token=wv.tokens["analyst"]) as analyst:
        analyst.release(ReleaseRequest.build("voters", ["party_cd"], ["count"],
                                             Fraction(1, 2)))
    with Vault.open(wv.home) as admin:
        saved = admin.saved_checkpoint()
    assert saved is not None
    saved_size = int(saved.splitlines()[1])
    out = tmp_path / "report.html"
    assert main(["--token", wv.tokens["compliance"], "audit", "report", "--out",
                 str(out)]) == 0
    html = out.read_text("utf-8")
    assert "<script" not in html and "http://" not in html.replace(
        "http://www.w3.org/", "")  # SVG namespaces only: nothing loaded
    assert html.count("<svg") >= 3 and "entries by action" in html
    assert "budget spend over time" in html
    assert "This report&#39;s verification" in html or "This report's verification" in html
    assert "Latest saved signed checkpoint" in html
    verified = int(re.search(r"verified tree size</td><td>(\d+)<", html).group(1))
    shown = int(re.search(r"checkpoint size</td><td>(\d+)", html).group(1))
    assert shown == saved_size < verified
    assert f"consistent with the saved signed checkpoint of size {saved_size}" in html
    root_b64 = saved.splitlines()[2]
    assert root_b64 in html and base64.b64decode(root_b64).hex() in html
    hex_root = re.search(r"verified root \(hex\)</td><td><code>([0-9a-f]{64})<", html).group(1)
    assert base64.b64encode(bytes.fromhex(hex_root)).decode() in html
