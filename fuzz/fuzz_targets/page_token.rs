//! Page tokens come back from clients: decoding any text must not panic, and only tokens
//! this key made for this scope decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhookd::domain::{PageCursor, PageKey};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = PageKey::new(vec![7; 32]);
    if let Ok(cursor) = PageCursor::decode(text, &key, "webhooks:acme/petapis") {
        // What decodes re-encodes to a token that decodes to the same place.
        let again = cursor.encode(&key, "webhooks:acme/petapis");
        assert!(PageCursor::decode(&again, &key, "webhooks:acme/petapis").is_ok());
        assert!(PageCursor::decode(text, &key, "webhooks:globex/petapis").is_err());
    }
});
