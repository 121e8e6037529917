"""The HTML report in a real browser: headless Chromium (Debian's ``chromium``) through Playwright.

Skipped, with the reason, where chromium or Playwright is missing on a developer's machine; CI
sets ``FREEZEBENCH_REQUIRE_BROWSER=1`` (in ``.ci/run``), which turns a missing browser into a
failure. Playwright drives the system's chromium: it downloads no browser of its own.
Screenshots are saved in each test's temporary folder (pytest's ``tmp_path``, e.g.
``/tmp/pytest-of-$USER/pytest-current/test_every_figure_loads_and_nocurrent/report-laptop.png``).
"""

from __future__ import annotations

import os
import shutil

import pytest

from freezebench.report.document import write_report

from .fixtures.records import build

LAPTOP = {"width": 1366, "height": 768}
REQUIRED = os.environ.get("FREEZEBENCH_REQUIRE_BROWSER") == "1"


def chromium_path() -> str:
    """The system chromium (or the Chromium-based browser FREEZEBENCH_CHROMIUM names); skips
    (or, where CI requires the browser, fails) without it."""
    found = (os.environ.get("FREEZEBENCH_CHROMIUM") or shutil.which("chromium")
             or shutil.which("chromium-browser"))
    missing = None if found else ("no 'chromium' on PATH (Debian: apt-get install chromium; or "
                                  "set FREEZEBENCH_CHROMIUM to a Chrome or Chromium binary)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "Playwright is not installed (pip install -e '.[dev]')"
    if missing and REQUIRED:
        pytest.fail(f"{missing}, and FREEZEBENCH_REQUIRE_BROWSER=1 requires the browser test")
    if missing:
        pytest.skip(f"{missing}; the browser test needs it")
    return found


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    results = build.write_records(tmp_path_factory.mktemp("study"), build.study_records())
    return write_report(results)


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # scroll bars shown, as a reader sees them (Playwright hides them by default)
        browser = playwright.chromium.launch(executable_path=executable,
                                             ignore_default_args=["--hide-scrollbars"])
        yield browser
        browser.close()


@pytest.fixture()
def opened(browser, report):
    """A laptop-sized page with the report loaded, and the errors it logged."""
    page = browser.new_page(viewport=LAPTOP)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(report.html.as_uri(), wait_until="load")
    yield page, errors
    page.close()


def test_every_figure_loads_and_nothing_is_logged_as_an_error(opened, report, tmp_path):
    page, errors = opened
    images = page.eval_on_selector_all(
        "img", "imgs => imgs.map(i => ({alt: i.alt, complete: i.complete, "
               "width: i.naturalWidth, height: i.naturalHeight}))")
    assert len(images) == len(report.figures) == 6
    for image in images:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image["alt"]
    screenshot = tmp_path / "report-laptop.png"
    page.screenshot(path=screenshot, full_page=True)
    assert screenshot.stat().st_size > 0
    assert errors == []


def test_page_reads_on_a_laptop_screen(opened):
    page, _ = opened
    layout = page.evaluate("""() => ({
        scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
        body: document.body.scrollWidth,
        wideImages: [...document.images].filter(
            i => i.getBoundingClientRect().right > document.body.getBoundingClientRect().right + 1
        ).map(i => i.alt),
        tables: [...document.querySelectorAll('table')].map(t => ({
            right: t.getBoundingClientRect().right, overflow: getComputedStyle(t).overflowX,
            clipped: t.scrollWidth > t.clientWidth})),
        bodyRight: document.body.getBoundingClientRect().right,
        fontPx: parseFloat(getComputedStyle(document.body).fontSize),
    })""")
    assert layout["body"] <= layout["inner"] and layout["scroll"] <= layout["inner"], layout
    assert layout["wideImages"] == []
    assert layout["tables"]
    for table in layout["tables"]:
        assert table["right"] <= layout["bodyRight"] + 1  # a wide table scrolls in its own box
        assert not table["clipped"] or table["overflow"] in ("auto", "scroll")
    assert layout["fontPx"] >= 15


def test_a_wide_table_scrolls_with_the_strategy_column_in_view(opened, tmp_path):
    page, _ = opened
    table = page.locator("table").first
    assert table.evaluate("t => t.scrollWidth > t.clientWidth")  # the results table is wide
    table.evaluate("t => { t.scrollLeft = t.scrollWidth; }")
    lefts = table.evaluate("t => [t.getBoundingClientRect().left, t.scrollLeft, "
                           "t.querySelector('tbody td').getBoundingClientRect().left]")
    table_left, scrolled, strategy_left = lefts
    assert scrolled > 100 and abs(strategy_left - table_left) <= 2
    table.screenshot(path=tmp_path / "results-table-scrolled.png")


def test_page_prints_whole_figures_and_readable_tables(opened, tmp_path):
    page, errors = opened
    page.emulate_media(media="print")
    page.set_viewport_size({"width": 794, "height": 1123})  # A4 at 96 dpi
    printed = page.evaluate("""() => ({
        figures: [...document.images].map(i => getComputedStyle(i.closest('p')).breakInside),
        captions: [...document.images].map(i => getComputedStyle(i.closest('p')).breakAfter),
        headings: [...document.querySelectorAll('h2, h3')].map(h => getComputedStyle(h).breakAfter),
        tables: [...document.querySelectorAll('table')].map(t => ({
            overflow: getComputedStyle(t).overflowX, right: t.getBoundingClientRect().right,
            wrap: getComputedStyle(t.querySelector('td')).whiteSpace})),
        bodyRight: document.body.getBoundingClientRect().right,
        scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
    })""")
    assert set(printed["figures"]) == {"avoid"} and set(printed["captions"]) == {"avoid"}
    assert set(printed["headings"]) == {"avoid"}
    for table in printed["tables"]:  # on paper nothing hides behind a scroll bar: cells wrap
        assert table["overflow"] == "visible" and table["wrap"] == "normal", table
        assert table["right"] <= printed["bodyRight"] + 1, table
    assert printed["scroll"] <= printed["inner"]
    page.screenshot(path=tmp_path / "report-print.png", full_page=True)
    pdf = page.pdf(format="A4", print_background=True)
    assert pdf.startswith(b"%PDF-")
    assert errors == []
