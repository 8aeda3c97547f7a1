//! The HTTP boundary's one error type: every failure becomes an RFC 7807 `application/problem+json`.

pub use crate::api::Problem;
use crate::error::Error;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Why a request failed, ready to become a problem response. Internal errors keep their detail
/// for the log and show a generic text.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    slug: &'static str,
    detail: String,
    retry_after: Option<u64>,
    internal: Option<String>,
}

const INTERNAL_DETAIL: &str =
    "the server could not complete this request; its log has the details under this request's id (x-request-id)";

impl ApiError {
    pub fn new(status: StatusCode, slug: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError { status, slug, detail: detail.into(), retry_after: None, internal: None }
    }

    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid-input", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    pub fn unauthenticated(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", detail)
    }

    pub fn too_many(detail: impl Into<String>, retry_after_secs: u64) -> ApiError {
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too-many-requests", detail);
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }

    /// A failure of the server itself: the client sees a generic 500, the log sees `why`.
    pub fn internal(why: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", INTERNAL_DETAIL);
        e.internal = Some(why.into());
        e
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("urn:mfadmin:problem:{}", self.slug),
            title: self.status.canonical_reason().unwrap_or("Error").to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            instance: None,
            request_id: None,
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        match e {
            Error::InvalidInput(msg) => ApiError::bad_request(msg),
            e @ Error::NotFound { .. } => ApiError::not_found(e.to_string()),
            Error::Conflict(msg) => ApiError::conflict(msg),
            e @ Error::WriteConflict => ApiError::conflict(e.to_string()),
            e @ Error::Forbidden(_) => ApiError::forbidden(e.to_string()),
            e @ Error::Unauthenticated(_) => ApiError::unauthenticated(e.to_string()),
            e @ Error::Locked { retry_after_secs } => {
                let mut err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "locked", e.to_string());
                err.retry_after = Some(retry_after_secs.max(1));
                err
            }
            e @ (Error::StoreLocked { .. }
            | Error::NoStore { .. }
            | Error::KeyFile(_)
            | Error::Corrupt(_)
            | Error::Storage(_)
            | Error::Unreachable { .. }
            | Error::Remote { .. }) => ApiError::internal(e.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> ApiError {
        ApiError::internal(format!("a service task did not finish: {e}"))
    }
}

/// What the standard extractors' rejections become: the same status, our problem body, and a
/// detail that says what was wrong.
fn slug_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body-too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid-body",
        StatusCode::BAD_REQUEST => "invalid-input",
        _ => "invalid-request",
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        let status = r.status();
        let detail = match &r {
            JsonRejection::MissingJsonContentType(_) => {
                "the body must be JSON, sent with the header Content-Type: application/json".to_string()
            }
            JsonRejection::JsonSyntaxError(_) => format!("the body is not valid JSON: {}", inner_message(&r.body_text())),
            JsonRejection::JsonDataError(_) => format!("the JSON body does not fit this endpoint: {}", inner_message(&r.body_text())),
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => {
                "the request body is larger than this endpoint accepts (64 KiB by default, 1 MiB for the bulk reset)".to_string()
            }
            _ => r.body_text(),
        };
        if status.is_server_error() {
            return ApiError::internal(r.body_text());
        }
        ApiError::new(status, slug_for(status), detail)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::bad_request(format!("the query string is not valid: {}", inner_message(&r.body_text())))
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        let status = r.status();
        if status.is_server_error() {
            return ApiError::internal(r.body_text());
        }
        ApiError::new(status, slug_for(status), r.body_text())
    }
}

/// axum's texts read "Failed to deserialize ...: <what serde said>"; keep what serde said.
fn inner_message(text: &str) -> String {
    text.split_once(": ").map_or(text, |(_, rest)| rest).to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(why) = &self.internal {
            tracing::error!(error = %why, "internal error");
        }
        let problem = self.problem();
        let mut response = (self.status, problem.body()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        // The request middleware completes `instance` and `request_id` from this.
        response.extensions_mut().insert(problem);
        response
    }
}

/// Unknown paths.
pub async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("there is no {method} {}; the routes are listed at /openapi.json and /docs", uri.path()))
}
