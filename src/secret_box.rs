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

    /// The key in `path`, a file in the data directory, created (random, mode 0600) if it
    /// does not exist. Unlike [`SecretBox::load`] it does not follow a symlink.
    ///
    /// # Errors
    /// When the file cannot be read or written, is a symlink, holds no valid key, or is
    /// readable or writable by anyone but its owner (the message says how to fix it).
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        // `create_new` (O_EXCL) never follows a symlink: a link in its place is AlreadyExists
        // here and refused when opened below.
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        match created {
            Ok(mut file) => file.write_all(format!("{}\n", STANDARD.encode(key)).as_bytes())?,
            // It exists already (or another process created it first): use it.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
        read_key(crate::data_dir::open_private(path, false)?, path)
    }

    /// The key in the file at `path`, which must exist and be open to its owner alone.
    ///
    /// # Errors
    /// When the file cannot be read, holds no valid key, or is readable or writable by
    /// anyone but its owner (the message says how to fix it).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let file =
            std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        read_key(file, path)
    }
}

/// The key in `file` (opened from `path`), refused when the file is open to its group or
/// to others: anyone who can read it can read every signing secret in the database.
fn read_key(mut file: std::fs::File, path: &Path) -> anyhow::Result<SecretBox> {
    use std::io::Read as _;
    use std::os::unix::fs::PermissionsExt as _;
    let mode = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "{} is open to other users (mode {:o}): it holds the key to every signing secret; \
             run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    SecretBox::from_base64(&text).with_context(|| format!("in {}", path.display()))
}

impl SecretBox {
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

    #[test]
    fn a_key_file_open_to_other_users_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("webhookd-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("secret.key");
        let created = SecretBox::load_or_create(&path).expect("created");
        let sealed = created.seal(b"x");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        for loose in [0o644, 0o640, 0o606, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(loose)).expect("chmod");
            let err = SecretBox::load_or_create(&path)
                .err()
                .expect("refused")
                .to_string();
            assert!(
                err.contains("open to other users") && err.contains("chmod 600"),
                "{err}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        let reopened = SecretBox::load_or_create(&path).expect("owner-only is fine");
        assert_eq!(reopened.open(&sealed).expect("same key"), b"x");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
