//! Harbor's face (migration 20261206000002): projects, numbered on first use; webhook
//! policies; and their targets, subscriptions of face `harbor` in target order.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::is_unique_violation;
use crate::domain::{Subscription, WebhookId};
use crate::error::{Error, Result};

/// A policy as stored (its targets are subscriptions).
#[derive(Debug, Clone)]
pub struct PolicyRow {
    /// Its id.
    pub id: i64,
    /// Its project's owner.
    pub owner: String,
    /// Its name, unique in the project.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Who created it.
    pub creator: String,
    /// Harbor's event types, as given.
    pub event_types: Vec<String>,
    /// Whether it is enabled.
    pub enabled: bool,
    /// When it was created.
    pub creation_time: DateTime<Utc>,
    /// When it last changed.
    pub update_time: DateTime<Utc>,
}

/// What a create or an update writes of a policy.
#[derive(Debug, Clone)]
pub struct PolicyFields {
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Harbor's event types.
    pub event_types: Vec<String>,
    /// Whether it is enabled.
    pub enabled: bool,
}

/// `owner`'s project id, given on first use.
pub async fn project_id(conn: &mut PgConnection, owner: &str) -> Result<i64> {
    // The select sees the row only when it was there before: one of the two answers.
    let id = sqlx::query_scalar!(
        r#"
        WITH given AS (
            INSERT INTO harbor_projects (owner_name) VALUES ($1)
            ON CONFLICT (owner_name) DO NOTHING
            RETURNING id
        )
        SELECT id AS "id!" FROM given
        UNION ALL
        SELECT id FROM harbor_projects WHERE owner_name = $1
        "#,
        owner,
    )
    .fetch_one(conn)
    .await?;
    Ok(id)
}

