//! Identifiers: a type prefix and a ULID-style body (48-bit milliseconds and
//! 80 random bits in Crockford base32), so ids sort by creation time.

use rand::Rng;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

pub fn new_id(prefix: &str) -> String {
    let millis = crate::time::now_ms().max(0) as u128;
    let random: u128 = rand::rng().random::<u128>() & ((1u128 << 80) - 1);
    let value = (millis << 80) | random;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_unique_and_time_ordered() {
        let a = new_id("msg");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id("msg");
        assert!(a.starts_with("msg_") && a.len() == 30);
        assert!(a < b, "{a} should sort before {b}");
    }
}
