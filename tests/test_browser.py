"""The playground in a real Chromium, against a live server and a real worker."""

import contextlib
import csv
import http.server
import io
import json
import re
import threading
from pathlib import Path

import pytest
from django.conf import settings as conf
from playwright.sync_api import expect

from runs import pages, sandbox
from runs.figures import charts, formatting, grids
from runs.models import Run, Series
from runs.sandbox import environments, launcher
from runs.snippets import failures

from .conftest import SCREENSHOTS, host_hardware

pytestmark = pytest.mark.browser
# Long enough for two live samples, and so a chart: the first comes early, the next a
# sample interval later.
BUSY_SECONDS = sandbox.FIRST_TICK_SECONDS + conf.LIVE_SAMPLE_SECONDS + 0.2
BUSY = (
    f"import time\nend = time.perf_counter() + {BUSY_SECONDS:.2f}\n"
    "while time.perf_counter() < end:\n    pass\n"
)


@pytest.fixture
def site(chromium, live_server, start_worker, settings):
    # The live server finds static files by name, not by the hashed names of the
    # collected manifest that production serves.
    settings.STORAGES = settings.STORAGES | {
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    }
    start_worker()
    return live_server.url


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    # The Content-Security-Policy must never block anything the pages themselves use.
    violations = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield page
    context.close()
    assert violations == []


def open_with_code(page, site: str, code: str) -> None:
    """Open the playground with `code` in the editor (as a returning visitor would)."""
    page.goto(site)
    page.evaluate("code => localStorage.setItem('ccp:code', code)", code)
    page.reload()
    expect(page.locator(".cm-content")).to_contain_text(code.splitlines()[0])


def run_and_wait(page, status: str):
    page.locator(".cm-content").click()
    page.keyboard.press("Control+Enter")
    result = page.locator(f"#result .run[data-status={status}]")
    expect(result).to_be_visible(timeout=30_000)
    return result


def test_an_example_runs_with_ctrl_enter_live_then_as_cards(site, page):
    page.goto(site)
    page.select_option("#example", "sleep")
    expect(page.locator(".cm-content")).to_contain_text("time.sleep(2)")
    page.keyboard.press("Control+Enter")

    running = page.locator("#result .run[data-status=running]")
    expect(running).to_be_visible(timeout=15_000)
    expect(running.locator(".output:not(.output--stderr)")).to_contain_text(
        "sleeping..."
    )  # output as it arrives
    expect(running.locator(".chart svg")).to_be_visible()  # live power chart
    expect(running.locator(".chart polyline")).to_have_attribute("points", re.compile(r"\d"))
    expect(running).to_contain_text("Running for")

    done = page.locator("#result .run[data-status=succeeded]")
    expect(done).to_be_visible(timeout=15_000)
    expect(done.locator(".output")).to_contain_text("done: compare")
    expect(done.locator('[data-metric="energy"]')).to_contain_text("Wh")
    expect(done.locator('[data-metric="co2"]')).to_contain_text("g")
    hardware = host_hardware()
    if not hardware.gpu_count:
        expect(done.locator('[data-metric="gpu"]')).to_contain_text("No GPU")
    if not hardware.cpu_measured:
        per_thread = f"CPU time × {hardware.watts_per_thread:g} W per busy thread"
        expect(done.locator("[data-provenance]")).to_contain_text(per_thread)
    assert "average" in done.locator(".chart .plot").get_attribute("aria-label")
    assert done.get_attribute("hx-trigger") is None  # polling stopped
    expect(page.locator("#run-announcer")).to_have_text("Finished: Succeeded.")

    # The time axis ends at the run's length, as the chart module draws it.
    run = Run.objects.get()
    ticks = charts.power_chart(run.power_samples, run.duration_s)["x_ticks"]
    expect(done.locator(".x-axis span").last).to_have_text(ticks[-1]["label"])

    # The address is the run's: reload and Back keep what the user saw.
    expect(page).to_have_url(f"{page.url.split('/runs/')[0]}{run.get_absolute_url()}")
    page.reload()
    expect(page.locator("#result .run[data-status=succeeded] .output")).to_contain_text("done")
    expect(page.locator(".cm-content")).to_contain_text("time.sleep(2)")
    page.go_back()
    expect(page).to_have_url(f"{site}/")


SCROLLED_WHILE_PRINTING = """import time
for i in range(300):
    print('early', i)
for i in range(8):
    time.sleep(0.4)
    print('late', i, flush=True)
"""


