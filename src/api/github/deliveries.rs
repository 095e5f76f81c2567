//! A hook's deliveries (reference facts, A.5): list (`per_page`, `cursor`, `status`), get
//! with the request and the response, and redeliver. GitHub's delivery is one attempt:
//! each attempt has its own integer `id`; `guid` is the event's id (`X-GitHub-Delivery`),
//! the same for every attempt and every hook.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use serde_json::{Map, Value};

use super::hooks::{Answer, Api, Params, hook, place};
use super::{GitHubError, base_url, json_body, time};
use crate::domain::{AttemptRecord, GitHubContentType, header_record};
use crate::store;
use crate::store::deliveries::Redelivery;
use crate::store::github::HookAttempt;

/// GitHub's default and largest page sizes.
const PER_PAGE: i64 = 30;
const MAX_PER_PAGE: i64 = 100;

/// `hook-delivery-item`, in GitHub's key order.
#[derive(Debug, Serialize)]
struct Item {
    id: i64,
    guid: String,
    delivered_at: String,
    redelivery: bool,
    duration: f64,
    status: String,
    status_code: i32,
    event: String,
    action: Option<String>,
    installation_id: Option<i64>,
    repository_id: Option<i64>,
    throttled_at: Option<String>,
}

impl Item {
    fn of(a: &HookAttempt) -> Self {
        Self {
            id: a.id,
            guid: a.event.to_string(),
            delivered_at: time(a.start_time),
            redelivery: a.redelivery,
            duration: f64::from(a.duration_ms) / 1000.0,
            status: status_text(a.http_status, a.error.as_deref()),
            status_code: a.http_status.unwrap_or(0),
            event: a.event_type.clone(),
            action: a.action.clone(),
            installation_id: None,
            repository_id: None,
            throttled_at: None,
        }
    }
}

/// `hook-delivery`: the item, its URL, and what was sent and answered.
#[derive(Debug, Serialize)]
struct Detail {
    #[serde(flatten)]
    item: Item,
    url: String,
    request: Exchange,
    response: Exchange,
}

/// A request or a response: its headers, and its payload (the request's as parsed JSON,
/// the response's as text).
#[derive(Debug, Serialize)]
struct Exchange {
    headers: Option<Map<String, Value>>,
    payload: Value,
}

pub(super) async fn list(
    State(api): Api,
    Path(params): Params,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Answer {
    let (_, place) = place(&api, &headers, &params).await?;
    let per_page = match query.get("per_page").map(String::as_str) {
        None | Some("") => PER_PAGE,
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| invalid(format!("per_page must be an integer, not {text:?}")))?,
    }
    .clamp(1, MAX_PER_PAGE);
    let after = match query.get("cursor").map(String::as_str) {
        None | Some("") => None,
        Some(text) => Some(
            text.parse::<i64>()
                .map_err(|_| invalid(format!("cursor {text:?} is not one this API gave")))?,
        ),
    };
    let success = match query.get("status").map(String::as_str) {
        None | Some("") => None,
        Some("success") => Some(true),
        Some("failure") => Some(false),
        Some(other) => {
            return Err(invalid(format!(
                "status must be \"success\" or \"failure\", not {other:?}"
            )));
        }
    };
    let mut conn = store::acquire(&api.pool).await?;
    let found = hook(&mut conn, &place, &params).await?;
    let attempts =
        store::github::attempts(&mut conn, found.id, after, success, per_page + 1).await?;
    let more = attempts.len() as i64 > per_page;
    let items: Vec<Item> = attempts
        .iter()
        .take(usize::try_from(per_page).unwrap_or(usize::MAX))
        .map(Item::of)
        .collect();
    let mut response = json_body(&items);
    if more && let Some(last) = items.last() {
        let url = format!(
            "{}{}/{}/deliveries",
            base_url(&headers),
            place.hooks_path(),
            found.number
        );
        let mut next = format!("<{url}?per_page={per_page}&cursor={}", last.id);
        if let Some(status) = query.get("status") {
            next.push_str(&format!("&status={status}"));
        }
        next.push_str(">; rel=\"next\"");
        if let Ok(link) = HeaderValue::try_from(next) {
            response.headers_mut().insert(header::LINK, link);
        }
    }
    Ok(response)
}

