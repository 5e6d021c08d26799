"""The static site in a real headless Chromium (Debian's, driven by Playwright), at a
desktop width and a phone's: tables render, a click on a header sorts, the filters hide
settings, the search box finds a defense's rows, the plots load, the defense column
stays in view when a wide table scrolls sideways, and a defense's page shows its rows."""
import contextlib
import os
import shutil
from pathlib import Path

import pytest

import leaderboard
from leaderboard import metadata
from tests.leaderboard_fixtures import results, tiny, tiny_profile_dir, tiny_results  # noqa: F401

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
DESKTOP, PHONE = 1400, 390

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"{CHROMIUM} is absent: `apt-get install -y chromium` (as .ci/run does)")]


@contextlib.contextmanager
def opened(path: Path, profile: Path, width: int):
    """A Chromium page `width` pixels wide showing the file at `path`."""
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=ARGS, headless=True,
            viewport={"width": width, "height": 900})
        try:
            page = browser.new_page()
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            yield page
        finally:
            browser.close()


def column(page, table, index):
    return page.eval_on_selector_all(
        f"#{table} tbody tr", f"rows => rows.map(r => r.cells[{index}].textContent)")


def shown(page, selector):
    """[(data-defense or the block's id, hidden)] of the elements `selector` picks."""
    return page.eval_on_selector_all(
        selector, "xs => xs.map(x => [x.dataset.defense || x.id, x.hidden])")


def choose(page, select, value):
    """Chooses `value` in the filter `select`, adding it as an option if absent (the tiny
    board has one task and one f: an absent value must hide every setting)."""
    page.eval_on_selector(select, """(s, v) => { if (![...s.options].some(o => o.value === v))
                                                     s.add(new Option(v, v)); }""", value)
    page.select_option(select, value)


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_the_site_renders_sorts_filters_searches_and_shows_its_plots(results, tiny, tmp_path,
                                                                      width):
    site = tmp_path / "site"
    built = leaderboard.build(results, tiny, site=site)
    summary, setting = built.page.summaries[0].anchor, built.page.settings[1].anchor
    assert summary.startswith("summary-")
    with opened(site / "index.html", tmp_path / "profile", width) as page:
        assert page.locator(f"#table-{summary} tbody tr").count() == 2
        assert page.locator("section.setting").count() == 2
        assert not page.locator("#table-coverage").is_visible()  # folded until asked
        page.locator("#coverage summary").click()
        assert page.locator("#table-coverage tbody tr").count() == 2
        assert "18 of the board's 18 cells present" in page.locator("#coverage").inner_text()
        assert page.locator("#table-coverage").is_visible()
        assert page.locator(f"#table-{setting} thead th").nth(2).inner_text() == "worst case"
        assert "tiny" in page.locator("#provenance").inner_text()
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # no page overflow

        table = f"table-{setting}"
        header = page.locator(f"#{table} thead th").nth(1)   # defense
        header.click()
        names = column(page, table, 1)
        assert names == sorted(names) and len(names) == 2
        header.click()
        assert column(page, table, 1) == sorted(names, reverse=True)
        page.locator(f"#{table} thead th").nth(2).click()    # worst case, ascending
        worst = [float(text.split(" ")[0]) for text in column(page, table, 2)]
        assert worst == sorted(worst)

        page.select_option("#filter-placement", "worker")
        assert sorted(page.eval_on_selector_all(
            ".filtered", "s => s.map(x => [x.dataset.placement, x.hidden])")) == [
            ["update", True], ["update", True], ["worker", False], ["worker", False]]
        page.select_option("#filter-f", "2")
        assert [hidden for _, hidden in shown(page, "section.setting")] == [True, False]
        choose(page, "#filter-f", "3")          # no setting has f = 3; summaries have no f
        assert [hidden for _, hidden in shown(page, "section.setting")] == [True, True]
        assert [hidden for _, hidden in shown(page, "div.summary")] == [True, False]
        page.select_option("#filter-placement", "")
        page.select_option("#filter-f", "")
        choose(page, "#filter-task", "mnist")
        assert all(hidden for _, hidden in shown(page, ".filtered"))
        page.select_option("#filter-task", "digits")
        assert not any(hidden for _, hidden in shown(page, ".filtered"))

        page.fill("#search", "MED")             # case-insensitive, part of a name
        matches = shown(page, "tr.match")
        assert [name for name, _ in matches] == ["median"] * 4  # 2 summaries, 2 settings
        assert not any(hidden for _, hidden in shown(page, "tr[data-defense]"))
        page.check("#search-only")
        assert {name for name, hidden in shown(page, "tr[data-defense]") if not hidden} == \
            {"median"}
        page.fill("#search", "")
        assert page.locator("tr.match").count() == 0
        assert not any(hidden for _, hidden in shown(page, "tr[data-defense]"))

        link = page.locator(f"#{table} tbody tr[data-defense=median] a").first
        assert link.get_attribute("href") == "defenses/median.html"

        images = page.locator("section.setting img")
        assert images.count() == 6
        for index in range(images.count()):
            images.nth(index).scroll_into_view_if_needed()
        page.wait_for_function(
            "() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)",
            timeout=20000)
        shot = tmp_path / "leaderboard.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        keep = os.environ.get("BENCHMARK_SCREENSHOT")  # e.g. to look at it after CI
        if keep:
            shutil.copy(shot, Path(keep).with_stem(f"{Path(keep).stem}-{width}"))


