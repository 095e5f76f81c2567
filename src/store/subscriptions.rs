//! Subscriptions of webhookd's own API: create (with the same caps as CreateWebhook), read,
//! list, change, pause, resume. They are rows of `webhooks` (migration 20261202000001); a
//! BSR webhook reads as a subscription too. Deleting is [`super::webhooks::delete`].

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::is_unique_violation;
use super::webhooks::{WebhookLimits, at_limit, owner_margin, sql_int};
use crate::domain::{
    Family, Format, NewSubscription, PageCursor, Subscription, SubscriptionSpec, SubscriptionState,
    WebhookId,
};
use crate::error::{Error, Result};

/// A subscription row as stored.
struct Row {
    id: uuid::Uuid,
    number: i64,
    face: String,
    owner_name: String,
    repository_name: String,
    all_repositories: bool,
    family: String,
    event_types: Vec<String>,
    repository_filters: Vec<String>,
    tag_filters: Vec<String>,
    callback_url: String,
    format: String,
    format_options: serde_json::Value,
    has_auth_header: bool,
    has_hub_secret: bool,
    skip_tls_verify: bool,
    custom_headers: serde_json::Value,
    omit_standard_headers: bool,
    no_retries: bool,
    name: String,
    description: String,
    state: String,
    state_time: Option<DateTime<Utc>>,
    state_reason: Option<String>,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

impl Row {
    fn into_subscription(self) -> Result<Subscription> {
        let corrupt = |what: &str| Error::Internal(anyhow::anyhow!("stored {what} is unknown"));
        Ok(Subscription {
            id: WebhookId(self.id),
            number: self.number,
            face: self.face,
            owner: self.owner_name,
            repository: self.repository_name,
            all_repositories: self.all_repositories,
            family: Family::from_stored(&self.family).ok_or_else(|| corrupt("family"))?,
            event_types: self.event_types,
            repository_filters: self.repository_filters,
            tag_filters: self.tag_filters,
            url: self.callback_url,
            format: Format::from_stored(&self.format).ok_or_else(|| corrupt("format"))?,
            format_options: serde_json::from_value(self.format_options)
                .map_err(|_| corrupt("format_options"))?,
            has_auth_header: self.has_auth_header,
            has_hub_secret: self.has_hub_secret,
            skip_tls_verify: self.skip_tls_verify,
            headers: serde_json::from_value(self.custom_headers)
                .map_err(|_| corrupt("custom_headers"))?,
            omit_standard_headers: self.omit_standard_headers,
            no_retries: self.no_retries,
            name: self.name,
            description: self.description,
            state: SubscriptionState::from_stored(&self.state).ok_or_else(|| corrupt("state"))?,
            state_time: self.state_time,
            state_reason: self.state_reason.unwrap_or_default(),
            create_time: self.create_time,
            update_time: self.update_time,
        })
    }
}

/// A new subscription's secrets, sealed (bound to its id).
#[derive(Debug, Clone, Copy)]
pub struct Sealed<'a> {
    /// Its first signing secret.
    pub signing_secret: &'a [u8],
    /// Its `Authorization` header, if any.
    pub auth_header: Option<&'a [u8]>,
    /// Its GitHub hook secret, if any.
    pub hub_secret: Option<&'a [u8]>,
}

/// What an update does to a subscription's sealed fields: `None` keeps one, `Some(None)`
/// clears it, `Some(Some(sealed))` replaces it.
#[derive(Debug, Clone, Default)]
pub struct SealedChanges {
    /// The `Authorization` header.
    pub auth_header: Option<Option<Vec<u8>>>,
    /// The GitHub hook secret.
    pub hub_secret: Option<Option<Vec<u8>>>,
}

fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("options and headers serialize")
}

