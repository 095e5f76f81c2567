//! How an attempt's record stores headers: compactly, since every attempt stores two sets.
//! Each header is a name and a value, each either one byte naming an entry of a fixed table
//! ([`NAMES`], [`VALUES`]: the headers every format sends, the answers most listeners give) or
//! a literal (a marker byte, its length as LEB128, its bytes). Two more markers stand for the
//! values a request's Standard Webhooks headers always have, the delivery's id and the
//! attempt's start in Unix seconds, which the record holds anyway. A BSR request's seven
//! headers take about 85 bytes instead of about 260 as text; decoding gives back exactly the
//! names and values sent.
//!
//! The tables are append-only: a stored record refers to their entries by position.

/// Header names stored as one byte (their position). Append only.
pub const NAMES: &[&str] = &[
    "content-type",
    "content-length",
    "user-agent",
    "connect-protocol-version",
    "connect-timeout-ms",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "authorization",
    "date",
    "server",
    "connection",
    "content-encoding",
    "transfer-encoding",
    "cache-control",
    "vary",
    "x-request-id",
    "x-github-event",
    "x-github-delivery",
    "x-github-hook-id",
    "x-github-hook-installation-target-type",
    "x-github-hook-installation-target-id",
    "x-hub-signature",
    "x-hub-signature-256",
    "x-registry-event",
    "x-registry-signature-256",
    "accept-encoding",
    "keep-alive",
    "x-powered-by",
    "strict-transport-security",
    "x-content-type-options",
    "grpc-status",
];

/// Header values stored as one byte (their position). Append only.
pub const VALUES: &[&str] = &[
    "application/proto",
    "application/json",
    "application/x-www-form-urlencoded",
    "1",
    "0",
    super::MASKED,
    "text/plain",
    "text/plain; charset=utf-8",
    "application/json; charset=utf-8",
    "keep-alive",
    "close",
    "chunked",
    "gzip",
    "nosniff",
    "Repository",
    "Organization",
];

/// The next byte is a literal's length.
const LITERAL: u8 = 0xFF;
/// The value is the delivery's id.
const DELIVERY_ID: u8 = 0xFE;
/// The value is the attempt's start, in Unix seconds.
const START_SECONDS: u8 = 0xFD;

/// What the markers stand for in one record.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The delivery's id, as sent in `webhook-id`.
    pub delivery_id: &'a str,
    /// The attempt's start, in Unix seconds, as sent in `webhook-timestamp`.
    pub start_seconds: i64,
}

/// Encodes `headers`, the value of each `masked` says to hide replaced by
/// [`super::MASKED`], stopping before the first header that would take the record past
/// `limit` bytes.
pub fn encode<'a>(
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    masked: impl Fn(&str) -> bool,
    context: Context<'_>,
    limit: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    let seconds = context.start_seconds.to_string();
    for (name, value) in headers {
        if out.len() + name.len() + value.len() + 12 > limit {
            break;
        }
        push(&mut out, name.as_bytes(), NAMES, &[]);
        let value = if masked(name) {
            super::MASKED.as_bytes()
        } else {
            value
        };
        let markers = [
            (context.delivery_id.as_bytes(), DELIVERY_ID),
            (seconds.as_bytes(), START_SECONDS),
        ];
        push(&mut out, value, VALUES, &markers);
    }
    out
}

