//! A policy's executions (one per event and target: a delivery), their tasks (one per
//! attempt), a task's log, and the deprecated `jobs` (reference facts, C.1).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use uuid::Uuid;

use super::query::ListParams;
use super::{HarborError, Project, authenticate, json_body, project, time};
use crate::api::ApiContext;
use crate::domain::{Format, REGISTRY_TYPES};
use crate::store;
use crate::store::harbor::{Execution, Task};

type Api = State<Arc<ApiContext>>;
type Answer = Result<Response, HarborError>;

/// Harbor's zero time, for what has not happened.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub fn routes() -> axum::Router<Arc<ApiContext>> {
    let policy = "/api/v2.0/projects/{project}/webhook/policies/{policy}";
    axum::Router::new()
        .route(&format!("{policy}/executions"), get(list))
        .route(
            &format!("{policy}/executions/{{execution}}/tasks"),
            get(tasks),
        )
        .route(
            &format!("{policy}/executions/{{execution}}/tasks/{{task}}/log"),
            get(log),
        )
        .route("/api/v2.0/projects/{project}/webhook/jobs", get(jobs))
}

/// A path's integer id, as go-swagger checks it.
fn id(name: &str, text: &str) -> Result<i64, HarborError> {
    text.parse().map_err(|_| {
        HarborError::unprocessable(format!("{name} in path must be of type int64: \"{text}\""))
    })
}

/// The targets of `owner`'s policy `policy` (ids and formats), or Harbor's 404.
async fn targets(
    conn: &mut sqlx::PgConnection,
    project: &Project,
    policy: i64,
) -> Result<Vec<(Uuid, Format)>, HarborError> {
    if store::harbor::get_policy(conn, project.owner.as_str(), policy)
        .await?
        .is_none()
    {
        return Err(super::policies::not_found(policy));
    }
    Ok(store::harbor::targets(conn, &[policy])
        .await?
        .into_iter()
        .map(|t| (t.subscription.id.0, t.subscription.format))
        .collect())
}

/// The request's project and its policy's targets.
async fn policy_targets(
    api: &ApiContext,
    headers: &HeaderMap,
    project_path: &str,
    policy: &str,
) -> Result<
    (
        sqlx::pool::PoolConnection<sqlx::Postgres>,
        i64,
        Vec<(Uuid, Format)>,
    ),
    HarborError,
> {
    let caller = authenticate(api, headers).await?;
    let project = project(api, headers, &caller, project_path).await?;
    let policy = id("webhook_policy_id", policy)?;
    let mut conn = store::acquire(&api.pool).await?;
    let targets = targets(&mut conn, &project, policy).await?;
    Ok((conn, policy, targets))
}

/// Harbor's status of a delivery.
fn status(execution: &Execution) -> &'static str {
    match (execution.state.as_str(), execution.attempts) {
        ("delivered", _) => "Success",
        ("failed", _) => "Error",
        ("pending", 0) => "Pending",
        ("pending", _) => "Running",
        _ => "Stopped",
    }
}

/// Harbor's vendor type of a target's format.
fn vendor_type(format: Format) -> &'static str {
    match format {
        Format::Slack => "SLACK",
        Format::Teams => "TEAMS",
        _ => "WEBHOOK",
    }
}

/// Harbor's name of a registry event type.
fn harbor_type(event_type: &str) -> String {
    REGISTRY_TYPES
        .iter()
        .find(|t| t.name == event_type)
        .map_or_else(|| event_type.to_ascii_uppercase(), |t| t.harbor.to_owned())
}

#[derive(Serialize)]
struct ExecutionObject {
    id: i64,
    vendor_type: &'static str,
    vendor_id: i64,
    status: &'static str,
    status_message: String,
    metrics: Metrics,
    trigger: &'static str,
    extra_attrs: ExtraAttrs,
    start_time: String,
    end_time: String,
}

#[derive(Serialize)]
struct Metrics {
    task_count: i64,
    success_task_count: i64,
    error_task_count: i64,
    pending_task_count: i64,
    running_task_count: i64,
    scheduled_task_count: i64,
    stopped_task_count: i64,
}

#[derive(Serialize)]
struct ExtraAttrs {
    event_type: String,
    payload: String,
}

/// What went wrong with the last attempt, as Harbor's status message says it.
fn status_message(execution: &Execution) -> String {
    match (&execution.last_error, execution.last_status) {
        (Some(error), _) => error.clone(),
        (None, Some(code)) if !(200..300).contains(&code) => {
            format!("abnormal response code: {code}")
        }
        _ => String::new(),
    }
}

