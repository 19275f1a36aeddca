//! HMAC-SHA256 signatures, as carriers use to sign their callbacks.
//! Verification compares in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::encoding::{base64_decode, hex_decode};

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Whether `signature` is the HMAC-SHA256 of `data` under `key` (constant time).
pub fn verify_hmac_sha256(key: &[u8], data: &[u8], signature: &[u8]) -> bool {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.verify_slice(signature).is_ok()
}

/// As [`verify_hmac_sha256`], with the signature in hex (either case).
pub fn verify_hmac_sha256_hex(key: &[u8], data: &[u8], signature_hex: &str) -> bool {
    hex_decode(signature_hex.trim()).is_some_and(|sig| verify_hmac_sha256(key, data, &sig))
}

/// As [`verify_hmac_sha256`], with the signature in standard base64.
pub fn verify_hmac_sha256_base64(key: &[u8], data: &[u8], signature_b64: &str) -> bool {
    base64_decode(signature_b64.trim()).is_some_and(|sig| verify_hmac_sha256(key, data, &sig))
}

/// Compares two secrets (tokens, passwords) in time that depends only on
/// their lengths, not on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::{base64_encode, hex_encode};

    // RFC 4231, test case 2.
    const KEY: &[u8] = b"Jefe";
    const DATA: &[u8] = b"what do ya want for nothing?";
    const MAC: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

    #[test]
    fn rfc4231_vector() {
        assert_eq!(hex_encode(&hmac_sha256(KEY, DATA)), MAC);
        assert!(verify_hmac_sha256_hex(KEY, DATA, MAC));
        assert!(verify_hmac_sha256_hex(KEY, DATA, &MAC.to_uppercase()));
        let b64 = base64_encode(&hmac_sha256(KEY, DATA));
        assert!(verify_hmac_sha256_base64(KEY, DATA, &b64));
    }

    #[test]
    fn rejects_wrong_signatures() {
        let mut bad = MAC.to_owned();
        bad.replace_range(0..1, "6");
        assert!(!verify_hmac_sha256_hex(KEY, DATA, &bad));
        assert!(!verify_hmac_sha256_hex(KEY, DATA, &MAC[..62]));
        assert!(!verify_hmac_sha256_hex(KEY, DATA, "not hex"));
        assert!(!verify_hmac_sha256(b"other", DATA, &hmac_sha256(KEY, DATA)));
        assert!(!verify_hmac_sha256_base64(KEY, DATA, "%%%"));
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secrets"));
        assert!(constant_time_eq(b"", b""));
    }
}
