//! Page tokens for the list RPCs: opaque to clients, authenticated by the server.
//!
//! A token carries the position after the last item of a page (create time and id) and is
//! bound, by an HMAC under a per-database key, to the listing it was issued for (a scope
//! such as `webhooks/acme/petapis`). A forged, truncated or foreign token therefore fails to
//! verify and is `invalid_argument`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use uuid::Uuid;

use crate::error::{Error, Result};

const VERSION: u8 = 1;
const MAC_LEN: usize = 16;
/// version + micros (8) + uuid (16) + truncated MAC.
const TOKEN_LEN: usize = 1 + 8 + 16 + MAC_LEN;

/// The key that authenticates page tokens; shared by every process on one database.
#[derive(Clone)]
pub struct PageKey(Vec<u8>);

impl PageKey {
    /// Wraps key material (at least 32 bytes, read from the database).
    pub fn new(key: Vec<u8>) -> Self {
        Self(key)
    }

    fn mac(&self, scope: &str, body: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(scope.as_bytes());
        mac.update(b"\0");
        mac.update(body);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }
}

/// The position after which the next page starts: (create_time, id) of the last item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor {
    /// Create time of the last item on the previous page.
    pub create_time: DateTime<Utc>,
    /// Id of the last item on the previous page.
    pub id: Uuid,
}

impl PageCursor {
    /// Encodes the cursor as a token valid only for `scope`.
    pub fn encode(&self, key: &PageKey, scope: &str) -> String {
        let mut bytes = Vec::with_capacity(TOKEN_LEN);
        bytes.push(VERSION);
        bytes.extend_from_slice(&self.create_time.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(self.id.as_bytes());
        let mac = key.mac(scope, &bytes);
        bytes.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Decodes and verifies a token issued for `scope`.
    ///
    /// # Errors
    /// `InvalidArgument` for anything but an unaltered token of the same scope and database.
    pub fn decode(token: &str, key: &PageKey, scope: &str) -> Result<Self> {
        let invalid = || {
            Error::InvalidArgument(
                "page_token is not valid for this request; pass the next_page_token of the \
                 previous response to the same request unchanged"
                    .into(),
            )
        };
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        if bytes.len() != TOKEN_LEN || bytes[0] != VERSION {
            return Err(invalid());
        }
        let (body, mac) = bytes.split_at(TOKEN_LEN - MAC_LEN);
        if !constant_time_eq(mac, &key.mac(scope, body)) {
            return Err(invalid());
        }
        let micros = i64::from_be_bytes(body[1..9].try_into().map_err(|_| invalid())?);
        let create_time = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
        let id = Uuid::from_slice(&body[9..25]).map_err(|_| invalid())?;
        Ok(Self { create_time, id })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_tampering() {
        let key = PageKey::new(vec![7; 32]);
        let scope = "webhooks/acme/petapis";
        let cursor = PageCursor {
            create_time: Utc::now(),
            id: Uuid::new_v4(),
        };
        let token = cursor.encode(&key, scope);
        let back = PageCursor::decode(&token, &key, scope).expect("valid");
        assert_eq!(back.id, cursor.id);
        assert_eq!(
            back.create_time.timestamp_micros(),
            cursor.create_time.timestamp_micros()
        );

        assert!(PageCursor::decode(&token, &key, "webhooks/acme/other").is_err());
        assert!(PageCursor::decode(&token, &PageKey::new(vec![8; 32]), scope).is_err());
        let mut flipped = token.into_bytes();
        flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        assert!(PageCursor::decode(&flipped, &key, scope).is_err());
        assert!(PageCursor::decode("garbage!", &key, scope).is_err());
    }
}
