//! Project webhook policies (reference facts, C.1): list, create, get, update, delete, the
//! supported event types and the last trigger of each policy's event types.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::query::{Field, Fields, ListParams};
use super::{Caller, HarborError, MAX_BODY_BYTES, Project, authenticate, json_body, project, time};
use crate::api::ApiContext;
use crate::domain::{
    CallbackUrl, CustomHeaders, FACE_HARBOR, Family, Filters, Format, FormatOptions,
    NewSubscription, REGISTRY_TYPES, Subscription, SubscriptionSpec, SubscriptionState, WebhookId,
};
use crate::signing::SigningSecret;
use crate::store;
use crate::store::harbor::{PolicyFields, PolicyRow, Target};
use crate::store::subscriptions::{Sealed, SealedChanges};

type Api = State<Arc<ApiContext>>;
type Answer = Result<Response, HarborError>;

/// The reason the targets of a disabled policy are disabled with.
const DISABLED: &str = "disabled in its Harbor policy (enabled: false)";
/// Harbor's payload formats of `http` targets.
const DEFAULT: &str = "Default";
const CLOUD_EVENTS: &str = "CloudEvents";
/// The fields `q` and `sort` may name.
const KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "creator",
    "enabled",
    "event_types",
    "creation_time",
    "update_time",
];

pub fn routes() -> axum::Router<Arc<ApiContext>> {
    let base = "/api/v2.0/projects/{project}/webhook";
    axum::Router::new()
        .route(&format!("{base}/policies"), get(list).post(create))
        .route(
            &format!("{base}/policies/{{policy}}"),
            get(read).put(update).delete(delete),
        )
        .route(&format!("{base}/events"), get(events))
        .route(&format!("{base}/lasttrigger"), get(last_trigger))
}

/// Harbor's event types, in the order `GET .../webhook/events` lists them.
const EVENT_TYPES: &[&str] = &[
    "PUSH_ARTIFACT",
    "PULL_ARTIFACT",
    "DELETE_ARTIFACT",
    "QUOTA_EXCEED",
    "QUOTA_WARNING",
    "SCANNING_FAILED",
    "SCANNING_STOPPED",
    "SCANNING_COMPLETED",
    "REPLICATION",
    "TAG_RETENTION",
];

/// webhookd's registry type for Harbor's `harbor` type.
fn registry_type_of(harbor: &str) -> Option<&'static str> {
    REGISTRY_TYPES
        .iter()
        .find(|t| !t.harbor.is_empty() && t.harbor == harbor)
        .map(|t| t.name)
}

/// The project and caller of a request.
async fn caller_and_project(
    api: &ApiContext,
    headers: &HeaderMap,
    given: &str,
) -> Result<(Caller, Project), HarborError> {
    let caller = authenticate(api, headers).await?;
    let project = project(api, headers, &caller, given).await?;
    Ok((caller, project))
}

/// A policy id from the path, as go-swagger checks it.
fn policy_id(text: &str) -> Result<i64, HarborError> {
    text.parse().map_err(|_| {
        HarborError::unprocessable(format!(
            "webhook_policy_id in path must be of type int64: \"{text}\""
        ))
    })
}

/// Harbor's 404 for policy `id`.
pub(super) fn not_found(id: i64) -> HarborError {
    HarborError::not_found(format!("webhook policy {id} not found"))
}

/// `WebhookPolicy` as Harbor returns it.
#[derive(Serialize)]
struct PolicyObject {
    id: i64,
    name: String,
    description: String,
    project_id: i64,
    targets: Vec<TargetObject>,
    event_types: Vec<String>,
    creator: String,
    creation_time: String,
    update_time: String,
    enabled: bool,
}

/// A target of a `WebhookPolicy`.
#[derive(Serialize)]
struct TargetObject {
    #[serde(rename = "type")]
    kind: &'static str,
    address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_header: Option<String>,
    skip_cert_verify: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_format: Option<&'static str>,
}

/// A policy with its targets, as read.
struct Policy {
    row: PolicyRow,
    targets: Vec<Target>,
}

impl Policy {
    /// Enabled as stored, unless webhookd disabled a target since (its listener answered 410,
    /// or failed for days): then it shows disabled until a PUT enables it again.
    fn enabled(&self) -> bool {
        self.row.enabled
            && self
                .targets
                .iter()
                .all(|t| t.subscription.state != SubscriptionState::Disabled)
    }

