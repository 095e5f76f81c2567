//! Encryption at rest for signing secrets. Unlike API tokens they cannot be hashed: webhookd
//! must read them back to sign. They are sealed with ChaCha20-Poly1305 under a 32-byte key
//! that is not in the database (`--secret-key` / `WEBHOOKD_SECRET_KEY`, or a key file in the
//! data directory), so a database dump alone does not reveal them.

use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use rand::RngCore as _;

use crate::domain::WebhookId;

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

/// The first byte of a secret sealed bound to its webhook. Secrets sealed before the
/// binding existed are nonce and ciphertext alone; they still open (see [`SecretBox::open`]).
const BOUND: u8 = 1;

impl SecretBox {
    /// Seals a signing secret of `webhook`: a version byte, the nonce, then ciphertext and
    /// tag, with the webhook's id as associated data, so that the sealed value opens only as
    /// that webhook's secret: copied into another webhook's row (by anyone who can write to
    /// the database but does not hold the key), it does not open.
    pub fn seal(&self, webhook: WebhookId, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext,
            aad: webhook.0.as_bytes(),
        };
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .expect("ChaCha20-Poly1305 encryption cannot fail for in-memory data");
        [&[BOUND][..], &nonce[..], &sealed].concat()
    }

    /// The plaintext of a secret [`SecretBox::seal`] sealed for `webhook` under the same
    /// key. A value sealed before secrets were bound to their webhook (no version byte) is
    /// opened as it was sealed; it is bound when the webhook's secret is next rotated.
    ///
    /// # Errors
    /// When the value was sealed under another key or for another webhook, or is corrupt.
    pub fn open(&self, webhook: WebhookId, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        let bound = sealed.split_first().and_then(|(&version, rest)| {
            let (nonce, ciphertext) = rest.split_at_checked(NONCE_LEN)?;
            let payload = Payload {
                msg: ciphertext,
                aad: webhook.0.as_bytes(),
            };
            (version == BOUND)
                .then(|| self.cipher.decrypt(Nonce::from_slice(nonce), payload).ok())
                .flatten()
        });
        let legacy = || {
            let (nonce, ciphertext) = sealed.split_at_checked(NONCE_LEN)?;
            self.cipher
                .decrypt(Nonce::from_slice(nonce), ciphertext)
                .ok()
        };
        bound.or_else(legacy).ok_or_else(|| {
            anyhow::anyhow!(
                "the signing secret stored for webhook {webhook} does not decrypt: is \
                 --secret-key (WEBHOOKD_SECRET_KEY) the key it was stored under, and was it \
                 stored for this webhook?"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_another_key_or_another_webhook() {
        let a = SecretBox::new([1; 32]);
        let (hook, other) = (WebhookId::generate(), WebhookId::generate());
        let sealed = a.seal(hook, b"whsec_abc");
        assert_eq!(a.open(hook, &sealed).expect("same key"), b"whsec_abc");
        assert!(SecretBox::new([2; 32]).open(hook, &sealed).is_err());
        let moved = a
            .open(other, &sealed)
            .expect_err("moved to another webhook");
        assert!(
            moved.to_string().contains("stored for this webhook"),
            "{moved}"
        );
        assert_ne!(a.seal(hook, b"whsec_abc"), sealed, "fresh nonce each time");
        for cut in [0, 1, NONCE_LEN, NONCE_LEN + 1, sealed.len() - 1] {
            assert!(a.open(hook, &sealed[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_secret_sealed_before_the_binding_still_opens() {
        let a = SecretBox::new([1; 32]);
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let legacy = [
            &nonce[..],
            &a.cipher
                .encrypt(Nonce::from_slice(&nonce), &b"whsec_old"[..])
                .expect("encrypts"),
        ]
        .concat();
        assert_eq!(
            a.open(WebhookId::generate(), &legacy).expect("legacy"),
            b"whsec_old"
        );
    }

    #[test]
    fn a_key_file_open_to_other_users_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("webhookd-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("secret.key");
        let created = SecretBox::load_or_create(&path).expect("created");
        let hook = WebhookId::generate();
        let sealed = created.seal(hook, b"x");
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
        assert_eq!(reopened.open(hook, &sealed).expect("same key"), b"x");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
