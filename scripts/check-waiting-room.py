#!/usr/bin/env python3
"""The waiting-room page in a real browser (part of make test).

Starts the debug seatrush binary against the dev stack (the test database and Redis db, from
the SEATRUSH_* environment) and drives Debian's chromium (installed with apt when missing)
with Playwright (into the virtualenv .dev/playwright; it uses that chromium, downloads none):
  - buyer A opens the waiting room of a paused queue with two users ahead and sees position
    3 (the identity gone from the address bar); one of them leaves and the page moves to 2
    (progress bar, live region);
  - buyer B, on a phone-sized screen in a second browser context, finds the instance's one
    event stream taken (SEATRUSH_MAX_EVENT_STREAMS=1, a real 503) and polls its status;
  - the admin opens admission: A's page shows the seat map within a second, B's on its next
    poll;
  - A holds the best two seats (by keyboard); B sees them as held on its map (revalidated by
    its ETag, mostly 304), and the page fits the phone's width; B picks seat 5 by keyboard
    (the map is one tab stop: arrows move, Space chooses, the next Tab is the hold button);
  - A pays without balance and is told so in words, charges the difference, pays, and sees
    the confirmation and the reservation in their list;
  - buyer C, on a schedule whose holds last 3 s, sees their hold shown as expired; on a
    schedule opening in 10 minutes with a shuffle, the pre-queue and the time to go; through
    the form at /, a waiting room opened by hand; on a sale whose booking closed, that it
    closed, with no offer to join again;
  - no page logs an error (a script error or a Content-Security-Policy refusal);
  - A's page made exactly the hot-path requests a script client makes (one issuance, one
    event stream and no status poll while it was open, one hold, one charge, a payment per
    click) besides reads of the seat map, the balance and the reservations; B's unchanged
    map is answered 304.
Screenshots of each step go to WAITING_ROOM_SHOTS (default target/waiting-room/).
"""

import os
import re
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".dev", "playwright")
VENV_PYTHON = os.path.join(VENV, "bin", "python")

if os.path.realpath(sys.prefix) != os.path.realpath(VENV):
    # Playwright lives in its own virtualenv: make it, then run this script from it.
    if not os.path.exists(os.path.join(VENV, ".playwright-1")):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q",
                        "playwright>=1.50,<2"], check=True)
        open(os.path.join(VENV, ".playwright-1"), "w").close()
    os.execv(VENV_PYTHON, [VENV_PYTHON, *sys.argv])

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from devtools import (ADMIN, BINARY, apt_install, call, create, free_port, identity,  # noqa: E402
                      stop, wait_until)

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags chromium keeps calling home, which a closed
# network refuses; --no-sandbox because make test may run as root.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1100, "height": 1000}
SEAT_PRICE = 55_000
TIME_LEFT = re.compile(r"^Time left to buy: [1-5]:[0-5][0-9]$")
MAPS = "GET /api/v1/concerts/{id}/schedules/{id}/seats"


def schedule(base, concert, venue, seats, settings, opens="2020-01-01T00:00:00.000Z",
             closes="2030-01-01T00:00:00.000Z"):
    created = create(base, f"/api/v1/admin/concerts/{concert}/schedules", {
        "venueId": venue, "performanceDate": "2030-01-01", "performanceTime": "19:30:00",
        "bookingOpenAt": opens, "bookingCloseAt": closes,
        "seatCount": seats, "price": SEAT_PRICE})
    queue(base, created["scheduleId"], settings)
    return created["scheduleId"], created["seatIds"]


def queue(base, schedule_id, settings):
    status, rsp = call(base, "PUT", f"/api/v1/admin/schedules/{schedule_id}/queue", settings, ADMIN)
    assert status == 200, rsp


def user(base, name):
    return create(base, "/api/v1/admin/users", {"name": name})["userId"]


def jwt(user_id):
    return identity(user_id)["Authorization"].removeprefix("Bearer ")


