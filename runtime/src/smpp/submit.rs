//! `submit_sm` to a `submit::Request` and the accept path's answer back
//! to a `submit_sm_resp` status. Long messages split by the client (a
//! concatenation UDH, or the SAR TLVs) are kept part by part
//! (`store::smpp::add_part`) and submitted as one message when the last
//! part arrives: earlier parts are answered with a part id once stored,
//! the completing part with the message's id.

use serde_json::{Map, Value};

use super::Smpp;
use super::pdu::{PduError, ShortMessage, status, tag};
use crate::auth::Principal;
use crate::model::Origin;
use crate::store::smpp::{self as stored, PartOutcome, SubmitPart};
use crate::submit::{ErrorKind, Request, SubmitError};
use crate::time::now_ms;

/// What an ESME's bind submits as.
#[derive(Debug, Clone)]
pub(super) struct Submitter {
    pub credential_id: String,
    pub principal: Principal,
}

/// The answer to one `submit_sm`: a status and, when it is ROK, the id.
#[derive(Debug)]
pub(super) enum Answer {
    Accepted(String),
    Refused(u32),
    /// The body could not be read at all: a `generic_nack`.
    Malformed(PduError),
}

/// A concatenation header found in a `submit_sm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Concat {
    reference: u16,
    total: u8,
    seq: u8,
}

/// ESME_RINVESMCLASS: a UDH that cannot be read.
const RINVESMCLASS: u32 = 0x43;
/// ESME_RINVDCS is SMPP 5.0's; 3.4 has none, so an unsupported
/// `data_coding` is a plain submit failure.
const UNSUPPORTED_CODING: u32 = status::RSUBMITFAIL;

pub(super) async fn submit_sm(smpp: &Smpp, who: &Submitter, body: &[u8]) -> Answer {
    let sm = match ShortMessage::decode(body) {
        Ok(sm) => sm,
        Err(err) => return Answer::Malformed(err),
    };
    match accept(smpp, who, sm).await {
        Ok(id) => Answer::Accepted(id),
        Err(code) => Answer::Refused(code),
    }
}

async fn accept(smpp: &Smpp, who: &Submitter, sm: ShortMessage) -> Result<String, u32> {
    // The account's request rate counts submit_sms as the API counts requests.
    if smpp
        .submit
        .accounts
        .limits()
        .request(&who.principal.account_id)
        .is_err()
    {
        return Err(status::RTHROTTLED);
    }
    let payload = match sm.tlvs.get(&tag::MESSAGE_PAYLOAD) {
        Some(payload) if sm.short_message.is_empty() => payload.clone(),
        _ => sm.short_message.clone(),
    };
    let (concat, user_data) = if sm.esm_class & 0x40 != 0 {
        let (concat, rest) = parse_udh(&payload).ok_or(RINVESMCLASS)?;
        (concat, rest.to_vec())
    } else {
        (sar(&sm), payload)
    };
    let text = decode_text(sm.data_coding, &user_data).ok_or(UNSUPPORTED_CODING)?;
    let request = request(who, &sm, String::new())?;
    let Some(concat) = concat.filter(|c| c.total > 1) else {
        return submit(
            smpp,
            who,
            Request {
                body: text,
                ..request
            },
        )
        .await;
    };
    if concat.seq == 0 || concat.seq > concat.total {
        return Err(RINVESMCLASS);
    }
    let part = SubmitPart {
        group: format!(
            "{}|{}|{}|{}",
            sm.source_addr, sm.destination_addr, concat.reference, concat.total
        ),
        total: concat.total,
        seq: concat.seq,
        text,
    };
    let credential_id = who.credential_id.clone();
    let (kept, now) = (part.clone(), now_ms());
    let outcome = smpp
        .store
        .write(move |conn| stored::add_part(conn, &credential_id, &kept, now))
        .await
        .map_err(|err| {
            tracing::warn!(error = %err, "SMPP part not stored");
            status::RSYSERR
        })?;
    match outcome {
        PartOutcome::Waiting { part_id } => Ok(part_id),
        PartOutcome::Complete { texts } => {
            let submitted = submit(
                smpp,
                who,
                Request {
                    body: texts.concat(),
                    ..request
                },
            )
            .await;
            // A store failure keeps the parts: the ESME sends the last again.
            if submitted != Err(status::RSYSERR) {
                let (credential_id, group) = (who.credential_id.clone(), part.group.clone());
                let _ = smpp
                    .store
                    .write(move |conn| stored::forget_parts(conn, &credential_id, &group))
                    .await;
            }
            submitted
        }
    }
}

