//! A subscription: events of one family, of one repository or all of an owner's, matched by
//! event type and filters, delivered to one URL in one format. BSR webhooks are
//! subscriptions managed by the BSR's API (`face` `bsr`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{CallbackUrl, Family, Format, OwnerName, RepositoryName, WebhookId};
use crate::error::{Error, Result};

/// The most regular expressions in each of a subscription's filter lists.
pub const MAX_FILTERS: usize = 10;
/// The longest regular expression accepted, in bytes.
pub const MAX_PATTERN_BYTES: usize = 256;
/// The most memory one compiled filter may take (the `regex` crate's size limit): a pattern
/// that would compile larger is refused, so no filter can make publishing slow.
pub const MAX_COMPILED_FILTER_BYTES: usize = 64 * 1024;
/// The most event types a subscription lists.
pub const MAX_EVENT_TYPES: usize = 100;
/// The most custom headers a subscription sends.
pub const MAX_HEADERS: usize = 10;
/// The longest custom header value, and the longest auth header, in bytes.
pub const MAX_HEADER_VALUE_BYTES: usize = 4096;
/// The longest subscription name, in characters.
pub const MAX_SUBSCRIPTION_NAME_CHARS: usize = 100;
/// The longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1000;

/// Where a subscription's deliveries stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionState {
    /// Queued and delivered.
    Active,
    /// Queued and held.
    Paused,
    /// Nothing queued.
    Disabled,
}

impl SubscriptionState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionState::Active => "active",
            SubscriptionState::Paused => "paused",
            SubscriptionState::Disabled => "disabled",
        }
    }

    /// The state of a stored name.
    pub fn from_stored(name: &str) -> Option<Self> {
        [Self::Active, Self::Paused, Self::Disabled]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// How GitHub-format deliveries send their body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GitHubContentType {
    /// `application/json`.
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`, `payload=<the JSON>`.
    Form,
}

impl GitHubContentType {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// A format's options (stored as JSON; defaults left out, so that a format without
/// options stores `{}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FormatOptions {
    /// Connect: send Connect JSON instead of `application/proto`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub connect_json: bool,
    /// GitHub: the body's content type.
    #[serde(default, skip_serializing_if = "GitHubContentType::is_default")]
    pub github_content_type: GitHubContentType,
}

/// A list of regular expressions, OR-matched; empty matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    patterns: Vec<String>,
    compiled: Option<regex::RegexSet>,
}

impl Filters {
    /// Compiles `patterns` (from field `field`), each at most [`MAX_PATTERN_BYTES`] and
    /// [`MAX_COMPILED_FILTER_BYTES`] compiled, at most [`MAX_FILTERS`] of them.
    ///
    /// # Errors
    /// `InvalidArgument` naming the field, the pattern's index and the problem.
    pub fn parse(field: &str, patterns: &[String]) -> Result<Self> {
        let invalid = |why: String| Err(Error::InvalidArgument(format!("{field}{why}")));
        if patterns.len() > MAX_FILTERS {
            return invalid(format!(
                " has {} patterns; the limit is {MAX_FILTERS}",
                patterns.len()
            ));
        }
        for (i, pattern) in patterns.iter().enumerate() {
            if pattern.is_empty() {
                return invalid(format!("[{i}] is empty"));
            }
            if pattern.len() > MAX_PATTERN_BYTES {
                return invalid(format!(
                    "[{i}] is {} bytes long; the limit is {MAX_PATTERN_BYTES}",
                    pattern.len()
                ));
            }
            if let Err(e) = compile_one(pattern) {
                return invalid(format!("[{i}] is not a valid regular expression: {e}"));
            }
        }
        Ok(Self::compiled(patterns.to_vec()))
    }

    /// Filters read back from the database (validated when they were stored).
    pub fn stored(patterns: Vec<String>) -> Self {
        Self::compiled(patterns)
    }

    fn compiled(patterns: Vec<String>) -> Self {
        let compiled = if patterns.is_empty() {
            None
        } else {
            // Each pattern compiled within the limit alone; the set gets room for all.
            regex::RegexSetBuilder::new(&patterns)
                .size_limit(MAX_COMPILED_FILTER_BYTES * patterns.len().max(1))
                .build()
                .ok()
        };
        Self { patterns, compiled }
    }

    /// The patterns.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `subject` matches one pattern (always, when there are none). Stored
    /// patterns that no longer compile match nothing.
    pub fn matches(&self, subject: &str) -> bool {
        match &self.compiled {
            None => self.patterns.is_empty(),
            Some(set) => set.is_match(subject),
        }
    }

    /// Whether one of `subjects` matches (always, when there are no patterns).
    pub fn matches_any<'a>(&self, mut subjects: impl Iterator<Item = &'a str>) -> bool {
        self.patterns.is_empty() || subjects.any(|s| self.matches(s))
    }
}

