//! Encryption at rest for signing secrets. Unlike API tokens they cannot be hashed: webhookd
//! must read them back to sign. They are sealed with ChaCha20-Poly1305 under a 32-byte key
//! that is not in the database (`--secret-key` / `WEBHOOKD_SECRET_KEY`, or a key file in the
//! data directory), so a database dump alone does not reveal them.

use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead as _, KeyInit as _};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use rand::RngCore as _;

const NONCE_LEN: usize = 12;

/// Seals and opens secrets under one key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl SecretBox {
    /// A box under `key`.
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(&key.into()),
        }
    }

    /// A box under a base64-encoded 32-byte key.
    ///
    /// # Errors
    /// When the text is not base64 of exactly 32 bytes.
    pub fn from_base64(text: &str) -> anyhow::Result<Self> {
        let bytes = STANDARD
            .decode(text.trim())
            .context("the secret key is not base64")?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| {
            anyhow::anyhow!("the secret key must be 32 bytes (44 base64 characters)")
        })?;
        Ok(Self::new(key))
    }

    /// The key in `path`, created (random, mode 0600) if the file does not exist.
    ///
    /// # Errors
    /// When the file cannot be read or written, or holds no valid key.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        if !path.exists() {
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let created = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path);
            match created {
                Ok(mut file) => file.write_all(format!("{}\n", STANDARD.encode(key)).as_bytes())?,
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_base64(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Nonce followed by ciphertext and tag.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .expect("ChaCha20-Poly1305 encryption cannot fail for in-memory data");
        [&nonce[..], &sealed].concat()
    }

    /// The plaintext of a value made by [`SecretBox::seal`] under the same key.
    ///
    /// # Errors
    /// When the value was sealed under another key, or is corrupt.
    pub fn open(&self, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            anyhow::bail!("sealed secret is truncated");
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.cipher.decrypt(Nonce::from_slice(nonce), ciphertext).map_err(|_| {
            anyhow::anyhow!(
                "a stored signing secret does not decrypt: is --secret-key (WEBHOOKD_SECRET_KEY) \
                 the key it was stored under?"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_another_key() {
        let a = SecretBox::new([1; 32]);
        let sealed = a.seal(b"whsec_abc");
        assert_eq!(a.open(&sealed).expect("same key"), b"whsec_abc");
        assert!(SecretBox::new([2; 32]).open(&sealed).is_err());
        assert_ne!(a.seal(b"whsec_abc"), sealed, "fresh nonce each time");
    }
}