def test_live_output_is_appended_where_the_reader_left_it(site, page):
    open_with_code(page, site, SCROLLED_WHILE_PRINTING)
    page.locator(".cm-content").click()
    page.keyboard.press("Control+Enter")
    output = page.locator("#result .run[data-status=running] .output:not(.output--stderr)")
    expect(output).to_contain_text("early 299", timeout=15_000)
    # The reader scrolls back to read; the polls that follow add lines without moving
    # the text under their eyes (each poll used to replace the whole output).
    output.evaluate("pre => { pre.scrollTop = 400; window.reading = pre; }")
    expect(output).to_contain_text("late 2")
    assert output.evaluate("pre => pre === window.reading && pre.scrollTop") == 400
    live = output.text_content()
    done = page.locator("#result .run[data-status=succeeded] .output")
    expect(done).to_contain_text("late 7", timeout=15_000)
    # What was shown live is the start of the run's output: nothing doubled or missed.
    assert Run.objects.get().stdout.startswith(live) and live.count("early 0\n") == 1


def test_result_beside_the_editor_on_a_wide_screen_below_on_a_phone(site, chromium):
    sizes = set()
    for viewport, beside in [
        ({"width": 1366, "height": 800}, True),
        ({"width": 390, "height": 844}, False),
    ]:
        context = chromium.new_context(viewport=viewport)
        page = context.new_page()
        open_with_code(page, site, f"{BUSY}print({viewport['width']})")
        result = run_and_wait(page, "succeeded")
        editor, box = page.locator("#run-form").bounding_box(), result.bounding_box()
        assert (box["x"] > editor["x"] + editor["width"] - 1) == beside
        # Either way the result is in view once it arrives.
        assert box["y"] < viewport["height"] and box["y"] + 40 > 0
        # Axis labels keep the page's type size at every width (no viewBox scaling).
        sizes.add(page.locator(".x-axis span").first.evaluate("e => getComputedStyle(e).fontSize"))
        context.close()
    assert len(sizes) == 1 and float(sizes.pop().removesuffix("px")) >= 11


def test_errors_read_as_a_user_needs_them(site, page, settings):
    settings.EXECUTION_TIMEOUT = 1.5

    open_with_code(page, site, "x = 1\nprint(x +\n")
    failed = run_and_wait(page, "failed")
    expect(failed.locator(".run-error")).to_contain_text("SyntaxError on line 2")
    assert "Syntax error" not in failed.locator(".run-error").inner_text()  # said once
    expect(page.locator(".cm-error-line")).to_have_text("print(x +")  # marked in the editor
    expect(failed.locator(".card")).to_have_count(8)
    expect(failed.locator(".card").first).to_be_hidden()  # the cost, folded below the error

    open_with_code(page, site, "import socket\n\nsocket.create_connection(('1.1.1.1', 80))\n")
    blocked = run_and_wait(page, "failed")
    expect(blocked.locator("[data-hint]")).to_have_text(failures.NO_NETWORK)
    page.locator(".cm-content").click()
    page.keyboard.press("Control+Home")
    blocked.locator(".output--stderr a.line-link").last.click()  # the traceback's line
    expect(page.locator(".cm-error-line")).to_have_text("socket.create_connection(('1.1.1.1', 80))")

    open_with_code(page, site, "import time\nwhile True:\n    time.sleep(0.01)\n")
    timed_out = run_and_wait(page, "timed_out")
    # Where it was when it was stopped, said and marked in the editor.
    expect(timed_out.locator(".run-error")).to_contain_text("Timed out after 1.5 s at line 3;")
    expect(page.locator(".cm-error-line")).to_have_text("    time.sleep(0.01)")

    open_with_code(page, site, "while True:\n    print('x' * 1000)\n")
    flooded = run_and_wait(page, "limit_exceeded")
    expect(flooded.locator(".run-error")).to_contain_text("Output limit exceeded")
    expect(flooded).to_contain_text("Output cut at the limit")