fn compile_one(pattern: &str) -> std::result::Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(MAX_COMPILED_FILTER_BYTES)
        .dfa_size_limit(MAX_COMPILED_FILTER_BYTES)
        .build()
}

/// Headers no subscription may set: hop-by-hop ones, and those webhookd sets itself.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "expect",
    "host",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
];
/// Prefixes of headers webhookd sets itself (or that are hop-by-hop).
const RESERVED_PREFIXES: &[&str] = &[
    "proxy-",
    "webhook-",
    "connect-",
    "x-github-",
    "x-hub-signature",
    "x-registry-",
    "ce-",
];

/// A subscription's custom headers, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomHeaders(pub Vec<(String, String)>);

impl CustomHeaders {
    /// Checks `headers`: at most [`MAX_HEADERS`], valid names and values, none reserved
    /// (hop-by-hop, or set by webhookd), no name twice.
    ///
    /// # Errors
    /// `InvalidArgument` naming the header and the problem.
    pub fn parse(headers: Vec<(String, String)>) -> Result<Self> {
        let invalid = |why: String| Err(Error::InvalidArgument(format!("headers{why}")));
        if headers.len() > MAX_HEADERS {
            return invalid(format!(
                " has {} entries; the limit is {MAX_HEADERS}",
                headers.len()
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, (name, value)) in headers.iter().enumerate() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return invalid(format!("[{i}].name {name:?} is not a valid header name"));
            }
            let lower = name.to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&lower.as_str())
                || RESERVED_PREFIXES.iter().any(|p| lower.starts_with(p))
            {
                return invalid(format!(
                    "[{i}].name {name:?} is hop-by-hop or set by webhookd itself; choose \
                     another (auth_header sets Authorization)"
                ));
            }
            if !seen.insert(lower) {
                return invalid(format!("[{i}].name {name:?} is given twice"));
            }
            check_header_value(&format!("headers[{i}].value"), value)?;
        }
        Ok(Self(headers))
    }
}

/// Checks a header value: visible ASCII and spaces, at most [`MAX_HEADER_VALUE_BYTES`].
///
/// # Errors
/// `InvalidArgument` naming `field`.
pub fn check_header_value(field: &str, value: &str) -> Result<()> {
    if value.len() > MAX_HEADER_VALUE_BYTES {
        return Err(Error::InvalidArgument(format!(
            "{field} is {} bytes long; the limit is {MAX_HEADER_VALUE_BYTES}",
            value.len()
        )));
    }
    if let Some(bad) = value.chars().find(|c| !(c.is_ascii_graphic() || *c == ' ')) {
        return Err(Error::InvalidArgument(format!(
            "{field} may contain only visible ASCII and spaces, but contains {bad:?}"
        )));
    }
    Ok(())
}

/// What a subscription may be told to do, checked: everything but its id, owner, family
/// and state.
#[derive(Debug, Clone)]
pub struct SubscriptionSpec {
    /// The one repository, or `None` for all of the owner's.
    pub repository: Option<RepositoryName>,
    /// The event types (of the family); empty for all.
    pub event_types: Vec<String>,
    /// Matched against the event's repository.
    pub repository_filters: Filters,
    /// Matched against the event's tags.
    pub tag_filters: Filters,
    /// Where deliveries go.
    pub url: CallbackUrl,
    /// How they look.
    pub format: Format,
    /// The format's options.
    pub format_options: FormatOptions,
    /// Sent as `Authorization`; `None` for none.
    pub auth_header: Option<String>,
    /// Do not verify the listener's certificate.
    pub skip_tls_verify: bool,
    /// Sent with every delivery.
    pub headers: CustomHeaders,
    /// Leave out the Standard Webhooks headers.
    pub omit_standard_headers: bool,
    /// Attempt each delivery once: no retries.
    pub no_retries: bool,
    /// Unique per owner when not empty.
    pub name: String,
    /// Free text.
    pub description: String,
}

