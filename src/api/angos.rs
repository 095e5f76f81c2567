//! The relay in front of a real Angos: `POST /ingest/angos/{source}` takes the event
//! webhooks an Angos registry sends to webhookd, checks their `X-Registry-Signature-256`
//! (HMAC-SHA256 of the body keyed with the source's `token`, `[ingest.angos.NAME]` in the
//! configuration file: the `token` of the Angos webhook), and publishes each as a registry
//! event into the outbox. An Angos `async` webhook pointed here becomes durable fan-out, with
//! retries, to every webhookd subscriber, in every format.
//!
//! Angos sends one push by tag as two requests, `manifest.push` (its `reference` the tag)
//! and `tag.create` (the same tag); webhookd's `artifact.pushed` carries the tags, so the
//! `tag.create` of a push by tag is answered and not published again (an Angos-format
//! subscriber still gets both, rendered from the one event). A `tag.create` of another
//! reference (a push by digest with `?tag=`) is published as `tag.created`; the same goes for
//! `manifest.delete` and `tag.delete`. Angos's retry of a request carries its `id` again:
//! the id is the publish's idempotency key, so a retry publishes nothing new.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use buffa::MessageField;
use buffa_types::google::protobuf::Timestamp;
use serde_json::{Value, json};

use super::{ApiContext, BadSignature};
use crate::domain::OutboundEvent;
use crate::error::Error;
use crate::proto::webhookd::v1 as pb;

/// The largest webhook taken (Angos's are a few hundred bytes).
const MAX_RELAYED_BYTES: usize = 64 * 1024;

/// The routes.
pub(super) fn router(api: Arc<ApiContext>) -> axum::Router {
    axum::Router::new()
        .route("/ingest/angos/{source}", axum::routing::post(relay))
        .with_state(api)
}

/// A refusal: its status and a JSON `{"message"}` body.
pub(super) struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "message": self.1 }))).into_response()
    }
}

impl From<Error> for Refused {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            Error::FailedPrecondition(_) => StatusCode::CONFLICT,
            Error::ResourceExhausted(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Refused(status, e.to_string())
    }
}

/// `POST /ingest/angos/{source}`.
async fn relay(
    State(api): State<Arc<ApiContext>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refused> {
    let Some(source) = api.angos_sources.get(&source) else {
        return Err(Refused(
            StatusCode::NOT_FOUND,
            format!("no relay source {source}"),
        ));
    };
    let body = axum::body::to_bytes(body, MAX_RELAYED_BYTES)
        .await
        .map_err(|_| {
            Refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the payload is over {MAX_RELAYED_BYTES} bytes"),
            )
        })?;
    let unauthorized = |why: &str| Refused(StatusCode::UNAUTHORIZED, why.to_owned());
    let signature = headers
        .get("x-registry-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.strip_prefix("sha256="))
        .ok_or_else(|| {
            unauthorized("X-Registry-Signature-256 is missing; set the Angos webhook's token")
        })?;
    super::verify_hmac_sha256(signature, &source.secret, &body).map_err(|bad| {
        unauthorized(match bad {
            BadSignature::Malformed => "X-Registry-Signature-256 is not sha256=<hex>",
            BadSignature::Mismatch => "X-Registry-Signature-256 does not match the source's token",
        })
    })?;
    let bad = |why: String| Refused(StatusCode::BAD_REQUEST, why);
    let payload: Value =
        serde_json::from_slice(&body).map_err(|e| bad(format!("the payload is not JSON: {e}")))?;
    let Some((event, id)) = registry_event(&payload, source.owner.as_deref()).map_err(bad)? else {
        return Ok((
            StatusCode::OK,
            axum::Json(json!({
                "relayed": false,
                "why": "the tag of a push or delete by tag: the manifest's request carried it",
            })),
        )
            .into_response());
    };
    let key = format!("angos:{id}");
    let outbound = OutboundEvent::from_registry(&event, Some(&key))?;
    let stored = &api.publisher.publish_one(outbound).await?;
    tracing::info!(source = %source.name, event_id = %stored.event_id,
        deliveries = stored.deliveries_queued, kind = %event.kind, "Angos event relayed");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "relayed": true,
            "event_id": stored.event_id.to_string(),
            "deliveries_queued": stored.deliveries_queued,
            "duplicate": stored.duplicate,
        })),
    )
        .into_response())
}

