//! GitHub's face (section A of the reference facts): the REST API of repository and
//! organization webhooks under `/api/v3`, as GitHub Enterprise Server serves it, so that
//! octokit, PyGithub, go-github and scripts work by changing only their base URL. Hooks are
//! subscriptions of face `github` (family `github`, format `github`): the native API shows
//! them too.
//!
//! `/ingest/github/{source}` is the relay in front of a real GitHub (see `relay`).
//!
//! Everything here answers in GitHub's shapes: JSON bodies, GitHub's status codes, and its
//! error body `{"message", "documentation_url"[, "errors"]}`.

mod deliveries;
mod hooks;
mod hub;
mod relay;

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::ApiContext;
use crate::domain::{Family, OwnerName, RepositoryName, TokenScope};
use crate::error::Error;

/// Where GitHub's webhook documentation lives (its error bodies link to it).
const HOOKS_DOCS: &str = "https://docs.github.com/rest/repos/webhooks";
/// The largest request body the face reads.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The `/api/v3` router.
pub fn router(api: Arc<ApiContext>) -> axum::Router {
    hooks::routes()
        .route("/api/v3/hub", axum::routing::post(hub::hub))
        .route("/ingest/github/{source}", axum::routing::post(relay::relay))
        .with_state(api)
}

/// An answer in GitHub's error shape.
#[derive(Debug)]
pub struct GitHubError {
    status: StatusCode,
    message: String,
    errors: Vec<Value>,
    docs: &'static str,
}

impl GitHubError {
    /// `status` with `message`.
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            errors: vec![],
            docs: HOOKS_DOCS,
        }
    }

    /// GitHub's 404, which also answers for what the token may not see.
    fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not Found")
    }

    /// 422 `Validation Failed` with one error about the hook.
    fn validation(code: &str, field: Option<&str>, message: impl Into<String>) -> Self {
        let mut error = json!({"resource": "Hook", "code": code, "message": message.into()});
        if let Some(field) = field {
            error["field"] = field.into();
        }
        Self {
            errors: vec![error],
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed")
        }
    }

    /// 422 for a body that does not follow the operation's schema, as GitHub words it.
    fn invalid_request(why: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Invalid request.\n\n{why}"),
        )
    }
}

impl From<Error> for GitHubError {
    fn from(e: Error) -> Self {
        match e {
            Error::Unauthenticated(why) if why == "Requires authentication" => Self {
                docs: "https://docs.github.com/rest",
                ..Self::new(StatusCode::UNAUTHORIZED, why)
            },
            Error::Unauthenticated(_) => Self {
                docs: "https://docs.github.com/rest",
                ..Self::new(StatusCode::UNAUTHORIZED, "Bad credentials")
            },
            Error::NotFound(_) | Error::PermissionDenied(_) => Self::not_found(),
            Error::InvalidArgument(why)
            | Error::AlreadyExists(why)
            | Error::ResourceExhausted(why)
            | Error::FailedPrecondition(why) => Self::validation("custom", None, why),
            Error::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database is unavailable; try again",
            ),
            Error::Internal(cause) => {
                tracing::error!(error.cause_chain = ?cause, "GitHub face request failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Server Error")
            }
        }
    }
}

impl From<sqlx::Error> for GitHubError {
    fn from(e: sqlx::Error) -> Self {
        Error::from(e).into()
    }
}

impl IntoResponse for GitHubError {
    fn into_response(self) -> Response {
        let mut body = json!({"message": self.message, "documentation_url": self.docs});
        if !self.errors.is_empty() {
            body["errors"] = Value::Array(self.errors);
        }
        (self.status, json_body(&body)).into_response()
    }
}

/// A JSON body as GitHub sends it (`application/json; charset=utf-8`).
fn json_body(value: &impl serde::Serialize) -> Response {
    let bytes = serde_json::to_vec(value).expect("a JSON value serializes");
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )],
        bytes,
    )
        .into_response()
}

/// A time as GitHub writes it: to the second, in UTC.
fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// What the request's token may see.
async fn authenticate(api: &ApiContext, headers: &HeaderMap) -> Result<TokenScope, GitHubError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    Ok(crate::api::auth::authenticate_rest(api, header).await?)
}

/// The owner and repository a path names, or GitHub's 404 when the names break GitHub's
/// rules or the token does not cover the owner (GitHub does not say which).
fn scope_of(
    scope: &TokenScope,
    owner: &str,
    repository: Option<&str>,
) -> Result<(OwnerName, Option<RepositoryName>), GitHubError> {
    let owner = OwnerName::parse_in(Family::GitHub, "owner", owner)
        .map_err(|_| GitHubError::not_found())?;
    let repository = repository
        .map(|r| RepositoryName::parse_in(Family::GitHub, "repository", r))
        .transpose()
        .map_err(|_| GitHubError::not_found())?;
    if !scope.covers(owner.as_str()) {
        return Err(GitHubError::not_found());
    }
    Ok((owner, repository))
}

/// The API's base URL as the client reached it (`http://host/api/v3`), for the URLs in the
/// objects returned: `X-Forwarded-Proto` and `X-Forwarded-Host` when a proxy in front set
/// them, else `Host`.
fn base_url(headers: &HeaderMap) -> String {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let scheme = text("x-forwarded-proto")
        .filter(|s| *s == "https" || *s == "http")
        .unwrap_or("http");
    let valid = |h: &&str| {
        h.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
    };
    let host = text("x-forwarded-host")
        .filter(valid)
        .or_else(|| text("host").filter(valid))
        .unwrap_or("localhost");
    format!("{scheme}://{host}/api/v3")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_follow_the_host_and_a_proxys_headers_and_refuse_odd_hosts() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("ghe.example:8080"));
        assert_eq!(base_url(&headers), "http://ghe.example:8080/api/v3");
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        headers.insert(
            "x-forwarded-host",
            HeaderValue::from_static("hooks.example"),
        );
        assert_eq!(base_url(&headers), "https://hooks.example/api/v3");
        headers.insert(
            "x-forwarded-host",
            HeaderValue::from_static("evil.example/\"><script>"),
        );
        assert_eq!(base_url(&headers), "https://ghe.example:8080/api/v3");
    }
}