/// The owner of project `id`, if it was given.
pub async fn project_owner(conn: &mut PgConnection, id: i64) -> Result<Option<String>> {
    let owner = sqlx::query_scalar!(
        r#"SELECT owner_name FROM harbor_projects WHERE id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(owner)
}

/// A policy of `owner`, new; `AlreadyExists` when the name is taken in the project.
pub async fn insert_policy(
    conn: &mut PgConnection,
    owner: &str,
    creator: &str,
    fields: &PolicyFields,
) -> Result<PolicyRow> {
    let row = sqlx::query_as!(
        PolicyRow,
        r#"
        INSERT INTO harbor_policies (owner_name, name, description, creator, event_types,
                                     enabled)
        VALUES ($1, $2, $3, $4, $5, $6)
        RETURNING id, owner_name AS owner, name, description, creator, event_types, enabled,
                  creation_time, update_time
        "#,
        owner,
        fields.name,
        fields.description,
        creator,
        &fields.event_types,
        fields.enabled,
    )
    .fetch_one(conn)
    .await
    .map_err(|e| name_taken(e, &fields.name))?;
    Ok(row)
}

/// Replaces `fields` of policy `id`.
pub async fn update_policy(
    conn: &mut PgConnection,
    id: i64,
    fields: &PolicyFields,
) -> Result<PolicyRow> {
    let row = sqlx::query_as!(
        PolicyRow,
        r#"
        UPDATE harbor_policies
        SET name = $2, description = $3, event_types = $4, enabled = $5, update_time = now()
        WHERE id = $1
        RETURNING id, owner_name AS owner, name, description, creator, event_types, enabled,
                  creation_time, update_time
        "#,
        id,
        fields.name,
        fields.description,
        &fields.event_types,
        fields.enabled,
    )
    .fetch_one(conn)
    .await
    .map_err(|e| name_taken(e, &fields.name))?;
    Ok(row)
}

/// `AlreadyExists` for a name taken in the project, else the error as is.
fn name_taken(e: sqlx::Error, name: &str) -> Error {
    if is_unique_violation(&e, "harbor_policies_owner_name_name_key") {
        Error::AlreadyExists(format!("the policy name {name} already exists"))
    } else {
        e.into()
    }
}

/// `owner`'s policy `id`.
pub async fn get_policy(
    conn: &mut PgConnection,
    owner: &str,
    id: i64,
) -> Result<Option<PolicyRow>> {
    let row = sqlx::query_as!(
        PolicyRow,
        r#"
        SELECT id, owner_name AS owner, name, description, creator, event_types, enabled,
               creation_time, update_time
        FROM harbor_policies
        WHERE id = $1 AND owner_name = $2
        "#,
        id,
        owner,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// Locks `owner`'s policy `id` until the transaction ends (a change to it and its targets
/// waits for another's); whether it exists.
pub async fn lock_policy(conn: &mut PgConnection, owner: &str, id: i64) -> Result<bool> {
    let found = sqlx::query_scalar!(
        r#"
        SELECT true AS "found!" FROM harbor_policies
        WHERE id = $1 AND owner_name = $2
        FOR NO KEY UPDATE
        "#,
        id,
        owner,
    )
    .fetch_optional(conn)
    .await?;
    Ok(found.is_some())
}

/// Every policy of `owner`, by id (a project has few: Harbor's own pages filter and sort
/// them after reading them all too).
pub async fn policies(conn: &mut PgConnection, owner: &str) -> Result<Vec<PolicyRow>> {
    let rows = sqlx::query_as!(
        PolicyRow,
        r#"
        SELECT id, owner_name AS owner, name, description, creator, event_types, enabled,
               creation_time, update_time
        FROM harbor_policies
        WHERE owner_name = $1
        ORDER BY id
        "#,
        owner,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// Deletes policy `id` (its targets first: [`super::webhooks::delete`]).
pub async fn delete_policy(conn: &mut PgConnection, id: i64) -> Result<()> {
    sqlx::query!(r#"DELETE FROM harbor_policies WHERE id = $1"#, id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Makes subscription `webhook` target `position` of policy `policy` of project `project`.
pub async fn attach_target(
    conn: &mut PgConnection,
    webhook: WebhookId,
    (project, policy): (i64, i64),
    position: i16,
) -> Result<()> {
    sqlx::query!(
        r#"
        UPDATE webhooks SET harbor_project_id = $2, harbor_policy_id = $3, harbor_target = $4
        WHERE id = $1
        "#,
        webhook.0,
        project,
        policy,
        position,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A policy's target.
#[derive(Debug, Clone)]
pub struct Target {
    /// The policy's id.
    pub policy: i64,
    /// The subscription.
    pub subscription: Subscription,
    /// Its sealed `Authorization` header (Harbor shows `auth_header` in clear text).
    pub sealed_auth_header: Option<Vec<u8>>,
}

/// The targets of `policies`, in policy and target order.
pub async fn targets(conn: &mut PgConnection, policies: &[i64]) -> Result<Vec<Target>> {
    let rows = sqlx::query!(
        r#"
        SELECT id, harbor_policy_id AS "policy!", sealed_auth_header
        FROM webhooks
        WHERE harbor_policy_id = ANY ($1)
        ORDER BY harbor_policy_id, harbor_target
        "#,
        policies,
    )
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut found: std::collections::HashMap<Uuid, Subscription> =
        super::subscriptions::get_many(conn, &ids)
            .await?
            .into_iter()
            .map(|s| (s.id.0, s))
            .collect();
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some(Target {
                policy: r.policy,
                subscription: found.remove(&r.id)?,
                sealed_auth_header: r.sealed_auth_header,
            })
        })
        .collect())
}

/// A delivery of a policy's target, as Harbor shows an execution.
#[derive(Debug, Clone)]
pub struct Execution {
    /// Its Harbor id.
    pub id: i64,
    /// The delivery.
    pub delivery: Uuid,
    /// The target's subscription.
    pub webhook: Uuid,
    /// The delivery's state (`pending`, `delivered`, `failed`).
    pub state: String,
    /// Its attempts...
    pub attempts: i32,
    /// ...and how many of them failed.
    pub failed: i64,
    /// The event's type (webhookd's registry type).
    pub event_type: String,
    /// When it was queued.
    pub start_time: DateTime<Utc>,
    /// When its last attempt ended, if it was attempted.
    pub end_time: Option<DateTime<Utc>>,
    /// The last attempt's error or HTTP status.
    pub last_error: Option<String>,
    pub last_status: Option<i32>,
    /// The last attempt's request body, as recorded.
    pub payload: Option<Vec<u8>>,
}

/// Up to `limit` executions of the targets `webhooks` after the `offset` newest, newest
/// first, and how many there are in all. Executions not listed before are given their ids
/// here.
pub async fn executions(
    conn: &mut PgConnection,
    webhooks: &[Uuid],
    offset: i64,
    limit: i64,
) -> Result<(Vec<Execution>, i64)> {
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM deliveries WHERE webhook_id = ANY ($1)"#,
        webhooks
    )
    .fetch_one(&mut *conn)
    .await?;
    // Two listings giving the same deliveries ids at once: the second finds them taken and
    // reads them on a second try.
    for _ in 0..2 {
        let rows = sqlx::query_as!(
            Execution,
            r#"
            WITH page AS (
                SELECT d.id, d.webhook_id, d.state::text AS state, d.attempt_count,
                       d.create_time, d.event_id
                FROM deliveries d
                WHERE d.webhook_id = ANY ($1)
                ORDER BY d.create_time DESC, d.id DESC
                OFFSET $2 LIMIT $3
            ), given AS (
                INSERT INTO harbor_execution_ids (delivery_id)
                SELECT id FROM page
                ON CONFLICT (delivery_id) DO NOTHING
                RETURNING id, delivery_id
            )
            SELECT COALESCE(g.id, x.id, 0) AS "id!", p.id AS "delivery!",
                   p.webhook_id AS "webhook!", p.state AS "state!",
                   p.attempt_count AS "attempts!",
                   (SELECT count(*) FROM delivery_attempts a
                    WHERE a.delivery_id = p.id
                      AND NOT COALESCE(a.http_status BETWEEN 200 AND 299, false)) AS "failed!",
                   COALESCE(e.event_type, '') AS "event_type!", p.create_time AS "start_time!",
                   l.start_time + make_interval(secs => l.duration_ms / 1000.0) AS end_time,
                   l.error AS last_error, l.http_status AS last_status,
                   l.request_body AS payload
            FROM page p
            JOIN events e ON e.id = p.event_id
            LEFT JOIN given g ON g.delivery_id = p.id
            LEFT JOIN harbor_execution_ids x ON x.delivery_id = p.id
            LEFT JOIN LATERAL (
                SELECT a.start_time, a.duration_ms, a.error, a.http_status, a.request_body
                FROM delivery_attempts a
                WHERE a.delivery_id = p.id
                ORDER BY a.number DESC
                LIMIT 1
            ) AS l ON true
            ORDER BY p.create_time DESC, p.id DESC
            "#,
            webhooks,
            offset,
            limit,
        )
        .fetch_all(&mut *conn)
        .await?;
        if rows.iter().all(|r| r.id != 0) {
            return Ok((rows, total));
        }
    }
    Err(Error::Internal(anyhow::anyhow!(
        "Harbor execution ids were being given by another listing twice in a row"
    )))
}

/// The delivery Harbor execution `id` names, if it is one of a target in `webhooks`.
pub async fn execution_delivery(
    conn: &mut PgConnection,
    webhooks: &[Uuid],
    id: i64,
) -> Result<Option<Uuid>> {
    let delivery = sqlx::query_scalar!(
        r#"
        SELECT x.delivery_id
        FROM harbor_execution_ids x JOIN deliveries d ON d.id = x.delivery_id
        WHERE x.id = $1 AND d.webhook_id = ANY ($2)
        "#,
        id,
        webhooks,
    )
    .fetch_optional(conn)
    .await?;
    Ok(delivery)
}

/// An attempt of a delivery, as Harbor shows a task.
#[derive(Debug, Clone)]
pub struct Task {
    /// Its id (the attempt's, as GitHub's deliveries API names it too).
    pub id: i64,
    /// When it started...
    pub start_time: DateTime<Utc>,
    /// ...and how long it took.
    pub duration_ms: i32,
    /// The answer's status, or why none came.
    pub http_status: Option<i32>,
    pub error: Option<String>,
    /// The request body and the answer's, as recorded.
    pub request_body: Option<Vec<u8>>,
    pub response_body: Option<Vec<u8>>,
}

/// The attempts of `delivery`, oldest first, each with its id (given here when new).
pub async fn tasks(conn: &mut PgConnection, delivery: Uuid) -> Result<Vec<Task>> {
    for _ in 0..2 {
        let rows = sqlx::query_as!(
            Task,
            r#"
            WITH given AS (
                INSERT INTO github_delivery_ids (delivery_id, number)
                SELECT delivery_id, number FROM delivery_attempts WHERE delivery_id = $1
                ON CONFLICT (delivery_id, number) DO NOTHING
                RETURNING id, number
            )
            SELECT COALESCE(g.id, n.id, 0) AS "id!", a.start_time, a.duration_ms,
                   a.http_status, a.error, a.request_body, a.response_body
            FROM delivery_attempts a
            LEFT JOIN given g ON g.number = a.number
            LEFT JOIN github_delivery_ids n ON n.delivery_id = a.delivery_id AND n.number = a.number
            WHERE a.delivery_id = $1
            ORDER BY a.number
            "#,
            delivery,
        )
        .fetch_all(&mut *conn)
        .await?;
        if rows.iter().all(|r| r.id != 0) {
            return Ok(rows);
        }
    }
    Err(Error::Internal(anyhow::anyhow!(
        "task ids were being given by another listing twice in a row"
    )))
}
