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
