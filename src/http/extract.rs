//! Extractors: the acting user from the bearer token, and body, path and query readers whose
//! failures are problems that say what was wrong.

use super::error::ApiError;
use super::AppState;
use crate::service::Actor;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::body::Bytes;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::de::DeserializeOwned;
use crate::config::IpRange;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use uuid::Uuid;

/// Every HTTP request acts through this door; it is written into each audit event.
pub const SOURCE: &str = "http";

pub use crate::api::CLIENT_HEADER;

/// The audit source of a request: `http:tui` or `http:cli` when mfadmin's console or CLI says so
/// in [`CLIENT_HEADER`], otherwise `http`. Only these two values are taken from the client.
pub fn source_of(headers: &HeaderMap) -> &'static str {
    match headers.get(CLIENT_HEADER).map(|v| v.as_bytes()) {
        Some(b"tui") => "http:tui",
        Some(b"cli") => "http:cli",
        _ => SOURCE,
    }
}

/// The audit source of a request without a bearer token (the login steps); see [`source_of`].
pub struct Source(pub &'static str);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Source(source_of(&parts.headers)))
    }
}

const FORWARDED_FOR: &str = "x-forwarded-for";

/// The longest bearer token looked at; ours are 64 characters.
const MAX_TOKEN_LEN: usize = 256;

/// The caller, authenticated by `Authorization: Bearer <session token or API key>`.
pub struct Caller {
    pub actor: Actor,
    /// The bearer token itself, for logout (empty for a local socket's peer, who has none).
    pub token: String,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller").field("actor", &self.actor).finish_non_exhaustive()
    }
}

pub fn bearer_token(headers: &HeaderMap) -> Result<String, ApiError> {
    let missing = || {
        ApiError::unauthenticated(
            "send the header Authorization: Bearer <token>, with a token from POST /api/v1/auth/login or an API key",
        )
    };
    let value = headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?.trim();
    let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(missing());
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(ApiError::unauthenticated("unknown or revoked token"));
    }
    Ok(token.to_string())
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        // On the local socket, without a token: the OS user at the other end, whom the socket
        // admitted, is the console operator (as on the store itself).
        if let Some(peer) = parts.extensions.get::<super::socket::SocketPeer>().filter(|p| p.allowed)
            && !parts.headers.contains_key(header::AUTHORIZATION)
        {
            let actor = Actor {
                principal: crate::service::Principal::Console { os_user: peer.os_user.clone() },
                source: super::socket::source_of(&parts.headers).into(),
            };
            tracing::Span::current().record("actor", actor.audit_name());
            return Ok(Caller { actor, token: String::new() });
        }
        let token = bearer_token(&parts.headers)?;
        // Two point reads of the store (the token's session, its user), done here rather than on
        // the blocking pool: handing them to another thread costs more than the reads. A database
        // store's client blocks on a runtime of its own, which cannot run on the async threads.
        let (source, now) = (source_of(&parts.headers), state.now());
        let authenticated = if state.service().shared() {
            let (service, token) = (state.service().clone(), token.clone());
            tokio::task::spawn_blocking(move || service.authenticate(&token, source, now))
                .await
                .map_err(|e| ApiError::internal(format!("authenticating the caller: {e}")))?
        } else {
            state.service().authenticate(&token, source, now)
        };
        let actor = match authenticated {
            Ok(actor) => actor,
            // Wrong tokens count against the address, as on the vendor routes.
            Err(e) => return Err(state.limits.bad_token(&client_of(parts, &state.settings.trusted_proxies), e.into())),
        };
        tracing::Span::current().record("actor", actor.audit_name());
        Ok(Caller { actor, token })
    }
}

/// The client's address, when the server knows it (not in tests that call the router directly):
/// the peer's, or behind a trusted proxy the one its `X-Forwarded-For` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddr(pub String);

impl FromRequestParts<Arc<AppState>> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_of(parts, &state.settings.trusted_proxies)))
    }
}

/// The client address of a request: its peer, unless the peer is a trusted proxy; then the
/// nearest address in `X-Forwarded-For` that is not one (proxies append the address they saw, so
/// the addresses left of a hop we do not trust are the client's own word).
pub fn client_of(parts: &Parts, trusted: &[IpRange]) -> String {
    let Some(peer) = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(a)| a.ip()) else {
        return "local".into();
    };
    let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    if !is_trusted(peer) {
        return peer.to_string();
    }
    let hops: Vec<&str> = parts
        .headers
        .get_all(FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim_matches(['[', ']']).parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client.to_string()
}

/// A JSON body; malformed JSON, another content type, unknown fields and oversize bodies are problems.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}

/// A CSV body (`Content-Type: text/csv`), up to the route's body limit.
pub struct CsvBody(pub Bytes);

impl FromRequest<Arc<AppState>> for CsvBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let is_csv = content_type.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("text/csv");
        // The size first: a body over the limit is refused as such, whatever it says it is.
        let bytes = match Bytes::from_request(req, state).await {
            Ok(bytes) => bytes,
            Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body-too-large",
                    format!(
                        "the CSV is larger than this server accepts in one request ({} bytes, [server] \
                         bulk_body_limit_bytes): split it into smaller files",
                        state.settings.bulk_body_limit_bytes
                    ),
                ));
            }
            Err(r) if r.status().is_server_error() => return Err(ApiError::internal(r.body_text())),
            Err(r) => return Err(ApiError::bad_request(format!("the body could not be read: {}", r.body_text()))),
        };
        if !is_csv {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "the body must be CSV, sent with the header Content-Type: text/csv",
            ));
        }
        Ok(CsvBody(bytes))
    }
}

/// Query parameters; unknown names and bad values are problems.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(value))
    }
}

/// A single path parameter as text.
pub struct ApiPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ApiPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(value) = Path::<String>::from_request_parts(parts, state).await?;
        Ok(ApiPath(value))
    }
}

/// A user id in the path, which must be a UUID.
pub struct UserId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for UserId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ApiPath(text) = ApiPath::from_request_parts(parts, state).await?;
        parse_uuid(&text).map(UserId).map_err(ApiError::bad_request)
    }
}

pub fn parse_uuid(text: &str) -> Result<Uuid, String> {
    Uuid::parse_str(text.trim())
        .map_err(|_| format!("{text:?} is not a user id: ids are UUIDs such as 67e55044-10b1-426f-9247-bb680e5fe0c8"))
}
