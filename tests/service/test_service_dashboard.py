"""The dashboard in headless Chromium (Debian's, through Playwright; no browser download)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from logwarden.detect import Detector

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.mark.slow
def test_dashboard_lists_explains_and_takes_feedback(
    sim_model: Any, serve: Any, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is needed (.ci/run installs it: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    s = serve(["--model", str(sim_model.path), "--store", str(tmp_path / "v.db"),
               "--session-timeout", "0"])  # fmt: skip
    lines = sim_model.mixed_lines
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(s.url + "/")
        page.wait_for_selector("#empty:not([hidden])")
        # Lines arrive after the page is open: anomalies show up without a reload.
        httpx.post(s.url + "/api/v1/logs", content="\n".join(lines).encode(),
                   headers={"Content-Type": "text/plain"}, timeout=30)  # fmt: skip
        page.wait_for_selector("tr.anomaly", timeout=30_000)
        httpx.post(s.url + "/api/v1/flush?wait=true", timeout=60)
        first = page.locator("tr.anomaly").last  # the oldest, at the bottom
        session = first.locator("td").nth(1).inner_text()
        vid = first.locator("td").nth(0).inner_text()
        first.click()
        page.wait_for_selector("#session-view:not([hidden])")
        page.wait_for_function("document.querySelector('#s-explain').textContent.length > 0")
        assert session in page.locator("#s-title").inner_text()
        assert "ANOMALY" in page.locator("#s-explain").inner_text()
        page.wait_for_selector("#s-lines li")
        assert page.locator("#s-lines li.hit").count() == 1
        # The workflow picture with the divergence marked, drawn by the service (Graphviz).
        page.wait_for_selector("#s-workflow:not([hidden])")
        page.wait_for_function(
            "document.querySelector('#s-workflow-img').complete && "
            "document.querySelector('#s-workflow-img').naturalWidth > 0"
        )
        assert page.locator("#s-diagnosis-summary").inner_text().startswith("workflow ")
        page.screenshot(path=str(tmp_path / "session.png"), full_page=True)
        before = page.locator("#models li.model").first.inner_text()
        assert before.startswith("v1 (in use)")
        page.click("#btn-normal")
        page.wait_for_function(
            "document.querySelector('#fb-result').textContent.includes('stored')"
        )
        fb = httpx.get(s.url + "/api/v1/feedback").json()
        assert [(f["session"], f["label"]) for f in fb] == [(session, "normal")]
        if callable(getattr(Detector, "partial_fit", None)):
            # The online update trains and switches: the history shows a new version in use.
            page.wait_for_function(
                "document.querySelector('#models').dataset.current === '2'", timeout=120_000
            )
            assert page.locator("#models li.model").first.inner_text().startswith("v2 (in use)")
        else:
            assert "no online update" in page.locator("#online").inner_text()
        drift = httpx.get(s.url + "/api/v1/drift").json()
        if drift["available"]:  # the drift tracker of logwarden.online
            page.wait_for_function(
                "document.querySelector('#drift').textContent.includes('drift warning')"
            )
        else:
            assert "no drift tracker" in page.locator("#drift").inner_text()
        page.screenshot(path=str(tmp_path / "after-feedback.png"), full_page=True)
        # After a reload the list and the anomaly's page still show the feedback given.
        page.goto(s.url + "/")
        page.reload()
        row = page.locator(f"tr.anomaly[data-id='{vid}']")
        row.wait_for()
        assert row.locator("td").last.inner_text() == "normal"
        page.goto(s.url + f"/#/anomaly/{vid}")
        page.wait_for_function(
            "document.querySelector('#fb-result').textContent.includes('stored (normal)')"
        )
        if callable(getattr(Detector, "partial_fit", None)):
            assert "learnt by model v2" in page.locator("#fb-result").inner_text()
        browser.close()
    # Everything the page loaded came from the service itself.
    assert requests and all(u.startswith(s.url) for u in requests)
