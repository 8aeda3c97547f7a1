//! The OpenAPI 3.1 document, generated from the handlers, and the Swagger UI that shows it offline.

use super::error::Problem;
use super::{backup, native, ops, AppState};
use axum::extract::DefaultBodyLimit;
use std::sync::Arc;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::Response;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, Ref, RefOr};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mfadmin",
        description = "See every user's MFA status and role, and reset MFA for one user or thousands at once.\n\n\
            Log in with `POST /api/v1/auth/login` (then `/api/v1/auth/mfa` with a code), or use an API key; \
            press **Authorize** and paste the token. Errors are `application/problem+json` (RFC 7807)."
    ),
    components(schemas(Problem, crate::service::SortField)),
    tags(
        (name = "auth", description = "Log in (password, then code), enroll at login, log out"),
        (name = "users", description = "Users of the caller's org"),
        (name = "mfa", description = "Reset MFA, for one user or many"),
        (name = "me", description = "The caller, and the caller's own second factor"),
        (name = "orgs", description = "Org settings"),
        (name = "audit", description = "The hash-chained audit log"),
        (name = "apikeys", description = "Long-lived keys for scripts"),
        (name = "backup", description = "A consistent backup of the whole store"),
        (name = "ops", description = "Liveness and metrics"),
    )
)]
struct ApiDoc;

/// Every documented route, with the document that describes it. Only routes added here are served
/// under `/api/v1`, so the document cannot miss one.
pub fn api_router(bulk_body_limit: usize) -> OpenApiRouter<Arc<AppState>> {
    use native::*;
    let bulk = OpenApiRouter::new()
        .routes(routes!(bulk_reset))
        .routes(routes!(import_users))
        .layer(DefaultBodyLimit::max(bulk_body_limit));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(login))
        .routes(routes!(login_mfa))
        .routes(routes!(login_enroll_begin))
        .routes(routes!(login_enroll_confirm))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user))
        .routes(routes!(reset_user))
        .routes(routes!(user_detail))
        .routes(routes!(set_status))
        .routes(routes!(set_password))
        .routes(routes!(user_enroll_begin))
        .routes(routes!(user_enroll_confirm))
        .routes(routes!(my_enroll_begin))
        .routes(routes!(my_enroll_confirm))
        .routes(routes!(my_reset))
        .routes(routes!(list_orgs, create_org))
        .routes(routes!(get_org))
        .routes(routes!(enforce_mfa))
        .routes(routes!(audit_list))
        .routes(routes!(audit_verify))
        .routes(routes!(audit_export))
        .routes(routes!(create_api_key, list_api_keys))
        .routes(routes!(revoke_api_key))
        .routes(routes!(backup::download))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .merge(bulk)
}

/// Complete the generated document: the bearer scheme, and the problems every operation can answer
/// with besides the ones its handler names.
pub fn finish(mut doc: Document) -> Document {
    let components = doc.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        "bearer".into(),
        RefOr::T(SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("A session token from the login, or an API key"))
                .build(),
        )),
    );
    for item in doc.paths.paths.values_mut() {
        for op in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten() {
            add_common_problems(op);
        }
    }
    doc
}

fn add_common_problems(op: &mut Operation) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_body = op.request_body.is_some();
    let mut add = |status: &str, description: &str| {
        op.responses.responses.entry(status.to_string()).or_insert_with(|| {
            RefOr::T(
                Response::builder()
                    .description(description)
                    .content("application/problem+json", Content::new(Some(Ref::from_schema_name("Problem"))))
                    .build(),
            )
        });
    };
    add("400", "The request is not valid: a bad id, query parameter or field value");
    add("421", "The Host header names none of the server's names ([server] allowed_hosts)");
    if secured {
        add("401", "No token, or an unknown, expired or revoked one");
        add("429", "Too many wrong tokens from this address; see Retry-After");
    }
    if has_body {
        add("408", "The body did not arrive within [server] body_read_timeout_seconds");
        add("413", "The body is larger than the endpoint accepts (64 KiB by default)");
        add("415", "The body is not sent as Content-Type: application/json");
        add("422", "The JSON does not fit: a missing or unknown field, or a value of the wrong type");
    }
    add("500", "The server failed; the detail is in its log under the request id");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_names_its_problems() {
        let (_, doc) = api_router(1 << 20).split_for_parts();
        let doc = finish(doc);
        let reset = doc.paths.paths["/api/v1/users/{id}/mfa/reset"].post.as_ref().unwrap();
        for status in ["200", "400", "401", "403", "404", "409", "413", "415", "422", "500"] {
            assert!(reset.responses.responses.contains_key(status), "reset lacks {status}");
        }
        let health = doc.paths.paths["/healthz"].get.as_ref().unwrap();
        assert!(!health.responses.responses.contains_key("401"));
    }
}
