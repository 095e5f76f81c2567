//! The request of one attempt: where it goes, its headers, its body and its signature, built
//! from a claimed delivery and its webhook's [`Target`]. This is where delivery formats plug
//! in: each is one file here and one arm of [`Format`]; sending the request is
//! [`super::attempt`]'s job and deciding what follows it [`super::retry`]'s.

mod connect;

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::WebhookId;
use crate::secret_box::SecretBox;
use crate::signing::SigningSecret;
use crate::store::queue::{ClaimTarget, ClaimedDelivery};

/// How a webhook's deliveries are rendered on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The BSR's: a Connect unary `application/proto` POST of the stored `EventRequest`,
    /// signed the Standard Webhooks way ([`connect`]).
    Connect,
}

/// A claimed webhook's target, ready for its attempts: the callback URL parsed and the
/// secrets opened once per claim rather than once per delivery.
#[derive(Debug)]
pub struct Target {
    /// The callback URL, or why it does not parse (recorded on each attempt).
    url: Result<reqwest::Url, String>,
    secrets: Vec<SigningSecret>,
    format: Format,
}

impl Target {
    /// Parses the URL and opens the secrets of claimed `webhook`.
    ///
    /// # Errors
    /// When a secret cannot be opened with this server's key, or is malformed.
    pub fn open(
        webhook: WebhookId,
        stored: &ClaimTarget,
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
        Ok(Self {
            url,
            secrets,
            format: Format::Connect,
        })
    }
}

/// One attempt's HTTP request, ready to send.
#[derive(Debug)]
pub struct Request {
    /// Where it goes.
    pub url: reqwest::Url,
    /// Its headers, signature included.
    pub headers: http::HeaderMap,
    /// Its body.
    pub body: Vec<u8>,
}

/// Builds the request of an attempt of `delivery` to `target`, starting at `sent_at` with
/// `timeout` to answer.
///
/// # Errors
/// Why there is nothing to send (the callback URL does not parse), to record as the
/// attempt's error.
pub fn build(
    delivery: ClaimedDelivery,
    target: &Target,
    sent_at: DateTime<Utc>,
    timeout: Duration,
) -> Result<Request, String> {
    let url = target.url.clone()?;
    let (headers, body) = match target.format {
        Format::Connect => connect::render(delivery, &target.secrets, sent_at, timeout),
    };
    Ok(Request { url, headers, body })
}
