//! The listener's signature check on hostile headers and bodies: no panic (an overflowing
//! timestamp once did), and no forged delivery verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhookd::signing::{SigningSecret, verify};

fuzz_target!(|data: &[u8]| {
    let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("a secret");
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let (id, timestamp, signature, body) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        ("webhook-id", id),
        ("webhook-timestamp", timestamp),
        ("webhook-signature", signature),
    ] {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    let now = timestamp.trim().parse::<i64>().unwrap_or(0);
    for now in [now, 0, i64::MAX, i64::MIN] {
        if verify(
            std::slice::from_ref(&secret),
            &headers,
            body.as_bytes(),
            now,
        )
        .is_ok()
        {
            // Only a real signature verifies: one made with the secret over these bytes.
            let expected = secret.sign(id, timestamp.trim().parse().unwrap_or(0), body.as_bytes());
            assert!(signature.contains(&expected), "forged: {signature:?}");
        }
    }
});