async fn submit(smpp: &Smpp, who: &Submitter, request: Request) -> Result<String, u32> {
    match smpp.submit.submit(&who.principal, request).await {
        Ok(accepted) => Ok(accepted.message.id),
        Err(err) => {
            tracing::debug!(code = %err.code, field = ?err.field, "submit_sm refused");
            Err(status_of(&err))
        }
    }
}

/// The `submit_sm_resp` status of a refusal.
pub(super) fn status_of(err: &SubmitError) -> u32 {
    match &err.kind {
        ErrorKind::QuotaExceeded { .. } => status::RTHROTTLED,
        ErrorKind::Store(_) => status::RSYSERR,
        ErrorKind::Refused | ErrorKind::KeyReused => status::RSUBMITFAIL,
        ErrorKind::Invalid => match err.field.as_deref() {
            Some("to" | "country") => status::RINVDSTADR,
            Some("from" | "pool") => status::RINVSRCADR,
            Some("body") => status::RINVMSGLEN,
            Some("send_at") => status::RINVSCHED,
            Some("validity_secs") => status::RINVEXPIRY,
            _ => status::RSUBMITFAIL,
        },
    }
}

/// The request a `submit_sm` makes, without its body.
fn request(who: &Submitter, sm: &ShortMessage, body: String) -> Result<Request, u32> {
    let now = now_ms();
    let to = destination(&sm.destination_addr).ok_or(status::RINVDSTADR)?;
    let send_at = match sm.schedule_delivery_time.as_str() {
        "" => None,
        time => Some(parse_time(time, now).ok_or(status::RINVSCHED)?),
    };
    let validity_secs = match sm.validity_period.as_str() {
        "" => None,
        time => {
            let until = parse_time(time, now).ok_or(status::RINVEXPIRY)?;
            let from = send_at.unwrap_or(now);
            Some(u64::try_from((until - from) / 1000).map_err(|_| status::RINVEXPIRY)?)
        }
    };
    let mut metadata = Map::new();
    metadata.insert(
        stored::META_CREDENTIAL.into(),
        Value::String(who.credential_id.clone()),
    );
    let registered = sm.registered_delivery & 0x03;
    if registered != 0 {
        metadata.insert(
            stored::META_REGISTERED_DELIVERY.into(),
            Value::String(registered.to_string()),
        );
    }
    Ok(Request {
        to,
        body,
        from: source(sm.source_ton, &sm.source_addr),
        metadata: Some(metadata),
        send_at,
        validity_secs,
        origin: Origin::Smpp,
        ..Request::default()
    })
}

/// `destination_addr` as E.164: with or without `+`, whatever TON the ESME
/// set (international, national or unknown): Pigeon takes full numbers only.
fn destination(addr: &str) -> Option<String> {
    let addr = addr.trim();
    let digits = addr.strip_prefix('+').unwrap_or(addr);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(format!("+{digits}"))
}

/// `source_addr` as Pigeon writes senders: numbers of 7 digits or more in
/// E.164, short codes and alphanumeric senders (TON 5) as given; none when
/// empty (the account's default pool picks one).
fn source(ton: u8, addr: &str) -> Option<String> {
    let addr = addr.trim();
    if addr.is_empty() {
        return None;
    }
    let digits = addr.strip_prefix('+').unwrap_or(addr);
    if ton != 5 && digits.len() >= 7 && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(format!("+{digits}"));
    }
    Some(addr.to_owned())
}

/// The text of a short message's user data by its `data_coding`: 0 GSM
/// 7-bit (unpacked septets), 1 ASCII, 3 Latin-1, 8 UCS-2 (UTF-16BE).
fn decode_text(data_coding: u8, data: &[u8]) -> Option<String> {
    match data_coding {
        0 => Some(crate::encoding::text_of_septets(data)),
        1 => Some(data.iter().map(|&b| char::from(b & 0x7F)).collect()),
        3 => Some(data.iter().map(|&b| char::from(b)).collect()),
        8 if data.len().is_multiple_of(2) => {
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                .collect();
            Some(String::from_utf16_lossy(&units))
        }
        _ => None,
    }
}

/// A UDH's concatenation element (IE 0x00, 8-bit reference, or 0x08,
/// 16-bit) and the user data after the header; `None` when the header
/// does not fit the data.
fn parse_udh(data: &[u8]) -> Option<(Option<Concat>, &[u8])> {
    let len = usize::from(*data.first()?);
    let header = data.get(1..1 + len)?;
    let rest = &data[1 + len..];
    let mut concat = None;
    let mut at = 0;
    while at + 2 <= header.len() {
        let (id, ie_len) = (header[at], usize::from(header[at + 1]));
        let value = header.get(at + 2..at + 2 + ie_len)?;
        match (id, value) {
            (0x00, [reference, total, seq]) => {
                concat = Some(Concat {
                    reference: u16::from(*reference),
                    total: *total,
                    seq: *seq,
                });
            }
            (0x08, [hi, lo, total, seq]) => {
                concat = Some(Concat {
                    reference: u16::from_be_bytes([*hi, *lo]),
                    total: *total,
                    seq: *seq,
                });
            }
            _ => {}
        }
        at += 2 + ie_len;
    }
    Some((concat, rest))
}

