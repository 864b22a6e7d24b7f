#!/usr/bin/env python3
"""Checks the dashboards and alert rules against a real Prometheus (README "Observability", part of make test).

Starts the debug seatrush binary against the dev stack (the test database and Redis db, from
the SEATRUSH_* environment), drives a short mixed load through it (tokens, seat listings,
holds, charges, payments and a few errors), lets a real Prometheus scrape it every second,
then evaluates every panel query of every dashboard in grafana/dashboards/ through
Prometheus's HTTP API. Fails when a query errors or returns no series. Before that,
`promtool` checks the Prometheus configuration and the alert rules.
"""

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

from devtools import (ADMIN, BINARY, ROOT, apt_install, call, create, free_port, identity,
                      stop, wait_until)

LOAD_SECONDS = 12


def follow(base, headers, until, seconds):
    """Reads the token's event stream until an event named `until` (or `seconds`); returns
    the names of the events heard."""
    url = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=seconds)
    heard = []
    try:
        conn.request("GET", "/api/v1/queue/tokens/me/events", headers=headers)
        rsp = conn.getresponse()
        deadline = time.time() + seconds
        while rsp.status == 200 and time.time() < deadline:
            line = rsp.fp.readline()
            if not line:
                break
            if line.startswith(b"event: "):
                heard.append(line[7:].strip().decode())
                if heard[-1] == until:
                    break
    except OSError:
        pass
    finally:
        conn.close()
    return heard


def drive_load(base):
    """A short flash sale: every public endpoint, successes and a few errors."""
    def admin(path, body):
        return create(base, path, body)

    venue = admin("/api/v1/admin/venues", {"name": "Observability Hall"})["venueId"]
    concert = admin("/api/v1/admin/concerts", {"title": "Panels Live"})["concertId"]
    now = time.gmtime()
    stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))
    created = admin(f"/api/v1/admin/concerts/{concert}/schedules", {
        "venueId": venue, "performanceDate": time.strftime("%Y-%m-%d", now),
        "performanceTime": "19:00:00", "bookingOpenAt": stamp(time.time() - 60),
        "bookingCloseAt": stamp(time.time() + 3600), "seatCount": 400, "price": 1000})
    schedule, seats = created["scheduleId"], created["seatIds"]
    call(base, "PUT", f"/api/v1/admin/schedules/{schedule}/queue",
         {"maxActiveUsers": 100000, "admissionPerSecond": 100000, "holdTtlSeconds": 2}, ADMIN)
    # Buyers waiting in a paused queue follow its event stream until they are admitted.
    paused = admin(f"/api/v1/admin/concerts/{concert}/schedules", {
        "venueId": venue, "performanceDate": time.strftime("%Y-%m-%d", now),
        "performanceTime": "21:00:00", "bookingOpenAt": stamp(time.time() - 60),
        "bookingCloseAt": stamp(time.time() + 3600), "seatCount": 10, "price": 1000})
    paused_queue = f"/api/v1/admin/schedules/{paused['scheduleId']}/queue"
    call(base, "PUT", paused_queue, {"paused": True}, ADMIN)
    followers = []
    for i in range(3):
        user = admin("/api/v1/admin/users", {"name": f"follower-{i}"})["userId"]
        me = identity(user)
        status, rsp = call(base, "POST", "/api/v1/queue/tokens",
                           {"userId": user, "scheduleId": paused["scheduleId"]}, me)
        assert status == 200, rsp
        headers = dict(me, **{"Queue-Token": rsp["data"]["token"]})
        followers.append(threading.Thread(target=follow, args=(base, headers, "active", 20)))
        followers[-1].start()
    # A pre-queued buyer follows a shuffled queue through its opening until admitted.
    opening = admin(f"/api/v1/admin/concerts/{concert}/schedules", {
        "venueId": venue, "performanceDate": time.strftime("%Y-%m-%d", now),
        "performanceTime": "22:00:00", "bookingOpenAt": stamp(time.time() + 3),
        "bookingCloseAt": stamp(time.time() + 3600), "seatCount": 10, "price": 1000})
    call(base, "PUT", f"/api/v1/admin/schedules/{opening['scheduleId']}/queue",
         {"queueOrder": "SHUFFLE_AT_OPEN"}, ADMIN)
    user = admin("/api/v1/admin/users", {"name": "pre-queued"})["userId"]
    me = identity(user)
    status, rsp = call(base, "POST", "/api/v1/queue/tokens",
                       {"userId": user, "scheduleId": opening["scheduleId"]}, me)
    assert status == 200 and rsp["data"]["preQueue"], rsp
    headers = dict(me, **{"Queue-Token": rsp["data"]["token"]})
    followers.append(threading.Thread(target=follow, args=(base, headers, "active", 20)))
    followers[-1].start()
    time.sleep(1)
    call(base, "PUT", paused_queue, {"paused": False}, ADMIN)
    until = time.time() + LOAD_SECONDS
    n = 0
    while time.time() < until:
        user = admin("/api/v1/admin/users", {"name": f"viewer-{n}"})["userId"]
        me = identity(user)
        status, rsp = call(base, "POST", "/api/v1/queue/tokens",
                           {"userId": user, "scheduleId": schedule}, me)
        token = dict(me, **({"Queue-Token": rsp["data"]["token"]} if status == 200 else {}))
        call(base, "GET", "/api/v1/queue/tokens/me", headers=token)
        if n % 4 == 0:
            follow(base, token, "active", 2)
        call(base, "GET", f"/api/v1/concerts/{concert}/schedules", headers=token)
        call(base, "GET", f"/api/v1/concerts/{concert}/schedules/{schedule}/seats", headers=token)
        call(base, "POST", f"/api/v1/users/{user}/balance/charge", {"amount": 5000}, token)
        call(base, "GET", f"/api/v1/users/{user}/balance", headers=token)
        seat = seats[n % len(seats)]
        status, rsp = call(base, "POST", "/api/v1/reservations",
                           {"scheduleId": schedule, "seatIds": [seat], "userId": user}, token)
        if status == 201 and n % 3 != 2:  # every third hold is left to expire
            call(base, "POST", "/api/v1/payments",
                 {"reservationId": rsp["data"]["reservationId"], "paymentMethod": "BALANCE",
                  "userId": user}, dict(token, **{"Idempotency-Key": f"pay-{n}"}))
        # A few errors: a bad token, no identity, an unknown route, a cancel of nothing.
        call(base, "GET", "/api/v1/queue/tokens/me",
             headers=dict(me, **{"Queue-Token": str(uuid.uuid4())}))
        call(base, "GET", "/api/v1/queue/tokens/me", headers={"Queue-Token": str(uuid.uuid4())})
        call(base, "GET", "/api/v1/nowhere")
        call(base, "DELETE", f"/api/v1/reservations/{schedule << 32 | 999999}", headers=token)
        n += 1
    for follower in followers:
        follower.join()
    return n


