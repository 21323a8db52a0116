"""The workbench in a real headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium) against the real app served by uvicorn on a loopback port, over a real SQLite
vault of synthetic data. One browser per module; explicit waits with generous timeouts.

Screenshots go to ``tests/artifacts/`` (git-ignored); with
``UPDATE_README_SCREENSHOTS=1`` the two README images in ``docs/img/`` are rewritten.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.web_helpers import WebVault, build

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run")
WAIT = 90  # seconds: the machine may be loaded
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
README_IMG = ROOT / "docs" / "img"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(DRIVER).exists()),
                       reason="needs Debian's chromium and chromium-driver (.ci/run "
                              "installs them)"),
]


@dataclass
class Site:
    vault: WebVault
    base: str
    driver: Any
    downloads: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    import uvicorn

    from flows.api import create_app
    from vault.db import make_engine

    tmp = tmp_path_factory.mktemp("webui")
    with pytest.MonkeyPatch.context() as mp:
        wv = build(tmp, mp)
        engine = make_engine(wv.home.db_url)
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(wv.home, engine), host="127.0.0.1",
                                               port=port, log_level="warning",
                                               access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + WAIT
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        downloads = tmp / "downloads"
        downloads.mkdir()
        options = Options()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        options.add_experimental_option("prefs", {
            "download.default_directory": str(downloads), "download.prompt_for_download": False})
        driver = webdriver.Chrome(service=Service(DRIVER), options=options)
        try:
            driver.set_window_size(1280, 1000)
            driver.set_page_load_timeout(WAIT)
            driver.execute_cdp_cmd("Browser.setDownloadBehavior", {
                "behavior": "allow", "downloadPath": str(downloads)})
            yield Site(wv, f"http://127.0.0.1:{port}", driver, downloads)
        finally:
            driver.quit()
            server.should_exit = True
            thread.join(timeout=30)
            engine.dispose()


def _wait(site: Site, cond: Any, what: str) -> Any:
    return WebDriverWait(site.driver, WAIT, poll_frequency=0.2,
                         ignored_exceptions=(StaleElementReferenceException,),
                         ).until(cond, message=what)


def _login(site: Site, role: str, page: str) -> None:
    d = site.driver
    d.get(site.base + "/")
    box = _wait(site, lambda d: d.find_element(By.ID, "token"), "token box")
    box.send_keys(site.vault.tokens[role])
    d.find_element(By.ID, "signin").click()
    _wait(site, lambda d: d.current_url.endswith("/web/" + page), f"{role} lands on {page}")
    _wait(site, lambda d: d.execute_script("return document.body.dataset.ready") == "1",
          f"{page} page ready")


def _shot(site: Site, name: str, element: Any = None, *, readme: bool = False) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / f"{name}.png"
    if element is None:
        site.driver.save_screenshot(str(target))
    else:
        element.screenshot(str(target))
    if readme and os.environ.get("UPDATE_README_SCREENSHOTS") == "1":
        README_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, README_IMG / f"{name}.png")


def _text(site: Site, css: str) -> str:
    return str(site.driver.find_element(By.CSS_SELECTOR, css).text)


def test_each_role_signs_in_to_its_view(site: Site) -> None:
    for role, page in (("analyst", "analyst"), ("compliance", "compliance"),
                       ("steward", "steward")):
        _login(site, role, page)
        assert f"{role}-1 ({role})" in _text(site, "#nav")
        # the token lives in session storage only, never in the URL or a cookie
        assert site.vault.tokens[role] not in site.driver.current_url
        assert site.driver.get_cookies() == []
        _shot(site, f"signed-in-{role}")


def _download(site: Site, fmt: str, seq: str) -> Path:
    target = site.downloads / f"release-{seq}.{fmt}"
    target.unlink(missing_ok=True)
    site.driver.find_element(By.ID, f"dl-{fmt}").click()
    _wait(site, lambda d: target.exists() and target.stat().st_size > 0
          and not (site.downloads / f"{target.name}.crdownload").exists(), f"{fmt} download")
    return target


def test_analyst_composes_previews_releases_charts_and_downloads(site: Site) -> None:
    import polars as pl

    _login(site, "analyst", "analyst")
    d = site.driver
    d.find_element(By.CSS_SELECTOR, "#groupby input[value=party_cd]").click()
    d.find_element(By.ID, "purpose").send_keys("turnout-planning")
    d.find_element(By.ID, "epsilon").clear()
    d.find_element(By.ID, "epsilon").send_keys("0.5")
    d.find_element(By.ID, "preview").click()
    _wait(site, lambda d: d.find_elements(By.ID, "cost"), "preview shown")
    assert _text(site, "#cost") == "0.5"
    assert "after this release 1.50" in _text(site, "#budget-after")  # 2 - 0.5
    assert "count" in _text(site, "#preview-table")
    d.find_element(By.ID, "release").click()
    _wait(site, lambda d: d.find_elements(By.ID, "release-done"), "release done")
    svg = _wait(site, lambda d: d.find_element(By.CSS_SELECTOR, "#release-chart svg"),
                "chart drawn")
    chart_text = " ".join(t.get_attribute("textContent") or ""
                          for t in svg.find_elements(By.TAG_NAME, "text"))
    cell = "#result-table tbody tr td:nth-child({})"
    values = [c.text for c in d.find_elements(By.CSS_SELECTOR, cell.format(3))]
    groups = [c.text for c in d.find_elements(By.CSS_SELECTOR, cell.format(1))]
    assert len(values) == 6 and "DEM" in groups  # the policy's six public party keys
    for v in values:
        assert v in chart_text  # every released value is drawn
    assert int(svg.get_attribute("width") or 0) > 100
    assert len(svg.find_elements(By.CSS_SELECTOR, "path, rect, line")) > len(values)
    _wait(site, lambda d: d.find_elements(By.CSS_SELECTOR, "#budget-chart svg"), "budget chart")
    _wait(site, lambda d: d.find_elements(By.CSS_SELECTOR, "#history-table tbody tr"),
          "history")
    section = d.find_element(By.ID, "release-chart").find_element(By.XPATH, "..")
    d.execute_script("arguments[0].scrollIntoView()", section)
    _shot(site, "analyst-chart", section, readme=True)
    seq = _text(site, "#release-done").split("ledger entry ")[1].split(")")[0]
    shown = {g: float(v.replace(",", "")) for g, v in zip(groups, values, strict=True)}
    csv = pl.read_csv(_download(site, "csv", seq))
    assert {r["party_cd"]: round(r["count"], 1) for r in csv.to_dicts()} == shown
    assert (csv["count_accuracy"] > 0).all()
    pq = _download(site, "parquet", seq)
    assert {r["party_cd"]: round(r["count"], 1)
            for r in pl.read_parquet(pq).to_dicts()} == shown
    assert "civicvault.release" in pl.read_parquet_metadata(pq)
    doc = json.loads(_download(site, "json", seq).read_text())
    assert doc["accuracy"]["confidence"] == 0.95
    assert {r["party_cd"]: round(r["count"], 1) for r in doc["rows"]} == shown
    # segmentation: centroids and sizes drawn
    d.find_element(By.ID, "run-segment").click()
    _wait(site, lambda d: d.find_elements(By.ID, "segment-done"), "segments released")
    assert d.find_elements(By.CSS_SELECTOR, "#centroids svg")
    assert d.find_elements(By.CSS_SELECTOR, "#sizes svg")
    _shot(site, "analyst-segments")


def test_compliance_sees_health_and_filters_the_ledger(site: Site) -> None:
    _login(site, "compliance", "compliance")
    d = site.driver
    _wait(site, lambda d: d.find_elements(By.ID, "verdict"), "verdict")
    assert "VERIFIED" in _text(site, "#verdict")
    assert "Latest signed checkpoint" in _text(site, "#health")
    _wait(site, lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline-actor svg"), "timeline")
    _wait(site, lambda d: d.find_elements(By.CSS_SELECTOR, "#entries-table tbody tr"), "rows")
    d.set_window_size(1280, 1700)
    try:
        _shot(site, "compliance", readme=True)
    finally:
        d.set_window_size(1280, 1000)
    d.find_element(By.ID, "f-principal").send_keys("analyst-1")
    d.find_element(By.ID, "f-action").send_keys("release.dp")
    d.find_element(By.ID, "apply").click()

    def filtered(d: Any) -> int:
        rows = d.find_elements(By.CSS_SELECTOR, "#entries-table tbody tr")
        cells = [[c.text for c in r.find_elements(By.TAG_NAME, "td")] for r in rows]
        ok = bool(cells) and all(c[2] == "analyst-1" and c[3] == "release.dp" for c in cells)
        return len(cells) if ok else 0

    assert _wait(site, filtered, "filtered to the analyst's releases") >= 1
    assert "accuracy: count ±" in _text(site, "#entries-table")
    assert "matching entries" in _text(site, "#page-info")
    d.find_element(By.ID, "clear").click()
    d.find_element(By.ID, "tab-denials").click()

    def denials(d: Any) -> bool:
        cells = [c.text for c in d.find_elements(
            By.CSS_SELECTOR, "#entries-table tbody tr td:nth-child(4)")]
        return bool(cells) and set(cells) == {"policy.denied"}

    _wait(site, denials, "denials tab")
    assert "reason" in _text(site, "#entries-table")
    _shot(site, "compliance-denials")


def test_steward_sees_policy_erasures_and_rotations(site: Site) -> None:
    _login(site, "steward", "steward")
    _wait(site, lambda d: d.find_elements(By.ID, "policy-sha"), "policy shown")
    assert len(_text(site, "#policy-sha")) == 64
    # the steward may not list principals: the page says so instead of failing
    assert "403" in _text(site, "#principals")
    # an erasure request, through the form: ledgered, listed, the value never shown
    d = site.driver
    d.find_element(By.ID, "e-dataset").send_keys("voters")
    d.find_element(By.ID, "e-column").send_keys("voter_reg_num")
    d.find_element(By.ID, "e-value").send_keys("8100005")
    d.find_element(By.CSS_SELECTOR, "#erase button[type=submit]").click()
    _wait(site, lambda d: "Erased; ledger entry" in _text(site, "#e-msg"), "erased")
    _wait(site, lambda d: d.find_elements(By.CSS_SELECTOR, "#erasures-table tbody tr"),
          "erasure listed")
    assert "vault.erase" in _text(site, "#erasures-table")
    assert "8100005" not in d.find_element(By.TAG_NAME, "body").text
    _shot(site, "steward")


def _blocked_patterns(origin: str) -> list[str]:
    """URL patterns that block every request whose URL does not start with ``origin``."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789.-:[]@/_~%"
    rest = origin.split("://", 1)[1] + "/"
    out = ["https://*", "ws://*", "wss://*", "ftp://*", "file://*"]
    for i, ch in enumerate(rest):
        out += [f"http://{rest[:i]}{c}*" for c in alphabet if c != ch]
    return out


