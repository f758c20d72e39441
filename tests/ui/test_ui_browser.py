"""The UI in a real browser: the real system, `streamlit run ui/app.py`, Debian's chromium
driven by playwright. Screenshots go to test-output/ (git-ignored).

Needs /usr/bin/chromium (`apt-get install -y chromium`; never `playwright install`).
Without it the tests skip, except under CI=true, where they fail.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, System, free_port
from infra.embedded import wait_http

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OUT = ROOT / "test-output"
TIMEOUT_MS = 30_000
BUSY = "['initial', 'running', 'rerunRequested']"   # script states of a run that has not finished

# In every page, before Streamlit's own code: count the script runs that finished (the app's
# script state leaving a busy state), for settle() to wait on.
TRACK_RUNS = f"""
window.__mk1Runs = 0;
new MutationObserver(changes => {{
  for (const c of changes) {{
    if ({BUSY}.includes(c.oldValue) && !{BUSY}.includes(c.target.getAttribute(c.attributeName))) {{
      window.__mk1Runs += 1;
    }}
  }}
}}).observe(document, {{subtree: true, attributes: true, attributeOldValue: true,
                        attributeFilter: ['data-test-script-state']}});
"""


def _need_browser() -> None:
    ci = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
    problem = None
    if not Path(CHROMIUM).exists():
        problem = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright Python package is missing (pip install playwright)"
    if problem:
        if ci:
            pytest.fail(f"browser tests need a browser under CI: {problem}")
        pytest.skip(f"browser test skipped: {problem}")


@pytest.fixture(scope="module")
def mk1(tmp_path_factory):
    """The real system (Alpha takes 0.3 s per call, so its executions visibly overlap) and
    `streamlit run ui/app.py` on a free loopback port pointed at it, both started at once."""
    _need_browser()
    s = System(tmp_path_factory.mktemp("mk1-ui"), MK1_ALPHA_GENERATE_SECONDS="0.3",
               MK1_BETA_GENERATE_SECONDS="0.2")
    s.home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "MK1_HOME": str(s.home), "MK1_ENDPOINT": s.url, "PYTHONUNBUFFERED": "1"}
    log = (s.home / "ui.log").open("ab")
    ui = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "ui" / "app.py"),
                           "--server.address", "127.0.0.1", "--server.port", str(port),
                           "--server.headless", "true", "--browser.gatherUsageStats", "false",
                           "--server.fileWatcherType", "none"],
                          cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        s.start()
        wait_http(f"http://127.0.0.1:{port}/_stcore/health", 30, ui)
        s.ui_url = f"http://127.0.0.1:{port}"
        yield s
    finally:
        ui.terminate()
        try:
            ui.wait(10)
        except subprocess.TimeoutExpired:
            ui.kill()
            ui.wait()
        log.close()
        s.stop()


@pytest.fixture(scope="module")
def ui_url(mk1):
    return mk1.ui_url


@pytest.fixture(scope="module")
def browser(mk1):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, ui_url):
    OUT.mkdir(exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    ctx.add_init_script(TRACK_RUNS)
    p = ctx.new_page()
    p.set_default_timeout(TIMEOUT_MS)
    open_app(p, ui_url)
    yield p
    ctx.close()


# -- driving the page ------------------------------------------------------------------------

def open_app(page, url: str) -> None:
    """Load the app; the first load after the server starts may render only the title."""
    for attempt in range(3):
        page.goto(url)
        try:
            page.get_by_role("button", name="Invoke runtimes").wait_for(timeout=10_000 * (attempt + 1))
            break
        except Exception:
            if attempt == 2:
                raise
    settle(page, 0)   # the run of the page load


def runs(page) -> int:
    """How many script runs have finished: read it before an action that asks for a run."""
    return page.evaluate("() => window.__mk1Runs")


def settle(page, before: int) -> None:
    """Wait until a script run has finished since `before` (runs()) and none is under way."""
    page.wait_for_function(
        f"before => {{ const a = document.querySelector('[data-testid=stApp]');"
        f" return window.__mk1Runs > before && a && !{BUSY}.includes(a.getAttribute('data-test-script-state')); }}",
        arg=before, timeout=60_000)


def select(page, label: str, option: str) -> None:
    box = page.get_by_label(label, exact=True).first
    if box.input_value() == option:
        return   # choosing what is chosen asks for no run
    before = runs(page)
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    settle(page, before)


def fill(page, label: str, value) -> None:
    box = page.get_by_label(label, exact=True)
    if box.input_value() == str(value):
        return   # the value it has: no run
    before = runs(page)
    box.fill(str(value))
    box.press("Enter")
    settle(page, before)


def invoke(page, user: str, n_alpha: int, n_beta: int, prompts: tuple[str, str] | None = None) -> int:
    """Set the controls and click Invoke; runs() before the click, for settle()."""
    select(page, "User", user)
    fill(page, "RuntimeAlpha invocations", n_alpha)
    fill(page, "RuntimeBeta invocations", n_beta)
    if prompts:
        fill(page, "RuntimeAlpha prompt", prompts[0])
        fill(page, "RuntimeBeta prompt", prompts[1])
    before = runs(page)
    page.get_by_role("button", name="Invoke runtimes").click()
    return before


def wait_layout_still(page, frames: int = 5) -> None:
    """Until the page's height holds for `frames` animation frames: charts re-layout to a new size."""
    page.evaluate("""frames => new Promise(done => {
        let last = -1, still = 0;
        const tick = () => {
            const h = Math.max(...[...document.querySelectorAll(
                '[data-testid=stMain], [data-testid=stAppViewContainer], body')].map(e => e.scrollHeight));
            still = h === last ? still + 1 : 0;
            last = h;
            if (still >= frames) done(h); else requestAnimationFrame(tick);
        };
        tick();
    })""", frames)