/// Stores a new native subscription `id` with its first signing secret and its sealed auth
/// header, within `limits` (a subscription to every repository of an owner takes a slot in
/// the owner's `''` repository), as [`super::webhooks::insert`] does it.
///
/// # Errors
/// `AlreadyExists` (a name the owner used), `ResourceExhausted`, or a database error.
pub async fn insert(
    conn: &mut PgConnection,
    id: WebhookId,
    new: &NewSubscription,
    limits: WebhookLimits,
    sealed: Sealed<'_>,
) -> Result<Subscription> {
    let spec = &new.spec;
    let repository = spec.repository.as_ref().map_or("", |r| r.as_str());
    let created = sqlx::query_scalar!(
        r#"
        WITH owner_room AS (
            SELECT CASE
                WHEN COALESCE((SELECT o.webhooks FROM owner_counts o WHERE o.owner_name = $2), 0)
                     + $9 < $8 THEN true
                ELSE (SELECT COALESCE(sum(c.webhooks), 0) FROM repository_webhook_counts c
                      WHERE c.owner_name = $2) < $8
            END AS ok
        ), slot AS (
            INSERT INTO repository_webhook_counts AS c (owner_name, repository_name, webhooks)
            SELECT $2, $3, 1 FROM owner_room WHERE ok
            ON CONFLICT (owner_name, repository_name)
                DO UPDATE SET webhooks = c.webhooks + 1 WHERE c.webhooks < $6
            RETURNING webhooks
        ), created AS (
            INSERT INTO webhooks (id, owner_name, repository_name, event, callback_url,
                                  create_time, update_time, face, family, event_types,
                                  all_repositories, repository_filters, tag_filters, format,
                                  format_options, sealed_auth_header, skip_tls_verify,
                                  custom_headers, omit_standard_headers, name, description,
                                  sealed_hub_secret, no_retries)
            SELECT $1, $2, $3, $4, $5, now(), now(), $10, $11, $12, $3 = '', $13, $14, $15,
                   $16, $17, $18, $19, $20, $21, $22, $23, $24
            FROM slot
            RETURNING id
        ), secret AS (
            INSERT INTO webhook_secrets (webhook_id, secret)
            SELECT id, $7 FROM created
        ), counted AS (
            INSERT INTO owner_count_changes (owner_name, webhooks)
            SELECT $2, 1 FROM created
        )
        SELECT id FROM created
        "#,
        id.0,
        new.owner.as_str(),
        repository,
        0i32,
        spec.url.as_str(),
        sql_int(limits.per_repository),
        sealed.signing_secret,
        i64::from(limits.per_owner),
        owner_margin(limits.per_owner),
        new.face,
        new.family.as_str(),
        &spec.event_types,
        spec.repository_filters.patterns(),
        spec.tag_filters.patterns(),
        spec.format.as_str(),
        json(&spec.format_options),
        sealed.auth_header,
        spec.skip_tls_verify,
        json(&spec.headers),
        spec.omit_standard_headers,
        spec.name,
        spec.description,
        sealed.hub_secret,
        spec.no_retries,
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| name_taken(e, new.owner.as_str(), &spec.name))?;
    if created.is_none() {
        return Err(at_limit(conn, new.owner.as_str(), repository, limits).await?);
    }
    get(conn, id)
        .await?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("subscription {id} vanished")))
}

/// `AlreadyExists` for a unique violation of the owner's names, else the error as is.
fn name_taken(e: sqlx::Error, owner: &str, name: &str) -> Error {
    if is_unique_violation(&e, "webhooks_name_key") {
        Error::AlreadyExists(format!(
            "{owner} already has a subscription named {name:?}; names are unique per owner"
        ))
    } else if is_unique_violation(&e, "webhooks_subscription_key") {
        // A BSR webhook's URL changed to another of its repository's for the same event.
        Error::AlreadyExists(format!(
            "{owner} already has a webhook for this repository, event and URL"
        ))
    } else {
        e.into()
    }
}

/// The subscription `id`, if it exists.
pub async fn get(conn: &mut PgConnection, id: WebhookId) -> Result<Option<Subscription>> {
    Ok(get_many(conn, &[id.0]).await?.pop())
}

