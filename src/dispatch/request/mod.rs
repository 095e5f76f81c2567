//! The request of one attempt: where it goes, its headers, its body and its signature, built
//! from a claimed delivery and its webhook's [`Target`]. This is where delivery formats plug
//! in: each is one file here and one arm of [`build`]'s match; sending the request is
//! [`super::attempt`]'s job and deciding what follows it [`super::retry`]'s.
//!
//! One stored event is rendered here for each subscriber in its own format, at delivery
//! time. Every format gets the subscription's custom headers, its `Authorization` header (but
//! Slack and Teams, whose URLs are the credential) and, unless the subscription turns them
//! off, the Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`), signed over the body sent.

mod angos;
mod chat;
mod connect;
mod github;
mod harbor;
mod json;
mod registry;

use std::time::Duration;

pub use self::angos::signature as angos_signature;

use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::domain::{
    FACE_GITHUB, FileRetries, Format, FormatOptions, LiveWebhook, WebhookId, header_record,
};
use crate::secret_box::SecretBox;
use crate::signing::{SigningSecret, signature_header};
use crate::store::queue::{ClaimTarget, ClaimedDelivery};

/// The event type of a ping (see `store::events::ping`).
pub const PING: &str = "ping";

/// A claimed webhook's target, ready for its attempts: the callback URL parsed and the
/// secrets opened once per claim rather than once per delivery.
#[derive(Debug)]
pub struct Target {
    /// The webhook's id.
    id: WebhookId,
    /// The callback URL, or why it does not parse (recorded on each attempt).
    url: Result<reqwest::Url, String>,
    /// Newest first.
    secrets: Vec<SigningSecret>,
    format: Format,
    options: FormatOptions,
    /// The `Authorization` header, opened.
    auth_header: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    standard_headers: bool,
    skip_tls_verify: bool,
    number: i64,
    owner: String,
    repository: String,
    all_repositories: bool,
    event_types: Vec<String>,
    name: String,
    /// How the `github` format signs.
    hub_key: HubKey,
    /// Attempt each delivery once.
    pub no_retries: bool,
    /// GitHub's `X-GitHub-Hook-Installation-Target-ID`: a stable number for the repository
    /// (or the owner, for an owner-wide hook), which webhookd has no numeric id of.
    installation_target_id: i64,
    /// The CloudEvents `source` of a Harbor policy's target.
    harbor_source: Option<String>,
    /// A configuration file webhook's timeout and retries.
    pub file_retries: Option<FileRetries>,
}

/// The key of the `github` format's `X-Hub-Signature` headers.
#[derive(Debug)]
enum HubKey {
    /// The hook's secret (GitHub's `config.secret`), opened.
    Secret(String),
    /// None: a GitHub hook without a secret is sent unsigned, as GitHub sends it.
    Unsigned,
    /// The signing secret's text (a native subscription in the `github` format).
    SigningSecret,
}

impl Target {
    /// Parses the URL and opens the secrets and auth header of claimed `webhook`.
    ///
    /// # Errors
    /// When a secret cannot be opened with this server's key, or is malformed, or the
    /// stored format is unknown to this build.
    pub fn open(
        webhook: WebhookId,
        stored: ClaimTarget,
        secret_box: &SecretBox,
    ) -> anyhow::Result<Self> {
        let secrets = stored
            .sealed_secrets
            .iter()
            .map(|sealed| {
                let text = String::from_utf8(secret_box.open(webhook, sealed)?)?;
                SigningSecret::parse(&text)
                    .ok_or_else(|| anyhow::anyhow!("stored signing secret is malformed"))
            })
            .collect::<anyhow::Result<_>>()?;
        let url = reqwest::Url::parse(&stored.callback_url)
            .map_err(|e| format!("invalid callback URL: {e}"));
        let render = stored.render;
        let format = match render.format.as_str() {
            "" => Format::Connect,
            name => Format::from_stored(name)
                .ok_or_else(|| anyhow::anyhow!("stored format {name:?} is unknown"))?,
        };
        let auth_header = render
            .sealed_auth_header
            .as_ref()
            .map(|sealed| -> anyhow::Result<String> {
                Ok(String::from_utf8(secret_box.open(webhook, sealed)?)?)
            })
            .transpose()?;
        let hub_key = match &render.sealed_hub_secret {
            Some(sealed) => HubKey::Secret(String::from_utf8(secret_box.open(webhook, sealed)?)?),
            None if render.face == FACE_GITHUB => HubKey::Unsigned,
            None => HubKey::SigningSecret,
        };
        let pairs: Vec<(String, String)> = render
            .custom_headers
            .and_then(|h| serde_json::from_value(h).ok())
            .unwrap_or_default();
        let headers = pairs
            .into_iter()
            .filter_map(|(name, value)| {
                Some((
                    HeaderName::from_bytes(name.as_bytes()).ok()?,
                    HeaderValue::try_from(value).ok()?,
                ))
            })
            .collect();
        Ok(Self {
            id: webhook,
            url,
            secrets,
            format,
            options: render
                .format_options
                .and_then(|o| serde_json::from_value(o).ok())
                .unwrap_or_default(),
            auth_header,
            headers,
            standard_headers: !render.omit_standard_headers,
            skip_tls_verify: render.skip_tls_verify,
            number: render.number,
            all_repositories: render.all_repositories,
            event_types: render.event_types,
            name: render.name,
            hub_key,
            no_retries: render.no_retries,
            harbor_source: render.harbor_source,
            file_retries: render.file_retries,
            // Hashed only for the format that sends it: this runs for every webhook of
            // every claim.
            installation_target_id: if format == Format::GitHub {
                installation_target_id(
                    &stored.owner,
                    if render.all_repositories {
                        ""
                    } else {
                        &render.repository
                    },
                )
            } else {
                0
            },
            owner: stored.owner,
            repository: render.repository,
        })
    }
}