/// Appends `text`: a marker when one stands for it, else its table position, else a
/// literal.
fn push(out: &mut Vec<u8>, text: &[u8], table: &[&str], markers: &[(&[u8], u8)]) {
    if let Some((_, marker)) = markers.iter().find(|(v, _)| !v.is_empty() && *v == text) {
        out.push(*marker);
    } else if let Some(i) = table.iter().position(|t| t.as_bytes() == text) {
        out.push(u8::try_from(i).expect("tables hold under 128 entries"));
    } else {
        out.push(LITERAL);
        let mut n = u32::try_from(text.len()).unwrap_or(u32::MAX);
        loop {
            let byte = u8::try_from(n & 0x7F).expect("seven bits");
            n >>= 7;
            if n == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(text);
    }
}

/// Decodes a record made by [`encode`] with the same `context`; `None` when it is corrupt.
/// Bytes that are not UTF-8 are shown as U+FFFD.
pub fn decode(bytes: &[u8], context: Context<'_>) -> Option<Vec<(String, String)>> {
    let mut at = 0;
    let mut headers = vec![];
    while at < bytes.len() {
        let name = read(bytes, &mut at, NAMES, context)?;
        let value = read(bytes, &mut at, VALUES, context)?;
        headers.push((name, value));
    }
    Some(headers)
}

/// Reads one name or value at `*at`.
fn read(bytes: &[u8], at: &mut usize, table: &[&str], context: Context<'_>) -> Option<String> {
    let first = *bytes.get(*at)?;
    *at += 1;
    match first {
        DELIVERY_ID => Some(context.delivery_id.to_owned()),
        START_SECONDS => Some(context.start_seconds.to_string()),
        LITERAL => {
            let mut len: usize = 0;
            for shift in (0..35).step_by(7) {
                let byte = *bytes.get(*at)?;
                *at += 1;
                len |= usize::from(byte & 0x7F) << shift;
                if byte & 0x80 == 0 {
                    let text = bytes.get(*at..at.checked_add(len)?)?;
                    *at += len;
                    return Some(String::from_utf8_lossy(text).into_owned());
                }
            }
            None
        }
        i => table.get(usize::from(i)).map(|t| (*t).to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTEXT: Context<'static> = Context {
        delivery_id: "01a233f9-254b-7573-95e7-38609259c5cd",
        start_seconds: 1_796_168_295,
    };

    #[test]
    fn headers_come_back_exactly_and_take_a_few_bytes_each() {
        let long = "x".repeat(300);
        let sent: Vec<(&str, &[u8])> = vec![
            ("content-type", b"application/proto"),
            ("connect-protocol-version", b"1"),
            ("connect-timeout-ms", b"10000"),
            ("webhook-id", CONTEXT.delivery_id.as_bytes()),
            ("webhook-timestamp", b"1796168295"),
            (
                "webhook-signature",
                b"v1,yRy6pF3Hut/qyEhKouj6Iowg0IOmmdl6ZGuf/FrkNi8=",
            ),
            ("user-agent", b"webhookd/0.1.0"),
            ("x-custom", long.as_bytes()),
            ("x-empty", b""),
            ("x-latin", b"caf\xe9"),
            ("authorization", b"Bearer s3cret"),
        ];
        let encoded = encode(
            sent.iter().copied(),
            |name| name == "authorization",
            CONTEXT,
            usize::MAX,
        );
        let decoded = decode(&encoded, CONTEXT).unwrap();
        let expected: Vec<(String, String)> = sent
            .iter()
            .map(|(n, v)| match *n {
                "authorization" => ((*n).to_owned(), super::super::MASKED.to_owned()),
                _ => ((*n).to_owned(), String::from_utf8_lossy(v).into_owned()),
            })
            .collect();
        assert_eq!(decoded, expected);
        let standard = encode(sent[..7].iter().copied(), |_| false, CONTEXT, usize::MAX);
        assert!(standard.len() < 90, "{} bytes", standard.len());
        // A limit keeps whole headers only.
        let cut = encode(sent.iter().copied(), |_| false, CONTEXT, 120);
        assert!(cut.len() <= 120);
        assert_eq!(decode(&cut, CONTEXT).unwrap().len(), 7);
    }

    #[test]
    fn corrupt_records_decode_to_none_without_panicking() {
        for bytes in [
            &[LITERAL][..],
            &[LITERAL, 5, b'a'],
            &[0],
            &[200, 0],
            &[LITERAL, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
        ] {
            assert_eq!(decode(bytes, CONTEXT), None, "{bytes:?}");
        }
        assert_eq!(decode(&[], CONTEXT), Some(vec![]));
    }
}