/// The SAR TLVs' concatenation, when all three are there.
fn sar(sm: &ShortMessage) -> Option<Concat> {
    Some(Concat {
        reference: sm.tlv_u16(tag::SAR_MSG_REF_NUM)?,
        total: sm.tlv_u8(tag::SAR_TOTAL_SEGMENTS)?,
        seq: sm.tlv_u8(tag::SAR_SEGMENT_SEQNUM)?,
    })
}

/// An SMPP time (`YYMMDDhhmmsstnnp`) as Unix ms: absolute with `p` `+`
/// or `-` (`nn` quarter hours from UTC), or relative to `now` with `R`.
pub(super) fn parse_time(time: &str, now: i64) -> Option<i64> {
    let bytes = time.as_bytes();
    if bytes.len() != 16 || !bytes[..15].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let num = |i: usize| i64::from(bytes[i] - b'0') * 10 + i64::from(bytes[i + 1] - b'0');
    let (yy, mo, dd, hh, mi, ss) = (num(0), num(2), num(4), num(6), num(8), num(10));
    let tenths = i64::from(bytes[12] - b'0');
    match bytes[15] {
        b'R' => {
            let days = yy * 365 + mo * 30 + dd;
            let secs = ((days * 24 + hh) * 60 + mi) * 60 + ss;
            Some(now + secs * 1000)
        }
        sign @ (b'+' | b'-') => {
            let date = chrono::NaiveDate::from_ymd_opt(2000 + yy as i32, mo as u32, dd as u32)?;
            let local = date.and_hms_opt(hh as u32, mi as u32, ss as u32)?;
            let offset_ms = num(13) * 15 * 60 * 1000;
            let utc = local.and_utc().timestamp_millis() + tenths * 100;
            // `+`: the time is ahead of UTC by the offset.
            Some(if sign == b'+' {
                utc - offset_ms
            } else {
                utc + offset_ms
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smpp_times_are_read_in_both_forms() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_time("000000010000000R", now), Some(now + 3_600_000));
        assert_eq!(parse_time("000001000000000R", now), Some(now + 86_400_000));
        // 2026-12-03 10:00:00 at UTC+01:00 (4 quarter hours) is 09:00 UTC.
        let at = parse_time("261203100000004+", now).unwrap();
        assert_eq!(crate::time::to_rfc3339(at), "2026-12-03T09:00:00.000Z");
        assert_eq!(parse_time("261303100000004+", now), None);
        assert_eq!(parse_time("2612031000", now), None);
    }

    #[test]
    fn addresses_are_read_as_e164() {
        assert_eq!(destination("+84912345678").as_deref(), Some("+84912345678"));
        assert_eq!(destination("84912345678").as_deref(), Some("+84912345678"));
        assert_eq!(destination("not a number"), None);
        assert_eq!(destination(""), None);
        assert_eq!(source(1, "15550001234").as_deref(), Some("+15550001234"));
        assert_eq!(source(5, "ACME").as_deref(), Some("ACME"));
        assert_eq!(source(3, "12345").as_deref(), Some("12345"));
        assert_eq!(source(0, ""), None);
    }

    #[test]
    fn udh_and_codings_are_read() {
        let data = [5, 0x00, 3, 0xAB, 2, 1, b'H', b'i'];
        let (concat, rest) = parse_udh(&data).unwrap();
        assert_eq!(
            concat,
            Some(Concat {
                reference: 0xAB,
                total: 2,
                seq: 1
            })
        );
        assert_eq!(rest, b"Hi");
        let data16 = [6, 0x08, 4, 0x01, 0x02, 3, 3, b'x'];
        assert_eq!(parse_udh(&data16).unwrap().0.unwrap().reference, 0x0102);
        assert!(parse_udh(&[9, 0, 3]).is_none());
        assert_eq!(decode_text(0, &[0x48, 0x00, 0x1B, 0x65]).unwrap(), "H@€");
        assert_eq!(decode_text(8, &[0x00, 0xE9, 0x4E, 0x2D]).unwrap(), "é中");
        assert_eq!(decode_text(3, &[0xE9]).unwrap(), "é");
        assert_eq!(decode_text(8, &[0x00]), None);
        assert_eq!(decode_text(4, b"bin"), None);
    }
}
