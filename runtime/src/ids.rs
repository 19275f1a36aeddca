//! Identifiers: a type prefix and a ULID-style body (48-bit milliseconds and
//! 80 random bits in Crockford base32), so ids sort by creation time. Within
//! one millisecond the random part counts up, so ids made one after another
//! in this process also sort in that order.

use std::sync::Mutex;

use rand::Rng;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

const RANDOM_BITS: u32 = 80;

pub fn new_id(prefix: &str) -> String {
    static LAST: Mutex<u128> = Mutex::new(0);
    let millis = crate::time::now_ms().max(0) as u128;
    let fresh = (millis << RANDOM_BITS) | (rand::rng().random::<u128>() >> (128 - RANDOM_BITS));
    let value = {
        let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        // Same (or an earlier, if the clock stepped back) millisecond: count on.
        *last = if fresh >> RANDOM_BITS <= *last >> RANDOM_BITS {
            *last + 1
        } else {
            fresh
        };
        *last
    };
    encode(prefix, value)
}

/// The lowest id with `prefix` that [`new_id`] could make at `millis`:
/// every id made before that time sorts below it.
pub fn first_id_at(prefix: &str, millis: i64) -> String {
    let value = (millis.max(0) as u128) << RANDOM_BITS;
    encode(prefix, value)
}

fn encode(prefix: &str, value: u128) -> String {
    let mut out = String::with_capacity(prefix.len() + 27);
    out.push_str(prefix);
    out.push('_');
    for i in (0..26).rev() {
        out.push(CROCKFORD[((value >> (i * 5)) & 31) as usize] as char);
    }
    out
}

/// A long random secret in base32 (used for API keys).
pub fn random_secret(chars: usize) -> String {
    let mut rng = rand::rng();
    (0..chars)
        .map(|_| CROCKFORD[rng.random_range(0..32)] as char)
        .collect()
}

/// An id's 128-bit body as 32 lower-case hex digits, for front doors whose
/// ids look otherwise (Twilio's `SM` + 32 hex). `None` for a malformed id.
pub fn body_hex(id: &str) -> Option<String> {
    let (_, body) = id.split_once('_')?;
    if body.len() != 26 {
        return None;
    }
    let mut value: u128 = 0;
    for (i, c) in body.bytes().enumerate() {
        let digit = CROCKFORD.iter().position(|&d| d == c)? as u128;
        // The first character carries the top 3 of 130 bits; ids use 128.
        if i == 0 && digit > 7 {
            return None;
        }
        value = (value << 5) | digit;
    }
    Some(format!("{value:032x}"))
}

/// The id with `prefix` whose body [`body_hex`] gives `hex`.
pub fn from_body_hex(prefix: &str, hex: &str) -> Option<String> {
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let value = u128::from_str_radix(hex, 16).ok()?;
    Some(encode(prefix, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_bodies_round_trip() {
        let id = new_id("msg");
        let hex = body_hex(&id).unwrap();
        assert_eq!(hex.len(), 32);
        assert_eq!(from_body_hex("msg", &hex).as_deref(), Some(id.as_str()));
        assert_eq!(body_hex("msg_short"), None);
        assert_eq!(from_body_hex("msg", "zz"), None);
    }

    #[test]
    fn first_id_at_bounds_the_ids_made_before() {
        let before = new_id("msg");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let bound = first_id_at("msg", crate::time::now_ms());
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(before < bound && bound < new_id("msg"));
    }

    #[test]
    fn ids_made_in_a_row_sort_in_that_order() {
        let ids: Vec<String> = (0..1000).map(|_| new_id("msg")).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }

    #[test]
    fn ids_are_prefixed_unique_and_time_ordered() {
        let a = new_id("msg");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id("msg");
        assert!(a.starts_with("msg_") && a.len() == 30);
        assert!(a < b, "{a} should sort before {b}");
    }
}