/// The subscriptions of `ids` that exist, in no particular order.
pub async fn get_many(conn: &mut PgConnection, ids: &[uuid::Uuid]) -> Result<Vec<Subscription>> {
    // The same columns as list_page's (a query macro takes one literal).
    let rows = sqlx::query_as!(
        Row,
        r#"
        SELECT id, number AS "number!", face, owner_name, repository_name,
               all_repositories, family, event_types, repository_filters, tag_filters,
               callback_url, format, format_options,
               sealed_auth_header IS NOT NULL AS "has_auth_header!",
               sealed_hub_secret IS NOT NULL AS "has_hub_secret!", skip_tls_verify,
               custom_headers, omit_standard_headers, no_retries, name, description, state,
               CASE state WHEN 'paused' THEN paused_time
                          WHEN 'disabled' THEN disabled_time END AS state_time,
               CASE state WHEN 'paused' THEN paused_reason
                          WHEN 'disabled' THEN disabled_reason END AS state_reason,
               create_time, update_time
        FROM webhooks
        WHERE id = ANY ($1)
        "#,
        ids
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Row::into_subscription).collect()
}

/// What ListSubscriptions selects.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only those scoped to this repository.
    pub repository: Option<String>,
    /// Only those in this state.
    pub state: Option<SubscriptionState>,
    /// Only those of this family.
    pub family: Option<Family>,
}

/// Up to `limit` of `owner`'s subscriptions after `after`, in (create_time, id) order.
pub async fn list_page(
    conn: &mut PgConnection,
    owner: &str,
    filter: &ListFilter,
    after: Option<PageCursor>,
    limit: i64,
) -> Result<Vec<Subscription>> {
    let (after_time, after_id) = match after {
        Some(c) => (Some(c.create_time), Some(c.id)),
        None => (None, None),
    };
    let rows = sqlx::query_as!(
        Row,
        r#"
        SELECT id, number AS "number!", face, owner_name, repository_name,
               all_repositories, family, event_types, repository_filters, tag_filters,
               callback_url, format, format_options,
               sealed_auth_header IS NOT NULL AS "has_auth_header!",
               sealed_hub_secret IS NOT NULL AS "has_hub_secret!", skip_tls_verify,
               custom_headers, omit_standard_headers, no_retries, name, description, state,
               CASE state WHEN 'paused' THEN paused_time
                          WHEN 'disabled' THEN disabled_time END AS state_time,
               CASE state WHEN 'paused' THEN paused_reason
                          WHEN 'disabled' THEN disabled_reason END AS state_reason,
               create_time, update_time
        FROM webhooks
        WHERE owner_name = $1
          AND ($2::text IS NULL OR repository_name = $2)
          AND ($3::text IS NULL OR state = $3)
          AND ($4::text IS NULL OR family = $4)
          AND ($5::timestamptz IS NULL OR (create_time, id) > ($5, $6::uuid))
        ORDER BY create_time, id
        LIMIT $7
        "#,
        owner,
        filter.repository.as_deref(),
        filter.state.map(SubscriptionState::as_str),
        filter.family.map(Family::as_str),
        after_time,
        after_id,
        limit,
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Row::into_subscription).collect()
}

/// Replaces what `spec` holds of subscription `id` (its scope stays: `spec.repository` is
/// not written), and the sealed fields `sealed` changes. Returns the subscription as changed, or `None` if it no longer exists.
///
/// # Errors
/// `AlreadyExists` for a name the owner used, or a database error.
pub async fn update(
    conn: &mut PgConnection,
    current: &Subscription,
    spec: &SubscriptionSpec,
    sealed: SealedChanges,
) -> Result<Option<Subscription>> {
    let (set_auth, sealed_auth) = match sealed.auth_header {
        None => (false, None),
        Some(sealed) => (true, sealed),
    };
    let (set_hub, sealed_hub) = match sealed.hub_secret {
        None => (false, None),
        Some(sealed) => (true, sealed),
    };
    let updated = sqlx::query_scalar!(
        r#"
        UPDATE webhooks
        SET event_types = $2, repository_filters = $3, tag_filters = $4, callback_url = $5,
            format = $6, format_options = $7,
            sealed_auth_header = CASE WHEN $8 THEN $9 ELSE sealed_auth_header END,
            skip_tls_verify = $10, custom_headers = $11, omit_standard_headers = $12,
            name = $13, description = $14, update_time = now(),
            sealed_hub_secret = CASE WHEN $15 THEN $16 ELSE sealed_hub_secret END,
            no_retries = $17
        WHERE id = $1
        RETURNING id
        "#,
        current.id.0,
        &spec.event_types,
        spec.repository_filters.patterns(),
        spec.tag_filters.patterns(),
        spec.url.as_str(),
        spec.format.as_str(),
        json(&spec.format_options),
        set_auth,
        sealed_auth,
        spec.skip_tls_verify,
        json(&spec.headers),
        spec.omit_standard_headers,
        spec.name,
        spec.description,
        set_hub,
        sealed_hub,
        spec.no_retries,
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| name_taken(e, &current.owner, &spec.name))?;
    match updated {
        None => Ok(None),
        Some(_) => get(conn, current.id).await,
    }
}

