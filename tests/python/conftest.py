"""A real `pigeon serve` for the Python suites: the binary cargo built,
on a free loopback port, with a fresh data directory and a known admin key."""

import os
import re
import subprocess
import tempfile
import threading
import time
import json
import urllib.request
import urllib.error
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "python-suite-admin-key-0123456789abcdef"


def pigeon_binary() -> Path:
    path = os.environ.get("PIGEON_BIN")
    if path:
        return Path(path)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug" / "pigeon"


class Pigeon:
    """A running server; `url` is its base address."""

    def __init__(self, process, url, data_dir, log):
        self.process = process
        self.url = url
        self.data_dir = data_dir
        self.log = log
        self.admin_key = ADMIN_KEY

    def request(self, method, path, body=None, key=None, headers=None):
        """Returns (status, parsed JSON or text)."""
        data = None
        all_headers = {"Authorization": f"Bearer {key or self.admin_key}"}
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw, kind = response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as err:
            status, raw, kind = err.code, err.read(), err.headers.get("Content-Type", "")
        if "json" in kind:
            return status, json.loads(raw)
        return status, raw.decode()

    def wait_for(self, what, condition, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")


def start_pigeon(extra_env=None) -> Pigeon:
    binary = pigeon_binary()
    if not binary.exists():
        raise RuntimeError(f"{binary} is missing: run `cargo build -p pigeon-runtime` first, or use scripts/test")
    data_dir = tempfile.mkdtemp(prefix="pigeon-pytest-")
    log = open(Path(data_dir) / "server.log", "w+")
    # SMPP on a free port too; its address is read from the startup log.
    env = dict(os.environ, PIGEON_ADMIN_KEY=ADMIN_KEY, PIGEON_LOG="warn", PIGEON_SMPP_LISTEN="127.0.0.1:0",
               **(extra_env or {}))
    process = subprocess.Popen(
        [str(binary), "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.PIPE,
        text=True,
    )
    address = None
    smpp = None
    deadline = time.monotonic() + 60
    for line in process.stderr:
        log.write(line)
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            address = match.group(1)
            break
        if time.monotonic() > deadline:
            break
    if address is not None:
        # cli.rs prints the SMPP address on the line after the HTTP one.
        line = process.stderr.readline()
        log.write(line)
        match = re.search(r"SMPP listening on (\S+):(\d+)", line)
        if match:
            smpp = (match.group(1), int(match.group(2)))
    if address is None:
        process.kill()
        log.seek(0)
        raise RuntimeError("pigeon did not start:\n" + log.read())

    # Keep draining stderr so the server never blocks on a full pipe.
    def drain():
        for line in process.stderr:
            log.write(line)
            log.flush()

    threading.Thread(target=drain, daemon=True).start()
    server = Pigeon(process, address, data_dir, log)
    server.smpp = smpp
    return server


@pytest.fixture(scope="module")
def pigeon():
    server = start_pigeon()
    yield server
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
