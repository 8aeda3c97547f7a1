//! The OpenAPI 3.1 document, generated from the handlers, and the Swagger UI that shows it offline.

use super::error::Problem;
use super::{backup, native, ops, AppState};
use axum::extract::DefaultBodyLimit;
use std::sync::Arc;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::Response;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, Ref, RefOr};
use serde_json::Value;
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
    components(schemas(Problem, crate::service::SortField, crate::service::AuditFormat)),
    tags(
        (name = "auth", description = "Log in (password, then code), enroll at login, log out"),
        (name = "users", description = "Users of the caller's org"),
        (name = "mfa", description = "Reset MFA, for one user or many; unlock a locked factor"),
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
        .routes(routes!(unlock_user))
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
        .routes(routes!(store_check))
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

/// The document served at `/openapi.json`, made into JSON on its first request. Giving every
/// operation its examples takes milliseconds that a starting server need not spend before it
/// answers; the document's routes are fixed by then, so it is the same whenever it is made.
pub fn served_lazily(doc: Document) -> axum::routing::MethodRouter<Arc<AppState>> {
    type Make = Box<dyn FnOnce() -> axum::body::Bytes + Send>;
    let make: Make = Box::new(move || {
        let doc = with_examples(doc);
        // utoipa's types always serialize (no map in them has keys that are not strings); were
        // that ever to change, the document would be empty, which the tests of /openapi.json catch.
        serde_json::to_vec(&doc).unwrap_or_default().into()
    });
    let json = Arc::new(std::sync::LazyLock::new(make));
    axum::routing::get(move || {
        let json = json.clone();
        async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], std::sync::LazyLock::force(&json).clone()) }
    })
}

/// Give every operation of the finished document (vendor routes too) an example of each request
/// body, parameter and response body that has none, built from its schema, so Swagger UI's "Try it
/// out" starts from a request of the right shape.
pub fn with_examples(doc: Document) -> Document {
    let Ok(mut json) = serde_json::to_value(&doc) else {
        return doc;
    };
    let schemas = json.pointer("/components/schemas").cloned().unwrap_or(Value::Null);
    if let Some(paths) = json.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in item.values_mut().filter_map(Value::as_object_mut) {
                add_examples(op, &schemas);
            }
        }
    }
    serde_json::from_value(json).unwrap_or(doc)
}

fn add_examples(op: &mut serde_json::Map<String, Value>, schemas: &Value) {
    for parameter in op.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
        if parameter.get("example").is_none() && parameter.get("examples").is_none() {
            let name = parameter["name"].as_str().unwrap_or("").to_string();
            let example = example_of(&parameter["schema"], &name, schemas, 0, true);
            parameter["example"] = example;
        }
    }
    let request = op.get_mut("requestBody").and_then(|b| b.get_mut("content")).and_then(Value::as_object_mut);
    for media in request.into_iter().flat_map(|c| c.values_mut()) {
        give_example(media, schemas, true);
    }
    let responses = op.get_mut("responses").and_then(Value::as_object_mut);
    for response in responses.into_iter().flat_map(|r| r.values_mut()) {
        for media in response.get_mut("content").and_then(Value::as_object_mut).into_iter().flat_map(|c| c.values_mut()) {
            give_example(media, schemas, false);
        }
    }
}

fn give_example(media: &mut Value, schemas: &Value, request: bool) {
    if media.get("example").is_none() && media.get("examples").is_none() {
        let example = example_of(&media["schema"], "", schemas, 0, request);
        media["example"] = example;
    }
}

/// An example value of `schema`: its own example, else one made from its type. A request example
/// holds the required properties and those with an example of their own; a response's, all.
fn example_of(schema: &Value, name: &str, schemas: &Value, depth: usize, request: bool) -> Value {
    if depth > 8 {
        return Value::Null;
    }
    if let Some(example) = schema.get("example") {
        return example.clone();
    }
    if let Some(first) = schema.get("examples").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let target = reference.rsplit('/').next().unwrap_or("");
        return example_of(&schemas[target], name, schemas, depth + 1, request);
    }
    if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(variants) = schema.get(key).and_then(Value::as_array) {
            let chosen = variants.iter().find(|v| v.get("type") != Some(&Value::from("null")));
            return chosen.map_or(Value::Null, |v| example_of(v, name, schemas, depth + 1, request));
        }
    }
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        let mut merged = serde_json::Map::new();
        for part in parts {
            if let Value::Object(fields) = example_of(part, name, schemas, depth + 1, request) {
                merged.extend(fields);
            }
        }
        return Value::Object(merged);
    }
    let kind = match &schema["type"] {
        Value::String(t) => t.as_str(),
        Value::Array(types) => types.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "",
    };
    match kind {
        "object" => {
            let required: Vec<&str> =
                schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let mut fields = serde_json::Map::new();
            for (field, property) in schema["properties"].as_object().into_iter().flatten() {
                let wanted = !request || required.contains(&field.as_str()) || property.get("example").is_some();
                if wanted {
                    fields.insert(field.clone(), example_of(property, field, schemas, depth + 1, request));
                }
            }
            Value::Object(fields)
        }
        "array" => Value::Array(vec![example_of(&schema["items"], name, schemas, depth + 1, request)]),
        "integer" | "number" => schema.get("minimum").filter(|m| m.as_f64().is_some_and(|m| m > 0.0)).cloned().unwrap_or(Value::from(1)),
        "boolean" => Value::Bool(false),
        "string" => Value::from(string_example(schema["format"].as_str().unwrap_or(""), name)),
        "null" => Value::Null,
        _ => Value::Object(serde_json::Map::new()),
    }
}

/// A string that reads like the field it fills.
fn string_example(format: &str, name: &str) -> &'static str {
    match (format, name) {
        ("uuid", _) | (_, "id") => "67e55044-10b1-426f-9247-bb680e5fe0c8",
        ("date-time", _) => "2026-12-01T19:44:20Z",
        (_, n) if n.ends_with("_at") => "2026-12-01T19:44:20Z",
        ("password", _) | (_, "password") => "correct horse battery",
        (_, "email") => "alice@acme.example",
        (_, "username" | "owner" | "target" | "actor") => "alice",
        (_, "org") => "Acme",
        (_, "reason") => "lost phone, ticket 4711",
        (_, "code") => "123456",
        (_, "challenge" | "token" | "key") => "3q2-7w_Xx0c1Jk4fTg9vYzB5aL8mN6pQ",
        _ => "text",
    }
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