    fn object(&self, api: &ApiContext, project: &Project) -> PolicyObject {
        PolicyObject {
            id: self.row.id,
            name: self.row.name.clone(),
            description: self.row.description.clone(),
            project_id: project.id,
            targets: self.targets.iter().map(|t| target_object(api, t)).collect(),
            event_types: self.row.event_types.clone(),
            creator: self.row.creator.clone(),
            creation_time: time(self.row.creation_time),
            update_time: time(self.row.update_time),
            enabled: self.enabled(),
        }
    }
}

impl Fields for Policy {
    fn field(&self, key: &str) -> Option<Field> {
        let row = &self.row;
        Some(match key {
            "id" => Field::Int(row.id),
            "name" => Field::Text(row.name.clone()),
            "description" => Field::Text(row.description.clone()),
            "creator" => Field::Text(row.creator.clone()),
            "enabled" => Field::Bool(self.enabled()),
            "event_types" => Field::List(row.event_types.clone()),
            "creation_time" => Field::Time(row.creation_time),
            "update_time" => Field::Time(row.update_time),
            _ => return None,
        })
    }
}

/// A target as Harbor shows it: its auth header in clear text, as Harbor returns it.
fn target_object(api: &ApiContext, target: &Target) -> TargetObject {
    let subscription = &target.subscription;
    let (kind, payload_format) = match subscription.format {
        Format::CloudEvents => ("http", Some(CLOUD_EVENTS)),
        Format::Slack => ("slack", None),
        Format::Teams => ("teams", None),
        _ => ("http", Some(DEFAULT)),
    };
    TargetObject {
        kind,
        address: subscription.url.clone(),
        auth_header: target.sealed_auth_header.as_ref().and_then(|sealed| {
            let opened = api.secrets.open(subscription.id, sealed).ok()?;
            String::from_utf8(opened).ok()
        }),
        skip_cert_verify: subscription.skip_tls_verify,
        payload_format,
    }
}

/// The policies of `rows`, with their targets.
async fn with_targets(
    conn: &mut sqlx::PgConnection,
    rows: Vec<PolicyRow>,
) -> Result<Vec<Policy>, HarborError> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut targets: HashMap<i64, Vec<Target>> = HashMap::new();
    for target in store::harbor::targets(conn, &ids).await? {
        targets.entry(target.policy).or_default().push(target);
    }
    Ok(rows
        .into_iter()
        .map(|row| Policy {
            targets: targets.remove(&row.id).unwrap_or_default(),
            row,
        })
        .collect())
}

