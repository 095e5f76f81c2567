//! GitHub's PubSubHubbub hub (reference facts, A.1): `POST /api/v3/hub` with `hub.mode`,
//! `hub.topic`, `hub.callback` and `hub.secret` as a form (`curl -F`, i.e. multipart, or
//! urlencoded), answered 204 at once, with no verification of intent, as GitHub answers.
//! A subscription is a repository hook for the topic's one event; subscribing again with
//! the same topic and callback changes that hook; unsubscribing removes the event from it
//! (and the hook with its last event).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{FromRequest as _, Multipart, Request, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse as _;

use super::hooks::{Answer, Api, NewHook, Place, check_url, insert_hook, lock_place};
use super::{GitHubError, MAX_BODY_BYTES, authenticate, scope_of};
use crate::domain::{FACE_GITHUB, Family, GitHubContentType, Subscription, valid_github_name};
use crate::store;
use crate::store::subscriptions::SealedChanges;

/// Where GitHub's hub errors point.
const HUB_DOCS: &str = "http://developer.github.com/v3/repos/hooks/#pubsubhubbub";

/// `POST /api/v3/hub`.
pub(super) async fn hub(State(api): Api, request: Request) -> Answer {
    let headers = request.headers().clone();
    let scope = authenticate(&api, &headers).await?;
    let params = read_params(request).await?;
    let param = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let Some(callback) = param("hub.callback") else {
        return Err(hub_error("Needs hub.callback."));
    };
    let subscribe = match param("hub.mode") {
        Some("subscribe") => true,
        Some("unsubscribe") => false,
        Some(other) => return Err(hub_error(format!("Invalid hub.mode: '{other}'"))),
        None => return Err(hub_error("Needs hub.mode.")),
    };
    let Some(topic) = param("hub.topic") else {
        return Err(hub_error("Needs hub.topic."));
    };
    let no_repository = || hub_error(format!("No repository found for hub.topic: {topic:?}"));
    let parsed = Topic::parse(topic).ok_or_else(no_repository)?;
    let (owner, repository) =
        scope_of(&scope, &parsed.owner, Some(&parsed.repository)).map_err(|_| no_repository())?;
    let place = Place { owner, repository };
    let url = check_url(Some(callback), api.settings.allow_insecure_callbacks)
        .map_err(|_| hub_error(format!("Invalid hub.callback: '{callback}'")))?;
    let json = parsed.json
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/json"));
    let content_type = if json {
        GitHubContentType::Json
    } else {
        GitHubContentType::Form
    };
    let secret = param("hub.secret").map(str::to_owned);
    let mut conn = store::acquire(&api.pool).await?;
    let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
    lock_place(&mut tx, &place).await?;
    let (hooks, _) = store::subscriptions::list_face(
        &mut tx,
        FACE_GITHUB,
        place.owner.as_str(),
        place.repository(),
        0,
        i64::MAX,
    )
    .await?;
    // The hook for this topic and callback: one with this URL that takes the event.
    let existing = hooks.into_iter().find(|h| {
        h.url == url.as_str() && (h.event_types.is_empty() || h.event_types.contains(&parsed.event))
    });
    match (subscribe, existing) {
        (true, Some(hook)) => {
            let mut spec = crate::api::subscription_proto::stored_spec(&hook)?;
            spec.repository = place.repository.clone();
            spec.format_options.github_content_type = content_type;
            let sealed = SealedChanges {
                auth_header: None,
                hub_secret: Some(secret.map(|s| api.secrets.seal(hook.id, s.as_bytes()))),
            };
            store::subscriptions::update(&mut tx, &hook, &spec, sealed).await?;
            tracing::info!(hook_id = hook.number, "hub subscription renewed");
        }
        (true, None) => {
            let new = NewHook {
                url,
                events: vec![parsed.event.clone()],
                content_type,
                insecure_ssl: false,
                secret,
                active: true,
            };
            insert_hook(&mut tx, &api, &place, new).await?;
        }
        (false, Some(hook)) => unsubscribe(&mut tx, &scope, &hook, &parsed.event).await?,
        (false, None) => {}
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Removes `event` from `hook`, and the hook when that was its last (or it took every
/// event).
async fn unsubscribe(
    conn: &mut sqlx::PgConnection,
    scope: &crate::domain::TokenScope,
    hook: &Subscription,
    event: &str,
) -> Result<(), GitHubError> {
    let rest: Vec<String> = hook
        .event_types
        .iter()
        .filter(|e| *e != event)
        .cloned()
        .collect();
    if rest.is_empty() {
        store::webhooks::delete(conn, hook.id, scope).await?;
        tracing::info!(hook_id = hook.number, "hub unsubscribe removed the hook");
    } else {
        let mut spec = crate::api::subscription_proto::stored_spec(hook)?;
        spec.event_types = rest;
        // The scope stays; update does not write it.
        store::subscriptions::update(conn, hook, &spec, SealedChanges::default()).await?;
        tracing::info!(
            hook_id = hook.number,
            event,
            "hub unsubscribe removed the event"
        );
    }
    Ok(())
}

/// A hub topic: `https://{host}/{owner}/{repo}/events/{event}[.json]` (any host: GitHub's
/// own or this server's).
#[derive(Debug, PartialEq, Eq)]
struct Topic {
    owner: String,
    repository: String,
    event: String,
    /// Ends in `.json`: deliveries are raw JSON.
    json: bool,
}

impl Topic {
    fn parse(topic: &str) -> Option<Self> {
        let url = url::Url::parse(topic).ok()?;
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        let parts: Vec<&str> = url.path_segments()?.collect();
        let [owner, repository, "events", event] = parts.as_slice() else {
            return None;
        };
        let (event, json) = match event.strip_suffix(".json") {
            Some(event) => (event, true),
            None => (*event, false),
        };
        if !valid_github_name(event) {
            return None;
        }
        Family::GitHub.check_type("hub.topic", event).ok()?;
        Some(Self {
            owner: (*owner).to_owned(),
            repository: (*repository).to_owned(),
            event: event.to_owned(),
            json,
        })
    }
}

/// The form's fields: multipart (`curl -F`) or urlencoded; any other body (JSON, as
/// GitHub's hub does not parse it) has none.
async fn read_params(request: Request) -> Result<HashMap<String, String>, GitHubError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let too_large = || {
        GitHubError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("The request body is larger than {MAX_BODY_BYTES} bytes"),
        )
    };
    let mut params = HashMap::new();
    if content_type.starts_with("multipart/form-data") {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| too_large())?;
        let mut form = Multipart::from_request(Request::from_parts(parts, Body::from(bytes)), &())
            .await
            .map_err(|e| hub_error(format!("Invalid multipart body: {e}")))?;
        loop {
            let field = form
                .next_field()
                .await
                .map_err(|e| hub_error(format!("Invalid multipart body: {e}")))?;
            let Some(field) = field else { break };
            let name = field.name().unwrap_or_default().to_owned();
            let value = field
                .text()
                .await
                .map_err(|e| hub_error(format!("Invalid multipart field {name:?}: {e}")))?;
            params.entry(name).or_insert(value);
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let bytes = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| too_large())?;
        for (name, value) in url::form_urlencoded::parse(&bytes) {
            params
                .entry(name.into_owned())
                .or_insert_with(|| value.into_owned());
        }
    }
    Ok(params)
}

/// The hub's 422, as GitHub words it.
fn hub_error(message: impl Into<String>) -> GitHubError {
    GitHubError {
        docs: HUB_DOCS,
        ..GitHubError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_name_a_repository_and_an_event_on_any_host() {
        let topic = Topic::parse("https://github.com/octo-org/Hello-World/events/push").unwrap();
        assert_eq!(
            topic,
            Topic {
                owner: "octo-org".into(),
                repository: "Hello-World".into(),
                event: "push".into(),
                json: false
            }
        );
        let raw = Topic::parse("http://ghe.local:8080/o/r/events/pull_request.json").unwrap();
        assert!(raw.json && raw.event == "pull_request");
        for bad in [
            "https://github.com/o/r/events",
            "https://github.com/o/r/push",
            "https://github.com/o/r/events/Push!",
            "ftp://github.com/o/r/events/push",
            "not a url",
        ] {
            assert_eq!(Topic::parse(bad), None, "{bad}");
        }
    }
}
