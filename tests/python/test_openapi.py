"""schemathesis against a live `pigeon serve` with its own /v1/openapi.json:
no 5xx, and every answer's status, content type and body as documented.

A few resources are created first so that the operations on `{id}` reach
something real (per-operation parameters in a schemathesis.toml), not only
404s. Bounded: a handful of examples per operation, about a minute or two
on 2 cores."""

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
# Wall-clock cap on the whole run; it takes about a minute.
RUN_TIMEOUT_S = float(os.environ.get("PIGEON_SCHEMATHESIS_TIMEOUT", "300"))
MAX_EXAMPLES = os.environ.get("PIGEON_SCHEMATHESIS_MAX_EXAMPLES", "10")
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
]


def created(pigeon, path, body, want=201):
    status, answer = pigeon.request("POST", path, body)
    assert status == want, f"POST {path}: {status} {answer}"
    return answer


def seed(pigeon):
    """Resources of every kind, as the operator's admin; their ids by
    operation."""
    number = created(pigeon, "/v1/numbers", {"sender": "+84912340100", "kind": "long_code", "country": "VN"})["id"]
    created(pigeon, f"/v1/numbers/{number}/claim", {}, want=200)
    pool = created(pigeon, "/v1/sender-pools", {"name": "Support", "senders": [number]})["id"]
    message = created(pigeon, "/v1/messages", {"to": "+84912345678", "body": "Hello"}, want=202)["id"]
    pigeon.wait_for("the message to be delivered", lambda: pigeon.request("GET", f"/v1/messages/{message}")[1]["status"] == "delivered")
    later = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    scheduled = created(pigeon, "/v1/messages", {"to": "+84912345679", "body": "Later", "send_at": later}, want=202)["id"]
    inbound = created(pigeon, "/v1/sandbox/inbound", {"from": "+84987654321", "to": "+84912340100", "body": "Hello back"})["id"]
    consent = created(pigeon, "/v1/consents", {"number": "+84987654321", "purpose": "marketing", "source": "web_form"})["id"]
    created(pigeon, "/v1/suppressions", {"number": "+84911112222", "reason": "asked"})
    account = created(pigeon, "/v1/accounts", {"name": "Fuzzed"})["id"]
    key = created(pigeon, f"/v1/accounts/{account}/keys", {"role": "viewer"})["id"]
    smpp = created(pigeon, f"/v1/accounts/{account}/smpp-credentials", {})["id"]
    return {
        "GET /v1/messages/{id}": {"id": message},
        "GET /v1/messages/{id}/webhooks": {"id": message},
        "POST /v1/messages/{id}/cancel": {"id": scheduled},
        "GET /v1/numbers/{id}": {"id": number},
        "PATCH /v1/numbers/{id}": {"id": number},
        "POST /v1/numbers/{id}/claim": {"id": number},
        "GET /v1/sender-pools/{id}": {"id": pool},
        "PATCH /v1/sender-pools/{id}": {"id": pool},
        "GET /v1/sender-pools/{id}/keywords": {"id": pool},
        "PUT /v1/sender-pools/{id}/keywords": {"id": pool},
        "GET /v1/inbound/{id}": {"id": inbound},
        "GET /v1/inbound/{id}/webhooks": {"id": inbound},
        "DELETE /v1/consents/{id}": {"id": consent},
        "GET /v1/consents/{number}/history": {"number": "+84987654321"},
        "GET /v1/suppressions/{number}": {"number": "+84911112222"},
        "GET /v1/accounts/{id}": {"id": account},
        "GET /v1/accounts/{id}/keys": {"id": account},
        "POST /v1/accounts/{id}/keys": {"id": account},
        "DELETE /v1/keys/{id}": {"id": key},
        "PATCH /v1/keys/{id}": {"id": key},
        "POST /v1/keys/{id}/rotate": {"id": key},
        "PATCH /v1/accounts/{id}": {"id": account},
        "GET /v1/accounts/{id}/smpp-credentials": {"id": account},
        "POST /v1/accounts/{id}/smpp-credentials": {"id": account},
        "DELETE /v1/smpp-credentials/{id}": {"id": smpp},
    }


def toml_string(value):
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path, parameters):
    lines = []
    for name, values in parameters.items():
        lines.append("[[operations]]")
        lines.append(f"include-name = {toml_string(name)}")
        pairs = ", ".join(f"{key} = {toml_string(value)}" for key, value in values.items())
        lines.append(f"parameters = {{ {pairs} }}")
        lines.append("")
    path.write_text("\n".join(lines))


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(pigeon, tmp_path):
    config = tmp_path / "schemathesis.toml"
    write_config(config, seed(pigeon))
    command = [
        str(VENV_BIN / "st"),
        "--config-file", str(config),
        "--no-color",
        "run", f"{pigeon.url}/v1/openapi.json",
        "--header", f"Authorization: Bearer {pigeon.admin_key}",
        "--checks", ",".join(CHECKS),
        "--max-examples", MAX_EXAMPLES,
        "--request-timeout", "30",
        "--workers", "2",
        "--generation-database", "none",
        # The carrier callback's secret is not the admin key's to know:
        # every generated request would be the same 404.
        "--exclude-path-regex", "/callback/",
        # A seed so that a failure can be replayed.
        "--seed", os.environ.get("PIGEON_SCHEMATHESIS_SEED", str(int(time.time()))),
    ]
    started = time.monotonic()
    try:
        env = dict(os.environ, SCHEMATHESIS_HOOKS="schemathesis_hooks", PYTHONPATH=str(Path(__file__).parent))
        run = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"schemathesis ran over {RUN_TIMEOUT_S} s:\n{err.stdout}")
    took = time.monotonic() - started
    report = run.stdout + run.stderr
    assert run.returncode == 0, f"schemathesis failed after {took:.0f} s:\n{report}"
    # It did test every operation (the callbacks excepted).
    _, document = pigeon.request("GET", "/v1/openapi.json")
    operations = sum(len(item) for path, item in document["paths"].items() if "/callback/" not in path)
    assert f"Tested: {operations}" in report, report
    assert pigeon.process.poll() is None, "the server exited"
