//! The API's OpenAPI 3.1 description, generated from the routes themselves: each handler's
//! `#[utoipa::path]`, the request and response types' schemas, and here what every route of a
//! kind shares: how it authenticates, the role a console route needs ([`required_role`], the
//! gate's own rule) and the errors any route of its kind can answer. Served at
//! `/api/openapi.json`.

use super::auth::{required_role, CSRF_HEADER, SESSION_COOKIE};
use super::ApiError;
use axum::http::Method;
use axum::{Extension, Json};
use std::sync::Arc;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Schema};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi as _, PartialSchema as _};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "SASE approval server",
        description = "The agent API (device tokens), enrollment, the console API (named admins: \
                       API tokens or a login session) and health. DingTalk's Request URL \
                       (`/dingtalk/callback/{id}`) speaks DingTalk's own wire format and is not \
                       described here. Every error is `{\"error\", \"message\"}` with a stable \
                       `error` code.",
        license(name = "MIT OR Apache-2.0"),
    ),
    tags(
        (name = "agent", description = "Called by the SASE agent on a device, with its device token (enrollment: with a code, or by signing in with DingTalk)"),
        (name = "requests", description = "Approval requests, decided by approvers"),
        (name = "devices", description = "Enrollment codes and enrolled devices"),
        (name = "directory", description = "The organisation's directory, read from DingTalk"),
        (name = "workflows", description = "Approval workflows and their DingTalk apps"),
        (name = "policies", description = "Anti-uninstallation policies"),
        (name = "admins", description = "Named admins, sessions and personal API tokens"),
        (name = "audit", description = "The tamper-evident audit log"),
        (name = "health", description = "Health, metrics and this document"),
    ),
    modifiers(&Conventions),
)]
struct ApiDoc;

/// The document's frame: info, tags, security schemes; the routes add their paths.
pub(super) fn document() -> OpenApi {
    ApiDoc::openapi()
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", operation_id = "openapi_document", tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API", body = Object)))]
pub(super) async fn serve(Extension(document): Extension<Arc<OpenApi>>) -> Json<Arc<OpenApi>> {
    Json(document)
}

/// The security schemes and the error schema. It runs on the frame, before the routes add
/// their operations: what each operation shares is added by [`complete`] once they are in.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "device_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                &format!(
                    "The cookie `POST /api/console/login` sets; a state-changing request also \
                     sends the login's `csrf` in `{CSRF_HEADER}`"
                ),
            ))),
        );
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.schemas.insert("ApiError".into(), ApiError::schema());
    }
}

/// Adds to every operation of `openapi` what its kind shares: a console route's security, the
/// role it needs and its 401 and 403; a body's 400, 413 and 415; everyone's 500.
pub(super) fn complete(openapi: &mut OpenApi) {
    for (path, item) in &mut openapi.paths.paths {
        let console = path.starts_with("/api/console/") && path != "/api/console/login";
        for (method, operation) in operations(item) {
            let Some(operation) = operation else { continue };
            if console {
                let role = required_role(&method, path);
                let needs = format!(
                    "Needs the `{}` role.",
                    serde_json::json!(role).as_str().unwrap_or_default()
                );
                operation.description = Some(match operation.description.take() {
                    Some(d) if !d.is_empty() => format!("{d}\n\n{needs}"),
                    _ => needs,
                });
                operation.security = Some(vec![
                    SecurityRequirement::new("admin_token", Vec::<String>::new()),
                    SecurityRequirement::new("session", Vec::<String>::new()),
                ]);
                add(
                    operation,
                    "401",
                    "`unauthorized`: no, an unknown or a revoked credential, or an ended session",
                );
                add(operation, "403", "`forbidden`: the role is below the one needed; `csrf`: a session's state-changing request without its CSRF token");
            } else if operation.security.is_some() {
                add(
                    operation,
                    "401",
                    "`unauthorized`: no, an unknown or a revoked token",
                );
            }
            if operation.request_body.is_some() {
                add(
                    operation,
                    "400",
                    "`bad_body`, `invalid_request`: the body is not what this route takes",
                );
                add(operation, "413", "`body_too_large`: over 64 KiB");
                add(
                    operation,
                    "415",
                    "`unsupported_media_type`: not sent as `application/json`",
                );
            }
            if operation
                .parameters
                .iter()
                .flatten()
                .any(|p| p.parameter_in == ParameterIn::Path)
            {
                add(
                    operation,
                    "400",
                    "`bad_path`: a path parameter is not UTF-8 once percent-decoded",
                );
            }
            add(operation, "500", "`internal`: the store or the server failed");
        }
    }
}

/// One object schema with the properties of both `base` and `extra` (object schemas, as
/// derives make them), and neither's closing: what a struct flattening `base` into `extra`
/// writes, where `base` refuses unknown fields.
pub(super) fn merged(base: RefOr<Schema>, extra: RefOr<Schema>, description: &str) -> RefOr<Schema> {
    let mut merged = ObjectBuilder::new().description(Some(description)).build();
    for part in [base, extra] {
        if let RefOr::T(Schema::Object(part)) = part {
            merged.properties.extend(part.properties);
            merged.required.extend(part.required);
        }
    }
    RefOr::T(Schema::Object(merged))
}

/// The path item's operations, by method.
fn operations(item: &mut utoipa::openapi::PathItem) -> [(Method, Option<&mut Operation>); 5] {
    [
        (Method::GET, item.get.as_mut()),
        (Method::POST, item.post.as_mut()),
        (Method::PUT, item.put.as_mut()),
        (Method::DELETE, item.delete.as_mut()),
        (Method::PATCH, item.patch.as_mut()),
    ]
}

/// Adds the error answer `status` to `operation`, unless it describes that status itself.
fn add(operation: &mut Operation, status: &str, description: &str) {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ApiError")))
                        .build(),
                )
                .build()
                .into()
        });
}