/// Checks the event types of a subscription to `family`: `*` alone (or nothing) is every
/// type; duplicates are dropped.
///
/// # Errors
/// `InvalidArgument` naming the entry.
pub fn parse_event_types(family: Family, types: &[String]) -> Result<Vec<String>> {
    if types.len() > MAX_EVENT_TYPES {
        return Err(Error::InvalidArgument(format!(
            "event_types has {} entries; the limit is {MAX_EVENT_TYPES}",
            types.len()
        )));
    }
    if types.iter().any(|t| t == "*") {
        return Ok(vec![]);
    }
    let mut out: Vec<String> = vec![];
    for (i, name) in types.iter().enumerate() {
        family.check_type(&format!("event_types[{i}]"), name)?;
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    Ok(out)
}

/// Checks a name and a description.
///
/// # Errors
/// `InvalidArgument` naming the field.
pub fn check_texts(name: &str, description: &str) -> Result<()> {
    if name.chars().count() > MAX_SUBSCRIPTION_NAME_CHARS {
        return Err(Error::InvalidArgument(format!(
            "name is longer than {MAX_SUBSCRIPTION_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) || name.trim() != name {
        return Err(Error::InvalidArgument(
            "name may not contain control characters or begin or end with spaces".into(),
        ));
    }
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(Error::InvalidArgument(format!(
            "description is longer than {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    Ok(())
}

/// A stored subscription.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Its id.
    pub id: WebhookId,
    /// Its number.
    pub number: i64,
    /// Which API manages it (`bsr`, `native`).
    pub face: String,
    /// The owner.
    pub owner: String,
    /// The repository; empty when `all_repositories`.
    pub repository: String,
    /// Every repository of the owner.
    pub all_repositories: bool,
    /// The family.
    pub family: Family,
    /// Event types; empty for all.
    pub event_types: Vec<String>,
    /// Repository filters.
    pub repository_filters: Vec<String>,
    /// Tag filters.
    pub tag_filters: Vec<String>,
    /// The URL.
    pub url: String,
    /// The format.
    pub format: Format,
    /// Its options.
    pub format_options: FormatOptions,
    /// Whether an auth header is set.
    pub has_auth_header: bool,
    /// Whether a GitHub hook secret (the key of `X-Hub-Signature-256`) is set.
    pub has_hub_secret: bool,
    /// TLS verification off.
    pub skip_tls_verify: bool,
    /// Custom headers.
    pub headers: CustomHeaders,
    /// Standard Webhooks headers off.
    pub omit_standard_headers: bool,
    /// No retries.
    pub no_retries: bool,
    /// The name.
    pub name: String,
    /// The description.
    pub description: String,
    /// Its state.
    pub state: SubscriptionState,
    /// When the state last changed (paused or disabled), if it did.
    pub state_time: Option<DateTime<Utc>>,
    /// Why it is paused or disabled.
    pub state_reason: String,
    /// When it was created.
    pub create_time: DateTime<Utc>,
    /// When it was last changed.
    pub update_time: DateTime<Utc>,
}

/// Which API manages a subscription.
pub const FACE_BSR: &str = "bsr";
/// Subscriptions made with webhookd's own API.
pub const FACE_NATIVE: &str = "native";
/// GitHub hooks made through GitHub's REST API or its hub (`/api/v3`).
pub const FACE_GITHUB: &str = "github";
/// The face of Harbor policies' targets (`/api/v2.0`).
pub const FACE_HARBOR: &str = "harbor";
/// The configuration file's webhooks (`[event_webhook.NAME]`; read-only in the APIs).
pub const FACE_FILE: &str = "file";

/// A new subscription, checked.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    /// Which API manages it ([`FACE_NATIVE`], [`FACE_GITHUB`]).
    pub face: &'static str,
    /// The owner.
    pub owner: OwnerName,
    /// The family.
    pub family: Family,
    /// Everything else.
    pub spec: SubscriptionSpec,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile_within_their_limits_and_match_any() {
        let f = Filters::parse("repository_filters", &["^prod/".into(), "^qa$".into()]).unwrap();
        assert!(f.matches("prod/api"));
        assert!(f.matches("qa"));
        assert!(!f.matches("dev/qa"));
        assert!(Filters::default().matches("anything"));
        let err = Filters::parse("tag_filters", &["(".into()]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("tag_filters[0] is not a valid regular expression"),
            "{err}"
        );
        // Compiles far past the size limit.
        let huge = Filters::parse("tag_filters", &["\\w{200}\\w{200}".into()]).unwrap_err();
        assert!(huge.to_string().contains("tag_filters[0]"), "{huge}");
        let backref = Filters::parse("tag_filters", &["(a)\\1".into()]).unwrap_err();
        assert!(backref.to_string().contains("not a valid"), "{backref}");
    }

    #[test]
    fn headers_refuse_hop_by_hop_reserved_and_control_characters() {
        assert!(CustomHeaders::parse(vec![("X-Team".into(), "core".into())]).is_ok());
        for (name, value) in [
            ("Connection", "x"),
            ("Transfer-Encoding", "x"),
            ("webhook-signature", "x"),
            ("X-Hub-Signature-256", "x"),
            ("Authorization", "x"),
            ("bad name", "x"),
            ("X-Ok", "a\r\nInjected: 1"),
        ] {
            let err = CustomHeaders::parse(vec![(name.into(), value.into())]).unwrap_err();
            assert!(err.to_string().starts_with("headers[0]"), "{name}: {err}");
        }
    }
}
