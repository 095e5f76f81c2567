//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>): what webhookd puts on
//! every delivery, and what a listener checks.
//!
//! The signed content is `"{webhook-id}.{webhook-timestamp}.{body}"` over the raw body bytes
//! (binary protobuf here), HMAC-SHA256 keyed by the base64-decoded part of a `whsec_` secret,
//! sent as `webhook-signature: v1,<base64>`; several space-separated signatures during a
//! secret rotation.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use sha2::Sha256;

/// The prefix of every signing secret.
const SECRET_PREFIX: &str = "whsec_";
/// How far a delivery's timestamp may be from the listener's clock (the reference libraries'
/// tolerance).
pub const DEFAULT_TOLERANCE_SECS: i64 = 5 * 60;

/// A `whsec_` signing secret. Never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret {
    text: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(..)")
    }
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A `webhook-*` header is missing or not text.
    #[error("missing or unreadable {0} header")]
    MissingHeader(&'static str),
    /// The timestamp is not an integer or is too far from now (a replay, or a skewed clock).
    #[error("webhook-timestamp is missing, malformed or more than 5 minutes from now")]
    StaleTimestamp,
    /// No `v1,` signature matches any of the secrets.
    #[error("no signature matches")]
    NoMatch,
}

impl SigningSecret {
    /// A new secret: 32 random bytes, as `whsec_<base64>`.
    pub fn generate() -> Self {
        let mut key = vec![0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self {
            text: format!("{SECRET_PREFIX}{}", STANDARD.encode(&key)),
            key,
        }
    }

    /// Reads a `whsec_<base64>` secret (the prefix is optional, as in the reference libraries).
    pub fn parse(text: &str) -> Option<Self> {
        let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let key = STANDARD.decode(encoded).ok().filter(|k| !k.is_empty())?;
        Some(Self {
            text: format!("{SECRET_PREFIX}{encoded}"),
            key,
        })
    }

    /// The secret as given to listeners.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(id, timestamp, body)))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }
}

/// The `webhook-signature` header value for `body` signed by every secret in `secrets`.
pub fn signature_header(
    secrets: &[SigningSecret],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks a delivery the way a listener should: the timestamp is within
/// [`DEFAULT_TOLERANCE_SECS`] of `now` and one `v1,` signature matches one of `secrets`
/// (several during a rotation). Comparison is constant-time.
///
/// # Errors
/// [`SignatureError`] saying what failed.
pub fn verify(
    secrets: &[SigningSecret],
    headers: &http::HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(SignatureError::MissingHeader(name))
    };
    let id = header("webhook-id")?;
    let timestamp: i64 = header("webhook-timestamp")?
        .parse()
        .map_err(|_| SignatureError::StaleTimestamp)?;
    // `abs_diff`: a difference of extreme timestamps does not fit an i64.
    if now.abs_diff(timestamp) > DEFAULT_TOLERANCE_SECS.unsigned_abs() {
        return Err(SignatureError::StaleTimestamp);
    }
    let offered: Vec<Vec<u8>> = header("webhook-signature")?
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|s| STANDARD.decode(s).ok())
        .collect();
    for secret in secrets {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&secret.key).expect("HMAC accepts any key length");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        for signature in &offered {
            if mac.clone().verify_slice(signature).is_ok() {
                return Ok(());
            }
        }
    }
    Err(SignatureError::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's example (spec/standard-webhooks.md).
    #[test]
    fn matches_the_standard_webhooks_test_vector() {
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn verifies_any_matching_secret_and_rejects_the_rest() {
        let (old, new) = (SigningSecret::generate(), SigningSecret::generate());
        let body = b"\x08\x01binary";
        let mut headers = http::HeaderMap::new();
        headers.insert("webhook-id", "d1".parse().expect("header"));
        headers.insert("webhook-timestamp", "1000".parse().expect("header"));
        let both = signature_header(&[new.clone(), old.clone()], "d1", 1000, body);
        headers.insert("webhook-signature", both.parse().expect("header"));
        assert_eq!(
            verify(std::slice::from_ref(&old), &headers, body, 1000),
            Ok(())
        );
        assert_eq!(
            verify(std::slice::from_ref(&new), &headers, body, 1100),
            Ok(())
        );
        assert_eq!(
            verify(&[SigningSecret::generate()], &headers, body, 1000),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify(std::slice::from_ref(&old), &headers, b"tampered", 1000),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify(std::slice::from_ref(&old), &headers, body, 1000 + 301),
            Err(SignatureError::StaleTimestamp)
        );
        for extreme in [i64::MIN, i64::MAX] {
            let mut skewed = headers.clone();
            skewed.insert(
                "webhook-timestamp",
                extreme.to_string().parse().expect("header"),
            );
            assert_eq!(
                verify(std::slice::from_ref(&old), &skewed, body, 1000),
                Err(SignatureError::StaleTimestamp),
                "{extreme}"
            );
        }
        headers.remove("webhook-id");
        assert_eq!(
            verify(&[new], &headers, body, 1000),
            Err(SignatureError::MissingHeader("webhook-id"))
        );
    }
}
