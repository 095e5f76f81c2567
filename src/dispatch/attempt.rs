//! Sending one attempt's request (built by [`super::request`]) with the guarded client, and
//! recording the answer. A listener's failure is recorded like any answer, never an `Err`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::request::Request;
use crate::domain::{AttemptRecord, RecordedRequest, is_internal_ip};

/// How much of a response body is kept in the attempt record.
pub const MAX_RECORDED_BODY: usize = 4096;
/// How much of a response's headers is kept in the attempt record (encoded; whole headers).
pub const MAX_RECORDED_HEADERS: usize = 16 * 1024;
/// The `User-Agent` of every request whose format sets none.
pub const USER_AGENT: &str = concat!("webhookd/", env!("CARGO_PKG_VERSION"));

/// Builds the delivery HTTP client: no redirects, a whole-attempt timeout, (unless insecure
/// mode) a resolver that refuses internal addresses after DNS resolution, and no proxy but
/// `proxy`: proxy variables in the environment are ignored, since through a proxy the
/// resolver would only ever see the proxy's address (see [`Guard`]). Without `verify_tls`,
/// listeners' certificates are not verified (the address guard still applies).
///
/// # Errors
/// When the TLS stack cannot be set up, or the proxy URL is unusable.
pub fn client(
    timeout: Duration,
    allow_internal: bool,
    proxy: Option<&url::Url>,
    verify_tls: bool,
) -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = reqwest::Client::builder()
        .danger_accept_invalid_certs(!verify_tls)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(USER_AGENT)
        .dns_resolver(Arc::new(GuardedResolver {
            allow_internal,
            proxy_host: proxy.and_then(|p| p.host_str()).map(str::to_owned),
        }));
    let builder = match proxy {
        Some(proxy) => builder.proxy(reqwest::Proxy::all(proxy.as_str())?),
        None => builder.no_proxy(),
    };
    Ok(builder.build()?)
}

/// How an attempt is kept off internal addresses.
#[derive(Debug, Clone, Copy)]
pub struct Guard {
    /// Insecure mode (`--allow-insecure-callbacks`): no check at all.
    pub allow_internal: bool,
    /// Deliveries go through `--delivery-proxy`: the client's resolver sees only the
    /// proxy, so the callback's host is resolved and checked here first.
    pub proxied: bool,
}

impl Guard {
    /// Why `url` must not be attempted, if it must not: its host is an internal address,
    /// or (through a proxy) resolves only to such addresses, or not at all.
    async fn refuses(self, url: &reqwest::Url) -> Option<String> {
        if self.allow_internal {
            return None;
        }
        if let Some(ip) = literal_ip(url) {
            return is_internal_ip(ip).then(|| {
                format!(
                    "{ip} is an internal address; refused (start the server with --allow-insecure-callbacks to allow it)"
                )
            });
        }
        if !self.proxied {
            return None; // GuardedResolver checks at connection time.
        }
        let host = url.host_str()?;
        match resolve_external(host).await {
            Ok(_) => None,
            Err(why) => Some(format!(
                "{why} (checked before handing it to --delivery-proxy)"
            )),
        }
    }
}

/// The external addresses `host` resolves to; an error when there are none.
async fn resolve_external(host: &str) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| format!("{host} does not resolve: {e}"))?
        .filter(|a| !is_internal_ip(a.ip()))
        .collect();
    if addrs.is_empty() {
        return Err(format!(
            "{host} resolves only to loopback, private or otherwise internal addresses; refused \
             (start the server with --allow-insecure-callbacks to allow it)"
        ));
    }
    Ok(addrs)
}

/// Resolves names, then drops internal addresses unless insecure mode allows them, so that
/// a public-looking name cannot point webhookd at the inside of its own network. The
/// operator's `--delivery-proxy` is trusted wherever it is.
struct GuardedResolver {
    allow_internal: bool,
    proxy_host: Option<String>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_internal =
            self.allow_internal || self.proxy_host.as_deref() == Some(name.as_str());
        Box::pin(async move {
            let host = name.as_str();
            let addrs: Vec<SocketAddr> = if allow_internal {
                tokio::net::lookup_host((host, 0)).await?.collect()
            } else {
                resolve_external(host).await?
            };
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Sends one attempt's request, started at `start_time`, and records what happened; also
/// returns the listener's `Retry-After`, if it sent one. A listener's failure (an error
/// status, a timeout, a refused connection) is in the record, never an `Err`.
pub async fn send(
    client: &reqwest::Client,
    request: Request,
    guard: Guard,
    start_time: DateTime<Utc>,
) -> (AttemptRecord, Option<Duration>) {
    let started = Instant::now();
    let mut record = AttemptRecord {
        start_time,
        ..AttemptRecord::default()
    };
    let retry_after = match post(client, request, guard, &mut record).await {
        Ok(retry_after) => retry_after,
        Err(error) => {
            record.error = Some(error);
            None
        }
    };
    record.duration_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    (record, retry_after)
}

/// [`send`], keeping in the record the request sent: its headers (secrets masked) and the
/// first `record_bytes` of its body (none when the body is the event's stored payload).
pub async fn send_recorded(
    client: &reqwest::Client,
    mut request: Request,
    guard: Guard,
    start_time: DateTime<Utc>,
    record_bytes: usize,
) -> (AttemptRecord, Option<Duration>) {
    let body = &request.body;
    let recorded = RecordedRequest {
        headers: std::mem::take(&mut request.recorded_headers),
        body: (!request.body_is_payload).then(|| body[..body.len().min(record_bytes)].to_vec()),
        body_size: i32::try_from(body.len()).unwrap_or(i32::MAX),
    };
    let (mut record, retry_after) = send(client, request, guard, start_time).await;
    record.request = Some(recorded);
    (record, retry_after)
}

/// POSTs `request` and reads the answer into `record`; the answer's `Retry-After`.
async fn post(
    client: &reqwest::Client,
    request: Request,
    guard: Guard,
    record: &mut AttemptRecord,
) -> Result<Option<Duration>, String> {
    if let Some(why) = guard.refuses(&request.url).await {
        return Err(why);
    }
    let mut post = client
        .post(request.url)
        .headers(request.headers)
        .body(request.body);
    if let Some(timeout) = request.timeout {
        post = post.timeout(timeout);
    }
    let response = post.send().await.map_err(describe)?;
    let status = response.status();
    record.http_status = Some(i32::from(status.as_u16()));
    // Decoded with the request's context: the delivery id marker is never used here.
    let context = crate::domain::header_record::Context {
        delivery_id: "",
        start_seconds: record.start_time.timestamp(),
    };
    record.response_headers = Some(crate::domain::header_record::encode(
        response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes())),
        |_| false,
        context,
        MAX_RECORDED_HEADERS,
    ));
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

/// A listener's `Retry-After` as seconds or an HTTP date; `None` when it is neither (or a
/// date in the past).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
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
