"""Pigeon's SMPP server with a real ESME library, smpplib from PyPI: bind
as a transceiver, submit GSM-7, UCS-2 and a long message split by
smpplib's own make_parts (UDH), get the receipts and an inbound message,
and an error status."""

import time

import smpplib.client
import smpplib.consts
import smpplib.gsm

NUMBER = "+84912340300"
HANDSET = "+84987654411"


def tenant_with_credential(pigeon):
    status, account = pigeon.request("POST", "/v1/accounts", {"name": "smpplib"})
    assert status == 201, account
    account_id = account["id"]
    status, key = pigeon.request("POST", f"/v1/accounts/{account_id}/keys", {"role": "admin"})
    assert status == 201, key
    admin = key["key"]
    status, number = pigeon.request("POST", "/v1/numbers", {"sender": NUMBER, "kind": "long_code", "country": "VN"})
    assert status == 201, number
    status, claimed = pigeon.request("POST", f"/v1/numbers/{number['id']}/claim", {}, key=admin)
    assert status == 200, claimed
    status, credential = pigeon.request("POST", f"/v1/accounts/{account_id}/smpp-credentials", {}, key=admin)
    assert status == 201, credential
    assert len(credential["password"]) == 8
    return admin, credential


class Esme:
    """smpplib's client with what it reads collected."""

    def __init__(self, address, credential):
        self.sent, self.received, self.errors = [], [], []
        self.client = smpplib.client.Client(address[0], address[1], timeout=5, allow_unknown_opt_params=True)
        self.client.set_message_sent_handler(lambda pdu: self.sent.append(pdu))
        self.client.set_message_received_handler(lambda pdu: self.received.append(pdu))
        self.client.set_error_pdu_handler(lambda pdu: self.errors.append(pdu))
        self.client.connect()
        self.client.bind_transceiver(system_id=credential["system_id"], password=credential["password"])

    def pump(self, what, condition, timeout=30.0):
        """Reads PDUs (answering deliver_sm) until `condition()` holds."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.client.read_once()

    def submit(self, text, to=HANDSET):
        """Sends `text` in the parts make_parts makes; the resps' PDUs."""
        parts, coding, esm_class = smpplib.gsm.make_parts(text)
        before = len(self.sent)
        for part in parts:
            self.client.send_message(
                source_addr_ton=smpplib.consts.SMPP_TON_INTL,
                source_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
                source_addr=NUMBER.lstrip("+"),
                dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
                destination_addr=to.lstrip("+"),
                short_message=part,
                data_coding=coding,
                esm_class=esm_class,
                registered_delivery=True,
            )
        self.pump("submit_sm_resp", lambda: len(self.sent) >= before + len(parts))
        return self.sent[before:], coding


def text_of(value):
    return value.decode() if isinstance(value, bytes) else value


def test_smpplib_submits_and_receives(pigeon):
    admin, credential = tenant_with_credential(pigeon)
    assert pigeon.smpp, "the server printed no SMPP address"
    esme = Esme(pigeon.smpp, credential)

    texts = {
        "gsm": "Hello from smpplib @ 10:00",
        "ucs2": "Привет, 中文 ok",
        "long": "".join(chr(ord("a") + i % 26) for i in range(300)),
    }
    ids = {}
    for name, text in texts.items():
        resps, coding = esme.submit(text)
        assert all(r.status == 0 for r in resps), [r.status for r in resps]
        ids[name] = text_of(resps[-1].message_id)
        assert ids[name].startswith("msg_"), ids[name]
        if name == "ucs2":
            assert coding == smpplib.consts.SMPP_ENCODING_ISO10646
        if name == "long":
            assert len(resps) == 2, "make_parts split it in two (UDH)"
            assert text_of(resps[0].message_id).startswith("smp_")
        status, message = pigeon.request("GET", f"/v1/messages/{ids[name]}", key=admin)
        assert status == 200, message
        assert message["body"] == text

    # One receipt per message, for the id its submit_sm_resp gave.
    def receipts():
        return {
            text_of(p.receipted_message_id): p
            for p in esme.received
            if p.esm_class & 0x04 and getattr(p, "receipted_message_id", None)
        }

    esme.pump("three receipts", lambda: set(ids.values()) <= set(receipts()))
    receipt = receipts()[ids["gsm"]]
    short = text_of(receipt.short_message)
    assert short.startswith(f"id:{ids['gsm']} sub:001 dlvrd:001 "), short
    assert "stat:DELIVRD err:000 text:Hello from smpplib @" in short, short

    # A handset's message arrives as a deliver_sm.
    status, inbound = pigeon.request(
        "POST", "/v1/sandbox/inbound", {"from": HANDSET, "to": NUMBER, "body": "Hi from a handset"}, key=admin
    )
    assert status == 201, inbound

    def mo():
        return [p for p in esme.received if not p.esm_class & 0x04]

    esme.pump("the inbound message", lambda: mo())
    assert mo()[0].short_message == smpplib.gsm.gsm_encode("Hi from a handset")
    assert text_of(mo()[0].source_addr) == HANDSET.lstrip("+")

    # A destination that is no number: ESME_RINVDSTADR.
    esme.submit("nowhere", to="not-a-number")
    assert [e.status for e in esme.errors] == [smpplib.consts.SMPP_ESME_RINVDSTADR]

    esme.client.unbind()
    esme.client.disconnect()
