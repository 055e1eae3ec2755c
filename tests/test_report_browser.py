"""The report in a real browser (headless Chromium): images decode, no network request, no console error.

Skipped, with the reason, only where no Chromium binary is found (`.ci/run` installs
Debian's `chromium` as root; `CHROMIUM=/path/to/chrome` points at another one).
"""

from __future__ import annotations

import pytest

from pipeline.report.report import build_report
from tests.chromium import Chromium, find_chromium
from tests.conftest import shrunk_params
from tests.report_fixtures import write_inputs

BAD_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>bad</title></head><body>
<img src="http://example.invalid/remote.png" alt="remote">
<img src="data:image/png;base64,AAAA" alt="broken">
<script>console.error("boom"); undefinedFunction();</script>
</body></html>
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium found: `apt-get install chromium` (Debian; .ci/run does it as root) or set CHROMIUM")
    with Chromium(binary, tmp_path_factory.mktemp("chromium")) as b:
        yield b


def test_report_opens_offline_with_every_image_decoded_and_no_error(browser, tmp_path):
    params = shrunk_params(data={"source": "nyudv2"}, mlflow={"enabled": False})
    write_inputs(tmp_path, params)
    written = build_report(params, tmp_path)
    page = browser.load(written["report_html"])
    # curves, prediction grid, scene types, error by depth, pose error by gap, pose trajectories
    assert len(page.images) == 6, page.images
    assert all(img["src"].startswith("data:image/png;base64,") and img["width"] > 0 for img in page.images), page.images
    assert page.offsite_requests() == [], f"the report made network requests ({browser.version})"
    assert page.errors == [], f"console errors ({browser.version}):\n{browser.log_tail()}"
    assert page.url in page.requests  # requests are seen at all: the page's own load is one


def test_the_checks_fail_on_a_page_that_is_not_self_contained(browser, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(BAD_PAGE, encoding="utf-8")
    page = browser.load(bad)
    assert page.offsite_requests() == ["http://example.invalid/remote.png"]
    assert [img["width"] for img in page.images] == [0, 0]  # neither decodes: one unreachable, one corrupt
    assert any(e == "console.error: boom" for e in page.errors)
    assert any(e.startswith("uncaught:") for e in page.errors)
    assert any("example.invalid" in e for e in page.errors)  # the failed load is logged as an error too


def test_a_missing_file_image_is_caught(browser, tmp_path):
    """A relative <img> to a file that is not there: not a network request, but it does not decode."""
    page_path = tmp_path / "missing.html"
    page_path.write_text('<!doctype html><img src="figures/nope.png" alt="x">', encoding="utf-8")
    page = browser.load(page_path)
    assert [img["width"] for img in page.images] == [0]
    assert page.offsite_requests() == [(tmp_path / "figures" / "nope.png").as_uri()]