def test_a_limit_is_explained_in_place_and_the_code_kept(site, page, chromium, settings):
    settings.LIMIT_RUNS_PER_MINUTE = 1
    open_with_code(page, site, "print('first')")
    run_and_wait(page, "succeeded")
    page.locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.type("\nprint('second')")  # other code: not a double press
    page.keyboard.press("Control+Enter")
    # Where the result would appear, in view, with when to try again.
    refusal = page.locator("#result [data-refusal]")
    expect(refusal).to_contain_text("Too many runs: at most 1 a minute. Try again in")
    expect(refusal).to_be_in_viewport()
    expect(page.locator(".cm-content")).to_contain_text("print('second')")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "playground-limit.png", full_page=True)

    # On a phone the result pane is below the editor: the refusal is brought into view.
    phone = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    small = phone.new_page()
    open_with_code(small, site, "print('third')")
    small.locator("#run-button").click()
    expect(small.locator("#result [data-refusal]")).to_be_in_viewport()
    small.screenshot(path=SCREENSHOTS / "playground-limit-phone.png")
    phone.close()

    # The compare page answers a refusal above its form, where the page it returns starts.
    for scheme in ("light", "dark"):
        laptop = chromium.new_context(viewport={"width": 1366, "height": 768}, color_scheme=scheme)
        compare = laptop.new_page()
        compare.goto(f"{site}/compare/")
        compare.locator("#compare-button").click()
        refused = compare.locator("[data-refusal]")
        expect(refused).to_contain_text("Too many runs: at most 1 a minute. Try again in")
        expect(refused).to_be_in_viewport()
        compare.screenshot(path=SCREENSHOTS / f"compare-limit-{scheme}.png")
        laptop.close()