fn execution_object(execution: &Execution, policy: i64, format: Format) -> ExecutionObject {
    let status = status(execution);
    let tasks = i64::from(execution.attempts);
    let succeeded = tasks - execution.failed;
    ExecutionObject {
        id: execution.id,
        vendor_type: vendor_type(format),
        vendor_id: policy,
        status,
        status_message: status_message(execution),
        metrics: Metrics {
            task_count: tasks,
            success_task_count: succeeded,
            error_task_count: execution.failed,
            pending_task_count: i64::from(status == "Pending"),
            running_task_count: 0,
            scheduled_task_count: i64::from(status == "Running"),
            stopped_task_count: 0,
        },
        trigger: "EVENT",
        extra_attrs: ExtraAttrs {
            event_type: harbor_type(&execution.event_type),
            payload: String::from_utf8_lossy(execution.payload.as_deref().unwrap_or_default())
                .into_owned(),
        },
        start_time: time(execution.start_time),
        end_time: match (status, execution.end_time) {
            ("Success" | "Error", Some(end)) => time(end),
            _ => ZERO_TIME.to_owned(),
        },
    }
}

/// The page of `policy`'s executions `params` asks for, and how many there are.
async fn page(
    conn: &mut sqlx::PgConnection,
    params: &ListParams,
    targets: &[(Uuid, Format)],
) -> Result<(Vec<Execution>, usize), HarborError> {
    let webhooks: Vec<Uuid> = targets.iter().map(|(id, _)| *id).collect();
    let offset = (params.page - 1).saturating_mul(params.page_size);
    let (rows, total) = store::harbor::executions(
        conn,
        &webhooks,
        i64::try_from(offset).unwrap_or(i64::MAX),
        i64::try_from(params.page_size).unwrap_or(100),
    )
    .await?;
    Ok((rows, usize::try_from(total).unwrap_or(0)))
}

