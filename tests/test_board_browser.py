"""The built page in a real browser: headless Chromium (Debian's package) loads it from file://.

The test installs chromium + chromium-driver with apt-get when they are missing and skips, saying
why, only when that is impossible. It leaves a screenshot in its tmp dir and prints the path.
"""
from __future__ import annotations

import warnings

import pytest
from test_board_util import Browser, ensure_chromium, meta_for, synthetic_board, synthetic_results, write_submission

from sde_tasks.board.build import build

EVIL = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">evil/model'


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    found = ensure_chromium()
    if isinstance(found, str):
        warnings.warn(f"NO BROWSER TEST: {found}", stacklevel=1)  # listed in pytest's warnings summary
        pytest.skip(f"NO BROWSER TEST: {found}")
    session = Browser(*found, profile=tmp_path_factory.mktemp("chromium-profile"))
    yield session
    session.close()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    board = synthetic_board(tmp_path_factory.mktemp("board"), 12)
    values = {"kappa": 0.123456, "accuracy": 0.5, "exact_match": 0.25, "format_error_rate": 0.0}
    write_submission(board, "evil", meta_for(EVIL, "last-nomi-natural-ou-text-none"),
                     synthetic_results({"sde_masa_id": values}))
    _, index, _ = build(board)
    return index


def visible_rows(browser, table: str) -> list[dict]:
    return browser.js(
        "return Array.from(document.querySelectorAll(arguments[0] + ' tbody tr'))"
        ".filter(r => !r.hidden).map(r => ({format: r.dataset.format, design: r.dataset.design,"
        " kappa: parseFloat(r.querySelector('td[data-metric=kappa]').dataset.sort)}));", table)


def test_page_sorts_filters_and_escapes(browser, page, tmp_path, capsys):
    browser.get(page.as_uri())
    assert browser.js("return document.title") == "Sample Design Engineering leaderboard"

    # user text is shown as text: the <script> and the onerror never ran, no element was injected
    texts = [browser.text(c) for c in browser.find_all("#table-sde_masa_id tbody td:first-child")]
    assert EVIL in texts, texts
    assert browser.js("return window.__pwned === undefined")
    assert browser.js("return document.scripts.length") == 1
    assert browser.js("return document.querySelectorAll('tbody img, tbody script').length") == 0

    # the plots beside the page load from file://
    widths = browser.js("return Array.from(document.images).map(i => i.complete ? i.naturalWidth : -1)")
    assert widths and all(w > 0 for w in widths), widths

    # show one task; sort by kappa (ascending, then descending)
    browser.click(browser.find("#task option[value='sde_masa_id']"))
    assert browser.js("return document.querySelector('section[data-task=sde_ed]').hidden")
    header = browser.find("#table-sde_masa_id th[data-metric=kappa] button")
    assert browser.text(header).startswith("kappa")
    browser.click(header)
    kappas = [r["kappa"] for r in visible_rows(browser, "#table-sde_masa_id")]
    assert kappas == sorted(kappas) and len(kappas) == 13
    browser.click(header)
    kappas = [r["kappa"] for r in visible_rows(browser, "#table-sde_masa_id")]
    assert kappas == sorted(kappas, reverse=True)

    # filter by design: one axis, then a variant id typed in the search box
    browser.click(browser.find("select[data-axis='format'] option[value='natural']"))
    rows = visible_rows(browser, "#table-sde_masa_id")
    assert rows and all(r["format"] == "natural" for r in rows)
    assert len(rows) < 13
    assert browser.text(browser.find("#count")) == f"{len(rows)} of 13 rows shown"
    browser.type(browser.find("#search"), "last-nomi-natural-ou-text-none")
    rows = visible_rows(browser, "#table-sde_masa_id")
    assert {r["design"] for r in rows} == {"last-nomi-natural-ou-text-none"}

    browser.js("const s = document.getElementById('search'); s.value = ''; s.dispatchEvent(new Event('input'));"
               "window.scrollTo(0, 0);")
    shot = browser.screenshot(tmp_path / "leaderboard.png")
    assert shot.stat().st_size > 10_000
    with capsys.disabled():
        print(f"\nleaderboard page screenshot: {shot}")
