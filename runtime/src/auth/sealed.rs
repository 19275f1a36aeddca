//! Secrets Pigeon must read back, not only check: a Twilio auth token is
//! the key of the HMAC that signs Twilio-format webhooks, so it cannot be
//! stored as a hash alone. It is sealed with ChaCha20-Poly1305 under a key
//! derived from the server secret (`pigeon.secret`), so a copy of the
//! database without that file does not give the tokens away.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

const NONCE_LEN: usize = 12;

#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// A random nonce, then the ciphertext and its tag.
    pub fn seal(&self, plain: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
            .unwrap_or_else(|_| unreachable!("encrypting into a Vec cannot fail"));
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// `None` when `sealed` was not made with this key (or was altered).
    pub fn open(&self, sealed: &[u8]) -> Option<String> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_tokens_open_with_their_key_only() {
        let sealer = Sealer::new([7; 32]);
        let sealed = sealer.seal("token");
        assert!(!sealed.windows(5).any(|w| w == b"token"));
        assert_eq!(sealer.open(&sealed).as_deref(), Some("token"));
        assert_eq!(Sealer::new([8; 32]).open(&sealed), None);
        let mut altered = sealed.clone();
        altered[NONCE_LEN] ^= 1;
        assert_eq!(sealer.open(&altered), None);
        assert_ne!(sealer.seal("token"), sealed, "nonces are fresh");
    }
}
