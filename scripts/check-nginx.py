#!/usr/bin/env python3
"""Checks deploy/nginx.conf's cap on event streams in front of a real seatrush (part of make test).

Starts the debug seatrush binary against the dev stack (the test database and Redis db, from
the SEATRUSH_* environment) and the Debian nginx (installed with apt when missing) with the
repository's deploy/nginx.conf, changed only in its port, its upstream list (this seatrush)
and the stream cap (2 instead of 6 000, so the check needs three streams, not 6 001). Then,
through nginx, for users waiting in a paused queue:
  - two event streams open and stay open;
  - a third is refused at nginx: 503, Retry-After, seatrush's JSON envelope;
  - meanwhile the status and other requests still pass;
  - once one stream closes, a new one opens.
"""

import http.client
import json
import os
import re
import shutil
import subprocess
import tempfile

from devtools import (ADMIN, BINARY, ROOT, apt_install, call, create, free_port, identity,
                      stop, wait_until)

CAP = 2


def nginx_conf(port, cap):
    with open(os.path.join(ROOT, "deploy", "nginx.conf")) as f:
        conf = f.read()
    changed = re.sub(r"listen 8080 ", f"listen 127.0.0.1:{port} ", conf)
    changed = re.sub(r"limit_conn event_streams \d+;", f"limit_conn event_streams {cap};", changed)
    assert changed.count(f"event_streams {cap};") == 1 and f":{port} " in changed, \
        "deploy/nginx.conf no longer has the listen or limit_conn line this check changes"
    return changed


def upstreams(app_port):
    """deploy/nginx-upstreams.conf with this seatrush in place of the containers."""
    with open(os.path.join(ROOT, "deploy", "nginx-upstreams.conf")) as f:
        lines = f.read().splitlines()
    out, placed = [], False
    for line in lines:
        if re.match(r"\s*resolver ", line):
            continue
        if re.match(r"\s*server seatrush-", line):
            if not placed:
                out.append(f"    server 127.0.0.1:{app_port} max_fails=3 fail_timeout=30s;")
                placed = True
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def open_stream(port, headers):
    """Opens an event stream; returns (status, headers, the open connection or the body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/api/v1/queue/tokens/me/events", headers=headers)
    rsp = conn.getresponse()
    if rsp.status == 200:
        first = rsp.readline()  # the state now: "event: position"
        assert first.startswith(b"event: "), first
        return 200, rsp.headers, conn
    body = rsp.read()
    conn.close()
    return rsp.status, rsp.headers, body


def waiting_users(base, n):
    """n users with WAITING tokens of a paused queue: their headers for the stream."""
    def admin(path, body):
        return create(base, path, body)

    venue = admin("/api/v1/admin/venues", {"name": "Proxy Hall"})["venueId"]
    concert = admin("/api/v1/admin/concerts", {"title": "Streams Behind nginx"})["concertId"]
    schedule = admin(f"/api/v1/admin/concerts/{concert}/schedules", {
        "venueId": venue, "performanceDate": "2030-01-01", "performanceTime": "19:00:00",
        "bookingOpenAt": "2020-01-01T00:00:00.000Z", "bookingCloseAt": "2030-01-01T00:00:00.000Z",
        "seatCount": 10, "price": 1000})["scheduleId"]
    status, rsp = call(base, "PUT", f"/api/v1/admin/schedules/{schedule}/queue",
                       {"paused": True}, ADMIN)
    assert status == 200, rsp
    users = []
    for i in range(n):
        user = admin("/api/v1/admin/users", {"name": f"streamer-{i}"})["userId"]
        me = identity(user)
        status, rsp = call(base, "POST", "/api/v1/queue/tokens",
                           {"userId": user, "scheduleId": schedule}, me)
        assert status == 200 and rsp["data"]["status"] == "WAITING", rsp
        users.append(dict(me, **{"Queue-Token": rsp["data"]["token"]}))
    return users


def main():
    apt_install("nginx", "nginx")
    work = tempfile.mkdtemp(prefix="seatrush-nginx-")
    app_port, nginx_port = free_port(), free_port()
    base, proxied = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{nginx_port}"
    with open(os.path.join(work, "nginx.conf"), "w") as f:
        f.write(nginx_conf(nginx_port, CAP))
    with open(os.path.join(work, "nginx-upstreams.conf"), "w") as f:
        f.write(upstreams(app_port))
    env = dict(os.environ, SEATRUSH_HTTP_ADDR=f"127.0.0.1:{app_port}", SEATRUSH_LOG="warn")
    app = subprocess.Popen([BINARY], env=env)
    nginx = None
    streams = []
    try:
        wait_until("seatrush", lambda: call(base, "GET", "/health")[0] == 200, 120)
        nginx_args = ["nginx", "-p", work + "/", "-c", work + "/nginx.conf"]
        subprocess.run(nginx_args + ["-t", "-q"], check=True)
        nginx = subprocess.Popen(nginx_args + ["-g", "daemon off;"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until("nginx", lambda: call(proxied, "GET", "/health")[0] == 200, 30)
        users = waiting_users(base, CAP + 2)

        for user in users[:CAP]:
            status, _, conn = open_stream(nginx_port, user)
            assert status == 200, f"stream {len(streams) + 1} of {CAP}: {status} {conn}"
            streams.append(conn)
        status, headers, body = open_stream(nginx_port, users[CAP])
        assert status == 503, f"a stream past the cap: {status} {body}"
        assert headers.get("Retry-After"), "the refusal has no Retry-After"
        error = json.loads(body)["error"]
        assert error["code"] == "SERVICE_UNAVAILABLE", error
        status, rsp = call(proxied, "GET", "/api/v1/queue/tokens/me", headers=users[CAP])
        assert status == 200 and rsp["data"]["status"] == "WAITING", (status, rsp)

        streams.pop().close()
        # nginx counts the stream's connection until it sees it closed: poll for the room.
        opened = []

        def reopened():
            status, _, conn = open_stream(nginx_port, users[CAP + 1])
            if status == 200:
                opened.append(conn)
            return status == 200
        wait_until("a stream after one closed", reopened, 10)
        streams.extend(opened)
        print(f"check-nginx: {CAP} streams open through nginx, the next refused with 503 and "
              "Retry-After while the status still answered; a new one opened once one closed")
    finally:
        for conn in streams:
            conn.close()
        stop(nginx, app)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