def test_no_request_leaves_the_server(site: Site) -> None:
    d = site.driver
    d.get_log("performance")  # drain what earlier tests logged
    d.get_log("browser")
    d.execute_cdp_cmd("Network.enable", {})
    d.execute_cdp_cmd("Network.setBlockedURLs", {"urls": _blocked_patterns(site.base)})
    try:
        for role, page in (("analyst", "analyst"), ("compliance", "compliance"),
                           ("steward", "steward")):
            _login(site, role, page)
            time.sleep(1.0)  # late requests (images, fonts) would show now
            resources = d.execute_script(
                "return performance.getEntriesByType('resource').map(e => e.name)")
            assert resources and all(r.startswith(site.base + "/") for r in resources)
        urls: list[str] = []
        blocked: list[str] = []
        for item in d.get_log("performance"):
            msg = json.loads(item["message"])["message"]
            if msg["method"] == "Network.requestWillBeSent":
                urls.append(msg["params"]["request"]["url"])
            elif msg["method"] == "Network.loadingFailed" and msg["params"].get("blockedReason"):
                blocked.append(msg["params"]["requestId"])
        assert urls, "the performance log saw no request"
        # and the pages broke no rule of their Content-Security-Policy (inline script or
        # style, foreign source): Chromium reports each violation on the console
        console = [m["message"] for m in d.get_log("browser")]
        assert not [m for m in console if "Content Security Policy" in m], console
        outside = [u for u in urls if not u.startswith((site.base + "/", "data:", "blob:"))]
        assert outside == [] and blocked == []
    finally:
        with contextlib.suppress(WebDriverException):
            d.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