class Page:
    """One buyer's browser context: the page, its errors and the requests it made."""

    def __init__(self, browser, base, viewport, name):
        self.name = name
        self.context = browser.new_context(viewport=viewport, base_url=base)
        self.page = self.context.new_page()
        self.errors = []
        self.requests = Counter()
        self.statuses = Counter()
        self.page.on("pageerror", lambda e: self.errors.append(f"script: {e}"))
        # An answer other than 2xx is logged as "Failed to load resource": the page shows
        # the API's refusals itself, so only other errors count.
        self.page.on("console", lambda m: m.type == "error" and not m.text.startswith(
            "Failed to load resource") and self.errors.append(m.text))
        self.page.on("request", self.count)
        self.page.on("response", lambda r: self.statuses.update([(route(r.request), r.status)]))

    def count(self, request):
        self.requests[route(request)] += 1

    def open(self, concert, schedule_id, user_id):
        self.page.goto(f"/waiting-room/{concert}/{schedule_id}#identity={jwt(user_id)}")

    def eventually(self, what, check, seconds=10):
        """Polls `check` (the browser's events are taken in while it waits) until true."""
        deadline = time.monotonic() + seconds
        while not check():
            assert time.monotonic() < deadline, f"page {self.name}: no {what} in {seconds} s"
            self.page.wait_for_timeout(100)

    def shot(self, shots, name):
        self.page.screenshot(path=os.path.join(shots, name), full_page=True)


def route(request):
    """A request as "METHOD /path with ids as {id}", the query left off."""
    path = re.sub(r"\?.*$", "", request.url.split("//", 1)[1].split("/", 1)[1])
    return f"{request.method} /" + re.sub(r"/\d+", "/{id}", path)


def fits_width(page):
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def main():
    apt_install("chromium", "chromium")
    shots = os.path.join(ROOT, os.environ.get("WAITING_ROOM_SHOTS", "target/waiting-room"))
    os.makedirs(shots, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, SEATRUSH_HTTP_ADDR=f"127.0.0.1:{port}", SEATRUSH_LOG="warn",
               SEATRUSH_MAX_EVENT_STREAMS="1")
    app = subprocess.Popen([BINARY], env=env)
    try:
        wait_until("seatrush", lambda: call(base, "GET", "/health")[0] == 200, 120)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                run(browser, base, shots)
            finally:
                browser.close()
    finally:
        stop(app)


