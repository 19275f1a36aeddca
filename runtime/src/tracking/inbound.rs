//! Filing what handsets send: each inbound message goes to the account
//! that owns the number it was sent to, found in the inventory (never
//! guessed from who wrote to the handset last), with the message it
//! answers and, when the number, its pool or the account names one, a
//! `message.inbound` webhook in the same transaction (and, for an account
//! with SMPP credentials, a `deliver_sm` in the SMPP outbox). Parts of a long
//! message wait until all have come (or until a timeout) and are filed as
//! one.

use crate::store::Connection;

use super::keywords::{self, Answered, Lifted};
use crate::compliance::HeldOptOuts;
use crate::numbers::inventory::NumberRecord;
use crate::plugins::{InboundMessage, InboundPart};
use crate::store::inbound::{self, NewInbound, PartGroup, StoredPart};
use crate::store::webhooks::{InboundEvent, enqueue_inbound, enqueue_twilio_inbound};
use crate::store::{Result, accounts, numbers, pools};

/// Longest inbound text kept, in characters: a 10-part GSM-7 message
/// (10 × 153). The rest is dropped and the message counted as truncated.
pub const MAX_INBOUND_CHARS: usize = 1530;

/// What filing one inbound message (or part) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Filed {
    /// A message was stored (not a repeat, not a part still waiting).
    pub stored: bool,
    pub truncated: bool,
    /// What its keyword did, if it was one.
    pub answered: Option<Answered>,
}

/// Files one message or part a carrier reported.
pub(super) fn file(
    conn: &Connection,
    opt_outs: &HeldOptOuts,
    message: InboundMessage,
    now: i64,
) -> Result<Filed> {
    let number = number_for(conn, &message.carrier, &message.to)?;
    let country = number.as_ref().map(|n| n.country.as_str());
    let from = handset_e164(&message.from, country);
    let to = number
        .as_ref()
        .map_or_else(|| handset_e164(&message.to, None), |n| n.sender.clone());
    let whole = match message.part.filter(|p| p.count > 1) {
        None => Whole {
            carrier_message_id: message.carrier_message_id,
            text: message.text,
            sent_at: message.at,
        },
        Some(part) => {
            let group = PartGroup {
                carrier: message.carrier.clone(),
                from: from.clone(),
                to: to.clone(),
                reference: part.reference,
            };
            match add_part(conn, &group, part, &message, now)? {
                Some(whole) => whole,
                None => return Ok(Filed::default()),
            }
        }
    };
    store(
        conn,
        opt_outs,
        &message.carrier,
        number.as_ref(),
        from,
        to,
        whole,
        now,
    )
}

/// A message, whole or as much of it as came.
struct Whole {
    carrier_message_id: String,
    text: String,
    sent_at: i64,
}

/// Keeps a part; the whole message once every part is in.
fn add_part(
    conn: &Connection,
    group: &PartGroup,
    part: InboundPart,
    message: &InboundMessage,
    now: i64,
) -> Result<Option<Whole>> {
    let stored = StoredPart {
        count: part.count,
        sequence: part.sequence,
        carrier_message_id: message.carrier_message_id.clone(),
        text: message.text.clone(),
        sent_at: message.at,
    };
    if !inbound::insert_part(conn, group, &stored, now)? {
        return Ok(None);
    }
    let parts = inbound::waiting_parts(conn, group)?;
    if parts.len() < usize::from(part.count) || inbound::mark_parts_filed(conn, group)? == 0 {
        return Ok(None);
    }
    Ok(Some(join(parts)))
}

/// The parts' texts in order; the first part's id stands for the message.
fn join(parts: Vec<StoredPart>) -> Whole {
    Whole {
        carrier_message_id: parts
            .first()
            .map(|p| p.carrier_message_id.clone())
            .unwrap_or_default(),
        sent_at: parts.iter().map(|p| p.sent_at).min().unwrap_or_default(),
        text: parts.into_iter().map(|p| p.text).collect(),
    }
}

/// Files what came of messages whose other parts have not arrived by
/// `cutoff`: each as one message of the parts there are. How many.
pub(super) fn release_stale_parts(
    conn: &Connection,
    opt_outs: &HeldOptOuts,
    cutoff: i64,
    now: i64,
) -> Result<(usize, Vec<Lifted>)> {
    inbound::prune_filed_parts(conn, filed_cutoff(now))?;
    let groups = inbound::stale_part_groups(conn, cutoff)?;
    let mut lifted = Vec::new();
    for group in &groups {
        let parts = inbound::waiting_parts(conn, group)?;
        if inbound::mark_parts_filed(conn, group)? == 0 || parts.is_empty() {
            continue;
        }
        let number = number_for(conn, &group.carrier, &group.to)?;
        let whole = join(parts);
        let filed = store(
            conn,
            opt_outs,
            &group.carrier,
            number.as_ref(),
            group.from.clone(),
            group.to.clone(),
            whole,
            now,
        )?;
        lifted.extend(filed.answered.and_then(|a| a.lifted));
    }
    Ok((groups.len(), lifted))
}

/// Filed parts are kept a day, against carriers repeating them.
pub(super) fn filed_cutoff(now: i64) -> i64 {
    now - 24 * 3600 * 1000
}