async fn list(
    State(api): Api,
    Path((project_path, policy)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Answer {
    let (mut conn, policy, targets) =
        policy_targets(&api, &headers, &project_path, &policy).await?;
    // Newest first; Harbor's q and sort over executions are not taken yet.
    let params = ListParams::read(&query, &[])?;
    let (rows, total) = page(&mut conn, &params, &targets).await?;
    let formats: HashMap<Uuid, Format> = targets.into_iter().collect();
    let objects: Vec<ExecutionObject> = rows
        .iter()
        .map(|e| {
            let format = formats.get(&e.webhook).copied().unwrap_or(Format::Harbor);
            execution_object(e, policy, format)
        })
        .collect();
    let mut response = json_body(&objects);
    let path = format!("/api/v2.0/projects/{project_path}/webhook/policies/{policy}/executions");
    params.headers(&mut response, &path, total);
    Ok(response)
}

#[derive(Serialize)]
struct TaskObject {
    id: i64,
    execution_id: i64,
    status: &'static str,
    status_message: String,
    run_count: i32,
    extra_attrs: serde_json::Map<String, serde_json::Value>,
    creation_time: String,
    update_time: String,
    start_time: String,
    end_time: String,
}

fn task_succeeded(task: &Task) -> bool {
    task.error.is_none() && task.http_status.is_some_and(|c| (200..300).contains(&c))
}

fn end_of(task: &Task) -> chrono::DateTime<chrono::Utc> {
    task.start_time + chrono::Duration::milliseconds(i64::from(task.duration_ms))
}

/// The tasks of execution `execution` of the request's policy, or Harbor's 404.
async fn execution_tasks(
    api: &ApiContext,
    headers: &HeaderMap,
    (project_path, policy, execution): (&str, &str, &str),
) -> Result<(i64, Vec<Task>), HarborError> {
    let (mut conn, _, targets) = policy_targets(api, headers, project_path, policy).await?;
    let execution = id("execution_id", execution)?;
    let webhooks: Vec<Uuid> = targets.iter().map(|(id, _)| *id).collect();
    let delivery = store::harbor::execution_delivery(&mut conn, &webhooks, execution)
        .await?
        .ok_or_else(|| HarborError::not_found(format!("execution {execution} not found")))?;
    Ok((execution, store::harbor::tasks(&mut conn, delivery).await?))
}

async fn tasks(
    State(api): Api,
    Path((project_path, policy, execution)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Answer {
    let params = ListParams::read(&query, &[])?;
    let (execution, tasks) =
        execution_tasks(&api, &headers, (&project_path, &policy, &execution)).await?;
    let total = tasks.len();
    let objects: Vec<TaskObject> = tasks
        .iter()
        .skip((params.page - 1).saturating_mul(params.page_size))
        .take(params.page_size)
        .map(|task| {
            let (status, message) = if task_succeeded(task) {
                ("Success", String::new())
            } else {
                ("Error", task_failure(task))
            };
            TaskObject {
                id: task.id,
                execution_id: execution,
                status,
                status_message: message,
                run_count: 1,
                extra_attrs: serde_json::Map::new(),
                creation_time: time(task.start_time),
                update_time: time(end_of(task)),
                start_time: time(task.start_time),
                end_time: time(end_of(task)),
            }
        })
        .collect();
    let mut response = json_body(&objects);
    let path = format!(
        "/api/v2.0/projects/{project_path}/webhook/policies/{policy}/executions/{execution}/tasks"
    );
    params.headers(&mut response, &path, total);
    Ok(response)
}

/// Why a task failed, as Harbor's job log says it.
fn task_failure(task: &Task) -> String {
    match (&task.error, task.http_status) {
        (Some(error), _) => format!("send request failed: {error}"),
        (None, Some(code)) => format!(
            "abnormal response code: {code}, body: {}",
            String::from_utf8_lossy(task.response_body.as_deref().unwrap_or_default())
        ),
        (None, None) => "no answer".to_owned(),
    }
}

/// A task's log, as Harbor's job service writes it: the request sent, and the answer or why
/// none came.
async fn log(
    State(api): Api,
    Path((project_path, policy, execution, task)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Answer {
    let (_, tasks) = execution_tasks(&api, &headers, (&project_path, &policy, &execution)).await?;
    let task_id = id("task_id", &task)?;
    let task = tasks
        .iter()
        .find(|t| t.id == task_id)
        .ok_or_else(|| HarborError::not_found(format!("task {task_id} not found")))?;
    let stamp = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut text = format!(
        "{} [INFO] send request to remote endpoint, body: {}\n",
        stamp(task.start_time),
        String::from_utf8_lossy(task.request_body.as_deref().unwrap_or_default())
    );
    if task_succeeded(task) {
        text.push_str(&format!(
            "{} [INFO] receive response, status code: {}\n",
            stamp(end_of(task)),
            task.http_status.unwrap_or_default()
        ));
    } else {
        text.push_str(&format!(
            "{} [ERROR] {}\n",
            stamp(end_of(task)),
            task_failure(task)
        ));
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}

/// `WebhookJob` (deprecated since Harbor 2.8: an execution, as 2.3-2.7 listed them).
#[derive(Serialize)]
struct JobObject {
    id: i64,
    policy_id: i64,
    event_type: String,
    notify_type: &'static str,
    status: &'static str,
    job_detail: String,
    creation_time: String,
    update_time: String,
}

async fn jobs(
    State(api): Api,
    Path(project_path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Answer {
    let Some(policy) = query.get("policy_id") else {
        return Err(HarborError::unprocessable("policy_id in query is required"));
    };
    let (mut conn, policy, targets) = policy_targets(&api, &headers, &project_path, policy).await?;
    let statuses: Option<Vec<String>> = query
        .get("status")
        .map(|s| s.split(',').map(|s| s.trim().to_owned()).collect());
    let params = ListParams::read(&query, &[])?;
    let (rows, total) = page(&mut conn, &params, &targets).await?;
    let formats: HashMap<Uuid, Format> = targets.into_iter().collect();
    let objects: Vec<JobObject> = rows
        .iter()
        .filter(|e| {
            statuses
                .as_ref()
                .is_none_or(|s| s.iter().any(|s| s == status(e)))
        })
        .map(|e| {
            let format = formats.get(&e.webhook).copied().unwrap_or(Format::Harbor);
            let object = execution_object(e, policy, format);
            JobObject {
                id: e.id,
                policy_id: policy,
                event_type: object.extra_attrs.event_type,
                notify_type: match format {
                    Format::Slack => "slack",
                    Format::Teams => "teams",
                    _ => "http",
                },
                status: object.status,
                job_detail: object.extra_attrs.payload,
                creation_time: object.start_time,
                update_time: object.end_time,
            }
        })
        .collect();
    let mut response = json_body(&objects);
    let path = format!("/api/v2.0/projects/{project_path}/webhook/jobs");
    params.headers(&mut response, &path, total);
    Ok(response)
}