def run(browser, base, shots):
    venue = create(base, "/api/v1/admin/venues", {"name": "Blue Square Hall"})["venueId"]
    concert = create(base, "/api/v1/admin/concerts", {"title": "Aurora Live in Seoul"})["concertId"]
    sale, seat_ids = schedule(base, concert, venue, 40, {"paused": True})
    short, _ = schedule(base, concert, venue, 12, {"holdTtlSeconds": 3})
    ahead = []
    for i in range(2):
        uid = user(base, f"ahead-{i}")
        me = identity(uid)
        status, rsp = call(base, "POST", "/api/v1/queue/tokens",
                           {"userId": uid, "scheduleId": sale}, me)
        assert status == 200 and rsp["data"]["status"] == "WAITING", rsp
        ahead.append(dict(me, **{"Queue-Token": rsp["data"]["token"]}))
    buyer_a, buyer_b, buyer_c = (user(base, n) for n in ("Buyer A", "Buyer B", "Buyer C"))

    a = Page(browser, base, DESKTOP, "A")
    a.open(concert, sale, buyer_a)
    expect(a.page.locator("#position")).to_have_text("No. 3 in line", timeout=10_000)
    expect(a.page.locator("#estimate")).to_contain_text("minute")
    assert "identity" not in a.page.url, f"the identity stayed in the address bar: {a.page.url}"
    a.shot(shots, "1-queue.png")

    # One ahead leaves: the place and the progress bar move on the stream's next update.
    status, _ = call(base, "DELETE", "/api/v1/queue/tokens/me", headers=ahead[0])
    assert status == 200
    expect(a.page.locator("#position")).to_have_text("No. 2 in line", timeout=10_000)
    assert a.page.eval_on_selector("#progress", "p => p.value / p.max") > 0
    expect(a.page.locator("#announce")).to_contain_text("number 2 in line")

    b = Page(browser, base, PHONE, "B")
    b.open(concert, sale, buyer_b)
    expect(b.page.locator("#position")).to_have_text("No. 3 in line", timeout=10_000)
    b.eventually("B's stream refused and a status poll in its place", lambda: (
        b.statuses[("GET /api/v1/queue/tokens/me/events", 503)] >= 1
        and b.statuses[("GET /api/v1/queue/tokens/me", 200)] >= 1))
    assert fits_width(b.page), "the queue is wider than a phone"
    b.shot(shots, "2-queue-phone.png")

    opened = time.monotonic()
    queue(base, sale, {"paused": False})
    expect(a.page.locator("#sale")).to_be_visible(timeout=5_000)
    switched = time.monotonic() - opened
    assert switched < 1.0, f"the seat map came {switched:.2f} s after admission opened"
    expect(a.page.locator("#map button")).to_have_count(len(seat_ids))
    expect(a.page.locator("#turn-left")).to_have_text(TIME_LEFT)
    expect(a.page.locator("#title")).to_have_text("Aurora Live in Seoul")
    a.shot(shots, "3-seat-map.png")

    # Best available ×2, by keyboard: the lowest two seats.
    a.page.focus("#quantity")
    a.page.keyboard.press("End")  # the select's last option, 4
    a.page.keyboard.press("ArrowUp")
    a.page.keyboard.press("ArrowUp")
    assert a.page.eval_on_selector("#quantity", "s => s.value") == "2"
    a.page.focus("#hold-best")
    a.page.keyboard.press("Enter")
    expect(a.page.locator("#hold")).to_be_visible()
    expect(a.page.locator("#hold-seats")).to_contain_text("seats 1, 2")
    expect(a.page.locator("#hold-left")).to_contain_text("Pay within")
    for seat in seat_ids[:2]:
        expect(a.page.locator(f'#map button[data-seat="{seat}"]')).to_have_class("seat mine")
    a.shot(shots, "4-hold.png")

    # The other buyer's map shows them held (its map refreshes every 2 s).
    expect(b.page.locator("#sale")).to_be_visible(timeout=5_000)
    for seat in seat_ids[:2]:
        expect(b.page.locator(f'#map button[data-seat="{seat}"]')).to_have_class(
            "seat held", timeout=5_000)
        label = b.page.get_attribute(f'#map button[data-seat="{seat}"]', "aria-label")
        assert "held by someone else" in label, label
    expect(b.page.locator(f'#map button[data-seat="{seat_ids[2]}"]')).to_have_class("seat available")
    assert fits_width(b.page), "the seat map is wider than a phone"
    b.shot(shots, "5-held-on-another-map-phone.png")

    # B picks seat 5 by keyboard: the map is one tab stop, arrows move, Space chooses, and
    # the next Tab is the hold button, however many seats the map has.
    b.page.focus("#hold-best")
    b.page.keyboard.press("Tab")
    assert b.page.evaluate("document.activeElement.parentElement.id") == "map"
    b.page.keyboard.press("Home")
    for _ in range(4):
        b.page.keyboard.press("ArrowRight")
    b.page.keyboard.press("Space")
    expect(b.page.locator(f'#map button[data-seat="{seat_ids[4]}"]')).to_have_attribute(
        "aria-pressed", "true")
    b.page.keyboard.press("Tab")
    assert b.page.evaluate("document.activeElement.id") == "hold-picked"
    b.page.keyboard.press("Enter")
    expect(b.page.locator("#hold-seats")).to_contain_text("seat 5 ·")

    # No balance yet: the refusal in words; the charge field offers what is missing.
    expect(a.page.locator("#balance")).to_have_text("₩0")
    a.page.click("#pay")
    expect(a.page.locator("#alert")).to_have_text(
        "Your balance is not enough to pay for these seats. Charge it first.")
    assert a.page.input_value("#charge-amount") == str(2 * SEAT_PRICE)
    a.shot(shots, "6-error-balance.png")
    a.page.click("#charge")
    expect(a.page.locator("#balance")).to_have_text(f"₩{2 * SEAT_PRICE:,}")
    a.page.click("#pay")
    expect(a.page.locator("#done-title")).to_have_text("You have your tickets")
    expect(a.page.locator("#done-text")).to_contain_text(f"Paid ₩{2 * SEAT_PRICE:,} for seats 1, 2")
    expect(a.page.locator("#mine-list li")).to_have_count(1)
    expect(a.page.locator("#mine-list li")).to_contain_text("paid")
    a.shot(shots, "7-confirmation.png")

    # A hold that lapses is shown as expired.
    c = Page(browser, base, DESKTOP, "C")
    c.open(concert, short, buyer_c)
    expect(c.page.locator("#sale")).to_be_visible(timeout=5_000)
    expect(c.page.locator("#turn-left")).to_have_text(TIME_LEFT)
    c.page.select_option("#quantity", "1")
    c.page.click("#hold-best")
    expect(c.page.locator("#hold")).to_be_visible()
    expect(c.page.locator("#alert")).to_have_text(
        "Your hold has expired and its seats went back on sale.", timeout=10_000)
    expect(c.page.locator("#hold")).to_be_hidden()
    c.shot(shots, "8-error-hold-expired.png")

    # Before a shuffled opening: the pre-queue, with the time until the places are drawn.
    in_ten = datetime.now(timezone.utc) + timedelta(minutes=10)
    later, _ = schedule(base, concert, venue, 10, {"queueOrder": "SHUFFLE_AT_OPEN"},
                        opens=in_ten.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    c.open(concert, later, buyer_c)
    expect(c.page.locator("#queue-title")).to_have_text("You are in the pre-queue", timeout=10_000)
    expect(c.page.locator("#position")).to_contain_text("Booking opens in ")
    expect(c.page.locator("#estimate")).to_contain_text("drawn at random")
    c.shot(shots, "9-pre-queue.png")

    # The form at / opens a waiting room by hand.
    c.page.goto("/")
    c.page.fill("input[name=concert]", str(concert))
    c.page.fill("input[name=schedule]", str(short))
    c.page.fill("input[name=identity]", jwt(buyer_c))
    c.page.click("#choose-form button")
    expect(c.page.locator("#sale")).to_be_visible(timeout=10_000)
    assert c.page.url.endswith(f"/waiting-room/{concert}/{short}"), c.page.url

    # A sale that is over: said so, and no offer to join again.
    over, _ = schedule(base, concert, venue, 5, {"paused": False},
                       closes="2021-01-01T00:00:00.000Z")
    c.open(concert, over, buyer_c)
    expect(c.page.locator("#done-text")).to_have_text(
        "Booking for this performance has closed.", timeout=10_000)
    expect(c.page.locator("#rejoin")).to_be_hidden()

    for page in (a, b, c):
        assert not page.errors, f"page {page.name}: {page.errors}"
    # B's map, refreshed every 2 s since its turn, changed only with A's hold and payment.
    b.eventually("304 among B's seat-map reads", lambda: b.statuses[(MAPS, 304)] >= 1)
    hot_path(a)
    print(f"check-waiting-room: the seat map {switched:.2f} s after admission opened; "
          f"screenshots in {os.path.relpath(shots, ROOT)}")


def hot_path(page):
    """A's requests to the hot path are a script client's; prints all it made."""
    made = page.requests
    expected = {
        "POST /api/v1/queue/tokens": 1,
        "GET /api/v1/queue/tokens/me/events": 1,
        "GET /api/v1/queue/tokens/me": 0,
        "POST /api/v1/reservations": 1,
        "POST /api/v1/users/{id}/balance/charge": 1,
        "POST /api/v1/payments": 2,  # one refused for the balance, one paid
    }
    got = {name: made[name] for name in expected}
    assert got == expected, f"hot-path requests: {got}, a script client makes {expected}"
    print("check-waiting-room: A's requests: " +
          ", ".join(f"{name} ×{n}" for name, n in sorted(made.items())) +
          f" ({page.statuses[(MAPS, 304)]} of the seat-map reads 304)")


if __name__ == "__main__":
    main()
