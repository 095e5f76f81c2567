//! One HTTP attempt of a delivery: a signed Connect unary POST of the stored `EventRequest`.
//! A listener's failure is an [`Outcome`], never an `Err`: it is recorded like any answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::retry::Outcome;
use crate::domain::{AttemptRecord, ClaimTarget, ClaimedDelivery, is_internal_ip};
use crate::secret_box::SecretBox;
use crate::signing::{SigningSecret, signature_header};

/// How much of a response body is kept in the attempt record.
pub const MAX_RECORDED_BODY: usize = 4096;

/// Builds the delivery HTTP client: no redirects, a whole-attempt timeout, and (unless
/// insecure mode) a resolver that refuses internal addresses after DNS resolution.
///
/// # Errors
/// When the TLS stack cannot be set up.
pub fn client(timeout: Duration, allow_internal: bool) -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("webhookd/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(GuardedResolver { allow_internal }))
        .build()?)
}

/// Resolves names, then drops internal addresses unless insecure mode allows them, so that
/// a public-looking name cannot point webhookd at the inside of its own network.
struct GuardedResolver {
    allow_internal: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_internal = self.allow_internal;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| allow_internal || !is_internal_ip(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(format!(
                    "{host} resolves only to loopback, private or otherwise internal addresses; refused \
                     (start the server with --allow-insecure-callbacks to allow it)"
                )
                .into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// A claimed webhook's target, ready for its attempts: the callback URL parsed and the
/// secrets opened once per claim rather than once per delivery.
#[derive(Debug)]
pub struct Target {
    /// The callback URL, or why it does not parse (recorded on each attempt).
    url: Result<reqwest::Url, String>,
    secrets: Vec<SigningSecret>,
}

impl Target {
    /// Parses the URL and opens the secrets of a claimed webhook.
    ///
    /// # Errors
    /// When a secret cannot be opened with this server's key, or is malformed.
    pub fn open(stored: &ClaimTarget, secret_box: &SecretBox) -> anyhow::Result<Self> {
        let secrets = stored
            .sealed_secrets
            .iter()
            .map(|sealed| {
                let text = String::from_utf8(secret_box.open(sealed)?)?;
                SigningSecret::parse(&text)
                    .ok_or_else(|| anyhow::anyhow!("stored signing secret is malformed"))
            })
            .collect::<anyhow::Result<_>>()?;
        let url = reqwest::Url::parse(&stored.callback_url)
            .map_err(|e| format!("invalid callback URL: {e}"));
        Ok(Self { url, secrets })
    }
}

/// Sends one attempt and describes what happened.
pub async fn send(
    client: &reqwest::Client,
    delivery: ClaimedDelivery,
    target: &Target,
    timeout: Duration,
    allow_internal: bool,
) -> (AttemptRecord, Outcome) {
    let start_time = Utc::now();
    let started = Instant::now();
    let mut record = AttemptRecord {
        start_time,
        ..AttemptRecord::default()
    };
    let result = post(
        client,
        delivery,
        target,
        timeout,
        allow_internal,
        &mut record,
    )
    .await;
    record.duration_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => {
            record.error = Some(error);
            Outcome::Failure { retry_after: None }
        }
    };
    (record, outcome)
}

async fn post(
    client: &reqwest::Client,
    delivery: ClaimedDelivery,
    target: &Target,
    timeout: Duration,
    allow_internal: bool,
    record: &mut AttemptRecord,
) -> Result<Outcome, String> {
    let url = target.url.clone()?;
    if !allow_internal
        && let Some(ip) = literal_ip(&url)
        && is_internal_ip(ip)
    {
        return Err(format!(
            "{ip} is an internal address; refused (start the server with --allow-insecure-callbacks to allow it)"
        ));
    }
    let id = delivery.id.to_string();
    let timestamp = record.start_time.timestamp();
    let response = client
        .post(url)
        .header("content-type", "application/proto")
        .header("connect-protocol-version", "1")
        .header("connect-timeout-ms", timeout.as_millis().to_string())
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            signature_header(&target.secrets, &id, timestamp, &delivery.payload),
        )
        .body(delivery.payload)
        .send()
        .await
        .map_err(describe)?;
    let status = response.status();
    record.http_status = Some(i32::from(status.as_u16()));
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let is_json = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let body = read_prefix(response).await;
    if !status.is_success() && is_json {
        record.connect_code = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_owned));
    }
    record.response_body = Some(body);
    Ok(if status.is_success() {
        Outcome::Success
    } else if status == reqwest::StatusCode::GONE {
        Outcome::Gone
    } else {
        Outcome::Failure { retry_after }
    })
}

/// The IP of a URL whose host is an address literal.
fn literal_ip(url: &reqwest::Url) -> Option<std::net::IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(ip.into()),
        url::Host::Ipv6(ip) => Some(ip.into()),
        url::Host::Domain(_) => None,
    }
}

/// Reads at most [`MAX_RECORDED_BODY`] bytes and drops the rest unread: a listener that
/// answers with a gigabyte costs 4 KiB.
async fn read_prefix(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < MAX_RECORDED_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk[..chunk.len().min(MAX_RECORDED_BODY - body.len())])
            }
            Ok(None) | Err(_) => break,
        }
    }
    body
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value.trim()).ok()?;
    (date.with_timezone(&Utc) - Utc::now()).to_std().ok()
}

/// A network error with its causes, for the attempt record.
fn describe(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_retry_after_in_both_forms() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        let later = (Utc::now() + chrono::TimeDelta::seconds(90)).to_rfc2822();
        let parsed = parse_retry_after(&later).expect("date");
        assert!(parsed > Duration::from_secs(80) && parsed <= Duration::from_secs(90));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
