"""The Twilio-compatible API driven by Twilio's own Python SDK (`twilio`
from PyPI), pointed at Pigeon by changing only `client.api.base_url` and
the credentials: send, fetch, list with paging, cancel a scheduled
message, Twilio's exception for an invalid number, a status callback and
an inbound webhook accepted by Twilio's own `RequestValidator`, and a
TwiML reply (made with Twilio's own `MessagingResponse`) sent back."""

import datetime
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.messaging_response import MessagingResponse

from conftest import start_pigeon

NUMBER = "+84912340800"
HANDSET = "+84987650800"
REPLY = "Thanks! We'll call you back."


class Endpoint:
    """The application's webhook endpoint: records each form post and
    answers /sms with TwiML, as a Twilio application does."""

    def __init__(self):
        self.requests = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length).decode()
                endpoint.requests.append({
                    "path": self.path,
                    "signature": self.headers.get("X-Twilio-Signature"),
                    "content_type": self.headers.get("Content-Type"),
                    "params": dict(urllib.parse.parse_qsl(body, keep_blank_values=True)),
                })
                answer = b""
                if self.path == "/sms":
                    twiml = MessagingResponse()
                    twiml.message(REPLY)
                    answer = str(twiml).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def find(self, path, **params):
        for request in list(self.requests):
            if request["path"] == path and all(request["params"].get(k) == v for k, v in params.items()):
                return request
        return None


@pytest.fixture(scope="module")
def pigeon(tmp_path_factory):
    # The endpoint listens on 127.0.0.1, which webhooks refuse by default.
    config = tmp_path_factory.mktemp("twilio") / "pigeon.toml"
    config.write_text("[webhooks]\nallow_private_networks = true\npoll_interval_ms = 20\n")
    server = start_pigeon({"PIGEON_CONFIG": str(config)})
    yield server
    server.process.terminate()
    server.process.wait(timeout=20)


@pytest.fixture(scope="module")
def endpoint():
    endpoint = Endpoint()
    yield endpoint
    endpoint.server.shutdown()


@pytest.fixture(scope="module")
def account(pigeon, endpoint):
    """An account with a number (its sms_url on the endpoint) and Twilio
    credentials; the SDK client pointed at Pigeon."""
    status, created = pigeon.request("POST", "/v1/accounts", {"name": "Moved from Twilio"})
    assert status == 201, created
    account_id = created["id"]
    status, key = pigeon.request("POST", f"/v1/accounts/{account_id}/keys", {"role": "admin"})
    assert status == 201, key
    admin = key["key"]
    status, number = pigeon.request("POST", "/v1/numbers", {"sender": NUMBER, "kind": "long_code", "country": "VN"})
    assert status == 201, number
    status, claimed = pigeon.request("POST", f"/v1/numbers/{number['id']}/claim", {}, key=admin)
    assert status == 200, claimed
    status, updated = pigeon.request("PATCH", f"/v1/numbers/{number['id']}", {"sms_url": endpoint.base + "/sms"}, key=admin)
    assert status == 200, updated
    status, credential = pigeon.request("POST", f"/v1/accounts/{account_id}/twilio-credentials", {}, key=admin)
    assert status == 201, credential
    client = Client(credential["account_sid"], credential["auth_token"])
    client.api.base_url = pigeon.url
    return {"admin": admin, "client": client, "sid": credential["account_sid"], "token": credential["auth_token"]}


def test_send_fetch_and_list_with_paging(pigeon, account):
    client = account["client"]
    sent = [client.messages.create(to=f"+8498765090{i}", from_=NUMBER, body=f"Order {i} shipped") for i in range(3)]
    for message in sent:
        assert message.sid.startswith("SM") and len(message.sid) == 34
        assert message.account_sid == account["sid"]
        assert message.status == "queued"
        assert message.num_segments == "1"
        assert message.direction == "outbound-api"
        assert isinstance(message.date_created, datetime.datetime)

    fetched = pigeon.wait_for(
        "the first message delivered",
        lambda: (m := client.messages(sent[0].sid).fetch()).status == "delivered" and m,
    )
    assert fetched.body == "Order 0 shipped" and fetched.to == "+84987650900"

    # Two a page: the SDK follows next_page_uri to the third.
    listed = client.messages.list(from_=NUMBER, page_size=2, limit=3)
    assert [m.sid for m in listed] == [m.sid for m in reversed(sent)]
    page = client.messages.page(page_size=2)
    assert len(list(page)) == 2 and page.next_page_url is not None
    assert [m.sid for m in client.messages.list(to="+84987650901")] == [sent[1].sid]


def test_a_scheduled_message_is_canceled(account):
    client = account["client"]
    send_at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    scheduled = client.messages.create(
        to=HANDSET, from_=NUMBER, body="Your appointment is tomorrow", send_at=send_at, schedule_type="fixed"
    )
    assert scheduled.status == "scheduled"
    canceled = client.messages(scheduled.sid).update(status="canceled")
    assert canceled.status == "canceled"
    assert client.messages(scheduled.sid).fetch().status == "canceled"


def test_an_invalid_number_raises_twilios_exception(account):
    with pytest.raises(TwilioRestException) as raised:
        account["client"].messages.create(to="not-a-number", from_=NUMBER, body="hi")
    assert raised.value.status == 400
    assert raised.value.code == 21211
    with pytest.raises(TwilioRestException) as raised:
        account["client"].messages("SM" + "0" * 32).fetch()
    assert raised.value.status == 404 and raised.value.code == 20404


def test_wrong_credentials_are_refused(pigeon, account):
    client = Client(account["sid"], "0" * 32)
    client.api.base_url = pigeon.url
    with pytest.raises(TwilioRestException) as raised:
        client.messages.create(to=HANDSET, from_=NUMBER, body="hi")
    assert raised.value.status == 401 and raised.value.code == 20003


def test_status_callbacks_pass_twilios_request_validator(pigeon, account, endpoint):
    url = endpoint.base + "/status"
    message = account["client"].messages.create(to=HANDSET, from_=NUMBER, body="Your code is 482913", status_callback=url)
    callback = pigeon.wait_for(
        "the delivered callback",
        lambda: endpoint.find("/status", MessageSid=message.sid, MessageStatus="delivered"),
    )
    assert callback["content_type"] == "application/x-www-form-urlencoded"
    assert callback["params"]["AccountSid"] == account["sid"]
    assert callback["params"]["To"] == HANDSET and callback["params"]["From"] == NUMBER
    validator = RequestValidator(account["token"])
    assert validator.validate(url, callback["params"], callback["signature"])
    assert not RequestValidator("0" * 32).validate(url, callback["params"], callback["signature"])


def test_inbound_webhook_validates_and_a_twiml_reply_is_sent(pigeon, account, endpoint):
    status, inbound = pigeon.request(
        "POST", "/v1/sandbox/inbound", {"from": HANDSET, "to": NUMBER, "body": "Call me please"}, key=account["admin"]
    )
    assert status == 201, inbound
    hook = pigeon.wait_for("the inbound webhook", lambda: endpoint.find("/sms", Body="Call me please"))
    assert hook["params"]["From"] == HANDSET and hook["params"]["To"] == NUMBER
    assert hook["params"]["AccountSid"] == account["sid"]
    assert hook["params"]["MessageSid"].startswith("SM")
    assert RequestValidator(account["token"]).validate(endpoint.base + "/sms", hook["params"], hook["signature"])

    client = account["client"]
    reply = pigeon.wait_for(
        "the TwiML reply",
        lambda: next((m for m in client.messages.list(to=HANDSET) if m.body == REPLY), None),
    )
    assert reply.from_ == NUMBER
