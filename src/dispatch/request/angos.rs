//! Angos's delivery format (section B of the reference facts): its JSON body, in its key
//! order (`id, timestamp, kind, namespace, digest?, reference?, tag?, actor?, repository`),
//! `X-Registry-Event` naming the kind, and, when the subscription's auth header is a
//! `Bearer` token, that token as `Authorization` (sent by the common code) and as the HMAC
//! key of `X-Registry-Signature-256`, as Angos uses one token for both.
//!
//! One registry event is what Angos sends for it: a push is `manifest.push` (part 0) and a
//! `tag.create` per tag (parts 1...), a delete by tag `manifest.delete` and a `tag.delete`
//! per tag (see `store::routing::angos_parts`). `namespace` is the full image name
//! (`library/nginx`), `repository` the owner (Angos's repository configuration entry, which
//! its `repository_filter` matches). `id` is the delivery's id (stable across retries,
//! where Angos draws a new one per emission); `timestamp` has microseconds.

use chrono::SecondsFormat;
use hmac::{Hmac, Mac as _};
use http::HeaderValue;
use serde::Serialize;
use sha2::Sha256;

use super::{Rendered, Rendering, hex, registry, text};
use crate::domain::registry_type;

#[derive(Serialize)]
struct Body<'a> {
    id: String,
    timestamp: String,
    kind: &'a str,
    namespace: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<Actor<'a>>,
    repository: &'a str,
}

#[derive(Serialize)]
struct Actor<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    username: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    client_ip: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    internal: &'a str,
}

/// The Angos request of a delivery.
pub fn render(rendering: &Rendering<'_>) -> Result<Rendered, String> {
    let (kind, body) = if rendering.is_ping() {
        let body = serde_json::json!({
            "id": rendering.delivery.id.to_string(),
            "timestamp": rendering.sent_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            "kind": "ping",
            "namespace": "",
            "repository": rendering.target.owner,
        });
        (
            "ping",
            serde_json::to_vec(&body).map_err(|e| e.to_string())?,
        )
    } else {
        body(rendering)?
    };
    let mut rendered = Rendered::new("application/json", body);
    rendered.headers.insert(
        "x-registry-event",
        HeaderValue::try_from(kind).map_err(|e| e.to_string())?,
    );
    if let Some(token) = rendering
        .target
        .auth_header
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "))
    {
        let signature = signature(token, &rendered.body);
        rendered
            .headers
            .insert("x-registry-signature-256", text(signature));
    }
    Ok(rendered)
}

/// `X-Registry-Signature-256`: `sha256=` and the hex HMAC-SHA256 of `body` keyed with the
/// token's UTF-8 bytes.
pub fn signature(token: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

/// The kind and body of part `delivery.event.part` of the event.
fn body(rendering: &Rendering<'_>) -> Result<(&'static str, Vec<u8>), String> {
    let event = registry::event(rendering)?;
    let kinds = registry_type(&event.kind).map_or(&[][..], |t| t.angos);
    let part = usize::try_from(rendering.delivery.event.part).unwrap_or(0);
    let Some(first) = kinds.first() else {
        return Err(format!("Angos has no kind for {:?}", event.kind));
    };
    // Part 0 is the manifest's (or the only) request, about the first tag; parts 1... one
    // per tag.
    let first_tag = event.tags.first().map(String::as_str);
    let (kind, tag) = match (part, kinds.get(1)) {
        (0, _) => (*first, first_tag),
        (n, Some(per_tag)) => (*per_tag, event.tags.get(n - 1).map(String::as_str)),
        (_, None) => return Err(format!("{:?} has one Angos request", event.kind)),
    };
    let digest = (!event.digest.is_empty()).then_some(event.digest.as_str());
    let (digest, reference, tag) = match kind {
        "manifest.push" => (digest, first_tag.or(digest), None),
        "tag.create" => (digest, tag, tag),
        "manifest.pull" => (digest, first_tag.or(digest), first_tag),
        // A delete by tag names the tag, not the digest; by digest, the digest.
        "manifest.delete" => match first_tag {
            Some(t) => (None, Some(t), None),
            None => (digest, digest, None),
        },
        "tag.delete" => (None, tag, tag),
        // blob.push, blob.pull
        _ => (digest, None, None),
    };
    let actor = event.actor.as_option().map(|a| Actor {
        id: &a.id,
        username: &a.name,
        client_ip: &a.client_ip,
        internal: &a.internal,
    });
    let body = Body {
        id: rendering.delivery.id.to_string(),
        timestamp: registry::occur_time(&event, rendering)
            .to_rfc3339_opts(SecondsFormat::Micros, true),
        kind,
        namespace: format!("{}/{}", event.owner, event.repository),
        digest,
        reference,
        tag,
        actor,
        repository: &event.owner,
    };
    let bytes = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    Ok((kind, bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn signs_as_the_reference_test_vector() {
        assert_eq!(
            super::signature("test-secret", b"hello world"),
            "sha256=046e2496e13e0bfd8dbef84244dd188311a48086646355161bc4ad0769a49cf4"
        );
    }
}