def panel_queries(dashboard):
    """(panel title, expr) for every target of every panel, rows included."""
    out = []
    def walk(panels):
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    out.append((panel.get("title", "?"), target["expr"]))
            walk(panel.get("panels", []))
    walk(dashboard.get("panels", []))
    return out


def main():
    apt_install("prometheus", "prometheus", "promtool")
    subprocess.run(["promtool", "check", "rules", os.path.join(ROOT, "prometheus", "alerts.yml")],
                   check=True)
    subprocess.run(["promtool", "check", "config", "--syntax-only",
                    os.path.join(ROOT, "prometheus", "prometheus.yml")], check=True)

    work = tempfile.mkdtemp(prefix="seatrush-observability-")
    app_port, prom_port = free_port(), free_port()
    base = f"http://127.0.0.1:{app_port}"
    env = dict(os.environ, SEATRUSH_HTTP_ADDR=f"127.0.0.1:{app_port}", SEATRUSH_LOG="warn")
    app = subprocess.Popen([BINARY], env=env)
    prometheus = None
    try:
        wait_until("seatrush", lambda: call(base, "GET", "/health")[0] == 200, 120)
        with open(os.path.join(work, "prometheus.yml"), "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: seatrush
    static_configs:
      - targets: ["127.0.0.1:{app_port}"]
""")
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={work}/prometheus.yml",
             f"--storage.tsdb.path={work}/data", f"--web.listen-address=127.0.0.1:{prom_port}",
             "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        prom = f"http://127.0.0.1:{prom_port}"
        wait_until("prometheus", lambda: call(prom, "GET", "/-/ready")[0] == 200, 60)
        rounds = drive_load(base)
        time.sleep(3)  # a few more scrapes after the last request
        failures, total = [], 0
        for path in sorted(os.listdir(os.path.join(ROOT, "grafana", "dashboards"))):
            with open(os.path.join(ROOT, "grafana", "dashboards", path)) as f:
                dashboard = json.load(f)
            for title, expr in panel_queries(dashboard):
                total += 1
                status, rsp = call(prom, "GET", "/api/v1/query?" +
                                   urllib.parse.urlencode({"query": expr}))
                if status != 200 or rsp.get("status") != "success":
                    failures.append(f"{path} / {title}: {expr}\n    error: {rsp}")
                elif not rsp["data"]["result"]:
                    failures.append(f"{path} / {title}: {expr}\n    no series")
        print(f"check-observability: {rounds} load rounds, {total} panel queries, "
              f"{total - len(failures)} with data")
        if failures:
            sys.exit("check-observability: panel queries without data:\n  " +
                     "\n  ".join(failures))
    finally:
        stop(prometheus, app)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