def answer_rows(page) -> list[str]:
    """The rows of the results table (the grid is drawn on a canvas; its accessible table has the text)."""
    table = page.locator("[data-testid=stDataFrame]").first
    return [r.text_content() or "" for r in table.locator("tbody tr").all()]


def main_text(page) -> str:
    return page.locator("[data-testid=stMain]").inner_text()


def shot(page, name: str) -> Path:
    """The whole page: Streamlit scrolls an inner element, so grow the viewport to fit it."""
    path = OUT / name
    size = page.viewport_size
    for _ in range(2):    # charts re-layout to the new size, which can change the height again
        height = page.evaluate("() => Math.max(...[...document.querySelectorAll("
                               "'[data-testid=stMain], [data-testid=stAppViewContainer], body')]"
                               ".map(e => e.scrollHeight))")
        page.set_viewport_size({"width": size["width"], "height": min(max(height, size["height"]), 8000)})
        page.evaluate("() => document.querySelectorAll('[data-testid=stMain], [data-testid=stAppViewContainer]')"
                      ".forEach(e => e.scrollTo(0, 0))")
        wait_layout_still(page)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    return path


# -- the tests -------------------------------------------------------------------------------

def test_admin_batch_answers_and_timeline(page):
    clicked = invoke(page, "admin", 4, 2, ("hello from the browser", "quick brown fox"))
    page.get_by_text("6 of 6 answers").wait_for(timeout=60_000)
    peak = page.get_by_text("max concurrent per runtime:")
    peak.wait_for(timeout=30_000)
    settle(page, clicked)
    text = peak.inner_text()
    per_runtime = {rt: int(n) for rt, n in re.findall(r"(Runtime\w+) (\d+)", text)}
    assert set(per_runtime) == {"RuntimeAlpha", "RuntimeBeta"}, text
    assert all(1 <= n <= 3 for n in per_runtime.values()), text     # reserved concurrency 3
    assert per_runtime["RuntimeAlpha"] >= 2, text                    # the calls really ran in parallel
    body = main_text(page)
    assert "6 of 6 answers — 6 ok" in body
    rows = answer_rows(page)
    assert len(rows) == 6, rows
    assert sum("[alpha] browser the from hello" in r for r in rows) == 4, rows
    assert sum("[beta] QUICK BROWN FOX" in r for r in rows) == 2, rows
    assert "Bars from usage records" in body
    assert "grey while it waited in the function's queue" in body     # the timeline's legend, said
    assert "not allowed" not in body and "Traceback" not in body
    # the Gantt chart is drawn (Streamlit loads its chart code on first use: the element appears
    # once that chunk is in, which can be after the script run ended), and so are the pool and
    # the billing report
    page.locator("[data-testid=stVegaLiteChart]").first.wait_for(timeout=30_000)
    assert "Container pool" in body and "Usage and billing" in body
    page.get_by_role("tab", name="Billing report").click()
    page.get_by_text("Estimated total").wait_for()
    page.get_by_role("tab", name="Over time").click()
    shot(page, "ui-admin-batch.png")


