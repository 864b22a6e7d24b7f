"""What the scripts that drive a real seatrush in make test share (check-observability.py,
check-nginx.py): the debug binary, JSON calls, polling with a deadline, identities, and
Debian packages installed when missing."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "debug", "seatrush")
ADMIN = {"X-Admin-Key": "dev-admin-key"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def apt_install(package, *binaries):
    """Installs the Debian package unless all of its named binaries are on the PATH."""
    if all(shutil.which(b) for b in binaries):
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(sudo + ["apt-get", "update", "-qq"], env=env, check=True)
        subprocess.run(install, env=env, check=True, stdout=subprocess.DEVNULL)


def call(base, method, path, body=None, headers=None):
    """(status, parsed JSON body or None)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as rsp:
            raw = rsp.read()
            status = rsp.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def create(base, path, body):
    """An admin POST that must answer 201: its `data`."""
    status, rsp = call(base, "POST", path, body, ADMIN)
    assert status == 201, (path, status, rsp)
    return rsp["data"]


def wait_until(what, check, seconds):
    """Polls `check` until it is true; exits naming `what` after `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"{os.path.basename(sys.argv[0])}: timed out waiting for {what}")


def identity(user):
    """The Authorization header of `user`, signed with the dev secret."""
    return {"Authorization": "Bearer " + subprocess.run(
        [BINARY, "sign-user-token", str(user)], check=True, capture_output=True,
        text=True).stdout.strip()}


def stop(*procs):
    """Stops the processes (None for one never started): SIGTERM, then SIGKILL after 30 s."""
    for proc in procs:
        if proc:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
