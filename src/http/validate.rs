//! `/validate/check` and `/validate/radiuscheck`: second-factor checks for other systems, answered
//! exactly as privacyIDEA 3.14 answers them, so its PAM, FreeRADIUS and other plugins (and
//! FreeRADIUS's stock `rest` module) work unchanged. The service decides ([`Service::validate`]).

use super::AppState;
use super::compat::VendorBody;
use super::ratelimit::RateLimiter;
use crate::config::{IpRange, UnknownUser, ValidateConfig};
use crate::error::Error;
use crate::service::{ValidateRequest, Validation, Validator};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

/// The longest key looked at in `Authorization` / `PI-Authorization`.
const MAX_KEY_LEN: usize = 256;
/// privacyIDEA's error codes: authentication of the caller, a bad parameter, an unknown user.
const ERR_AUTH: u32 = 4033;
const ERR_PARAMETER: u32 = 905;
const ERR_USER: u32 = 904;

/// What the validate routes need beside the service.
#[derive(Debug)]
pub struct ValidateSettings {
    pub enabled: bool,
    pub allow_from: Vec<IpRange>,
    pub unknown_user: UnknownUser,
    per_client: RateLimiter,
}

impl ValidateSettings {
    pub fn from_config(config: &ValidateConfig) -> ValidateSettings {
        ValidateSettings {
            enabled: config.enabled,
            // Checked when the config was read.
            allow_from: config.allow_from.iter().filter_map(|r| IpRange::parse(r).ok()).collect(),
            unknown_user: config.unknown_user,
            per_client: RateLimiter::new(config.rate_per_client),
        }
    }
}

/// The routes, when `[validate] enabled`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/validate/check", get(check).post(check))
        .route("/validate/radiuscheck", get(radius_check).post(radius_check))
}

async fn check(state: State<Arc<AppState>>, peer: Peer, method: Method, headers: HeaderMap, query: RawQuery, body: Bytes) -> Response {
    match run(&state, peer, &method, &headers, query, &body).await {
        Ok(Validation::Accept { serial }) => answer(&state, StatusCode::OK, true, detail("matching 1 tokens", Some(&serial))),
        // A rejection names no serial: an unknown user's must read the same (existence is not revealed).
        Ok(Validation::Reject { message, .. }) => answer(&state, StatusCode::OK, false, detail(&message, None)),
        Ok(Validation::UnknownUser) if state.validate.unknown_user == UnknownUser::Error => error(
            &state,
            StatusCode::BAD_REQUEST,
            ERR_USER,
            "ERR904: The user can not be found in any resolver in this realm!",
        ),
        Ok(Validation::UnknownUser) => answer(&state, StatusCode::OK, false, detail("wrong otp value", None)),
        Err(Refused { status, code, message }) => error(&state, status, code, &message),
    }
}

/// FreeRADIUS's `rest` module reads the status alone: 204 accepts, anything else rejects.
async fn radius_check(state: State<Arc<AppState>>, peer: Peer, method: Method, headers: HeaderMap, query: RawQuery, body: Bytes) -> Response {
    let status = match run(&state, peer, &method, &headers, query, &body).await {
        Ok(Validation::Accept { .. }) => StatusCode::NO_CONTENT,
        Err(Refused { status: StatusCode::UNAUTHORIZED, .. }) => StatusCode::UNAUTHORIZED,
        Err(Refused { status: StatusCode::TOO_MANY_REQUESTS, .. }) => StatusCode::TOO_MANY_REQUESTS,
        Ok(_) | Err(_) => StatusCode::BAD_REQUEST,
    };
    let mut response = status.into_response();
    response.extensions_mut().insert(VendorBody);
    response
}

/// Why a request was not checked: its status, privacyIDEA's error code, and what was wrong.
struct Refused {
    status: StatusCode,
    code: u32,
    message: String,
}

impl Refused {
    fn parameter(message: impl Into<String>) -> Refused {
        Refused { status: StatusCode::BAD_REQUEST, code: ERR_PARAMETER, message: format!("ERR905: {}", message.into()) }
    }
}

/// The peer's address (the socket's; a check is made by the system itself, never through a proxy).
struct Peer(Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(a)| a.ip())))
    }
}

/// Authenticate the caller, read the parameters, hold to the rate limits, and ask the service.
async fn run(
    state: &AppState,
    Peer(peer): Peer,
    method: &Method,
    headers: &HeaderMap,
    RawQuery(query): RawQuery,
    body: &[u8],
) -> Result<Validation, Refused> {
    let settings = &state.validate;
    let client = peer.map_or_else(|| "local".to_string(), |ip| ip.to_string());
    let too_many = |secs: u64| Refused {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: ERR_AUTH,
        message: format!("Too many requests: try again in {secs} s"),
    };
    settings.per_client.check(&client, Instant::now()).map_err(too_many)?;
    let key = caller_key(headers)?;
    let request = read_request(method, headers, query.as_deref(), body)?;
    let account = request.user.trim().to_lowercase();
    if !account.is_empty() {
        state.limits.admit_validation(&account, &client).map_err(too_many)?;
    }
    let service = state.service().clone();
    let now = state.now();
    let allowed = peer.is_some_and(|ip| settings.allow_from.iter().any(|r| r.contains(ip)));
    let outcome = tokio::task::spawn_blocking(move || {
        let who = match key {
            Some(key) => service.authenticate_validator(&key, now)?,
            None if allowed => Validator::address(&client),
            None => {
                return Err(Error::Unauthenticated(
                    "send a validate key (mfadmin apikey create --validate-only) in Authorization or PI-Authorization, \
                     or allow this address in [validate] allow_from"
                        .into(),
                ));
            }
        };
        service.validate(&who, &request, now)
    })
    .await;
    match outcome {
        Ok(Ok(validation)) => Ok(validation),
        Ok(Err(Error::InvalidInput(message))) => Err(Refused::parameter(message)),
        Ok(Err(Error::Unauthenticated(message))) => {
            Err(Refused { status: StatusCode::UNAUTHORIZED, code: ERR_AUTH, message: format!("Authentication failure. {message}") })
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "a second-factor check failed");
            Err(Refused { status: StatusCode::INTERNAL_SERVER_ERROR, code: 500, message: "the check could not be made; see the server log".into() })
        }
        Err(e) => {
            tracing::error!(error = %e, "a second-factor check stopped");
            Err(Refused { status: StatusCode::INTERNAL_SERVER_ERROR, code: 500, message: "the check could not be made; see the server log".into() })
        }
    }
}

