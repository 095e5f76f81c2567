//! The configuration file's webhooks (`[event_webhook.*]`, see
//! [`crate::domain::FileWebhooks`]): kept as subscriptions of face `file` and owner `''`
//! (migration 20261207000001), so that their deliveries are queued, claimed, retried and
//! recorded as every subscription's, and the native API and the delivery log show them
//! under their names; and the set publishing routes to, swapped whole when the file is
//! reloaded.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{FileWebhooks, Filters, LiveSet, LiveWebhook, WebhookId};
use crate::error::Result;
use crate::secret_box::SecretBox;

/// Why a webhook whose table left the file is disabled.
pub const REMOVED: &str = "removed from the configuration file";

/// The set a server's publishes route to, swapped whole when its file is reloaded: a
/// publish that read the old set finishes with it. Cheap to clone (one `Arc`); empty until
/// a file is loaded. Each server has its own (tests run several in one process).
#[derive(Debug, Clone, Default)]
pub struct Live(Arc<RwLock<Arc<LiveSet>>>);

impl Live {
    /// The current set.
    pub fn current(&self) -> Arc<LiveSet> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Makes `set` the current one.
    pub fn install(&self, set: LiveSet) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
    }
}

/// Stores `file`'s webhooks as subscriptions in one transaction (each upserted by name,
/// enabled again if it had been removed; those whose table is gone disabled) and returns
/// the set publishing routes to. The processes serving one file serialise their syncs on
/// an advisory lock, so each webhook keeps one id.
///
/// # Errors
/// Database errors; nothing is changed then.
pub async fn sync(
    conn: &mut PgConnection,
    file: &FileWebhooks,
    secrets: &SecretBox,
) -> Result<LiveSet> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('webhookd_file_webhooks'))")
        .execute(&mut *tx)
        .await?;
    let existing: HashMap<String, Uuid> =
        sqlx::query!("SELECT name, id FROM webhooks WHERE owner_name = '' AND face = 'file'")
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|r| (r.name, r.id))
            .collect();
    let mut webhooks = BTreeMap::new();
    for (name, webhook) in &file.webhooks {
        let id = existing.get(name).copied().unwrap_or_else(Uuid::now_v7);
        let auth = webhook
            .token
            .as_ref()
            .map(|t| secrets.seal(WebhookId(id), format!("Bearer {t}").as_bytes()));
        let events: Vec<String> = webhook.events.iter().map(|k| (*k).to_owned()).collect();
        sqlx::query!(
            r#"
            INSERT INTO webhooks AS w
                (id, owner_name, repository_name, event, callback_url, create_time,
                 update_time, face, family, event_types, all_repositories, repository_filters,
                 format, sealed_auth_header, omit_standard_headers, name, description,
                 file_policy, timeout_ms, max_retries)
            VALUES ($1, '', '', 0, $2, now(), now(), 'file', 'registry', $3, true, $4, 'angos',
                    $5, true, $6, 'the configuration file''s [event_webhook.' || $6 || ']',
                    $7, $8, $9)
            ON CONFLICT (owner_name, name) WHERE name <> '' DO UPDATE
            SET callback_url = EXCLUDED.callback_url, event_types = EXCLUDED.event_types,
                repository_filters = EXCLUDED.repository_filters,
                sealed_auth_header = EXCLUDED.sealed_auth_header,
                file_policy = EXCLUDED.file_policy, timeout_ms = EXCLUDED.timeout_ms,
                max_retries = EXCLUDED.max_retries, state = 'active', disabled_time = NULL,
                disabled_reason = NULL, update_time = now()
            "#,
            id,
            webhook.url,
            &events,
            &webhook.repository_filter,
            auth,
            name,
            webhook.policy.as_str(),
            i32::try_from(webhook.timeout_ms).unwrap_or(i32::MAX),
            i32::try_from(webhook.max_retries).unwrap_or(i32::MAX),
        )
        .execute(&mut *tx)
        .await?;
        webhooks.insert(
            name.clone(),
            Arc::new(LiveWebhook {
                definition: webhook.clone(),
                id,
                filter: Filters::stored(webhook.repository_filter.clone()),
            }),
        );
    }
    let names: Vec<String> = file.webhooks.keys().cloned().collect();
    sqlx::query!(
        r#"
        UPDATE webhooks
        SET state = 'disabled', disabled_time = now(), disabled_reason = $2, update_time = now()
        WHERE owner_name = '' AND face = 'file' AND state <> 'disabled' AND name <> ALL ($1)
        "#,
        &names,
        REMOVED,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(LiveSet {
        webhooks,
        global: file.global.clone(),
        repositories: file.repositories.clone(),
    })
}
