//! The `deliver_sm`s made of SMPP outbox rows: delivery receipts (the
//! customary `id:… sub:… dlvrd:… submit date:… done date:… stat:… err:…
//! text:…` text, `esm_class` 0x04 and the receipt TLVs) and inbound
//! messages (GSM 7-bit when every character has a septet, else UCS-2;
//! past 254 octets in `message_payload`).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::pdu::{ShortMessage, tag};
use crate::store::smpp::{OutboxItem, OutboxKind};

/// SMPP 3.4 `message_state` values (section 5.2.28).
mod state {
    pub const DELIVERED: u8 = 2;
    pub const EXPIRED: u8 = 3;
    pub const DELETED: u8 = 4;
    pub const UNDELIVERABLE: u8 = 5;
    pub const REJECTED: u8 = 8;
}

/// The receipt's `stat:` word and `message_state` for a final status.
fn stat_of(status: &str) -> (&'static str, u8) {
    match status {
        "delivered" => ("DELIVRD", state::DELIVERED),
        "expired" => ("EXPIRED", state::EXPIRED),
        "canceled" => ("DELETED", state::DELETED),
        "rejected" => ("REJECTD", state::REJECTED),
        // undelivered and failed (it never reached the handset)
        _ => ("UNDELIV", state::UNDELIVERABLE),
    }
}

/// `YYMMDDhhmm` in UTC.
fn receipt_date(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%y%m%d%H%M")
        .to_string()
}

/// SMPP addresses are written without `+`; TON international when it was E.164.
fn address(value: &Value) -> (u8, u8, String) {
    let addr = value.as_str().unwrap_or_default();
    match addr.strip_prefix('+') {
        Some(digits) => (1, 1, digits.to_owned()),
        None if addr.bytes().any(|b| b.is_ascii_alphabetic()) => (5, 0, addr.to_owned()),
        None => (0, 1, addr.to_owned()),
    }
}

/// The receipt's text: ASCII, as SMSCs send it (other characters of the
/// message's first 20 become `?`).
pub(super) fn receipt_text(payload: &Value) -> String {
    let status = payload["status"].as_str().unwrap_or_default();
    let (stat, _) = stat_of(status);
    let delivered = u8::from(status == "delivered");
    let err = if status == "delivered" { 0 } else { 1 };
    let text: String = payload["text"]
        .as_str()
        .unwrap_or_default()
        .chars()
        .take(20)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    format!(
        "id:{} sub:001 dlvrd:{delivered:03} submit date:{} done date:{} stat:{stat} err:{err:03} text:{text}",
        payload["message_id"].as_str().unwrap_or_default(),
        receipt_date(payload["submitted_at"].as_i64().unwrap_or_default()),
        receipt_date(payload["done_at"].as_i64().unwrap_or_default()),
    )
}

/// The `deliver_sm` body for an outbox row.
pub(super) fn deliver_sm(item: &OutboxItem) -> ShortMessage {
    let payload = &item.payload;
    match item.kind {
        OutboxKind::Receipt => {
            // From the handset the message went to, to the sender it came from.
            let (source_ton, source_npi, source_addr) = address(&payload["to"]);
            let (dest_ton, dest_npi, destination_addr) = address(&payload["from"]);
            let status = payload["status"].as_str().unwrap_or_default();
            let (_, message_state) = stat_of(status);
            let mut sm = ShortMessage {
                source_ton,
                source_npi,
                source_addr,
                dest_ton,
                dest_npi,
                destination_addr,
                esm_class: 0x04,
                short_message: receipt_text(payload).into_bytes(),
                ..ShortMessage::default()
            };
            let mut id = payload["message_id"]
                .as_str()
                .unwrap_or_default()
                .as_bytes()
                .to_vec();
            id.push(0);
            sm.tlvs.insert(tag::RECEIPTED_MESSAGE_ID, id);
            sm.tlvs.insert(tag::MESSAGE_STATE, vec![message_state]);
            let err = u8::from(status != "delivered");
            // Network type 3 (SMPP), then the error code.
            sm.tlvs.insert(tag::NETWORK_ERROR_CODE, vec![3, 0, err]);
            sm
        }
        OutboxKind::Mo => {
            let (source_ton, source_npi, source_addr) = address(&payload["from"]);
            let (dest_ton, dest_npi, destination_addr) = address(&payload["to"]);
            let text = payload["text"].as_str().unwrap_or_default();
            let (data_coding, data) = match crate::encoding::septets_of_text(text) {
                Some(septets) => (0, septets),
                None => (8, text.encode_utf16().flat_map(u16::to_be_bytes).collect()),
            };
            let mut sm = ShortMessage {
                source_ton,
                source_npi,
                source_addr,
                dest_ton,
                dest_npi,
                destination_addr,
                data_coding,
                ..ShortMessage::default()
            };
            if data.len() <= 254 {
                sm.short_message = data;
            } else {
                sm.tlvs.insert(tag::MESSAGE_PAYLOAD, data);
            }
            sm
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn receipts_have_the_customary_text_and_tlvs() {
        let item = OutboxItem {
            id: "smo_1".into(),
            kind: OutboxKind::Receipt,
            payload: json!({
                "message_id": "msg_01ABC",
                "status": "delivered",
                "to": "+84912345678",
                "from": "+15550001234",
                "submitted_at": 1_764_756_000_000_i64,
                "done_at": 1_764_756_060_000_i64,
                "text": "Hello, wörld",
            }),
            attempts: 1,
        };
        let sm = deliver_sm(&item);
        assert_eq!(
            String::from_utf8(sm.short_message.clone()).unwrap(),
            "id:msg_01ABC sub:001 dlvrd:001 submit date:2512031000 done date:2512031001 \
             stat:DELIVRD err:000 text:Hello, w?rld"
        );
        assert_eq!(sm.esm_class, 0x04);
        assert_eq!(sm.source_addr, "84912345678");
        assert_eq!(sm.destination_addr, "15550001234");
        assert_eq!(sm.tlvs[&tag::RECEIPTED_MESSAGE_ID], b"msg_01ABC\0");
        assert_eq!(sm.tlvs[&tag::MESSAGE_STATE], vec![state::DELIVERED]);
    }

    #[test]
    fn inbound_messages_pick_their_coding() {
        let mo = |text: &str| OutboxItem {
            id: "smo_2".into(),
            kind: OutboxKind::Mo,
            payload: json!({"from": "+84912345678", "to": "+15550001234", "text": text}),
            attempts: 1,
        };
        let gsm = deliver_sm(&mo("Hi @ you"));
        assert_eq!((gsm.data_coding, gsm.short_message.len()), (0, 8));
        let ucs2 = deliver_sm(&mo("中"));
        assert_eq!(
            (ucs2.data_coding, ucs2.short_message),
            (8, vec![0x4E, 0x2D])
        );
        let long = deliver_sm(&mo(&"x".repeat(300)));
        assert!(long.short_message.is_empty());
        assert_eq!(long.tlvs[&tag::MESSAGE_PAYLOAD].len(), 300);
    }
}