impl Target {
    /// The target of a configuration file webhook delivered at publish time, from its
    /// definition (the stored row is its copy): Angos's format, its token as the Bearer
    /// header and HMAC key, its timeout and retries.
    pub fn file(webhook: &LiveWebhook) -> Self {
        let definition = &webhook.definition;
        Self {
            id: WebhookId(webhook.id),
            url: reqwest::Url::parse(&definition.url)
                .map_err(|e| format!("invalid callback URL: {e}")),
            secrets: Vec::new(),
            format: Format::Angos,
            options: FormatOptions::default(),
            auth_header: definition.token.as_ref().map(|t| format!("Bearer {t}")),
            headers: Vec::new(),
            standard_headers: false,
            skip_tls_verify: false,
            number: 0,
            owner: String::new(),
            repository: String::new(),
            all_repositories: true,
            event_types: definition.events.iter().map(|k| (*k).to_owned()).collect(),
            name: definition.name.clone(),
            hub_key: HubKey::SigningSecret,
            no_retries: false,
            installation_target_id: 0,
            harbor_source: None,
            file_retries: Some(definition.retries()),
        }
    }

    /// The metrics' `event` label of a delivery of an event of stored type `event_type`
    /// (part `part`): in the Angos format, the Angos kind sent, as Angos labels it.
    pub fn event_label(&self, event_type: &str, part: i16) -> &'static str {
        match self.format {
            Format::Angos => crate::domain::angos_kind(event_type, part)
                .unwrap_or_else(|| crate::metrics::event_label(event_type)),
            _ => crate::metrics::event_label(event_type),
        }
    }
}

/// A stable positive number below 2^53 (JavaScript-safe) for `owner/repository` (or
/// `owner`): the first bytes of its SHA-256.
fn installation_target_id(owner: &str, repository: &str) -> i64 {
    use sha2::Digest as _;
    let name = if repository.is_empty() {
        owner.to_owned()
    } else {
        format!("{owner}/{repository}")
    };
    let digest = sha2::Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::try_from(u64::from_be_bytes(bytes) >> 11)
        .unwrap_or(0)
        .max(1)
}

/// One attempt's HTTP request, ready to send.
#[derive(Debug)]
pub struct Request {
    /// Where it goes.
    pub url: reqwest::Url,
    /// Its headers, signature included.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Vec<u8>,
    /// Send without verifying the listener's TLS certificate.
    pub skip_tls_verify: bool,
    /// The body is the event's stored payload, as is (the BSR's Connect path).
    pub body_is_payload: bool,
    /// The headers as the attempt's record keeps them: secrets masked (see [`masked`]).
    pub recorded_headers: Vec<u8>,
    /// Its own timeout, instead of the client's (a configuration file webhook's).
    pub timeout: Option<Duration>,
}

/// What a renderer makes: the format's own headers and the body.
pub(super) struct Rendered {
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Rendered {
    fn new(content_type: &'static str, body: Vec<u8>) -> Self {
        let mut headers = HeaderMap::with_capacity(8);
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        Self { headers, body }
    }
}

/// What every renderer reads.
pub(super) struct Rendering<'a> {
    delivery: &'a ClaimedDelivery,
    target: &'a Target,
    sent_at: DateTime<Utc>,
}

