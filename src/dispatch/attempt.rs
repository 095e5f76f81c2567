//! Sending one attempt's request (built by [`super::request`]) with the guarded client, and
//! recording the answer. A listener's failure is recorded like any answer, never an `Err`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::request::Request;
use crate::domain::{AttemptRecord, is_internal_ip};

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

/// Sends one attempt's request, started at `start_time`, and records what happened; also
/// returns the listener's `Retry-After`, if it sent one. A listener's failure (an error
/// status, a timeout, a refused connection) is in the record, never an `Err`.
pub async fn send(
    client: &reqwest::Client,
    request: Request,
    allow_internal: bool,
    start_time: DateTime<Utc>,
) -> (AttemptRecord, Option<Duration>) {
    let started = Instant::now();
    let mut record = AttemptRecord {
        start_time,
        ..AttemptRecord::default()
    };
    let retry_after = match post(client, request, allow_internal, &mut record).await {
        Ok(retry_after) => retry_after,
        Err(error) => {
            record.error = Some(error);
            None
        }
    };
    record.duration_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    (record, retry_after)
}

/// POSTs `request` and reads the answer into `record`; the answer's `Retry-After`.
async fn post(
    client: &reqwest::Client,
    request: Request,
    allow_internal: bool,
    record: &mut AttemptRecord,
) -> Result<Option<Duration>, String> {
    if !allow_internal
        && let Some(ip) = literal_ip(&request.url)
        && is_internal_ip(ip)
    {
        return Err(format!(
            "{ip} is an internal address; refused (start the server with --allow-insecure-callbacks to allow it)"
        ));
    }
    let response = client
        .post(request.url)
        .headers(request.headers)
        .body(request.body)
        .send()
        .await
        .map_err(describe)?;
    let status = response.status();
    record.http_status = Some(i32::from(status.as_u16()));
    let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok());
    let retry_after = header("retry-after").and_then(parse_retry_after);
    let is_json = header("content-type").is_some_and(|t| t.starts_with("application/json"));
    let body = read_prefix(response).await;
    if !status.is_success() && is_json {
        record.connect_code = connect_code(&body);
    }
    record.response_body = Some(body);
    Ok(retry_after)
}

/// The `code` of a Connect error body.
fn connect_code(body: &[u8]) -> Option<String> {
    let error: serde_json::Value = serde_json::from_slice(body).ok()?;
    error.get("code")?.as_str().map(str::to_owned)
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