#[allow(clippy::too_many_arguments)]
fn store(
    conn: &Connection,
    opt_outs: &HeldOptOuts,
    carrier: &str,
    number: Option<&NumberRecord>,
    from: String,
    to: String,
    mut whole: Whole,
    now: i64,
) -> Result<Filed> {
    let truncated = truncate(&mut whole.text);
    let account_id = number.and_then(|n| n.account_id.clone());
    let in_reply_to = match (number, &account_id) {
        (Some(n), Some(account)) => inbound::replied_message(conn, &n.id, &from, account)?,
        _ => None,
    };
    let record = NewInbound {
        carrier: carrier.to_owned(),
        carrier_message_id: whole.carrier_message_id,
        from,
        to,
        text: whole.text,
        sent_at: whole.sent_at,
        account_id,
        number_id: number.map(|n| n.id.clone()),
        pool_id: number.and_then(|n| n.pool_id.clone()),
        in_reply_to,
    };
    let Some(id) = inbound::insert_inbound(conn, &record, now)? else {
        return Ok(Filed::default());
    };
    let (Some(number), Some(account)) = (number, &record.account_id) else {
        return Ok(Filed {
            stored: true,
            truncated,
            answered: None,
        });
    };
    let answered = keywords::answer(conn, opt_outs, number, &record, &id, now)?;
    let event = InboundEvent {
        account_id: account,
        inbound_id: &id,
        url: "",
        from: &record.from,
        to: &record.to,
        body: &record.text,
        received_at: now,
        number_id: record.number_id.as_deref(),
        pool_id: record.pool_id.as_deref(),
        in_reply_to: record.in_reply_to.as_deref(),
        keyword: answered.as_ref().map(|a| a.keyword.as_str()),
    };
    crate::store::smpp::enqueue_mo(
        conn,
        &crate::store::smpp::MoEvent {
            account_id: account,
            inbound_id: &id,
            from: &record.from,
            to: &record.to,
            text: &record.text,
            received_at: now,
        },
    )?;
    if let Some(url) = inbound_url(conn, number, account)? {
        enqueue_inbound(
            conn,
            &InboundEvent {
                url: &url,
                ..event.clone()
            },
        )?;
    }
    // Twilio's form goes to the number's `sms_url` as well, for
    // applications moved from Twilio.
    if let Some(url) = &number.sms_url {
        let segments = crate::encoding::analyze(&record.text).segments;
        enqueue_twilio_inbound(conn, &InboundEvent { url, ..event }, segments)?;
    }
    Ok(Filed {
        stored: true,
        truncated,
        answered,
    })
}

/// Where the account hears of messages to `number`: the number's own URL,
/// else its pool's, else the account's.
fn inbound_url(conn: &Connection, number: &NumberRecord, account: &str) -> Result<Option<String>> {
    if let Some(url) = &number.inbound_url {
        return Ok(Some(url.clone()));
    }
    if let Some(pool_id) = &number.pool_id
        && let Some(url) = pools::get_pool(conn, account, pool_id)?.and_then(|p| p.inbound_url)
    {
        return Ok(Some(url));
    }
    Ok(accounts::account_settings(conn, account)?.inbound_url)
}

/// The inventory number a carrier says a message was sent to. Carriers
/// write numbers with or without `+`; a short code may exist in several
/// countries, where the one this carrier provides wins.
fn number_for(conn: &Connection, carrier: &str, to: &str) -> Result<Option<NumberRecord>> {
    let to = to.trim();
    let mut candidates = vec![to.to_owned()];
    if !to.starts_with('+') && to.bytes().all(|b| b.is_ascii_digit()) {
        candidates.push(format!("+{to}"));
    }
    let mut found = Vec::new();
    for sender in &candidates {
        found.extend(numbers::numbers_with_sender(conn, sender)?);
    }
    let best = found
        .iter()
        .position(|n| n.carrier.as_deref() == Some(carrier))
        .or_else(|| found.iter().position(|n| n.carrier.is_none()))
        .unwrap_or(0);
    Ok((best < found.len()).then(|| found.swap_remove(best)))
}

/// A handset's number in E.164, read with the number's country as the hint
/// (carriers send `+84…`, `84…` or `09…`); as given when it reads as none.
fn handset_e164(raw: &str, country: Option<&str>) -> String {
    let raw = raw.trim();
    let attempts = [
        (raw.starts_with('+')).then(|| (raw.to_owned(), None)),
        country.map(|c| (raw.to_owned(), Some(c))),
        Some((format!("+{raw}"), None)),
    ];
    attempts
        .into_iter()
        .flatten()
        .find_map(|(number, hint)| crate::numbers::normalize(&number, hint).ok())
        .map_or_else(|| raw.to_owned(), |r| r.e164)
}

/// Cuts `text` to [`MAX_INBOUND_CHARS`]; whether it did.
fn truncate(text: &mut String) -> bool {
    match text.char_indices().nth(MAX_INBOUND_CHARS) {
        Some((end, _)) => {
            text.truncate(end);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_text_is_cut_at_the_ten_part_maximum() {
        let mut short = "Hi".to_owned();
        assert!(!truncate(&mut short));
        let mut long = "é".repeat(MAX_INBOUND_CHARS + 5);
        assert!(truncate(&mut long));
        assert_eq!(long.chars().count(), MAX_INBOUND_CHARS);
    }

    #[test]
    fn handsets_are_read_with_the_numbers_country() {
        assert_eq!(handset_e164("+84912345678", None), "+84912345678");
        assert_eq!(handset_e164("84912345678", Some("VN")), "+84912345678");
        assert_eq!(handset_e164("0912345678", Some("VN")), "+84912345678");
        assert_eq!(handset_e164("85251234567", None), "+85251234567");
        assert_eq!(handset_e164("not a number", Some("VN")), "not a number");
    }
}