impl Rendering<'_> {
    /// Whether this delivery is a ping with nothing published in it.
    fn is_ping(&self) -> bool {
        self.delivery.event.event_type == PING && self.delivery.payload.is_empty()
    }
}

/// Builds the request of an attempt of `delivery` to `target`, starting at `sent_at` with
/// `timeout` to answer.
///
/// # Errors
/// Why there is nothing to send (the callback URL does not parse, the stored event cannot
/// be rendered in the format), to record as the attempt's error.
pub fn build(
    delivery: ClaimedDelivery,
    target: &Target,
    sent_at: DateTime<Utc>,
    timeout: Duration,
) -> Result<Request, String> {
    let url = target.url.clone()?;
    let id = delivery.id.to_string();
    let plain_connect = target.format == Format::Connect && !target.options.connect_json;
    // Whether the body is the event's stored payload byte for byte (the BSR's Connect
    // path; a GitHub hook's JSON): then the delivery log keeps no second copy of it.
    let mut body_is_payload = plain_connect;
    let Rendered { mut headers, body } = if plain_connect {
        // The BSR's path, unchanged: the stored EventRequest as is (moved, not copied).
        connect::render(delivery.payload, timeout)
    } else {
        let rendering = Rendering {
            delivery: &delivery,
            target,
            sent_at,
        };
        let rendered = match target.format {
            Format::Connect => connect::render_json(&rendering, timeout)?,
            Format::Json => json::render(&rendering)?,
            Format::GitHub => github::render(&rendering)?,
            Format::Harbor => harbor::render(&rendering, harbor::Shape::Default)?,
            Format::CloudEvents => harbor::render(&rendering, harbor::Shape::CloudEvents)?,
            Format::Angos => angos::render(&rendering)?,
            Format::Slack => chat::render(&rendering, chat::App::Slack)?,
            Format::Teams => chat::render(&rendering, chat::App::Teams)?,
        };
        body_is_payload = rendered.body == delivery.payload;
        rendered
    };
    for (name, value) in &target.headers {
        headers.insert(name.clone(), value.clone());
    }
    let chat = matches!(target.format, Format::Slack | Format::Teams);
    if let Some(auth) = target.auth_header.as_ref().filter(|_| !chat)
        && let Ok(value) = HeaderValue::try_from(auth.as_str())
    {
        headers.insert(http::header::AUTHORIZATION, value);
    }
    if target.standard_headers {
        let timestamp = sent_at.timestamp();
        let signature = signature_header(&target.secrets, &id, timestamp, &body);
        headers.insert("webhook-id", text(id.clone()));
        headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
        headers.insert("webhook-signature", text(signature));
    }
    let context = header_record::Context {
        delivery_id: &id,
        start_seconds: sent_at.timestamp(),
    };
    let recorded_headers = record_headers(&headers, target, context);
    Ok(Request {
        url,
        headers,
        body,
        skip_tls_verify: target.skip_tls_verify,
        body_is_payload,
        recorded_headers,
        timeout: target.file_retries.map(|f| f.timeout),
    })
}

/// `headers` as the record keeps them, with the client's `User-Agent` when the format sets
/// none; the values of [`masked`] headers hidden.
fn record_headers(
    headers: &HeaderMap,
    target: &Target,
    context: header_record::Context<'_>,
) -> Vec<u8> {
    let agent = (!headers.contains_key(http::header::USER_AGENT)).then_some((
        http::header::USER_AGENT.as_str(),
        super::attempt::USER_AGENT.as_bytes(),
    ));
    let sent = headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
    header_record::encode(
        sent.chain(agent),
        |name| masked(name, target),
        context,
        usize::MAX,
    )
}

/// Whether header `name` is a secret the record must not show: credentials
/// (`Authorization`, `Proxy-Authorization`, `Cookie`) and the subscription's own headers,
/// which often carry them (an API key, a shared token).
fn masked(name: &str, target: &Target) -> bool {
    ["authorization", "proxy-authorization", "cookie"].contains(&name)
        || target
            .headers
            .iter()
            .any(|(custom, _)| custom.as_str() == name)
}

/// A header value of text made of visible ASCII (a UUID, base64 signatures, hex digests).
fn text(value: String) -> HeaderValue {
    HeaderValue::try_from(value).expect("UUIDs, digests and base64 are valid header values")
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