/// The registry event an Angos webhook carries, and its `id`; `None` for the `tag.create`
/// or `tag.delete` that accompanies a push or delete by that tag. `owner` (the source's)
/// replaces the one read from the payload: by default the Angos `repository` when the
/// namespace starts with it, else the namespace's first part.
fn registry_event(
    payload: &Value,
    owner: Option<&str>,
) -> Result<Option<(pb::RegistryEvent, String)>, String> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let field = |name: &str| text(&payload[name]);
    let kind = payload["kind"]
        .as_str()
        .ok_or("the payload has no kind: send Angos's event webhook payload")?;
    let (digest, reference, tag) = (field("digest"), field("reference"), field("tag"));
    let by_tag = !reference.is_empty() && !reference.contains(':');
    let (kind, tags) = match kind {
        "manifest.push" => ("artifact.pushed", by_tag.then(|| reference.clone())),
        "manifest.pull" => ("artifact.pulled", (!tag.is_empty()).then(|| tag.clone())),
        "manifest.delete" => ("artifact.deleted", by_tag.then(|| reference.clone())),
        "tag.create" | "tag.delete" if tag == reference => return Ok(None),
        "tag.create" => ("tag.created", Some(tag.clone())),
        "tag.delete" => ("tag.deleted", Some(tag.clone())),
        "blob.push" => ("blob.pushed", None),
        "blob.pull" => ("blob.pulled", None),
        other => return Err(format!("{other:?} is not a kind of Angos's event webhooks")),
    };
    let namespace = field("namespace");
    let angos_repository = field("repository");
    let (owner, repository) = match owner {
        Some(owner) => (
            owner.to_owned(),
            namespace
                .strip_prefix(&format!("{owner}/"))
                .unwrap_or(&namespace)
                .to_owned(),
        ),
        None => match namespace.strip_prefix(&format!("{angos_repository}/")) {
            Some(rest) if !angos_repository.is_empty() => (angos_repository, rest.to_owned()),
            _ => match namespace.split_once('/') {
                Some((first, rest)) => (first.to_owned(), rest.to_owned()),
                None if !angos_repository.is_empty() => (angos_repository, namespace),
                None => {
                    return Err(format!(
                        "namespace {namespace:?} has one part and the payload names no \
                         repository: set owner in the source's [ingest.angos.NAME] table"
                    ));
                }
            },
        },
    };
    let actor = &payload["actor"];
    let occur_time = payload["timestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(MessageField::none, |t| {
            MessageField::some(Timestamp {
                seconds: t.timestamp(),
                nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
                ..Default::default()
            })
        });
    let event = pb::RegistryEvent {
        kind: kind.to_owned(),
        owner,
        repository,
        digest,
        tags: tags.into_iter().collect(),
        actor: if actor.is_object() {
            MessageField::some(pb::Actor {
                name: text(&actor["username"]),
                id: text(&actor["id"]),
                client_ip: text(&actor["client_ip"]),
                internal: text(&actor["internal"]),
                ..Default::default()
            })
        } else {
            MessageField::none()
        },
        occur_time,
        ..Default::default()
    };
    Ok(Some((event, field("id"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn angos_requests_read_as_registry_events() {
        let push = json!({"id": "550e8400-e29b-41d4-a716-446655440000",
            "timestamp": "2025-01-15T10:30:00.123456Z", "kind": "manifest.push",
            "namespace": "library/nginx", "digest": "sha256:abc", "reference": "latest",
            "actor": {"id": "user-123", "username": "alice", "client_ip": "192.168.1.100"},
            "repository": "docker-hub"});
        let (event, id) = registry_event(&push, None).unwrap().unwrap();
        assert_eq!(id, "550e8400-e29b-41d4-a716-446655440000");
        assert_eq!(event.kind, "artifact.pushed");
        assert_eq!(
            (event.owner.as_str(), event.repository.as_str()),
            ("library", "nginx")
        );
        assert_eq!(event.tags, ["latest"]);
        assert_eq!(event.actor.as_option().unwrap().name, "alice");
        assert_eq!(event.occur_time.as_option().unwrap().nanos, 123_456_000);
        // The tag.create of that push is carried by it.
        let tag = json!({"id": "x", "kind": "tag.create", "namespace": "library/nginx",
            "digest": "sha256:abc", "reference": "latest", "tag": "latest",
            "repository": "docker-hub"});
        assert!(registry_event(&tag, None).unwrap().is_none());
        // A tag given to a push by digest is its own event.
        let tag = json!({"id": "y", "kind": "tag.create", "namespace": "production/app",
            "digest": "sha256:abc", "reference": "sha256:abc", "tag": "v2",
            "repository": "production"});
        let (event, _) = registry_event(&tag, None).unwrap().unwrap();
        assert_eq!(event.kind, "tag.created");
        assert_eq!(
            (event.owner.as_str(), event.repository.as_str()),
            ("production", "app")
        );
        assert_eq!(event.tags, ["v2"]);
        let (event, _) = registry_event(&tag, Some("prod")).unwrap().unwrap();
        assert_eq!(
            (event.owner.as_str(), event.repository.as_str()),
            ("prod", "production/app")
        );
        assert!(
            registry_event(&json!({"kind": "repo.rename"}), None)
                .unwrap_err()
                .contains("repo.rename")
        );
        let one_part = json!({"kind": "blob.push", "namespace": "nginx", "repository": ""});
        assert!(
            registry_event(&one_part, None)
                .unwrap_err()
                .contains("owner")
        );
    }
}