pub(super) async fn read(State(api): Api, Path(params): Params, headers: HeaderMap) -> Answer {
    let (_, place) = place(&api, &headers, &params).await?;
    let mut conn = store::acquire(&api.pool).await?;
    let found = hook(&mut conn, &place, &params).await?;
    let (delivery, number, redelivery) = attempt(&mut conn, &found, &params).await?;
    let cap = api.settings.record_request_bytes;
    let (stored, attempts) = store::deliveries::get(&mut conn, delivery, None, i64::MAX, cap)
        .await?
        .ok_or_else(GitHubError::not_found)?;
    let Some((_, record)) = attempts.into_iter().find(|(n, _)| *n == number) else {
        return Err(GitHubError::not_found());
    };
    let id: i64 = params
        .get("delivery_id")
        .and_then(|i| i.parse().ok())
        .unwrap_or_default();
    let item = Item::of(&HookAttempt {
        id,
        delivery,
        number,
        event: stored.event_id,
        event_type: stored.event_type.clone(),
        action: None,
        start_time: record.start_time,
        duration_ms: record.duration_ms,
        http_status: record.http_status,
        error: record.error.clone(),
        redelivery,
    });
    let context = header_record::Context {
        delivery_id: &delivery.to_string(),
        start_seconds: record.start_time.timestamp(),
    };
    let request = request_exchange(&record, context, found.format_options.github_content_type);
    let action = request.payload["action"].as_str().map(str::to_owned);
    let detail = Detail {
        item: Item { action, ..item },
        url: found.url.clone(),
        request,
        response: Exchange {
            headers: record
                .response_headers
                .as_deref()
                .map(|h| headers_object(h, context)),
            payload: record.response_body.as_deref().map_or(Value::Null, |b| {
                Value::String(String::from_utf8_lossy(b).into_owned())
            }),
        },
    };
    Ok(json_body(&detail))
}

pub(super) async fn redeliver(State(api): Api, Path(params): Params, headers: HeaderMap) -> Answer {
    let (_, place) = place(&api, &headers, &params).await?;
    let mut conn = store::acquire(&api.pool).await?;
    let found = hook(&mut conn, &place, &params).await?;
    let (delivery, _, _) = attempt(&mut conn, &found, &params).await?;
    match store::deliveries::redeliver(&mut conn, delivery).await? {
        Redelivery::Queued(_) => {}
        Redelivery::NotFound => return Err(GitHubError::not_found()),
        Redelivery::WebhookDisabled(_) => {
            return Err(GitHubError::validation(
                "custom",
                None,
                "Hook is not active; activate it to redeliver",
            ));
        }
    }
    store::events::notify_batchers(&mut conn).await?;
    tracing::info!(delivery_id = %delivery, hook_id = found.number, "GitHub redelivery queued");
    let mut response: Response = json_body(&Map::new());
    *response.status_mut() = StatusCode::ACCEPTED;
    Ok(response)
}

/// The delivery and attempt the path's `delivery_id` names among `hook`'s, or 404.
async fn attempt(
    conn: &mut sqlx::PgConnection,
    hook: &crate::domain::Subscription,
    params: &HashMap<String, String>,
) -> Result<(crate::domain::DeliveryId, i32, bool), GitHubError> {
    let id: i64 = params
        .get("delivery_id")
        .and_then(|i| i.parse().ok())
        .ok_or_else(GitHubError::not_found)?;
    store::github::attempt_of(conn, hook.id, id)
        .await?
        .ok_or_else(GitHubError::not_found)
}

/// The request of an attempt as GitHub shows it: its headers, and its payload parsed (from
/// the form's `payload` field for `form` hooks); `null` when it was not kept whole.
fn request_exchange(
    record: &AttemptRecord,
    context: header_record::Context<'_>,
    content_type: GitHubContentType,
) -> Exchange {
    let Some(request) = &record.request else {
        return Exchange {
            headers: None,
            payload: Value::Null,
        };
    };
    let body = request.body.as_deref().unwrap_or_default();
    let json = match content_type {
        GitHubContentType::Json => Some(body.to_vec()),
        GitHubContentType::Form => url::form_urlencoded::parse(body)
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| v.into_owned().into_bytes()),
    };
    Exchange {
        headers: Some(headers_object(&request.headers, context)),
        payload: json
            .and_then(|j| serde_json::from_slice(&j).ok())
            .unwrap_or(Value::Null),
    }
}

/// Recorded headers as a JSON object.
fn headers_object(recorded: &[u8], context: header_record::Context<'_>) -> Map<String, Value> {
    header_record::decode(recorded, context)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| (name, Value::String(value)))
        .collect()
}

/// GitHub's `status`: the status's reason ("OK") or why no answer came.
fn status_text(status: Option<i32>, error: Option<&str>) -> String {
    match status {
        Some(code) => http::StatusCode::from_u16(u16::try_from(code).unwrap_or(0))
            .ok()
            .and_then(|s| s.canonical_reason())
            .map_or_else(|| code.to_string(), str::to_owned),
        None => error.unwrap_or("failed to connect").to_owned(),
    }
}

/// 400 for a query GitHub's deliveries API refuses.
fn invalid(why: String) -> GitHubError {
    GitHubError::new(StatusCode::BAD_REQUEST, why)
}
