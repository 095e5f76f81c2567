//! Server keys: random secrets made once per database and shared by every process on it.

use rand::RngCore as _;
use sqlx::PgConnection;

use crate::error::Result;

/// Returns the key called `name`, creating it at random on first use. Concurrent first
/// uses agree on one key (`ON CONFLICT DO NOTHING`, then read back).
pub async fn get_or_create(conn: &mut PgConnection, name: &str) -> Result<Vec<u8>> {
    let mut candidate = vec![0u8; 32];
    rand::rng().fill_bytes(&mut candidate);
    sqlx::query!(
        r#"
        INSERT INTO server_keys (name, key)
        VALUES ($1, $2)
        ON CONFLICT (name) DO NOTHING
        "#,
        name,
        candidate,
    )
    .execute(&mut *conn)
    .await?;
    let key = sqlx::query_scalar!(r#"SELECT key FROM server_keys WHERE name = $1"#, name)
        .fetch_one(&mut *conn)
        .await?;
    Ok(key)
}