/// The key in `PI-Authorization` or `Authorization` (bare, as privacyIDEA's plugins send it, or
/// after `Bearer`); `None` when neither header is there.
fn caller_key(headers: &HeaderMap) -> Result<Option<String>, Refused> {
    let Some(value) = headers.get("pi-authorization").or_else(|| headers.get(header::AUTHORIZATION)) else {
        return Ok(None);
    };
    let bad = || Refused { status: StatusCode::UNAUTHORIZED, code: ERR_AUTH, message: "Authentication failure. Wrong credentials".into() };
    let value = value.to_str().map_err(|_| bad())?.trim();
    let key = match value.split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
        _ => value,
    };
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(bad());
    }
    Ok(Some(key.to_string()))
}

/// The parameters: the query of a GET; the body of a POST (form-encoded, or JSON of strings and
/// numbers), which may not also carry a query.
fn read_request(method: &Method, headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> Result<ValidateRequest, Refused> {
    let query = query.filter(|q| !q.is_empty());
    let params = if method == Method::GET {
        form(query.unwrap_or("").as_bytes())?
    } else {
        if query.is_some() && !body.is_empty() {
            return Err(Refused::parameter("send the parameters in the body or in the query, not both"));
        }
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match media.as_str() {
            _ if body.is_empty() => form(query.unwrap_or("").as_bytes())?,
            "application/json" => json_params(body)?,
            "application/x-www-form-urlencoded" | "" => form(body)?,
            other => {
                return Err(Refused::parameter(format!(
                    "Content-Type {other} is not read: send application/x-www-form-urlencoded or application/json"
                )));
            }
        }
    };
    let mut params = params;
    if params.contains_key("transaction_id") {
        return Err(Refused::parameter("challenge-response (transaction_id) is not offered: send the code from the app in pass"));
    }
    Ok(ValidateRequest {
        user: params.remove("user").unwrap_or_default(),
        realm: params.remove("realm"),
        pass: params.remove("pass").unwrap_or_default(),
        serial: params.remove("serial"),
        client: params.remove("client"),
    })
}

fn form(bytes: &[u8]) -> Result<HashMap<String, String>, Refused> {
    if bytes.first() == Some(&b'{') {
        return Err(Refused::parameter("the body is JSON but is sent as a form: set Content-Type: application/json"));
    }
    let mut params = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(bytes) {
        if params.insert(k.to_string(), v.to_string()).is_some() {
            return Err(Refused::parameter(format!("parameter {k} is given twice")));
        }
    }
    Ok(params)
}

fn json_params(bytes: &[u8]) -> Result<HashMap<String, String>, Refused> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| Refused::parameter(format!("the body is not JSON ({e})")))?;
    let Value::Object(object) = value else {
        return Err(Refused::parameter("the JSON body must be an object of parameters"));
    };
    object
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            Value::Number(n) => Ok((k, n.to_string())),
            Value::Bool(b) => Ok((k, b.to_string())),
            _ => Err(Refused::parameter(format!("parameter {k} must be a string"))),
        })
        .collect()
}

/// `detail` of an answer: the message, and the factor it is about.
fn detail(message: &str, serial: Option<&str>) -> Value {
    match serial {
        Some(serial) => json!({"message": message, "serial": serial, "type": "totp", "otplen": 6}),
        None => json!({"message": message}),
    }
}

/// privacyIDEA's envelope around a decision.
fn answer(state: &AppState, status: StatusCode, accepted: bool, detail: Value) -> Response {
    let result = json!({"status": true, "value": accepted, "authentication": if accepted { "ACCEPT" } else { "REJECT" }});
    envelope(state, status, result, detail)
}

/// privacyIDEA's envelope around an error.
fn error(state: &AppState, status: StatusCode, code: u32, message: &str) -> Response {
    let result = json!({"status": false, "error": {"code": code, "message": message}});
    envelope(state, status, result, Value::Null)
}

fn envelope(state: &AppState, status: StatusCode, result: Value, detail: Value) -> Response {
    let body = json!({
        "jsonrpc": "2.0",
        "result": result,
        "detail": detail,
        "id": 1,
        "version": concat!("mfadmin ", env!("CARGO_PKG_VERSION")),
        "time": state.now(),
    });
    let mut response =
        (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_string()).into_response();
    response.extensions_mut().insert(VendorBody);
    response
}