async fn list(
    State(api): Api,
    Path(path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Answer {
    let (_, project) = caller_and_project(&api, &headers, &path).await?;
    let params = ListParams::read(&query, KEYS)?;
    let mut conn = store::acquire(&api.pool).await?;
    let rows = store::harbor::policies(&mut conn, project.owner.as_str()).await?;
    let policies = with_targets(&mut conn, rows).await?;
    let (page, total) = params.apply(policies, &[("creation_time", true), ("id", true)]);
    let objects: Vec<PolicyObject> = page.iter().map(|p| p.object(&api, &project)).collect();
    let mut response = json_body(&objects);
    let list_path = format!("/api/v2.0/projects/{}/webhook/policies", project.given);
    params.headers(&mut response, &list_path, total);
    Ok(response)
}

async fn read(
    State(api): Api,
    Path((path, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let (_, project) = caller_and_project(&api, &headers, &path).await?;
    let id = policy_id(&id)?;
    let mut conn = store::acquire(&api.pool).await?;
    let row = store::harbor::get_policy(&mut conn, project.owner.as_str(), id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let policy = with_targets(&mut conn, vec![row]).await?.remove(0);
    Ok(json_body(&policy.object(&api, &project)))
}

/// `WebhookPolicy` as a client sends it (Harbor ignores `id`, `project_id`, `creator` and
/// the times, and so does this).
#[derive(Deserialize)]
struct PolicyInput {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    targets: Option<Vec<TargetInput>>,
    #[serde(default)]
    event_types: Option<Vec<String>>,
    #[serde(default)]
    enabled: Option<bool>,
}

#[derive(Deserialize)]
struct TargetInput {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    auth_header: Option<String>,
    #[serde(default)]
    skip_cert_verify: Option<bool>,
    #[serde(default)]
    payload_format: Option<String>,
}

/// A target, checked.
struct TargetSpec {
    url: CallbackUrl,
    format: Format,
    auth_header: Option<String>,
    skip_cert_verify: bool,
}

/// A policy, checked as Harbor checks it (targets first, then event types).
struct PolicySpec {
    fields: PolicyFields,
    /// webhookd's registry types of `fields.event_types`.
    registry_types: Vec<String>,
    targets: Vec<TargetSpec>,
}

impl PolicySpec {
    async fn read(body: Body, allow_insecure: bool) -> Result<Self, HarborError> {
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| {
                HarborError::bad_request(format!("the request body is over {MAX_BODY_BYTES} bytes"))
            })?;
        let input: PolicyInput = serde_json::from_slice(&bytes).map_err(|e| {
            HarborError::bad_request(format!("parsing policy body failed, because {e}"))
        })?;
        let name = input.name.unwrap_or_default();
        let targets = input.targets.unwrap_or_default();
        if targets.is_empty() {
            return Err(HarborError::bad_request(format!(
                "empty notification target with policy {name}"
            )));
        }
        let targets = targets
            .into_iter()
            .map(|t| check_target(t, &name, allow_insecure))
            .collect::<Result<Vec<_>, _>>()?;
        let event_types = input.event_types.unwrap_or_default();
        if event_types.is_empty() {
            return Err(HarborError::bad_request("empty event type"));
        }
        let mut registry_types = vec![];
        for event_type in &event_types {
            let registry = registry_type_of(event_type)
                .filter(|_| EVENT_TYPES.contains(&event_type.as_str()))
                .ok_or_else(|| {
                    HarborError::bad_request(format!("unsupported event type {event_type}"))
                })?;
            if !registry_types.iter().any(|t| t == registry) {
                registry_types.push(registry.to_owned());
            }
        }
        Ok(Self {
            fields: PolicyFields {
                name,
                description: input.description.unwrap_or_default(),
                event_types,
                // Omitted, Harbor's Go struct reads it as false.
                enabled: input.enabled.unwrap_or(false),
            },
            registry_types,
            targets,
        })
    }

    /// The subscription spec of target `index`.
    fn subscription(&self, index: usize) -> SubscriptionSpec {
        let target = &self.targets[index];
        SubscriptionSpec {
            repository: None,
            event_types: self.registry_types.clone(),
            repository_filters: Filters::default(),
            tag_filters: Filters::default(),
            url: target.url.clone(),
            format: target.format,
            format_options: FormatOptions::default(),
            auth_header: target.auth_header.clone(),
            skip_tls_verify: target.skip_cert_verify,
            headers: CustomHeaders::default(),
            omit_standard_headers: false,
            no_retries: false,
            name: String::new(),
            description: format!("Harbor policy {:?}, target {}", self.fields.name, index + 1),
        }
    }

    /// The state its targets take.
    fn state(&self) -> (SubscriptionState, &'static str) {
        if self.fields.enabled {
            (SubscriptionState::Active, "")
        } else {
            (SubscriptionState::Disabled, DISABLED)
        }
    }
}

/// Checks a target as Harbor's `validateTargets` does, and its address as webhookd checks
/// every callback URL.
fn check_target(
    target: TargetInput,
    policy: &str,
    allow_insecure: bool,
) -> Result<TargetSpec, HarborError> {
    let kind = target.kind.unwrap_or_default();
    let address = endpoint(target.address.as_deref().unwrap_or_default())?;
    let payload_format = target.payload_format.filter(|f| !f.is_empty());
    let format = match (kind.as_str(), payload_format.as_deref()) {
        ("slack" | "teams", Some(_)) => {
            return Err(HarborError::bad_request(format!(
                "set payload format is not allowed for {kind}"
            )));
        }
        ("slack", None) => Format::Slack,
        ("teams", None) => Format::Teams,
        ("http", None | Some(DEFAULT)) => Format::Harbor,
        ("http", Some(CLOUD_EVENTS)) => Format::CloudEvents,
        ("http", Some(other)) => {
            return Err(HarborError::bad_request(format!(
                "unsupported payload format type: {other}"
            )));
        }
        _ => {
            return Err(HarborError::bad_request(format!(
                "unsupported target type {kind} with policy {policy}"
            )));
        }
    };
    let url = CallbackUrl::parse_target("address", &address, allow_insecure)
        .map_err(|e| HarborError::bad_request(e.to_string()))?;
    Ok(TargetSpec {
        url,
        format,
        // Kept for a chat target too, as Harbor keeps it; the chat formats do not send it.
        auth_header: target.auth_header.filter(|h| !h.is_empty()),
        skip_cert_verify: target.skip_cert_verify.unwrap_or(false),
    })
}

/// A target address as Harbor reads it (`utils.ParseEndpoint`): trimmed, `http://` when it
/// names no scheme, http or https only; then rewritten to `scheme://host/path`, its query,
/// fragment and user info dropped (Harbor's fix for SSRF, #3755).
fn endpoint(address: &str) -> Result<String, HarborError> {
    let address = address.trim().trim_end_matches('/');
    if address.is_empty() {
        return Err(HarborError::bad_request("empty URL"));
    }
    let address = match address.split_once("://") {
        Some((scheme, _)) if scheme != "http" && scheme != "https" => {
            return Err(HarborError::bad_request(format!(
                "invalid scheme: {scheme}"
            )));
        }
        Some(_) => address.to_owned(),
        None => format!("http://{address}"),
    };
    let url = url::Url::parse(&address)
        .map_err(|e| HarborError::bad_request(format!("parse {address:?}: {e}")))?;
    let host = url.host_str().unwrap_or_default();
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let path = url.path();
    let path = if path == "/" { "" } else { path };
    Ok(format!("{}://{host}{port}{path}", url.scheme()))
}

async fn create(
    State(api): Api,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let (caller, project) = caller_and_project(&api, &headers, &path).await?;
    let spec = PolicySpec::read(body, api.settings.allow_insecure_callbacks).await?;
    let owner = project.owner.as_str();
    let mut conn = store::acquire(&api.pool).await?;
    let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
    let row = store::harbor::insert_policy(&mut tx, owner, &caller.user, &spec.fields).await?;
    for index in 0..spec.targets.len() {
        add_target(&mut tx, &api, &project, &spec, row.id, index).await?;
    }
    tx.commit().await?;
    tracing::info!(
        policy_id = row.id,
        owner,
        targets = spec.targets.len(),
        "Harbor webhook policy created"
    );
    let location = format!(
        "/api/v2.0/projects/{}/webhook/policies/{}",
        project.given, row.id
    );
    let mut response = StatusCode::CREATED.into_response();
    if let Ok(value) = HeaderValue::try_from(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Creates target `index` of `spec` as a subscription of policy `policy`.
async fn add_target(
    tx: &mut sqlx::PgConnection,
    api: &ApiContext,
    project: &Project,
    spec: &PolicySpec,
    policy: i64,
    index: usize,
) -> Result<(), HarborError> {
    let new = NewSubscription {
        face: FACE_HARBOR,
        owner: project.owner.clone(),
        family: Family::Registry,
        spec: spec.subscription(index),
    };
    let id = WebhookId::generate();
    let signing = api
        .secrets
        .seal(id, SigningSecret::generate().expose().as_bytes());
    let auth = (new.spec.auth_header.as_deref()).map(|h| api.secrets.seal(id, h.as_bytes()));
    store::subscriptions::insert(
        tx,
        id,
        &new,
        api.settings.webhook_limits,
        Sealed {
            signing_secret: &signing,
            auth_header: auth.as_deref(),
            hub_secret: None,
        },
    )
    .await?;
    let position = i16::try_from(index).unwrap_or(i16::MAX);
    store::harbor::attach_target(tx, id, (project.id, policy), position).await?;
    let (state, reason) = spec.state();
    if state != SubscriptionState::Active {
        store::subscriptions::set_state(tx, id, state, reason).await?;
    }
    Ok(())
}

async fn update(
    State(api): Api,
    Path((path, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let (_, project) = caller_and_project(&api, &headers, &path).await?;
    let id = policy_id(&id)?;
    let spec = PolicySpec::read(body, api.settings.allow_insecure_callbacks).await?;
    let owner = project.owner.as_str();
    let mut conn = store::acquire(&api.pool).await?;
    let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
    if !store::harbor::lock_policy(&mut tx, owner, id).await? {
        return Err(not_found(id));
    }
    store::harbor::update_policy(&mut tx, id, &spec.fields).await?;
    let current: Vec<Subscription> = (store::harbor::targets(&mut tx, &[id]).await?)
        .into_iter()
        .map(|t| t.subscription)
        .collect();
    let (state, reason) = spec.state();
    for index in 0..spec.targets.len().max(current.len()) {
        match current.get(index) {
            Some(target) if index < spec.targets.len() => {
                // What the native API may set of a target (headers, retries, name) stays.
                let wanted = SubscriptionSpec {
                    headers: target.headers.clone(),
                    no_retries: target.no_retries,
                    name: target.name.clone(),
                    ..spec.subscription(index)
                };
                let sealed = SealedChanges {
                    auth_header: Some(
                        (wanted.auth_header.as_deref())
                            .map(|h| api.secrets.seal(target.id, h.as_bytes())),
                    ),
                    hub_secret: None,
                };
                store::subscriptions::update(&mut tx, target, &wanted, sealed).await?;
                if target.state != state {
                    store::subscriptions::set_state(&mut tx, target.id, state, reason).await?;
                }
            }
            Some(target) => {
                let scope = crate::domain::TokenScope {
                    owners: vec![owner.to_owned()],
                    all_owners: false,
                };
                store::webhooks::delete(&mut tx, target.id, &scope).await?;
            }
            None => add_target(&mut tx, &api, &project, &spec, id, index).await?,
        }
    }
    if state == SubscriptionState::Active {
        store::events::notify_batchers(&mut tx).await?;
    }
    tx.commit().await?;
    tracing::info!(policy_id = id, owner, "Harbor webhook policy updated");
    Ok(StatusCode::OK.into_response())
}

async fn delete(
    State(api): Api,
    Path((path, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let (caller, project) = caller_and_project(&api, &headers, &path).await?;
    let id = policy_id(&id)?;
    let owner = project.owner.as_str();
    let mut conn = store::acquire(&api.pool).await?;
    let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
    if !store::harbor::lock_policy(&mut tx, owner, id).await? {
        return Err(not_found(id));
    }
    for target in store::harbor::targets(&mut tx, &[id]).await? {
        store::webhooks::delete(&mut tx, target.subscription.id, &caller.scope).await?;
    }
    store::harbor::delete_policy(&mut tx, id).await?;
    tx.commit().await?;
    tracing::info!(policy_id = id, owner, "Harbor webhook policy deleted");
    Ok(StatusCode::OK.into_response())
}

/// `SupportedWebhookEventTypes`.
async fn events(State(api): Api, Path(path): Path<String>, headers: HeaderMap) -> Answer {
    caller_and_project(&api, &headers, &path).await?;
    Ok(json_body(&serde_json::json!({
        "event_type": EVENT_TYPES,
        "notify_type": ["http", "slack", "teams"],
        "payload_formats": [{"notify_type": "http", "formats": [DEFAULT, CLOUD_EVENTS]}],
    })))
}

/// `WebhookLastTrigger`: one per policy and event type, with when an event of that type was
/// last sent to one of its targets (Harbor's zero time when never).
#[derive(Serialize)]
struct LastTrigger {
    policy_name: String,
    event_type: String,
    enabled: bool,
    creation_time: String,
    last_trigger_time: String,
}

async fn last_trigger(State(api): Api, Path(path): Path<String>, headers: HeaderMap) -> Answer {
    let (_, project) = caller_and_project(&api, &headers, &path).await?;
    let mut conn = store::acquire(&api.pool).await?;
    let rows = store::harbor::policies(&mut conn, project.owner.as_str()).await?;
    let policies = with_targets(&mut conn, rows).await?;
    let ids: Vec<WebhookId> = policies
        .iter()
        .flat_map(|p| p.targets.iter().map(|t| t.subscription.id))
        .collect();
    let activity = store::activity::of(&mut conn, &ids).await?;
    let mut triggers = vec![];
    for policy in &policies {
        for event_type in &policy.row.event_types {
            let registry = registry_type_of(event_type).unwrap_or_default();
            let last = (policy.targets.iter())
                .filter_map(|t| activity.get(&t.subscription.id))
                .flat_map(|a| a.triggers.iter())
                .filter(|(t, _)| t == registry)
                .map(|(_, at)| *at)
                .max();
            triggers.push(LastTrigger {
                policy_name: policy.row.name.clone(),
                event_type: event_type.clone(),
                enabled: policy.enabled(),
                creation_time: time(policy.row.creation_time),
                last_trigger_time: last.map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), time),
            });
        }
    }
    Ok(json_body(&triggers))
}