/// Moves subscription `id` to `state`, with `reason` for paused and disabled; returns it,
/// or `None` if it no longer exists. A move to the state it is in keeps its time and reason.
/// A move to active (resuming, re-enabling) ends its run of failures: auto-disable counts
/// again from its next failure.
pub async fn set_state(
    conn: &mut PgConnection,
    id: WebhookId,
    state: SubscriptionState,
    reason: &str,
) -> Result<Option<Subscription>> {
    sqlx::query!(
        r#"
        WITH moved AS (
            UPDATE webhooks
            SET state = $2,
                paused_time = CASE WHEN $2 = 'paused' THEN now() END,
                paused_reason = CASE WHEN $2 = 'paused' THEN $3 END,
                disabled_time = CASE WHEN $2 = 'disabled' THEN now() END,
                disabled_reason = CASE WHEN $2 = 'disabled' THEN $3 END,
                update_time = now()
            WHERE id = $1 AND state <> $2
            RETURNING id
        )
        UPDATE subscription_activity a
        SET failing_since = NULL, failures = 0, failing_announced = false
        FROM moved
        WHERE $2 = 'active' AND a.webhook_id = moved.id AND a.event_type = ''
        "#,
        id.0,
        state.as_str(),
        reason,
    )
    .execute(&mut *conn)
    .await?;
    get(conn, id).await
}

/// Up to `limit` of the subscriptions of `face` scoped to `owner`'s `repository` (`''`:
/// owner-wide ones) after the first `offset`, by number (GitHub lists hooks by id), and how
/// many there are in all.
///
/// # Errors
/// Database errors.
pub async fn list_face(
    conn: &mut PgConnection,
    face: &str,
    owner: &str,
    repository: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<Subscription>, i64)> {
    let rows = sqlx::query_as!(
        Row,
        r#"
        SELECT id, number AS "number!", face, owner_name, repository_name,
               all_repositories, family, event_types, repository_filters, tag_filters,
               callback_url, format, format_options,
               sealed_auth_header IS NOT NULL AS "has_auth_header!",
               sealed_hub_secret IS NOT NULL AS "has_hub_secret!", skip_tls_verify,
               custom_headers, omit_standard_headers, no_retries, name, description, state,
               CASE state WHEN 'paused' THEN paused_time
                          WHEN 'disabled' THEN disabled_time END AS state_time,
               CASE state WHEN 'paused' THEN paused_reason
                          WHEN 'disabled' THEN disabled_reason END AS state_reason,
               create_time, update_time
        FROM webhooks
        WHERE owner_name = $1 AND repository_name = $2 AND face = $3
        ORDER BY number
        OFFSET $4 LIMIT $5
        "#,
        owner,
        repository,
        face,
        offset,
        limit,
    )
    .fetch_all(&mut *conn)
    .await?;
    let total = sqlx::query_scalar!(
        r#"
        SELECT count(*) AS "count!" FROM webhooks
        WHERE owner_name = $1 AND repository_name = $2 AND face = $3
        "#,
        owner,
        repository,
        face,
    )
    .fetch_one(conn)
    .await?;
    let hooks = rows
        .into_iter()
        .map(Row::into_subscription)
        .collect::<Result<_>>()?;
    Ok((hooks, total))
}

/// The subscription numbered `number`, if it exists.
///
/// # Errors
/// Database errors.
pub async fn get_by_number(conn: &mut PgConnection, number: i64) -> Result<Option<Subscription>> {
    let id = sqlx::query_scalar!(r#"SELECT id FROM webhooks WHERE number = $1"#, number)
        .fetch_optional(&mut *conn)
        .await?;
    match id {
        Some(id) => get(conn, WebhookId(id)).await,
        None => Ok(None),
    }
}
