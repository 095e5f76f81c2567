//! The relay in front of a real GitHub (or GHES): `POST /ingest/github/{source}` takes the
//! webhooks a GitHub hook sends to webhookd, checks their `X-Hub-Signature-256` against the
//! source's secret (`[ingest.github.NAME]` in the configuration file), and publishes each
//! event into the outbox, so that one GitHub hook fans out, durably and with retries, to
//! every webhookd subscriber of the repository. GitHub's redelivery of the same event
//! (the same `X-GitHub-Delivery`) publishes nothing new.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse as _;
use serde_json::{Value, json};

use super::hooks::{Answer, Api};
use super::{GitHubError, json_body};
use crate::api::BadSignature;
use crate::domain::{OutboundEvent, valid_github_name};
use crate::proto::webhookd::v1::GitHubEvent;

/// GitHub caps webhook payloads at 25 MB.
pub(super) const MAX_RELAYED_BYTES: usize = 25 * 1024 * 1024;

/// `POST /ingest/github/{source}`.
pub(super) async fn relay(
    State(api): Api,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let Some(source) = api.github_sources.get(&source) else {
        return Err(GitHubError::not_found());
    };
    let body = axum::body::to_bytes(body, MAX_RELAYED_BYTES)
        .await
        .map_err(|_| {
            GitHubError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("The payload is larger than GitHub's {MAX_RELAYED_BYTES} bytes"),
            )
        })?;
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let unauthorized = |why: &str| GitHubError::new(StatusCode::UNAUTHORIZED, why);
    let signature = text("x-hub-signature-256")
        .and_then(|s| s.strip_prefix("sha256="))
        .ok_or_else(|| unauthorized("X-Hub-Signature-256 is missing; set the hook's secret"))?;
    crate::api::verify_hmac_sha256(signature, &source.secret, &body).map_err(|bad| {
        unauthorized(match bad {
            BadSignature::Malformed => "X-Hub-Signature-256 is not sha256=<hex>",
            BadSignature::Mismatch => "X-Hub-Signature-256 does not match the source's secret",
        })
    })?;
    let bad = |why: String| GitHubError::new(StatusCode::BAD_REQUEST, why);
    let event = text("x-github-event")
        .filter(|e| valid_github_name(e))
        .ok_or_else(|| bad("X-GitHub-Event is missing or not an event name".into()))?;
    if event == "ping" {
        // The hook's creation: nothing to relay.
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let form = text(header::CONTENT_TYPE.as_str())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let json = if form {
        url::form_urlencoded::parse(&body)
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| bad("a form body needs its payload field".into()))?
    } else {
        String::from_utf8(body.to_vec()).map_err(|_| bad("the payload is not UTF-8".into()))?
    };
    let payload: Value =
        serde_json::from_str(&json).map_err(|e| bad(format!("the payload is not JSON: {e}")))?;
    let repository = payload["repository"]["name"].as_str().ok_or_else(|| {
        bad(
            "the payload names no repository (repository.name): webhookd relays repository events"
                .into(),
        )
    })?;
    let owner = match &source.owner {
        Some(owner) => owner.clone(),
        None => payload["repository"]["owner"]["login"]
            .as_str()
            .ok_or_else(|| bad("the payload names no repository.owner.login".into()))?
            .to_owned(),
    };
    // GitHub's delivery id makes its redeliveries of one event one event here.
    let key = text("x-github-delivery").map(|guid| format!("github/{}/{guid}", source.name));
    let event = OutboundEvent::from_github(
        &GitHubEvent {
            name: event.to_owned(),
            owner,
            repository: repository.to_owned(),
            payload_json: json,
            ..Default::default()
        },
        key.as_deref(),
    )
    .map_err(|e| bad(e.to_string()))?;
    let stored = &api
        .publisher
        .publish_one(event)
        .await
        .map_err(GitHubError::from)?;
    tracing::info!(source = %source.name, event_id = %stored.event_id,
        deliveries = stored.deliveries_queued, duplicate = stored.duplicate, "GitHub event relayed");
    let mut response = json_body(&json!({
        "event_id": stored.event_id.to_string(),
        "deliveries_queued": stored.deliveries_queued,
        "duplicate": stored.duplicate,
    }));
    *response.status_mut() = StatusCode::ACCEPTED;
    Ok(response)
}
