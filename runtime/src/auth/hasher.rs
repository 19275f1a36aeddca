//! API key hashes: HMAC-SHA256 keyed with a secret kept beside the
//! database (`<data_dir>/pigeon.secret`, made at first start, readable by
//! its owner only). A copy of the database alone then does not let anyone
//! test guesses at an operator-chosen key offline.
//!
//! The `meta` table keeps a check value made with the secret, so a secret
//! file that does not belong to the database is refused at start rather
//! than locking every key out.

use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const SECRET_FILE: &str = "pigeon.secret";
/// The `meta` key of the check value.
pub(super) const CHECK_KEY: &str = "key_hash_check";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read or create {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a Pigeon secret (64 hex digits)")]
    Malformed { path: PathBuf },
}

#[derive(Clone)]
pub struct KeyHasher {
    /// HMAC keyed with the secret, cloned for each hash (the key's pads
    /// are computed once, not per request).
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher(..)")
    }
}

impl KeyHasher {
    /// Reads `<data_dir>/pigeon.secret`, creating it if it does not exist.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, SecretError> {
        let path = data_dir.join(SECRET_FILE);
        let io = |source| SecretError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let secret = decode_hex(text.trim())
                    .ok_or_else(|| SecretError::Malformed { path: path.clone() })?;
                Ok(Self::with_secret(secret))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; 32];
                rand::fill(&mut secret);
                let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
                let mut file = owner_only()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(io)?;
                file.write_all(format!("{hex}\n").as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(Self::with_secret(secret))
            }
            Err(err) => Err(io(err)),
        }
    }

    pub fn with_secret(secret: [u8; 32]) -> Self {
        // HMAC takes keys of any length: this cannot fail.
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(&secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        Self { keyed }
    }

    pub fn hash(&self, key: &str) -> [u8; 32] {
        self.mac(key.as_bytes())
    }

    /// A key for `purpose`, derived from the secret. The NUL in front keeps
    /// it apart from every key hash: a presented key never holds one.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        let mut input = vec![0u8];
        input.extend_from_slice(purpose.as_bytes());
        self.mac(&input)
    }

    /// What the `meta` table keeps to recognise this secret.
    pub(super) fn check_value(&self) -> String {
        self.mac(b"pigeon key hash check")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn mac(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

/// The plain SHA-256 that keys were stored as before.
pub(super) fn legacy_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn owner_only() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = KeyHasher::load_or_create(dir.path()).unwrap();
        let again = KeyHasher::load_or_create(dir.path()).unwrap();
        assert_eq!(first.hash("pgn_live_x"), again.hash("pgn_live_x"));
        assert_ne!(first.hash("pgn_live_x"), legacy_hash("pgn_live_x"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = KeyHasher::with_secret([7; 32]);
        assert_ne!(other.hash("pgn_live_x"), first.hash("pgn_live_x"));
        assert_ne!(other.check_value(), first.check_value());
        std::fs::write(dir.path().join(SECRET_FILE), "not hex").unwrap();
        assert!(matches!(
            KeyHasher::load_or_create(dir.path()),
            Err(SecretError::Malformed { .. })
        ));
    }
}
