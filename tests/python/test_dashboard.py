"""The dashboard in headless Chromium (Debian's `/usr/bin/chromium`, driven
by Playwright): sign in with a developer key, find a message just sent, open
its timeline, see the overview chart drawn with data, and no console errors.

`PIGEON_DASHBOARD_SCREENSHOT=docs/dashboard.png` also saves the overview as
the README's screenshot."""

import os
import shutil
from pathlib import Path

import pytest

from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("PIGEON_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run does)")
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield browser
        browser.close()


@pytest.fixture()
def tenant(pigeon):
    """An account with a developer key and one message sent and delivered."""
    status, account = pigeon.request("POST", "/v1/accounts", {"name": "Dashboard Test"})
    assert status == 201, account
    status, key = pigeon.request("POST", f"/v1/accounts/{account['id']}/keys", {"role": "developer"})
    assert status == 201, key
    developer = key["key"]
    # A full page of older messages first, so the list has a second page.
    batch = [{"to": f"+849123{i:05d}", "body": f"Batch {i}"} for i in range(100, 150)]
    status, result = pigeon.request("POST", "/v1/messages/batch", {"messages": batch}, key=developer)
    assert status == 200 and result["accepted"] == 50, result
    sent = []
    for to, body in [("+84912345678", "Your code is 123456"), ("+84912340001", "Hello"), ("+84912340002", "Hi")]:
        status, message = pigeon.request("POST", "/v1/messages", {"to": to, "body": body, "type": "otp"}, key=developer)
        assert status == 202, message
        sent.append(message)

    def final(message_id):
        status, m = pigeon.request("GET", f"/v1/messages/{message_id}", key=developer)
        return status == 200 and m["status"] in ("delivered", "undelivered", "failed") and m

    for m in sent:
        pigeon.wait_for(f"{m['id']} to finish", lambda: final(m["id"]))
    return {"account": account, "key": developer, "delivered": sent[0], "messages": sent}


def watch_console(page):
    problems = []
    page.on("console", lambda msg: problems.append(f"console.{msg.type}: {msg.text}") if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    return problems


def test_sign_in_find_a_message_open_its_timeline_and_see_the_chart(pigeon, browser, tenant):
    context = browser.new_context(viewport={"width": 1366, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems = watch_console(page)

    page.goto(pigeon.url + "/dashboard")
    page.fill("#api-key", tenant["key"])
    page.click("#sign-in")
    page.wait_for_selector("#page-overview")
    assert page.text_content("#role") == "developer"
    # A developer sees neither the carriers nor the policies nor compliance pages.
    shown = page.eval_on_selector_all("#nav a", "links => links.map(a => a.dataset.page)")
    assert shown == ["overview", "messages", "inbound", "numbers"], shown

    # The overview's chart: uPlot drew the accepted series over a canvas.
    page.wait_for_selector("#volume-chart canvas")
    assert int(page.get_attribute("#volume-chart", "data-total")) >= len(tenant["messages"])
    coloured = page.evaluate(
        """() => {
          const c = document.querySelector('#volume-chart canvas');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let n = 0;  // pixels of the accepted series' blue (#2563eb), anti-aliasing allowed
          for (let i = 0; i < d.length; i += 4) {
            if (d[i + 3] > 200 && Math.abs(d[i] - 37) < 40 && Math.abs(d[i + 1] - 99) < 40 && Math.abs(d[i + 2] - 235) < 40) n++;
          }
          return n;
        }"""
    )
    assert coloured > 50, f"the chart has {coloured} pixels of the accepted series"
    page.wait_for_selector("#page-overview table")
    assert "sandbox" in page.text_content("#page-overview")
    page.wait_for_function("() => !document.querySelector('#page-overview .loading')")
    # The sandbox failed +84912340002 with carrier_rejected; it shows by code.
    assert "carrier_rejected" in page.text_content("#page-overview")
    screenshot = os.environ.get("PIGEON_DASHBOARD_SCREENSHOT")
    if screenshot:
        page.screenshot(path=str(ROOT / screenshot), full_page=False)

    # The message just sent is in the list, and a search by recipient finds it.
    delivered = tenant["delivered"]
    page.click("#nav a[data-page=messages]")
    row = page.wait_for_selector(f"a[href='#/messages/{delivered['id']}']")
    page.fill("#filter-to", delivered["to"])
    page.select_option("#filter-status", "delivered")
    page.click("#page-messages button[type=submit]")
    page.wait_for_function("() => location.hash.includes('status=delivered')")
    page.wait_for_selector("#page-messages tbody tr")
    rows = page.eval_on_selector_all("#page-messages tbody tr", "rows => rows.map(r => r.textContent)")
    assert len(rows) == 1 and delivered["id"] in rows[0], rows

    # Pages: the newest 50, then the older ones, and back.
    page.click("#page-messages button.secondary")
    page.wait_for_function("() => location.hash === '#/messages'")
    page.click("text=Older ›")
    page.wait_for_selector("text=‹ Newer")
    older = page.eval_on_selector_all("#page-messages tbody tr", "rows => rows.map(r => r.textContent)")
    assert len(older) == 3 and all("+849123001" in r for r in older), older
    page.click("text=‹ Newer")
    page.wait_for_selector("text=Older ›")
    assert page.eval_on_selector_all("#page-messages tbody tr", "rows => rows.length") == 50

    # Its timeline: queued, sending, sent, delivered, via the sandbox carrier.
    row = page.wait_for_selector(f"a[href='#/messages/{delivered['id']}']")
    row.click()
    page.wait_for_selector("#timeline li")
    events = page.eval_on_selector_all("#timeline li .badge", "badges => badges.map(b => b.textContent)")
    assert events == ["queued", "sending", "sent", "delivered"], events
    assert "sandbox" in page.text_content("#timeline")

    # A page the role may not see is a clear message, not a broken page.
    page.goto(pigeon.url + "/dashboard#/policies")
    page.wait_for_selector("#page-policies .notice.error")
    assert "may not see" in page.text_content("#page-policies")

    context.close()
    assert problems == [], problems


def test_an_admin_sees_carriers_and_policies(pigeon, browser):
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems = watch_console(page)
    page.goto(pigeon.url + "/dashboard")
    page.fill("#api-key", pigeon.admin_key)
    page.click("#sign-in")
    page.wait_for_selector("#page-overview")

    page.click("#nav a[data-page=carriers]")
    page.wait_for_selector("#page-carriers table")
    assert "simulator" in page.text_content("#page-carriers")

    page.click("#nav a[data-page=policies]")
    digest = page.wait_for_selector("#policy-digest").text_content()
    page.click("#simulate")
    page.wait_for_selector("#simulate-result dl")
    result = page.text_content("#simulate-result")
    assert digest in result and "route" in result, result

    page.click("#nav a[data-page=compliance]")
    page.wait_for_selector("#page-compliance table, #page-compliance .empty")
    context.close()
    assert problems == [], problems
