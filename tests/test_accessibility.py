"""Every page, checked by axe-core in a real Chromium, in light, dark and phone layouts.

axe-core comes from the npm registry (tests/axe, installed by `make test`) and is
injected by the test only: the site never serves it.
"""

from pathlib import Path

import pytest
from django.contrib.sessions.backends.db import SessionStore
from playwright.sync_api import expect

from runs.models import Series

from .conftest import SCREENSHOTS, execute, run_series
from .test_browser import BUSY

pytestmark = pytest.mark.browser
AXE = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
LAYOUTS = {
    "light": {"viewport": {"width": 1366, "height": 800}, "color_scheme": "light"},
    "dark": {"viewport": {"width": 1366, "height": 800}, "color_scheme": "dark"},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "color_scheme": "light",
        "is_mobile": True,
        "has_touch": True,
        "device_scale_factor": 2,
    },
}
# What WCAG calls serious or critical: what a user of a screen reader, a keyboard or a
# small or dim screen cannot get past.
BLOCKING = {"serious", "critical"}


@pytest.fixture
def pages(settings):
    settings.STORAGES = settings.STORAGES | {
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    }
    # One visitor's session, so that the history page has its runs to show.
    store = SessionStore()
    store.create()
    session = store.session_key
    # With a section and a line profile, so that their tables are checked too.
    body = "".join("    " + line + "\n" for line in BUSY.splitlines())
    sections = (
        f"from playground import section\n\n\n@section('work')\ndef work():\n{body}\n\nwork()\n"
    )
    succeeded = execute(sections + "print('done')\n", session_key=session)
    assert succeeded.sections and succeeded.lines
    failed = execute("x = 1\nprint(x +\n", session_key=session)
    assert (succeeded.status, failed.status) == ("succeeded", "failed")
    series = Series.objects.submit(
        Series.Kind.COMPARE, ["x = sum(range(10**6))", "x = 1"], 2, session_key=session
    )
    run_series(series)
    three = Series.objects.submit(
        Series.Kind.COMPARE, ["x = sum(range(10**6))", "x = 1", "x = 2"], 2, session_key=session
    )
    run_series(three)
    return session, {
        "playground": "/",
        "run": succeeded.get_absolute_url(),
        "failed-run": failed.get_absolute_url(),
        "history": "/runs/",
        "compare": "/compare/",
        "comparison": series.get_absolute_url(),
        "comparison-3": three.get_absolute_url(),
        "run-embed": succeeded.embed_url(),
        "comparison-embed": series.embed_url(),
        "methodology": "/methodology/",
    }


@pytest.mark.parametrize("layout", LAYOUTS)
def test_no_serious_accessibility_violation_on_any_page(live_server, chromium, pages, layout):
    session, paths = pages
    # axe is injected by the test, not by the page: the page's CSP is not its concern.
    context = chromium.new_context(bypass_csp=True, **LAYOUTS[layout])
    context.add_cookies([{"name": "sessionid", "value": session, "url": live_server.url}])
    page = context.new_page()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    found = {}
    for name, path in paths.items():
        page.goto(live_server.url + path)
        expect(page.locator("h1")).to_have_count(1)
        if name in ("playground", "run", "failed-run", "compare"):
            expect(page.locator(".cm-content").first).to_be_visible()
        if name == "run":  # where the energy went: the section and the hottest lines
            expect(page.locator('#result [data-section="work"]')).to_have_count(1)
            expect(page.locator("#result .hottest li").first).to_contain_text("of the CPU time")
        page.screenshot(path=SCREENSHOTS / f"{name}-{layout}.png", full_page=True)
        page.evaluate(AXE.read_text())
        violations = page.evaluate(
            """async () => (await axe.run(document, {resultTypes: ["violations"]}))
                .violations.map(v => ({id: v.id, impact: v.impact,
                    targets: v.nodes.slice(0, 5).map(n => n.target.join(" "))}))"""
        )
        blocking = [v for v in violations if v["impact"] in BLOCKING]
        if blocking:
            found[name] = blocking
        # No page scrolls sideways on a phone: tables scroll inside their own box.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= LAYOUTS[layout]["viewport"]["width"], (name, width)
        # And a table's key columns (energy, CO₂e, share) are in view without scrolling.
        hidden = page.evaluate(
            """() => [...document.querySelectorAll("table.history th[scope=col]")]
                .filter(th => /^(energy|co₂e|share)/i.test(th.textContent.trim()))
                .filter(th => th.getBoundingClientRect().right > window.innerWidth + 1)
                .map(th => th.textContent.trim())"""
        )
        assert not hidden, (name, layout, hidden)
    context.close()
    assert found == {}
