//! What the registry formats share: the stored `RegistryEvent` decoded, its time, the
//! operator, and JSON written the way Go's `encoding/json` writes it (Harbor's payloads are
//! Go's: `<`, `>`, `&`, U+2028 and U+2029 escaped; maps with sorted keys).

use buffa::Message as _;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Rendering;
use crate::domain::{Family, registry_type};
use crate::proto::webhookd::v1::RegistryEvent;

/// The delivery's registry event.
pub fn event(rendering: &Rendering<'_>) -> Result<RegistryEvent, String> {
    if rendering.delivery.event.family != Family::Registry {
        return Err(format!(
            "a {} event cannot be rendered in a registry format",
            rendering.delivery.event.family.as_str()
        ));
    }
    RegistryEvent::decode_from_slice(&rendering.delivery.payload)
        .map_err(|e| format!("stored registry event does not decode: {e}"))
}

/// When it happened (set at publish when the producer did not say).
pub fn occur_time(event: &RegistryEvent, rendering: &Rendering<'_>) -> DateTime<Utc> {
    event
        .occur_time
        .as_option()
        .and_then(|t| DateTime::<Utc>::try_from(t.clone()).ok())
        .unwrap_or(rendering.delivery.event.create_time)
}

/// Who did it, as Harbor names an operator: the actor's name, else the registry's own
/// operation (`prune`, `cache`), else empty.
pub fn operator(event: &RegistryEvent) -> String {
    event.actor.as_option().map_or_else(String::new, |a| {
        if a.name.is_empty() {
            a.internal.clone()
        } else {
            a.name.clone()
        }
    })
}

/// Harbor's event type for webhookd's `kind`.
pub fn harbor_type(kind: &str) -> &'static str {
    registry_type(kind).map_or("", |t| t.harbor)
}

/// `value` as Go's `json.Marshal` writes it: compact, struct fields in declaration order
/// (the serde order of `value`), maps sorted (serde_json's own maps are), and `<`, `>`,
/// `&`, U+2028, U+2029 escaped as `\u003c`... (Go's HTML-safe default).
pub fn go_json<T: Serialize>(value: &T) -> Vec<u8> {
    go_escape(serde_json::to_string(value).expect("payloads serialize"))
}

/// `value` as Go's `json.MarshalIndent(value, "", "\t")` writes it.
pub fn go_json_indented<T: Serialize>(value: &T) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value
        .serialize(&mut serializer)
        .expect("payloads serialize");
    String::from_utf8(go_escape(String::from_utf8(out).expect("JSON is UTF-8")))
        .expect("escaping keeps UTF-8")
}

/// Go's HTML-safe escapes; `<`, `>`, `&` and the two separators can only be inside
/// strings in JSON text, so replacing them everywhere is exact.
fn go_escape(text: String) -> Vec<u8> {
    if !text.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return text.into_bytes();
    }
    text.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
        .into_bytes()
}

/// A protobuf `Struct` as a JSON value with sorted keys (as Go writes a map).
pub fn sorted(value: &buffa_types::google::protobuf::Struct) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_json_as_go_does() {
        let value = serde_json::json!({"b": "<a&b>", "a": [1, {}], "c": {}});
        assert_eq!(
            String::from_utf8(go_json(&value)).unwrap(),
            r#"{"a":[1,{}],"b":"\u003ca\u0026b\u003e","c":{}}"#
        );
        assert_eq!(
            go_json_indented(&value),
            "{\n\t\"a\": [\n\t\t1,\n\t\t{}\n\t],\n\t\"b\": \"\\u003ca\\u0026b\\u003e\",\n\t\"c\": {}\n}"
        );
    }
}
