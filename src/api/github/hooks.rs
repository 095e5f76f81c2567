//! Repository and organization hooks (reference facts, A.4): list, create, get, update,
//! delete, their `config`, pings and tests.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{
    GitHubError, MAX_BODY_BYTES, authenticate, base_url, deliveries, json_body, scope_of, time,
};
use crate::api::ApiContext;
use crate::domain::{
    CallbackUrl, CustomHeaders, FACE_GITHUB, Family, Filters, Format, FormatOptions,
    GitHubContentType, NewSubscription, OwnerName, RepositoryName, Subscription, SubscriptionSpec,
    SubscriptionState, TokenScope, WebhookId,
};
use crate::error::Error;
use crate::signing::SigningSecret;
use crate::store;
use crate::store::activity::Activity;
use crate::store::subscriptions::{Sealed, SealedChanges};

pub(super) type Api = State<Arc<ApiContext>>;
pub(super) type Answer = Result<Response, GitHubError>;

/// What GitHub shows in place of a secret.
const MASKED_SECRET: &str = "********";
/// The reason a hook made inactive through this API is disabled with.
const INACTIVE: &str = "made inactive through the GitHub API (active: false)";
/// GitHub's default and largest page sizes.
const PER_PAGE: i64 = 30;
const MAX_PER_PAGE: i64 = 100;

/// The routes, for repositories and organizations alike: each operation is one handler,
/// its path naming `owner` and `repo`, or `org`.
pub fn routes() -> axum::Router<Arc<ApiContext>> {
    let mut router = axum::Router::new();
    for place in ["/api/v3/repos/{owner}/{repo}", "/api/v3/orgs/{org}"] {
        router = router
            .route(&format!("{place}/hooks"), get(list).post(create))
            .route(
                &format!("{place}/hooks/{{hook_id}}"),
                get(read).patch(update_hook).delete(delete),
            )
            .route(
                &format!("{place}/hooks/{{hook_id}}/config"),
                get(config).patch(update_config),
            )
            .route(&format!("{place}/hooks/{{hook_id}}/pings"), post(ping))
            .route(
                &format!("{place}/hooks/{{hook_id}}/deliveries"),
                get(deliveries::list),
            )
            .route(
                &format!("{place}/hooks/{{hook_id}}/deliveries/{{delivery_id}}"),
                get(deliveries::read),
            )
            .route(
                &format!("{place}/hooks/{{hook_id}}/deliveries/{{delivery_id}}/attempts"),
                post(deliveries::redeliver),
            );
    }
    router
        .route(
            "/api/v3/repos/{owner}/{repo}/hooks/{hook_id}/tests",
            post(test),
        )
        // The old path of the test.
        .route(
            "/api/v3/repos/{owner}/{repo}/hooks/{hook_id}/test",
            post(test),
        )
}

/// A path's parameters: `owner` and `repo`, or `org`; and `hook_id`.
pub(super) type Params = Path<HashMap<String, String>>;

/// Where hooks live: a repository, or an organization (owner-wide hooks).
#[derive(Debug, Clone)]
pub(super) struct Place {
    pub owner: OwnerName,
    pub repository: Option<RepositoryName>,
}

impl Place {
    /// The stored repository: `''` for an organization.
    pub(super) fn repository(&self) -> &str {
        self.repository.as_ref().map_or("", |r| r.as_str())
    }

    /// The path of its hooks under the API's base URL.
    pub(super) fn hooks_path(&self) -> String {
        match &self.repository {
            Some(repository) => format!("/repos/{}/{repository}/hooks", self.owner),
            None => format!("/orgs/{}/hooks", self.owner),
        }
    }

    /// What GitHub calls it in messages.
    fn noun(&self) -> &'static str {
        if self.repository.is_some() {
            "repository"
        } else {
            "organization"
        }
    }
}

