//! Signed bans: with a shared key (`key_file`), every entry a host writes carries an
//! HMAC-SHA256 of what it says, and entries unsigned or signed with another key are
//! refused. The engine never sees the key, so whoever controls the engine cannot forge a
//! ban the agents accept.

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use super::Entry;

/// Shortest key accepted, in bytes.
const MIN_KEY: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("cannot read the fleet's key {}: {source}; check `key_file` in [fleet]", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the fleet's key {} holds {len} bytes, fewer than {MIN_KEY}: write a long random one \
         (e.g. `head -c 32 /dev/urandom | base64 > {}`) and copy it to every host",
        path.display(),
        path.display()
    )]
    Short { path: PathBuf, len: usize },
    #[error(transparent)]
    Untrusted(#[from] crate::trust::TrustError),
}

/// Signs and checks entries; without a key it signs nothing and accepts everything.
#[derive(Clone, Default)]
pub struct Signer {
    key: Option<Vec<u8>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.key.is_some() {
            "Signer(key)"
        } else {
            "Signer(none)"
        })
    }
}

impl Signer {
    /// The key in `path` (surrounding white space left out), when there is one.
    pub fn load(path: Option<&Path>) -> Result<Self, SignError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        crate::trust::check_file(path)?;
        let bytes = std::fs::read(path).map_err(|source| SignError::Read {
            path: path.to_owned(),
            source,
        })?;
        let key = bytes.trim_ascii().to_vec();
        if key.len() < MIN_KEY {
            return Err(SignError::Short {
                path: path.to_owned(),
                len: key.len(),
            });
        }
        Ok(Self { key: Some(key) })
    }

    /// A signer with `key`, for tests and benchmarks.
    pub fn with_key(key: &[u8]) -> Self {
        Self {
            key: Some(key.to_vec()),
        }
    }

    pub fn signs(&self) -> bool {
        self.key.is_some()
    }

    fn mac(&self) -> Option<Hmac<Sha256>> {
        let key = self.key.as_ref()?;
        // HMAC takes keys of any length: this cannot fail.
        Hmac::<Sha256>::new_from_slice(key).ok()
    }

    /// The signature of `entry` in hex, "" without a key.
    pub fn sign(&self, entry: &Entry) -> String {
        let Some(mut mac) = self.mac() else {
            return String::new();
        };
        mac.update(entry.signed_text().as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `entry` may be applied: always without a key, else only when signed with
    /// it. `Err` says why not.
    pub fn check(&self, entry: &Entry) -> Result<(), &'static str> {
        let Some(mut mac) = self.mac() else {
            return Ok(());
        };
        if entry.sig.is_empty() {
            return Err("unsigned");
        }
        let Some(sig) = unhex(&entry.sig) else {
            return Err("a malformed signature");
        };
        mac.update(entry.signed_text().as_bytes());
        mac.verify_slice(&sig).map_err(|_| "a wrong signature")
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
