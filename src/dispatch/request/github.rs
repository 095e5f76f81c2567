//! GitHub's delivery format (sections A.2 and A.3 of the reference facts): the event's
//! payload as `application/json`, or as a form (`payload=<the JSON>`), with GitHub's headers
//! and both signatures over the body sent, keyed with the hook's secret (GitHub's
//! `config.secret`; a GitHub hook without one is sent unsigned, as GitHub does), or for a
//! native subscription without one its signing secret (the whole `whsec_...` text, as a
//! receiver configured with it computes them). A ping carries
//! GitHub's ping payload: a zen line, the hook id and the hook.

use hmac::{Hmac, Mac as _};
use http::HeaderValue;
use sha1::Sha1;
use sha2::Sha256;

use super::{HubKey, PING, Rendered, Rendering, hex, text};
use crate::domain::{Family, GitHubContentType};

/// GitHub's `User-Agent` always begins so; receivers check it.
pub const USER_AGENT: &str = concat!("GitHub-Hookshot/webhookd-", env!("CARGO_PKG_VERSION"));

/// Lines of GitHub's zen, one of which a ping carries.
const ZEN: &[&str] = &[
    "Design for failure.",
    "Keep it logically awesome.",
    "Responsive is better than fast.",
    "Practicality beats purity.",
    "Non-blocking is better than blocking.",
    "Approachable is better than simple.",
];

/// The GitHub request of a delivery.
pub fn render(rendering: &Rendering<'_>) -> Result<Rendered, String> {
    let delivery = rendering.delivery;
    let target = rendering.target;
    let (event, json) = if rendering.is_ping() {
        (PING, ping_payload(rendering))
    } else if delivery.event.family == Family::GitHub {
        (delivery.event.event_type.as_str(), delivery.payload.clone())
    } else {
        return Err(format!(
            "a {} event cannot be rendered in the github format",
            delivery.event.family.as_str()
        ));
    };
    let form = target.options.github_content_type == GitHubContentType::Form;
    let mut rendered = if form {
        let json = String::from_utf8(json).map_err(|e| e.to_string())?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &json)
            .finish();
        Rendered::new("application/x-www-form-urlencoded", body.into_bytes())
    } else {
        Rendered::new("application/json", json)
    };
    let headers = &mut rendered.headers;
    headers.insert("user-agent", HeaderValue::from_static(USER_AGENT));
    headers.insert("accept", HeaderValue::from_static("*/*"));
    headers.insert(
        "x-github-event",
        HeaderValue::try_from(event).map_err(|e| e.to_string())?,
    );
    headers.insert("x-github-delivery", text(delivery.event.id.to_string()));
    headers.insert("x-github-hook-id", HeaderValue::from(target.number));
    headers.insert(
        "x-github-hook-installation-target-id",
        HeaderValue::from(target.installation_target_id),
    );
    headers.insert(
        "x-github-hook-installation-target-type",
        HeaderValue::from_static(if target.all_repositories {
            "organization"
        } else {
            "repository"
        }),
    );
    let key = match &target.hub_key {
        HubKey::Secret(secret) => Some(secret.as_bytes()),
        HubKey::Unsigned => None,
        HubKey::SigningSecret => target.secrets.first().map(|s| s.expose().as_bytes()),
    };
    if let Some(key) = key {
        let mut sha1 = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key");
        sha1.update(&rendered.body);
        let mut sha256 = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
        sha256.update(&rendered.body);
        let headers = &mut rendered.headers;
        headers.insert(
            "x-hub-signature",
            text(format!("sha1={}", hex(&sha1.finalize().into_bytes()))),
        );
        headers.insert(
            "x-hub-signature-256",
            text(format!("sha256={}", hex(&sha256.finalize().into_bytes()))),
        );
    }
    Ok(rendered)
}

/// GitHub's ping payload for this hook.
fn ping_payload(rendering: &Rendering<'_>) -> Vec<u8> {
    let target = rendering.target;
    let url = target.url.as_ref().map_or("", |u| u.as_str());
    let events: Vec<&str> = if target.event_types.is_empty() {
        vec!["*"]
    } else {
        target.event_types.iter().map(String::as_str).collect()
    };
    let content_type = match target.options.github_content_type {
        GitHubContentType::Json => "json",
        GitHubContentType::Form => "form",
    };
    let zen = ZEN[usize::try_from(target.number.rem_euclid(ZEN.len() as i64)).unwrap_or(0)];
    let mut payload = serde_json::json!({
        "zen": zen,
        "hook_id": target.number,
        "hook": {
            "type": if target.all_repositories { "Organization" } else { "Repository" },
            "id": target.number,
            "name": "web",
            "active": true,
            "events": events,
            "config": {
                "content_type": content_type,
                "insecure_ssl": if target.skip_tls_verify { "1" } else { "0" },
                "url": url,
            },
        },
    });
    let owner = serde_json::json!({ "login": target.owner });
    if target.all_repositories {
        payload["organization"] = owner;
    } else {
        payload["repository"] = serde_json::json!({
            "name": target.repository,
            "full_name": format!("{}/{}", target.owner, target.repository),
            "owner": owner,
        });
    }
    serde_json::to_vec(&payload).expect("a ping serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's documented test vector (reference facts, A.2).
    #[test]
    fn signs_githubs_test_vector() {
        let key = b"It's a Secret to Everybody";
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(b"Hello, World!");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let mut mac = Hmac::<Sha1>::new_from_slice(key).unwrap();
        mac.update(b"Hello, World!");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "01dc10d0c83e72ed246219cdd91669667fe2ca59"
        );
    }
}