/// A request's token and the place its path names.
pub(super) async fn place(
    api: &ApiContext,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<(TokenScope, Place), GitHubError> {
    let scope = authenticate(api, headers).await?;
    let owner = params
        .get("owner")
        .or_else(|| params.get("org"))
        .map_or("", String::as_str);
    let (owner, repository) = scope_of(&scope, owner, params.get("repo").map(String::as_str))?;
    Ok((scope, Place { owner, repository }))
}

/// The hook the path's `hook_id` names at `place`, or 404 (also for an id that is not an
/// integer).
pub(super) async fn hook(
    conn: &mut sqlx::PgConnection,
    place: &Place,
    params: &HashMap<String, String>,
) -> Result<Subscription, GitHubError> {
    let number: i64 = params
        .get("hook_id")
        .and_then(|id| id.parse().ok())
        .ok_or_else(GitHubError::not_found)?;
    store::subscriptions::get_by_number(conn, number)
        .await?
        .filter(|s| {
            s.face == FACE_GITHUB
                && s.owner == place.owner.as_str()
                && s.repository == place.repository()
        })
        .ok_or_else(GitHubError::not_found)
}

async fn update_hook(api: Api, Path(params): Params, headers: HeaderMap, body: Body) -> Answer {
    update(&api, &headers, &params, body, Edit::Hook).await
}

async fn update_config(api: Api, Path(params): Params, headers: HeaderMap, body: Body) -> Answer {
    update(&api, &headers, &params, body, Edit::Config).await
}

async fn ping(api: Api, Path(params): Params, headers: HeaderMap) -> Answer {
    send(&api, &headers, &params, Sending::Ping).await
}

async fn test(api: Api, Path(params): Params, headers: HeaderMap) -> Answer {
    send(&api, &headers, &params, Sending::LatestPush).await
}

// The operations.

async fn list(
    State(api): Api,
    Path(params): Params,
    Query(query): Query<Map<String, Value>>,
    headers: HeaderMap,
) -> Answer {
    let (_, place) = place(&api, &headers, &params).await?;
    let number = |name: &str, default: i64| -> Result<i64, GitHubError> {
        match query.get(name).and_then(Value::as_str) {
            None | Some("") => Ok(default),
            Some(text) => text.parse::<i64>().map_err(|_| {
                GitHubError::invalid_request(format!("{name} must be an integer, not {text:?}"))
            }),
        }
    };
    let per_page = number("per_page", PER_PAGE)?.clamp(1, MAX_PER_PAGE);
    let page = number("page", 1)?.max(1);
    let mut conn = store::acquire(&api.pool).await?;
    let (hooks, total) = store::subscriptions::list_face(
        &mut conn,
        FACE_GITHUB,
        place.owner.as_str(),
        place.repository(),
        (page - 1).saturating_mul(per_page),
        per_page,
    )
    .await?;
    let ids: Vec<WebhookId> = hooks.iter().map(|h| h.id).collect();
    let activity = store::activity::of(&mut conn, &ids).await?;
    let base = base_url(&headers);
    let objects: Vec<HookObject> = hooks
        .iter()
        .map(|h| hook_object(&base, &place, h, activity.get(&h.id)))
        .collect();
    let mut response = json_body(&objects);
    let last = ((total + per_page - 1) / per_page).max(1);
    if let Some(link) = link_header(&base, &place, page, per_page, last) {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

/// GitHub's `Link` header for page `page` of `last`.
fn link_header(
    base: &str,
    place: &Place,
    page: i64,
    per_page: i64,
    last: i64,
) -> Option<HeaderValue> {
    let url = |n: i64| {
        format!(
            "<{base}{}?per_page={per_page}&page={n}>",
            place.hooks_path()
        )
    };
    let mut links = vec![];
    if page < last {
        links.push(format!("{}; rel=\"next\"", url(page + 1)));
        links.push(format!("{}; rel=\"last\"", url(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", url(1)));
        links.push(format!("{}; rel=\"prev\"", url((page - 1).min(last))));
    }
    if links.is_empty() {
        return None;
    }
    HeaderValue::try_from(links.join(", ")).ok()
}

async fn create(State(api): Api, Path(params): Params, headers: HeaderMap, body: Body) -> Answer {
    let (_, place) = place(&api, &headers, &params).await?;
    let input = HookInput::read(body, Edit::Create).await?;
    let config = input.config.unwrap_or_default();
    let new = NewHook {
        url: check_url(config.url.as_deref(), api.settings.allow_insecure_callbacks)?,
        events: match &input.events {
            Some(events) => check_events(events)?,
            None => vec!["push".to_owned()],
        },
        content_type: config.content_type.unwrap_or(GitHubContentType::Form),
        insecure_ssl: config.insecure_ssl.unwrap_or(false),
        secret: config.secret.flatten(),
        active: input.active.unwrap_or(true),
    };
    let mut conn = store::acquire(&api.pool).await?;
    let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
    lock_place(&mut tx, &place).await?;
    let created = insert_hook(&mut tx, &api, &place, new).await?;
    tx.commit().await?;
    let base = base_url(&headers);
    let object = hook_object(&base, &place, &created, None);
    let mut response = json_body(&object);
    *response.status_mut() = StatusCode::CREATED;
    if let Ok(location) = HeaderValue::try_from(object.url.as_str()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// A hook to create, checked.
pub(super) struct NewHook {
    pub url: CallbackUrl,
    /// Empty: every event.
    pub events: Vec<String>,
    pub content_type: GitHubContentType,
    pub insecure_ssl: bool,
    pub secret: Option<String>,
    pub active: bool,
}

/// Creates a hook at `place` (whose lock [`lock_place`] took in `tx`) unless it duplicates
/// one, and pings it when it is active, as GitHub does.
pub(super) async fn insert_hook(
    tx: &mut sqlx::PgConnection,
    api: &ApiContext,
    place: &Place,
    hook: NewHook,
) -> Result<Subscription, GitHubError> {
    let spec = SubscriptionSpec {
        repository: place.repository.clone(),
        event_types: hook.events,
        repository_filters: Filters::default(),
        tag_filters: Filters::default(),
        url: hook.url,
        format: Format::GitHub,
        format_options: FormatOptions {
            github_content_type: hook.content_type,
            ..FormatOptions::default()
        },
        auth_header: None,
        skip_tls_verify: hook.insecure_ssl,
        headers: CustomHeaders::default(),
        omit_standard_headers: true,
        no_retries: false,
        name: String::new(),
        description: String::new(),
    };
    let new = NewSubscription {
        face: FACE_GITHUB,
        owner: place.owner.clone(),
        family: Family::GitHub,
        spec,
    };
    let id = WebhookId::generate();
    let signing = api
        .secrets
        .seal(id, SigningSecret::generate().expose().as_bytes());
    let hub_secret = hook
        .secret
        .filter(|s| !s.is_empty())
        .map(|s| api.secrets.seal(id, s.as_bytes()));
    check_unique(tx, place, None, &new.spec).await?;
    let mut created = store::subscriptions::insert(
        tx,
        id,
        &new,
        api.settings.webhook_limits,
        Sealed {
            signing_secret: &signing,
            auth_header: None,
            hub_secret: hub_secret.as_deref(),
        },
    )
    .await?;
    if hook.active {
        store::events::ping(tx, &created).await?;
    } else {
        created = store::subscriptions::set_state(tx, id, SubscriptionState::Disabled, INACTIVE)
            .await?
            .ok_or_else(GitHubError::not_found)?;
    }
    tracing::info!(subscription_id = %id, hook_id = created.number, owner = %place.owner,
        repository = place.repository(), "GitHub hook created");
    Ok(created)
}

async fn read(State(api): Api, Path(params): Params, headers: HeaderMap) -> Answer {
    let (_, place) = place(&api, &headers, &params).await?;
    let mut conn = store::acquire(&api.pool).await?;
    let found = hook(&mut conn, &place, &params).await?;
    let activity = store::activity::of(&mut conn, &[found.id]).await?;
    let base = base_url(&headers);
    Ok(json_body(&hook_object(
        &base,
        &place,
        &found,
        activity.get(&found.id),
    )))
}

async fn config(State(api): Api, Path(params): Params, headers: HeaderMap) -> Answer {
    let (_, place) = place(&api, &headers, &params).await?;
    let mut conn = store::acquire(&api.pool).await?;
    let found = hook(&mut conn, &place, &params).await?;
    Ok(json_body(&config_object(&found)))
}

async fn update(
    api: &ApiContext,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    body: Body,
    edit: Edit,
) -> Answer {
    let (_, place) = place(api, headers, params).await?;
    let input = HookInput::read(body, edit).await?;
    let mut conn = store::acquire(&api.pool).await?;
    let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
    lock_place(&mut tx, &place).await?;
    let current = hook(&mut tx, &place, params).await?;
    let mut spec = crate::api::subscription_proto::stored_spec(&current)?;
    let mut sealed = SealedChanges::default();
    if let Some(config) = &input.config {
        // Editing the hook replaces its whole config (a secret not given again is
        // removed, as GitHub documents); editing the config alone keeps what it omits.
        let whole = edit == Edit::Hook;
        if config.url.is_some() || whole {
            spec.url = check_url(config.url.as_deref(), api.settings.allow_insecure_callbacks)?;
        }
        if let Some(content_type) = config.content_type {
            spec.format_options.github_content_type = content_type;
        } else if whole {
            spec.format_options.github_content_type = GitHubContentType::Form;
        }
        if let Some(insecure) = config.insecure_ssl {
            spec.skip_tls_verify = insecure;
        } else if whole {
            spec.skip_tls_verify = false;
        }
        match &config.secret {
            Some(secret) => {
                let secret = secret.as_deref().filter(|s| !s.is_empty());
                sealed.hub_secret =
                    Some(secret.map(|s| api.secrets.seal(current.id, s.as_bytes())));
            }
            None if whole => sealed.hub_secret = Some(None),
            None => {}
        }
    }
    if let Some(events) = &input.events {
        spec.event_types = check_events(events)?;
    }
    if let Some(added) = &input.add_events {
        let added = check_events(added)?;
        if added.is_empty() {
            spec.event_types = vec![];
        } else if !spec.event_types.is_empty() {
            for event in added {
                if !spec.event_types.contains(&event) {
                    spec.event_types.push(event);
                }
            }
        }
    }
    if let Some(removed) = &input.remove_events {
        let before = spec.event_types.len();
        spec.event_types.retain(|e| !removed.iter().any(|r| r == e));
        if before > 0 && spec.event_types.is_empty() {
            return Err(no_events());
        }
    }
    spec.repository = place.repository.clone();
    check_unique(&mut tx, &place, Some(current.id), &spec).await?;
    let mut updated = store::subscriptions::update(&mut tx, &current, &spec, sealed)
        .await?
        .ok_or_else(GitHubError::not_found)?;
    if let Some(active) = input.active {
        let to = match (active, current.state) {
            (false, SubscriptionState::Disabled) | (true, SubscriptionState::Paused) => None,
            (false, _) => Some((SubscriptionState::Disabled, INACTIVE)),
            (true, _) => Some((SubscriptionState::Active, "")),
        };
        if let Some((state, reason)) = to {
            updated = store::subscriptions::set_state(&mut tx, current.id, state, reason)
                .await?
                .ok_or_else(GitHubError::not_found)?;
            if state == SubscriptionState::Active {
                store::events::notify_batchers(&mut tx).await?;
            }
        }
    }
    tx.commit().await?;
    tracing::info!(subscription_id = %current.id, hook_id = current.number, "GitHub hook updated");
    if edit == Edit::Config {
        return Ok(json_body(&config_object(&updated)));
    }
    let activity = store::activity::of(&mut conn, &[updated.id]).await?;
    let base = base_url(headers);
    Ok(json_body(&hook_object(
        &base,
        &place,
        &updated,
        activity.get(&updated.id),
    )))
}

async fn delete(State(api): Api, Path(params): Params, headers: HeaderMap) -> Answer {
    let (scope, place) = place(&api, &headers, &params).await?;
    let mut conn = store::acquire(&api.pool).await?;
    let found = hook(&mut conn, &place, &params).await?;
    store::webhooks::delete(&mut conn, found.id, &scope)
        .await?
        .ok_or_else(GitHubError::not_found)?;
    tracing::info!(subscription_id = %found.id, hook_id = found.number, "GitHub hook deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// What a ping or a test sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sending {
    /// A `ping` event.
    Ping,
    /// The repository's latest push again, if the hook takes pushes.
    LatestPush,
}

async fn send(
    api: &ApiContext,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    sending: Sending,
) -> Answer {
    let (_, place) = place(api, headers, params).await?;
    let mut conn = store::acquire(&api.pool).await?;
    let found = hook(&mut conn, &place, params).await?;
    // An inactive hook is sent nothing (GitHub answers 204 all the same).
    if found.state != SubscriptionState::Disabled {
        match sending {
            Sending::Ping => {
                store::events::ping(&mut conn, &found).await?;
            }
            Sending::LatestPush => {
                let takes_push =
                    found.event_types.is_empty() || found.event_types.iter().any(|e| e == "push");
                if takes_push {
                    store::events::resend_latest(&mut conn, &found, "push").await?;
                }
            }
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Serializes the face's writes to one repository's (or organization's) hooks, so that
/// two creates cannot both pass the duplicate check.
pub(super) async fn lock_place(
    conn: &mut sqlx::PgConnection,
    place: &Place,
) -> Result<(), GitHubError> {
    let key = format!("github-hooks/{}/{}", place.owner, place.repository());
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)
        .execute(conn)
        .await
        .map_err(Error::from)?;
    Ok(())
}

/// GitHub's rule: hooks of one place may share a config only if their events do not
/// overlap (`*` overlaps everything).
async fn check_unique(
    conn: &mut sqlx::PgConnection,
    place: &Place,
    except: Option<WebhookId>,
    spec: &SubscriptionSpec,
) -> Result<(), GitHubError> {
    let (hooks, _) = store::subscriptions::list_face(
        conn,
        FACE_GITHUB,
        place.owner.as_str(),
        place.repository(),
        0,
        i64::MAX,
    )
    .await?;
    let overlaps = |events: &[String]| {
        events.is_empty()
            || spec.event_types.is_empty()
            || events.iter().any(|e| spec.event_types.contains(e))
    };
    let duplicate = hooks.iter().any(|h| {
        Some(h.id) != except
            && h.url == spec.url.as_str()
            && h.format_options.github_content_type == spec.format_options.github_content_type
            && h.skip_tls_verify == spec.skip_tls_verify
            && overlaps(&h.event_types)
    });
    if duplicate {
        return Err(GitHubError::validation(
            "custom",
            None,
            format!("Hook already exists on this {}", place.noun()),
        ));
    }
    Ok(())
}

/// Checks a hook's URL: required, and a callback webhookd may deliver to.
pub(super) fn check_url(
    url: Option<&str>,
    allow_insecure: bool,
) -> Result<CallbackUrl, GitHubError> {
    let Some(url) = url.filter(|u| !u.is_empty()) else {
        return Err(GitHubError::validation(
            "custom",
            None,
            "Config must contain URL for webhooks",
        ));
    };
    CallbackUrl::parse_target("url", url, allow_insecure).map_err(|e| {
        GitHubError::validation(
            "custom",
            None,
            format!("The URL you've entered is not valid. {e}"),
        )
    })
}

/// Checks event names: `*` is every event (stored as no list); an empty list is refused
/// (stored, it would mean every event).
fn check_events(events: &[String]) -> Result<Vec<String>, GitHubError> {
    if events.is_empty() {
        return Err(no_events());
    }
    crate::domain::parse_event_types(Family::GitHub, events)
        .map_err(|e| GitHubError::validation("invalid", Some("events"), e.to_string()))
}

/// The 422 for a hook left without events.
fn no_events() -> GitHubError {
    GitHubError::validation(
        "invalid",
        Some("events"),
        "a hook must have at least one event (\"*\" for every event)",
    )
}

/// Which operation a body is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit {
    /// `POST .../hooks`.
    Create,
    /// `PATCH .../hooks/{id}`.
    Hook,
    /// `PATCH .../hooks/{id}/config`: the body is the config itself.
    Config,
}

/// A hook's `config` as given.
#[derive(Debug, Default)]
struct ConfigInput {
    url: Option<String>,
    content_type: Option<GitHubContentType>,
    /// `Some(None)`: given as null.
    secret: Option<Option<String>>,
    insecure_ssl: Option<bool>,
}

/// A create or update body, checked against GitHub's schema.
#[derive(Debug, Default)]
struct HookInput {
    active: Option<bool>,
    events: Option<Vec<String>>,
    add_events: Option<Vec<String>>,
    remove_events: Option<Vec<String>>,
    config: Option<ConfigInput>,
}

impl HookInput {
    /// Reads and checks a body for `edit`.
    async fn read(body: Body, edit: Edit) -> Result<Self, GitHubError> {
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| {
                GitHubError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("The request body is larger than {MAX_BODY_BYTES} bytes"),
                )
            })?;
        let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Map::new())
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|_| GitHubError::new(StatusCode::BAD_REQUEST, "Problems parsing JSON"))?
        };
        let Value::Object(fields) = value else {
            return Err(GitHubError::new(
                StatusCode::BAD_REQUEST,
                "Problems parsing JSON",
            ));
        };
        if edit == Edit::Config {
            return Ok(Self {
                config: Some(config_input(&fields, "")?),
                ..Self::default()
            });
        }
        let allowed: &[&str] = match edit {
            Edit::Create => &["name", "active", "events", "config"],
            // `name` too: older clients (PyGithub) send it with every edit.
            _ => &[
                "name",
                "active",
                "events",
                "add_events",
                "remove_events",
                "config",
            ],
        };
        if let Some(key) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(GitHubError::invalid_request(format!(
                "{key:?} is not a permitted key."
            )));
        }
        let config = match fields.get("config") {
            None => None,
            Some(Value::Object(config)) => Some(config_input(config, "config/")?),
            Some(other) => return Err(not_a("config", other, "object")),
        };
        // A hook's name is always "web"; anything else is refused.
        if let Some(name) = string(&fields, "name", "")?
            && name != "web"
        {
            return Err(GitHubError::validation(
                "custom",
                Some("name"),
                format!("Invalid name: {name:?}; a webhook's name is \"web\""),
            ));
        }
        Ok(Self {
            active: match fields.get("active") {
                None => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(other) => return Err(not_a("active", other, "boolean")),
            },
            events: strings(&fields, "events")?,
            add_events: strings(&fields, "add_events")?,
            remove_events: strings(&fields, "remove_events")?,
            config,
        })
    }
}

/// Reads a `config` object; `path` prefixes its keys in messages.
fn config_input(config: &Map<String, Value>, path: &str) -> Result<ConfigInput, GitHubError> {
    let content_type = match string(config, "content_type", path)?.as_deref() {
        None => None,
        Some("json") => Some(GitHubContentType::Json),
        Some("form") => Some(GitHubContentType::Form),
        Some(other) => {
            return Err(GitHubError::validation(
                "invalid",
                Some("content_type"),
                format!("content_type must be \"json\" or \"form\", not {other:?}"),
            ));
        }
    };
    let insecure_ssl = match config.get("insecure_ssl") {
        None | Some(Value::Null) => None,
        Some(value) => match value
            .as_str()
            .map(str::to_owned)
            .or_else(|| value.as_i64().map(|n| n.to_string()))
        {
            Some(v) if v == "0" => Some(false),
            Some(v) if v == "1" => Some(true),
            _ => {
                return Err(GitHubError::validation(
                    "invalid",
                    Some("insecure_ssl"),
                    format!("insecure_ssl must be \"0\" or \"1\", not {value}"),
                ));
            }
        },
    };
    let secret = match config.get("secret") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(other) => return Err(not_a(&format!("{path}secret"), other, "string")),
    };
    Ok(ConfigInput {
        url: string(config, "url", path)?,
        content_type,
        secret,
        insecure_ssl,
    })
}

/// An optional string field.
fn string(
    fields: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<String>, GitHubError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(not_a(&format!("{path}{key}"), other, "string")),
    }
}

/// An optional list of strings.
fn strings(fields: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, GitHubError> {
    match fields.get(key) {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| not_a(&format!("{key}/items"), v, "string"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(not_a(key, other, "array")),
    }
}

/// GitHub's schema error for a value of the wrong type.
fn not_a(path: &str, value: &Value, kind: &str) -> GitHubError {
    GitHubError::invalid_request(format!(
        "For 'properties/{path}', {value} is not {} {kind}.",
        if kind.starts_with(['a', 'o']) {
            "an"
        } else {
            "a"
        }
    ))
}

/// The hook object as GitHub returns it (key order included).
#[derive(Debug, Serialize)]
struct HookObject {
    #[serde(rename = "type")]
    kind: &'static str,
    id: i64,
    name: &'static str,
    active: bool,
    events: Vec<String>,
    config: ConfigObject,
    updated_at: String,
    created_at: String,
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    test_url: Option<String>,
    ping_url: String,
    deliveries_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_response: Option<LastResponse>,
}

/// A hook's `config`, its secret masked.
#[derive(Debug, Serialize)]
struct ConfigObject {
    content_type: &'static str,
    insecure_ssl: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'static str>,
    url: String,
}

/// A hook's `last_response`.
#[derive(Debug, Serialize)]
struct LastResponse {
    code: Option<i32>,
    status: &'static str,
    message: Option<String>,
}

fn hook_object(
    base: &str,
    place: &Place,
    hook: &Subscription,
    activity: Option<&Activity>,
) -> HookObject {
    let url = format!("{base}{}/{}", place.hooks_path(), hook.number);
    let repository = place.repository.is_some();
    let last_response = match activity.and_then(|a| a.last_response.as_ref()) {
        None => LastResponse {
            code: None,
            status: "unused",
            message: None,
        },
        Some(last) => LastResponse {
            code: last.code,
            status: if last.code.is_some_and(|c| (200..300).contains(&c)) {
                "active"
            } else {
                "failing"
            },
            message: Some(last.message.clone()),
        },
    };
    HookObject {
        kind: if repository {
            "Repository"
        } else {
            "Organization"
        },
        id: hook.number,
        name: "web",
        active: hook.state != SubscriptionState::Disabled,
        events: events_of(hook),
        config: config_object(hook),
        updated_at: time(hook.update_time),
        created_at: time(hook.create_time),
        test_url: repository.then(|| format!("{url}/test")),
        ping_url: format!("{url}/pings"),
        deliveries_url: format!("{url}/deliveries"),
        url,
        // GitHub's organization hooks carry none.
        last_response: repository.then_some(last_response),
    }
}

fn config_object(hook: &Subscription) -> ConfigObject {
    ConfigObject {
        content_type: match hook.format_options.github_content_type {
            GitHubContentType::Json => "json",
            GitHubContentType::Form => "form",
        },
        insecure_ssl: if hook.skip_tls_verify { "1" } else { "0" },
        secret: hook.has_hub_secret.then_some(MASKED_SECRET),
        url: hook.url.clone(),
    }
}

/// A hook's events: `*` for every event.
fn events_of(hook: &Subscription) -> Vec<String> {
    if hook.event_types.is_empty() {
        vec!["*".to_owned()]
    } else {
        hook.event_types.clone()
    }
}