def test_rank_and_defense_stay_in_view_when_a_wide_table_scrolls(results, tiny, tmp_path):
    site = tmp_path / "site"
    built = leaderboard.build(results, tiny, site=site, draw=False)
    table = f"#table-{built.page.settings[0].anchor}"
    with opened(site / "index.html", tmp_path / "profile", PHONE) as page:
        scroller = page.locator(table).locator("xpath=..")
        scroller.scroll_into_view_if_needed()  # elementFromPoint sees the viewport only
        assert scroller.evaluate("s => s.scrollWidth > s.clientWidth")  # the table overflows
        cells = page.locator(f"{table} tbody tr").first.locator("td")
        rank, name, worst = (cells.nth(i).bounding_box() for i in range(3))
        scroller.evaluate("s => { s.scrollLeft = s.scrollWidth; }")
        assert scroller.evaluate("s => s.scrollLeft") > 0
        assert cells.nth(2).bounding_box()["x"] < worst["x"] - 50       # the rest scrolled
        frame = scroller.bounding_box()
        for index, before in ((0, rank), (1, name)):
            box = cells.nth(index).bounding_box()
            assert box["x"] == pytest.approx(before["x"], abs=1)
            assert frame["x"] - 1 <= box["x"] and box["x"] + box["width"] <= PHONE + 1
            # on top and opaque: the point at its centre belongs to it, not to a cell below
            assert cells.nth(index).evaluate(
                """(c, [x, y]) => c.contains(document.elementFromPoint(x, y))""",
                [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2])
            colour = cells.nth(index).evaluate("c => getComputedStyle(c).backgroundColor")
            assert colour not in ("transparent", "rgba(0, 0, 0, 0)")
        assert cells.nth(1).bounding_box()["x"] >= cells.nth(0).bounding_box()["x"] + \
            cells.nth(0).bounding_box()["width"] - 1   # the name does not cover the rank


def test_a_defense_page_shows_its_rows_and_links_back(results, tiny, tmp_path):
    site = tmp_path / "site"
    built = leaderboard.build(results, tiny, site=site)
    page_file = site / "defenses" / metadata.page_file("median")
    with opened(page_file, tmp_path / "profile", PHONE) as page:
        assert page.locator("h1").inner_text() == "median"
        assert page.locator("#table-summaries tbody tr").count() == 2
        rows = page.locator("#table-settings tbody tr")
        assert rows.count() == 2
        titles = column(page, "table-settings", 0)
        assert titles == [grid.title for grid in built.page.settings]
        assert page.locator("a.source").get_attribute("href") == "../../../defenses/median.py"
        assert page.locator("a.paper").get_attribute("href").startswith(
            "https://scholar.google.com/scholar?q=")
        assert page.locator("#plots a.plot").count() == 6
        plot = page.locator("#plots a.plot").first.get_attribute("href")
        assert (page_file.parent / plot).resolve().is_file()
        page.locator("#back").click()
        page.wait_for_load_state("load")
        assert page.url.endswith("/site/index.html")
        assert page.locator("section.setting").count() == 2
