//! Harbor's face (section C of the reference facts): project webhook policies over Harbor's
//! REST API under `/api/v2.0`, as Harbor v2.8+ serves it, so that Harbor's clients
//! (`harborapi`, `harbor-api-client`, the scripts of a registry team) work by changing only
//! their base URL. A Harbor project is a webhookd owner; a policy is one subscription of face
//! `harbor` per target (family `registry`, every repository of the owner), shown as one
//! policy.
//!
//! Everything here answers in Harbor's shapes: JSON bodies, Harbor's status codes, and its
//! error body `{"errors":[{"code","message"}]}`.

mod executions;
mod policies;
mod query;
mod relay;

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::json;

use super::ApiContext;
use crate::domain::{Family, OwnerName, TokenScope};
use crate::error::Error;
use crate::store;

/// The largest request body the face reads.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The `/api/v2.0` router.
pub fn router(api: Arc<ApiContext>) -> axum::Router {
    policies::routes()
        .merge(executions::routes())
        .route("/ingest/harbor/{source}", axum::routing::post(relay::relay))
        .with_state(api)
}

/// An answer in Harbor's error shape.
#[derive(Debug)]
pub struct HarborError {
    status: StatusCode,
    message: String,
}

impl HarborError {
    /// `status` with `message`.
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400 `BAD_REQUEST`.
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 `NOT_FOUND`.
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 403 `FORBIDDEN`, for a project the token does not cover.
    fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden")
    }

    /// 422, for a parameter outside what Harbor's swagger allows (go-openapi's wording).
    fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// Harbor's code for the status: its reason phrase in upper snake case.
    fn code(&self) -> String {
        self.status
            .canonical_reason()
            .unwrap_or("UNKNOWN")
            .to_ascii_uppercase()
            .replace(' ', "_")
    }
}

impl From<Error> for HarborError {
    fn from(e: Error) -> Self {
        match e {
            Error::Unauthenticated(_) => Self::new(StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::PermissionDenied(_) => Self::forbidden(),
            Error::NotFound(why) => Self::not_found(why),
            Error::AlreadyExists(why) => Self::new(StatusCode::CONFLICT, why),
            Error::InvalidArgument(why)
            | Error::ResourceExhausted(why)
            | Error::FailedPrecondition(why) => Self::bad_request(why),
            Error::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable; try again",
            ),
            Error::Internal(cause) => {
                tracing::error!(error.cause_chain = ?cause, "Harbor face request failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
            }
        }
    }
}

impl From<sqlx::Error> for HarborError {
    fn from(e: sqlx::Error) -> Self {
        Error::from(e).into()
    }
}

impl IntoResponse for HarborError {
    fn into_response(self) -> Response {
        let body = json!({"errors": [{"code": self.code(), "message": self.message}]});
        let mut response = json_body(&body);
        *response.status_mut() = self.status;
        response
    }
}

/// A JSON body as Harbor sends it.
fn json_body(value: &impl serde::Serialize) -> Response {
    let bytes = serde_json::to_vec(value).expect("a JSON value serializes");
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
}

/// A time as Harbor's API writes it: to the second, in UTC.
fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Who is calling: what the token may see, and the user name it came with (basic auth's,
/// which a policy records as its creator).
struct Caller {
    scope: TokenScope,
    user: String,
}

/// Authenticates the request: a webhookd token as the password of HTTP basic auth (any user
/// name: how Harbor's clients and robot accounts send theirs) or as a Bearer token.
async fn authenticate(api: &ApiContext, headers: &HeaderMap) -> Result<Caller, HarborError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let scope = crate::api::auth::authenticate_rest(api, header).await?;
    let user = header
        .and_then(|h| {
            h.strip_prefix("Basic ")
                .or_else(|| h.strip_prefix("basic "))
        })
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()
        })
        .and_then(|d| String::from_utf8(d).ok())
        .and_then(|d| d.split_once(':').map(|(user, _)| user.to_owned()))
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "api-token".to_owned());
    Ok(Caller { scope, user })
}

/// A project the path names, resolved to its owner.
struct Project {
    /// The owner.
    owner: OwnerName,
    /// Its number.
    id: i64,
    /// As the path gave it (for `Location` and `Link`).
    given: String,
}

/// Resolves `{project_name_or_id}`: a name, or a numeric id unless `X-Is-Resource-Name:
/// true` says it is a name. A project the token does not cover is Harbor's 403; so is an id
/// never given, unless the token covers every owner (then 404): a scoped token learns nothing
/// of other tenants' projects.
async fn project(
    api: &ApiContext,
    headers: &HeaderMap,
    caller: &Caller,
    given: &str,
) -> Result<Project, HarborError> {
    let by_name = headers
        .get("x-is-resource-name")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut conn = store::acquire(&api.pool).await?;
    let owner = match given.parse::<i64>() {
        Ok(id) if !by_name => match store::harbor::project_owner(&mut conn, id).await? {
            Some(owner) => owner,
            None if caller.scope.all_owners => {
                return Err(HarborError::not_found(format!("project {id} not found")));
            }
            None => return Err(HarborError::forbidden()),
        },
        _ => given.to_owned(),
    };
    let owner = OwnerName::parse_in(Family::Registry, "project", &owner).map_err(|_| {
        if caller.scope.all_owners {
            HarborError::not_found(format!("project {given} not found"))
        } else {
            HarborError::forbidden()
        }
    })?;
    if !caller.scope.covers(owner.as_str()) {
        return Err(HarborError::forbidden());
    }
    let id = store::harbor::project_id(&mut conn, owner.as_str()).await?;
    Ok(Project {
        owner,
        id,
        given: given.to_owned(),
    })
}