def test_history_reload_and_a_shared_link(site, page, chromium):
    open_with_code(page, site, "print('first run')")
    run_and_wait(page, "succeeded")

    # The code survives a reload.
    page.locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.type("  # edited")
    page.reload()
    expect(page.locator(".cm-content")).to_contain_text("# edited")

    page.goto(f"{site}/runs/")
    rows = page.locator("table.history tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("print('first run')")
    expect(rows.first).to_contain_text("Succeeded")

    # Someone else opens the link in a fresh browser.
    run = Run.objects.get()
    stranger = chromium.new_context()
    other = stranger.new_page()
    other.goto(f"{site}{run.get_absolute_url()}")
    expect(other.locator(".run[data-status=succeeded]")).to_be_visible()
    expect(other.locator(".output")).to_contain_text("first run")
    other.goto(f"{site}/runs/")
    expect(other.locator(".empty")).to_contain_text("No runs yet")  # history is per visitor
    stranger.close()


def test_the_playgrounds_draft_and_a_run_pages_edits_are_kept_apart(site, page):
    other = Run.objects.submit("print('theirs')")
    open_with_code(page, site, "print('my playground draft')")
    page.goto(f"{site}{other.get_absolute_url()}")
    expect(page.locator(".cm-content")).to_contain_text("print('theirs')")
    page.locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.type("  # edited on their page")
    # The playground's draft is untouched by edits made on a run's page...
    page.goto(site)
    expect(page.locator(".cm-content")).to_have_text("print('my playground draft')")
    # ...and those edits come back on that run's page, the run's own code one click away.
    page.goto(f"{site}{other.get_absolute_url()}")
    expect(page.locator(".cm-content")).to_contain_text("# edited on their page")
    page.get_by_role("button", name="Show the run's code instead").click()
    expect(page.locator(".cm-content")).to_have_text("print('theirs')")


def test_the_grid_chosen_is_used_shown_and_remembered(site, page):
    france = grids.grids()["FRA"]
    open_with_code(page, site, "print('priced in France')")
    page.select_option("#grid", france.key)
    done = run_and_wait(page, "succeeded")
    expect(done.locator('[data-metric="grid"]')).to_have_text(france.name)
    run = Run.objects.get()
    assert (run.country_iso_code, run.region) == (france.country, france.region)
    page.goto(site)
    expect(page.locator("#grid")).to_have_value(france.key)
    # On a run's page, another grid prices that run at it, on the spot.
    page.goto(f"{site}{run.get_absolute_url()}")
    page.select_option("#grid", "IND")
    note = page.locator("#grid-note")
    expect(note).to_contain_text("New runs use India")
    expect(note.locator("[data-repriced]")).to_be_visible()
    expect(note).to_contain_text(f"at {france.name}")
    # The cards in view follow it, said to be a what-if, the stored figure beside.
    india = grids.grids()["IND"]
    expect(page.locator('#grid-card [data-metric="grid"]')).to_contain_text(india.name)
    expect(page.locator("#co2-card .card-label")).to_have_text(f"CO₂e on {india.name}'s grid")
    expect(page.locator('#co2-card [data-metric="co2-stored"]')).to_contain_text(
        f"at {france.name}"
    )
    expect(page.locator('#co2-card [data-metric="co2"]')).to_contain_text(
        note.locator("[data-repriced]").inner_text().removesuffix(" CO₂e")
    )


def test_the_environment_chosen_is_described_used_shown_and_remembered(site, page):
    others = [env for env in environments.available() if not env.default]
    if not others:
        pytest.skip("no second environment is built on this host")
    other = others[0]
    open_with_code(page, site, "import sys\nprint(sys.implementation.name)")
    expect(page.locator("[data-env-help]")).to_have_text(environments.default().summary)
    page.select_option("#env", other.name)
    expect(page.locator("[data-env-help]")).to_have_text(other.summary)
    done = run_and_wait(page, "succeeded")
    expect(done.locator(".output").first).to_contain_text(other.implementation.lower())
    expect(page.locator(f'.run-context [data-env="{other.name}"]')).to_contain_text(
        other.interpreter_name
    )
    assert Run.objects.get().env == other.name
    page.goto(site)
    expect(page.locator("#env")).to_have_value(other.name)


@pytest.mark.parametrize("how", ["button", "escape"])
def test_stop_ends_a_running_run_and_the_run_buttons_wait_meanwhile(site, page, how):
    open_with_code(page, site, "print('looping', flush=True)\nwhile True:\n    pass\n")
    page.fill("#timeout", "30")
    page.locator(".cm-content").click()
    page.keyboard.press("Control+Enter")
    expect(page.locator("#result .output").first).to_contain_text("looping", timeout=30_000)
    expect(page.locator("#run-button")).to_be_disabled()
    expect(page.locator("#repeat-button")).to_be_disabled()
    if how == "button":
        page.locator("#result [data-stop]").click()
    else:
        page.keyboard.press("Escape")
    stopped = page.locator("#result .run[data-status=cancelled]")
    expect(stopped).to_be_visible(timeout=5_000)
    expect(stopped).to_contain_text("Stopped on request")
    expect(stopped.locator(".output").first).to_contain_text("looping")  # kept
    expect(page.locator("#run-button")).to_be_enabled()
    run = Run.objects.get()
    assert run.status == Run.Status.CANCELLED and run.timeout_s == 30
    assert run.duration_s < 10 and run.energy_kwh > 0
    page.goto(site)
    expect(page.locator("#timeout")).to_have_value("30")  # remembered


def test_standard_input_from_the_box_is_read_and_kept_with_the_run(site, page):
    open_with_code(page, site, "print('hello', input())")
    page.locator("[data-stdin-box] > summary").click()
    page.fill("#stdin", "Ada")
    page.locator("#stdin").press("Control+Enter")  # runs from the input box too
    done = page.locator("#result .run[data-status=succeeded]")
    expect(done).to_be_visible(timeout=30_000)
    expect(done.locator(".output").first).to_have_text("hello Ada\n")
    expect(done.locator("[data-run-stdin]")).to_contain_text("Standard input it read from")
    assert Run.objects.get().stdin == "Ada"
    page.reload()  # the run's page: its input ready to run again
    expect(page.locator("#stdin")).to_have_value("Ada")


HOT = """def slow(n):
    total = 0
    for i in range(n):
        total += i * i
    return total

print(slow(3_000_000))
"""


def test_each_lines_heat_is_in_the_editors_gutter(site, page):
    env = environments.default()
    version = tuple(int(part) for part in env.version.split(".")[:3])
    if launcher.profile_off(env.implementation.lower(), version):
        pytest.skip(f"no line profile under {env.interpreter_name}")
    open_with_code(page, site, HOT)
    run_and_wait(page, "succeeded")
    run = Run.objects.get()
    assert run.lines, run.measurement_notes
    markers = page.locator(".cm-heat-gutter .cm-heat-marker")
    expect(markers).to_have_count(len(run.lines))
    hottest = max(run.lines, key=lambda line: line["share"])
    label = f"Line {hottest['line']}: {formatting.percent(hottest['share'])} of the CPU time"
    expect(page.locator(f'.cm-heat-marker[title="{label}"]')).to_have_count(1)
    # A hottest line's link moves the cursor there, marked as heat (never as an error),
    # and says its share for keyboards and screen readers.
    page.locator(f'.hottest a[data-line="{hottest["line"]}"]').click()
    expect(page.locator(".cm-heat-line")).to_have_text(HOT.splitlines()[hottest["line"] - 1])
    expect(page.locator(".cm-error-line")).to_have_count(0)
    expect(page.locator("#heat-status")).to_have_text(label)
    # Editing the code fades the markers: they belong to the code that ran.
    expect(page.locator(".cm-editor.cm-heat-stale")).to_have_count(0)
    page.keyboard.type("# edited ")
    expect(page.locator(".cm-editor.cm-heat-stale")).to_have_count(1)


def test_settings_theme_font_size_and_vim_keys_are_kept_in_the_browser(site, page):
    open_with_code(page, site, "abc = 1")
    page.locator(".settings > summary").click()
    page.get_by_label("Dark").check()
    page.select_option("#setting-font-size", "20")
    page.select_option("#setting-keys", "vim")
    html = page.locator("html")
    expect(html).to_have_attribute("data-theme", "dark")
    background = "getComputedStyle(document.documentElement).backgroundColor"
    assert page.evaluate(background) == "rgb(18, 22, 20)"  # dark, whatever the system says
    expect(page.locator(".cm-editor")).to_have_css("font-size", "20px")
    # Vim's normal mode: "x" deletes the character under the cursor.
    page.keyboard.press("Escape")  # closes the menu
    page.locator(".cm-content").click()
    page.keyboard.press("0")
    page.keyboard.press("x")
    expect(page.locator(".cm-content")).to_have_text("bc = 1")
    # Vim's status line says its mode, and follows it.
    expect(page.locator(".cm-vim-panel")).to_contain_text("--NORMAL--")
    page.keyboard.press("i")
    expect(page.locator(".cm-vim-panel")).to_contain_text("--INSERT--")
    page.keyboard.press("Escape")
    page.reload()
    expect(html).to_have_attribute("data-theme", "dark")
    expect(page.locator(".cm-editor")).to_have_css("font-size", "20px")
    page.locator(".settings > summary").click()
    expect(page.locator("#setting-keys")).to_have_value("vim")
    page.get_by_label("As the system").check()
    expect(html).not_to_have_attribute("data-theme", re.compile("."))


FITS = "el => el.scrollWidth <= el.clientWidth"


def test_the_editor_says_how_to_leave_it_and_escape_then_tab_does(site, page):
    page.goto(site)
    editor = page.locator(".cm-content")
    expect(page.locator("#editor-keys")).to_contain_text("press Escape, then Tab")
    editor.click()
    page.keyboard.press("Tab")  # indents: the editor keeps the focus
    assert page.evaluate("document.activeElement.closest('.cm-editor') !== null")
    page.keyboard.press("Escape")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('.cm-editor') === null")


def test_every_field_shows_the_sites_focus_ring_not_the_browsers(site, page):
    ring = "el => { el.focus(); return getComputedStyle(el).outlineWidth; }"
    page.goto(site)
    for field in ("#timeout", "#repetitions", "#grid"):
        assert page.locator(field).evaluate(ring) == "3px", field
    page.goto(f"{site}/compare/")
    for field in ("#section", "#repetitions"):
        assert page.locator(field).evaluate(ring) == "3px", field


def test_escape_stops_a_comparison_on_its_page(site, page):
    page.goto(f"{site}/compare/")
    forever = "print('looping', flush=True)\nwhile True:\n    pass\n"
    for editor in page.locator(".cm-content").all():
        editor.fill(forever)
    page.locator("#compare-button").click()
    expect(page.locator("[data-stop]")).to_be_visible(timeout=30_000)
    expect(page.locator(".series .run-header")).to_contain_text("0 of")
    page.keyboard.press("Escape")
    expect(page.locator("[data-stop]")).to_have_count(0, timeout=10_000)
    series = Series.objects.get()
    assert not series.runs.filter(status__in=Run.IN_FLIGHT).exists()
    assert series.runs.filter(status=Run.Status.CANCELLED).exists()


def test_a_repeat_reads_numbers_first_and_fits_beside_the_editor_and_on_a_phone(site, chromium):
    context = chromium.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(site)
    page.locator(".cm-content").fill("print('hi')")
    page.fill("#repetitions", "2")
    page.click("#repeat-button")
    series = page.locator("#result .series[data-finished=true]")
    expect(series).to_be_visible(timeout=60_000)
    assert errors == []  # htmx's included: every hx- attribute finds what it names
    # The figures come first; what makes them uncertain follows, in one notice.
    order = series.evaluate(
        "el => [...el.querySelectorAll('table.summary, [data-warnings]')].map(e => e.tagName)"
    )
    assert order[0] == "TABLE" and order.count("DIV") <= 1, order
    summary = series.locator(".table-wrap").first
    assert summary.evaluate(FITS), "the summary scrolls sideways beside the editor"
    expect(series.locator("[data-metric=median-energy]")).to_contain_text("Wh")
    url = page.url
    context.close()
    phone = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = phone.new_page()
    page.goto(url)
    assert page.locator(".series .table-wrap").first.evaluate(FITS), "cut on a phone"
    phone.close()


def test_without_javascript_the_form_still_runs_code(site, chromium):
    context = chromium.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(site)
    page.fill("textarea#code", "print('no javascript needed')")
    page.click("#run-button")
    expect(page).to_have_url(f"{site}{Run.objects.get().get_absolute_url()}")
    expect(page.locator(".run[data-status=succeeded]")).to_be_visible(timeout=30_000)
    expect(page.locator(".output:not(.output--stderr)")).to_contain_text("no javascript needed")
    context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_screenshots_of_the_playground(site, chromium, scheme):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, viewport in [
        ("desktop", {"width": 1280, "height": 900}),
        ("phone", {"width": 390, "height": 844}),
    ]:
        context = chromium.new_context(viewport=viewport, color_scheme=scheme)
        page = context.new_page()
        page.goto(site)
        page.select_option("#example", "busy-loop")
        page.keyboard.press("Control+Enter")
        expect(page.locator("#result .run[data-status=succeeded]")).to_be_visible(timeout=30_000)
        path = SCREENSHOTS / f"playground-{scheme}-{name}.png"
        page.screenshot(path=path, full_page=True)
        assert path.stat().st_size > 20_000
        # Contrast sanity: the page follows the system setting.
        background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
        assert (background == "rgb(18, 22, 20)") == (scheme == "dark")
        context.close()


def test_a_comparison_end_to_end_with_a_shareable_link(site, page, chromium):
    page.goto(f"{site}/compare/")
    page.evaluate(
        """() => {
            localStorage.setItem('ccp:compare:a', 'x = sum(i * i for i in range(1_000_000))');
            localStorage.setItem('ccp:compare:b', 'x = 1');
        }"""
    )
    page.reload()
    expect(page.locator(".cm-content").first).to_contain_text("range(1_000_000)")
    page.fill("#repetitions", "3")
    page.click("#compare-button")

    finished = page.locator(".series[data-finished=true]")
    expect(finished).to_be_visible(timeout=60_000)
    expect(finished).to_contain_text("6 of 6 runs finished")
    verdict = finished.locator('[data-verdict="energy"]')
    expect(verdict).to_contain_text("less energy than A (95% CI")
    expect(finished.locator(".strip .dot")).to_have_count(6)

    stranger = chromium.new_context()
    other = stranger.new_page()
    other.goto(page.url)
    expect(other.locator('[data-verdict="energy"]')).to_have_text(verdict.inner_text())
    stranger.close()


def test_three_variants_are_compared_and_ranked(site, page):
    page.goto(f"{site}/compare/")
    page.evaluate(
        """() => {
            localStorage.setItem('ccp:compare:a', 'x = sum(i * i for i in range(300_000))');
            localStorage.setItem('ccp:compare:b', 'x = 1');
        }"""
    )
    page.reload()
    expect(page.locator("#code_c")).to_be_hidden()  # a box to open: two is the usual case
    page.locator("#more-variants > summary").click()
    editor_c = page.locator("#more-variants .cm-content").first
    expect(editor_c).to_be_visible()
    editor_c.click()
    page.keyboard.type("x = sum(i * i for i in range(600_000))")
    page.fill("#repetitions", "3")
    page.click("#compare-button")

    finished = page.locator(".series[data-finished=true]")
    expect(finished).to_be_visible(timeout=90_000)
    expect(page.locator("h1")).to_contain_text("3-way comparison")
    rows = finished.locator("table.ranking tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_have_attribute("data-ranked", "B")  # x = 1: the least work
    expect(finished.locator("[data-correction]")).to_contain_text("Bonferroni")
    expect(finished.locator('[data-verdict="energy"]')).to_contain_text("corrected for 2")
    # Back to the form with all three, to edit and compare again.
    finished.locator("[data-edit-compare]").click()
    expect(page.locator("#more-variants")).to_have_attribute("open", "")
    expect(page.locator("#more-variants .cm-content").first).to_contain_text("600_000")


def test_exports_download_and_parse(site, page):
    open_with_code(page, site, "print('exported')")
    done = run_and_wait(page, "succeeded")
    # Too short to sample: a sentence, not a chart of one point.
    first, every = sandbox.FIRST_TICK_SECONDS, conf.LIVE_SAMPLE_SECONDS
    expect(done.locator('[data-chart="too-short"]')).to_contain_text(
        f"Too short to chart: a chart needs two power samples (the first after "
        f"{formatting.seconds(first)}, then one every {formatting.seconds(every)})"
    )
    expect(done.locator(".chart")).to_have_count(0)
    with page.expect_download() as download:
        done.get_by_role("link", name="JSON").click()
    data = json.loads(Path(download.value.path()).read_text())
    assert data["stdout"] == "exported\n" and data["status"] == "succeeded"
    assert data["energy_kwh"] > 0

    page.goto(f"{site}/runs/")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download as CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [row["run_id"] for row in rows] == [data["id"]]
    assert float(rows[0]["energy_consumed"]) == pytest.approx(data["energy_kwh"])


@contextlib.contextmanager
def elsewhere(body: str):
    """Another site: `body` served at its own origin (127.0.0.2, a loopback address of
    its own), for as long as the block runs."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.2:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


def test_share_copies_a_short_link_and_the_embed_may_be_framed_elsewhere(site, chromium):
    context = chromium.new_context(
        viewport={"width": 1366, "height": 768}, permissions=["clipboard-read", "clipboard-write"]
    )
    page = context.new_page()
    open_with_code(page, site, "print('shared')")
    result = run_and_wait(page, "succeeded")
    result.locator("[data-share] > summary").click()
    result.locator("[data-copy^=share-link]").click()
    expect(result.locator("[data-copy-status]")).to_have_text("Link copied")
    link = page.evaluate("navigator.clipboard.readText()")
    run = Run.objects.get()
    assert link == f"{site}/runs/{run.public_id.hex[:8]}/"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "share-panel-1366.png")
    result.locator("[data-copy^=share-embed]").click()
    expect(result.locator("[data-copy-status]")).to_have_text("Embed code copied")
    embed = page.evaluate("navigator.clipboard.readText()")
    assert embed.startswith(f'<iframe src="{site}{run.embed_url()}"')

    # Another site, a server of its own on another loopback address, frames the embed
    # as pasted; the run's own page it may not frame.
    framing = f"<!doctype html><title>Elsewhere</title>{embed}"
    framing += f'<iframe id="page" src="{site}{run.get_absolute_url()}"></iframe>'
    with elsewhere(framing) as other:
        page.goto(other)  # once every frame has loaded, or failed to
    framed = page.frame_locator("iframe[title]")
    expect(framed.locator(".embed-title")).to_contain_text(run.public_id.hex[:8])
    expect(framed.locator(".embed-code")).to_contain_text("print('shared')")
    expect(framed.locator("[data-metric=energy]")).to_be_visible()
    # Chromium puts its own error page in a frame the framed page's policy refuses.
    refused = page.locator("#page").element_handle().content_frame()
    assert refused.url.startswith("chrome-error://"), refused.url
    page.screenshot(path=SCREENSHOTS / "embed-framed-light.png")
    context.close()
    for name, options in (
        ("dark", {"viewport": {"width": 1366, "height": 768}, "color_scheme": "dark"}),
        ("phone", {"viewport": {"width": 390, "height": 844}, "color_scheme": "light"}),
    ):
        shot = chromium.new_context(**options)
        embed_page = shot.new_page()
        embed_page.goto(f"{site}{run.embed_url()}")
        expect(embed_page.locator(".embed-title")).to_be_visible()
        embed_page.screenshot(path=SCREENSHOTS / f"embed-{name}.png")
        shot.close()


def test_a_link_with_the_code_opens_the_playground_with_it_and_stores_nothing(site, page):
    code, stdin = "name = input()\nprint('hello', name)\n", "Ada\n"
    other = next(e.name for e in environments.available() if e != environments.default())
    open_with_code(page, site, "print('my draft')")
    page.goto(f"{site}/methodology/")
    page.goto(f"{site}/{pages.code_fragment(code, other, stdin)}")  # a new page
    expect(page.locator(".cm-content")).to_contain_text("print('hello', name)")
    expect(page.locator("#env")).to_have_value(other)
    expect(page.locator("#stdin")).to_have_value(stdin)
    assert "#" not in page.url  # dropped once read: a reload keeps what is edited
    assert Run.objects.count() == 0
    page.get_by_role("button", name="Bring back your draft").click()
    expect(page.locator(".cm-content")).to_contain_text("print('my draft')")
    # Followed from the playground itself: only the fragment changes, and it is read.
    page.goto(f"{site}/{pages.code_fragment('print(2 + 2)', other)}")
    expect(page.locator(".cm-content")).to_contain_text("print(2 + 2)")
    assert Run.objects.count() == 0


def test_at_1366_by_768_the_editor_shows_15_lines_and_run_is_above_the_fold(site, chromium):
    context = chromium.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    open_with_code(page, site, "\n".join(f"x{n} = {n}" for n in range(40)))
    page.screenshot(path=SCREENSHOTS / "playground-1366x768.png")
    editor = page.locator(".cm-scroller").bounding_box()
    line = page.locator(".cm-line").first.bounding_box()
    fold = page.viewport_size["height"]
    visible = min(editor["y"] + editor["height"], fold) - editor["y"]
    assert visible >= 15 * line["height"], (visible, line["height"])
    run = page.locator("#run-button").bounding_box()
    assert run["y"] + run["height"] <= fold, run
    # The three choices share a row.
    tops = {
        round(page.locator(f"#{name}").bounding_box()["y"]) for name in ("example", "env", "grid")
    }
    assert len(tops) == 1, tops
    context.close()


def test_format_tidies_the_code_and_the_checks_mark_what_would_fail(site, page):
    open_with_code(page, site, "x=1\nif x :\n  print( x )")
    page.locator("#format-button").click()
    expect(page.locator(".cm-content")).to_contain_text("if x:    print(x)")
    page.keyboard.press("Control+z")  # one step of undo brings the code back
    expect(page.locator(".cm-content")).to_contain_text("if x :  print( x )")
    page.locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.type("\nprint(y)")
    diagnostics = page.locator("#diagnostics")
    expect(diagnostics).to_have_text("Line 4: Undefined name `y`")
    expect(page.locator(".cm-error-line")).to_have_count(1)
    run_and_wait(page, "failed")  # it never stands in the way of Run
    page.locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.press("Backspace")
    page.keyboard.press("Backspace")
    page.keyboard.type("x)")
    expect(diagnostics).to_be_hidden()
    expect(page.locator(".cm-error-line")).to_have_count(0)


def test_a_first_visit_is_offered_the_grid_of_its_time_zone_and_told_so(site, chromium):
    france = grids.grids()["FRA"]
    context = chromium.new_context(timezone_id="Europe/Paris")
    page = context.new_page()
    open_with_code(page, site, "print('priced in Germany')")
    expect(page.locator("#grid")).to_have_value(france.key)
    note = page.locator("#grid-note")
    expect(note).to_contain_text(f"From your time zone (Europe/Paris): new runs use {france.name}")
    page.select_option("#grid", "DEU")  # chosen: the visitor's from their run on
    run_and_wait(page, "succeeded")
    assert Run.objects.get().country_iso_code == "DEU"
    page.goto(site)
    expect(page.locator("#grid")).to_have_value("DEU")
    expect(note).to_be_hidden()
    context.close()


def test_starters_name_themselves_offer_undo_and_open_comparisons(site, page):
    from runs.snippets import examples

    open_with_code(page, site, "print('my own draft')")
    expect(page.locator("#example")).to_have_value("")  # a draft of one's own
    sections = next(e for e in examples.EXAMPLES if e["slug"] == "sections")
    page.select_option("#example", "sections")
    expect(page.locator(".cm-content")).to_contain_text('with section("sort"):')
    page.get_by_role("button", name="Undo").click()
    expect(page.locator(".cm-content")).to_contain_text("print('my own draft')")
    page.select_option("#example", "sections")
    page.reload()
    expect(page.locator("#example")).to_have_value("sections")  # the picker names it
    assert sections["title"] in page.locator("#example option:checked").inner_text()
    starter = examples.COMPARISONS[0]
    page.select_option("#example", starter["slug"])
    page.wait_for_url(f"**/compare/?example={starter['slug']}")
    expect(page.locator("[data-from-example]")).to_contain_text(starter["title"])
    expect(page.locator(".cm-content").first).to_contain_text("# A: bubble sort")


def test_after_run_the_heading_is_the_runs_as_the_address_is(site, page):
    open_with_code(page, site, "print('titled')")
    expect(page.locator("h1")).to_have_text("Measure a Python snippet's energy")
    run_and_wait(page, "succeeded")
    run = Run.objects.get()
    expect(page.locator("h1")).to_have_text(f"Run {run.public_id.hex[:8]}")
    assert page.url.endswith(run.get_absolute_url())
    expect(page.locator("h1")).to_have_count(1)