def test_user1_is_refused_beta(page):
    clicked = invoke(page, "user1", 1, 1)
    # the error shown above the table (the table's cell says it too, once the grid has drawn it)
    denied = page.get_by_test_id("stAlertContentError").get_by_text("user1 is not allowed to invoke RuntimeBeta")
    denied.wait_for(timeout=60_000)
    page.get_by_text("2 of 2 answers").wait_for()
    settle(page, clicked)
    body = main_text(page)
    assert "1 ok, 1 denied" in body
    rows = answer_rows(page)
    assert len(rows) == 2 and any("denied" in r and "RuntimeBeta" in r for r in rows), rows
    assert "Traceback" not in body
    shot(page, "ui-user1-denied.png")


def test_narrow_window(browser, ui_url):
    """A phone-sized window: the controls stack, nothing overflows the page sideways."""
    ctx = browser.new_context(viewport={"width": 400, "height": 900})
    ctx.add_init_script(TRACK_RUNS)
    p = ctx.new_page()
    p.set_default_timeout(TIMEOUT_MS)
    try:
        open_app(p, ui_url)
        clicked = invoke(p, "user2", 0, 2)
        p.get_by_text("2 of 2 answers").wait_for(timeout=60_000)
        p.get_by_text("max concurrent per runtime:").wait_for()
        settle(p, clicked)
        width = p.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 400, f"the page is {width}px wide in a 400px window"
        shot(p, "ui-narrow.png")
    finally:
        ctx.close()


def _open_url(mk1, name: str, **kw) -> str:
    lam = mk1.aws("lambda")
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE", **kw)["FunctionUrl"]
    lam.add_permission(FunctionName=name, StatementId="public", Action="lambda:InvokeFunctionUrl", Principal="*",
                       FunctionUrlAuthType="NONE")
    return url


def test_chromium_reaches_a_public_function_url(browser, mk1):
    """A function URL (AuthType NONE) in the browser's address bar, as on AWS
    (https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html)."""
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", "def handler(event, context):\n"
                             "    return {'statusCode': 200, 'headers': {'Content-Type': 'text/html'},\n"
                             "            'body': '<h1>hello from ' + event['rawPath'] + '</h1>'}\n")
    role = mk1.aws("iam").get_role(RoleName="mk1-lambda-role")["Role"]["Arn"]
    mk1.aws("lambda").create_function(FunctionName="webpage", Runtime="python3.11", Handler="app.handler",
                                      Role=role, Code={"ZipFile": buf.getvalue()})
    url = _open_url(mk1, "webpage")
    ctx = browser.new_context()
    p = ctx.new_page()
    p.set_default_timeout(TIMEOUT_MS)
    try:
        for _ in range(50):   # the permission reaches the dispatcher within a control-plane read
            resp = p.goto(url + "from/chromium")
            if resp is not None and resp.status == 200:
                break
            p.wait_for_timeout(200)
        assert resp is not None and resp.status == 200
        assert p.locator("h1").inner_text() == "hello from /from/chromium"
    finally:
        ctx.close()


def test_the_ui_shows_a_streamed_url_answer_as_it_arrives(page, mk1, ui_url):
    from helpers import deploy_streamer, wait_until
    deploy_streamer(mk1, "uistream")
    url = _open_url(mk1, "uistream", InvokeMode="RESPONSE_STREAM")
    wait_until(lambda: any(u["url"] == url and u["public"] for u in mk1.status().get("function_urls", [])),
               timeout=15, what="the URL in the dispatcher's status")
    open_app(page, ui_url)
    page.get_by_text("Function URLs", exact=True).scroll_into_view_if_needed()
    fill(page, "Path and query", "/?gap=0.4")   # 4 s in all: a loaded machine still sees it arrive in parts
    before = runs(page)
    page.get_by_role("button", name="Call URL").click()
    answer = page.locator(".st-key-url_answer")
    # Part of the answer on the page while the function is still writing the rest.
    answer.get_by_text(re.compile(r"chunk 1 ")).wait_for(timeout=15_000)
    early = answer.inner_text()
    assert "chunk 9" not in early, early
    settle(page, before)
    text = answer.inner_text()
    assert all(f"chunk {i} " in text for i in range(10)), text
    assert "HTTP 207" in main_text(page) and "streamed" in main_text(page)
    shot(page, "ui_function_url_stream.png")
