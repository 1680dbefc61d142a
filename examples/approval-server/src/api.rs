//! HTTP routes: the per-workflow Request URL, the agent API (device tokens), the console API
//! (admin token) and health. Every bad input gets a 4xx JSON error `{"error", "message"}`
//! with a stable code; axum's own rejections are converted in [`rejection`]. Every route but
//! the Request URL (DingTalk's wire format) is registered with its OpenAPI description, so the
//! document served at `/api/openapi.json` lists exactly the router's routes ([`openapi`]).

mod admins;
mod audit;
mod auth;
pub(crate) use auth::{cookie, SESSION_COOKIE};
mod devices;
mod directory;
mod export;
mod openapi;
mod policies;
mod rejection;
mod sign_in;
mod workflows;

use crate::admins::{Admins, Identity};
use crate::audit_log::AuditLog;
use crate::devices::{Devices, Enrolled};
use crate::directory::Directory;
use crate::filing_limit::FilingLimit;
use crate::login_throttle::LoginThrottle;
use crate::metrics::Metrics;
use crate::policies::Policies;
use crate::sign_in::SignIn;
use crate::workflows::Workflows;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use rejection::BODY_LIMIT_BYTES;
use sase_approval::engine::{Engine, Filing, SubmitRequest};
use sase_approval::state::{ApprovalRequest, RequestId, RequestState};
use sase_approval::store::{ApprovalStore, ListFilter};
use sase_approval::Error as EngineError;
use sase_policy::ids::UserId;
use sase_policy::{Action, Context, Effect, GrantVerifier, SignedGrant};
use serde::de::IntoDeserializer as _;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use subtle::ConstantTimeEq as _;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Tokens are compared in constant time.
fn eq(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) engine: Arc<Engine>,
    pub(crate) policies: Policies,
    admin_token: Arc<str>,
    pub(crate) devices: Devices,
    /// The organisation's directory: users' names and departments.
    pub(crate) directory: Directory,
    /// Enrollment by signing in with DingTalk, when configured.
    pub(crate) sign_in: Option<SignIn>,
    /// Every key a grant may be signed with (the engine's first).
    grant_keys: Arc<[GrantVerifier]>,
    filings: FilingLimit,
    /// The workflows in force, their Request URLs and DingTalk apps.
    pub(crate) workflows: Workflows,
    /// The console's named admins, their tokens and sessions.
    pub(crate) admins: Admins,
    /// Session cookies are `Secure` (the server speaks TLS).
    secure_cookies: bool,
    /// The configuration changes and logins recorded in the audit chain.
    pub(crate) audit: AuditLog,
    /// Failed logins per name.
    logins: LoginThrottle,
    /// The metrics, counted by every route.
    metrics: Arc<Metrics>,
    /// What `/metrics` serves from; `None` (no metrics token): there is no `/metrics`.
    exposition: Option<Exposition>,
}

/// `/metrics`' bearer token, and the store the engine uses (counted by state at each scrape).
#[derive(Clone)]
struct Exposition {
    token: Arc<str>,
    store: Arc<dyn ApprovalStore>,
}

/// What the routes serve from, as [`start`](crate::start) puts it together.
pub(crate) struct Parts {
    pub(crate) engine: Arc<Engine>,
    pub(crate) policies: Policies,
    /// The configured admin token: the bootstrap identity.
    pub(crate) admin_token: String,
    pub(crate) devices: Devices,
    pub(crate) directory: Directory,
    pub(crate) sign_in: Option<SignIn>,
    /// Every key a grant may be signed with (the engine's first).
    pub(crate) grant_keys: Vec<GrantVerifier>,
    pub(crate) filings_per_hour: usize,
    pub(crate) workflows: Workflows,
    pub(crate) admins: Admins,
    pub(crate) audit: AuditLog,
    pub(crate) logins: LoginThrottle,
}

impl AppState {
    pub(crate) fn new(parts: Parts) -> Self {
        let audit = parts.audit;
        Self {
            engine: parts.engine,
            policies: parts.policies,
            admin_token: parts.admin_token.into(),
            devices: parts.devices,
            directory: parts.directory,
            sign_in: parts.sign_in,
            grant_keys: parts.grant_keys.into(),
            filings: FilingLimit::new(parts.filings_per_hour),
            workflows: parts.workflows,
            logins: parts.logins,
            admins: parts.admins,
            audit,
            secure_cookies: false,
            metrics: Arc::new(Metrics::new()),
            exposition: None,
        }
    }

    /// Marks session cookies `Secure`: the server speaks TLS.
    pub(crate) fn with_secure_cookies(mut self, secure: bool) -> Self {
        self.secure_cookies = secure;
        self
    }

    /// Counts into `metrics`, and serves them at `/metrics` to the bearer of `token` (with
    /// the requests by state in `store`, the engine's).
    pub(crate) fn with_metrics(
        mut self,
        metrics: Arc<Metrics>,
        store: Arc<dyn ApprovalStore>,
        token: Option<String>,
    ) -> Self {
        self.metrics = metrics;
        self.exposition = token.map(|token| Exposition {
            token: token.into(),
            store,
        });
        self
    }
}

/// Every error answer: a stable code to branch on and a message for people.
#[derive(Serialize, ToSchema)]
pub(crate) struct ApiError {
    /// Stable, snake_case (`not_found`, `stale_version`, `bad_body`, …).
    error: String,
    /// What went wrong, for people.
    message: String,
}

/// A document (workflow, policy) refused as invalid: every problem, each with its path.
#[derive(Serialize, ToSchema)]
pub(crate) struct Invalid {
    /// `invalid_workflow` or `invalid_policy`.
    error: &'static str,
    /// Every problem, in one line.
    message: String,
    /// Each problem and the path of what to fix (`workflow.fields.reason`).
    problems: Vec<ProblemView>,
}

/// One problem of an [`Invalid`] document.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProblemView {
    /// The path in the body (`policy.prompt.zh-CN.title`).
    path: String,
    /// What is wrong.
    message: String,
}

fn invalid(code: &'static str, message: String, problems: Vec<ProblemView>) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(Invalid {
            error: code,
            message,
            problems,
        }),
    )
        .into_response()
}

fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(ApiError {
            error: code.to_owned(),
            message: message.to_string(),
        }),
    )
        .into_response()
}

fn engine_error(e: &EngineError) -> Response {
    match e {
        // A document written over a version where none is stored is not found either.
        EngineError::NotFound { .. } | EngineError::Conflict { actual: 0, .. } => {
            error(StatusCode::NOT_FOUND, "not_found", e)
        }
        EngineError::IllegalTransition { .. } => error(StatusCode::CONFLICT, "illegal_transition", e),
        EngineError::Conflict { .. } => error(StatusCode::CONFLICT, "stale_version", e),
        EngineError::InvalidRequest { .. } => error(StatusCode::BAD_REQUEST, "invalid_request", e),
        EngineError::Backend(_) => error(StatusCode::BAD_GATEWAY, "dingtalk_error", e),
        EngineError::GrantRefused { refusal } => error(StatusCode::CONFLICT, refusal.code(), e),
        EngineError::NotAnApprover { .. } => error(StatusCode::FORBIDDEN, "not_an_approver", e),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// The device whose token the request bears (looked up in the store: a revoked device is
/// refused at once, on every replica).
async fn device(state: &AppState, headers: &HeaderMap) -> Result<Enrolled, Response> {
    let token = bearer(headers).ok_or_else(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a device token is required",
        )
    })?;
    match state.devices.authenticate(token).await {
        Ok(Some(device)) => Ok(Enrolled::new(&device, &state.directory.snapshot())),
        Ok(None) => Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown or revoked device token",
        )),
        Err(e) => Err(engine_error(&e)),
    }
}

/// `?version=N`: a delete names the version it removes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VersionQuery {
    version: u64,
}

type VersionParam = Result<Query<VersionQuery>, QueryRejection>;

/// The version a delete names, or 400 `bad_query`.
fn version(q: VersionParam) -> Result<u64, Response> {
    q.map(|Query(q)| q.version).map_err(|_| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "name the version deleted: `?version=N`",
        )
    })
}

type JsonBody<T> = Result<Json<T>, JsonRejection>;

fn body<T>(b: JsonBody<T>) -> Result<T, Response> {
    b.map(|Json(v)| v).map_err(rejection::json)
}

/// Path parameters, converted after authentication like bodies.
type PathParams<T> = Result<Path<T>, PathRejection>;

fn path<T>(p: PathParams<T>) -> Result<T, Response> {
    p.map(|Path(v)| v).map_err(rejection::path)
}

/// The server's routes. The Request URLs are the workflows' in force when a push arrives.
pub(crate) fn router(state: AppState) -> Router {
    let (routes, mut document) = documented_routes(&state).split_for_parts();
    openapi::complete(&mut document);
    routes
        // DingTalk's wire format, not ours: the one route the document leaves out.
        .route("/dingtalk/callback/{id}", axum::routing::any(workflows::callback))
        // Where DingTalk sends the browser back after signing in: an HTML page.
        .route(
            crate::sign_in::REDIRECT_PATH,
            axum::routing::get(sign_in::redirected).post(sign_in::confirmed),
        )
        // The web console's HTML pages: for browsers, not part of the JSON API's document.
        .merge(crate::console::routes())
        .method_not_allowed_fallback(rejection::method_not_allowed)
        .fallback(rejection::not_found)
        .with_state(state.clone())
        .layer(Extension(Arc::new(document)))
        // Last, so that every route (and the fallback) is timed, by its matched route.
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.metrics),
            crate::metrics::track,
        ))
}

/// Every route of the JSON API, each with its description.
fn documented_routes(state: &AppState) -> OpenApiRouter<AppState> {
    let mut routes = OpenApiRouter::with_openapi(openapi::document())
        .routes(routes!(openapi::serve))
        .routes(routes!(healthz))
        .routes(routes!(uninstall_check))
        .routes(routes!(file_request))
        .routes(routes!(agent_request))
        .routes(routes!(grant_key))
        .routes(routes!(consume_grant))
        .routes(routes!(devices::enroll))
        .routes(routes!(auth::login))
        .merge(console_routes(state));
    // Without a metrics token there is no such route: a 404 like any unknown path.
    if state.exposition.is_some() {
        routes = routes.routes(routes!(scrape));
    }
    // Likewise sign-in enrollment, without a configured organisation.
    if state.sign_in.is_some() {
        routes = routes
            .routes(routes!(sign_in::start))
            .routes(routes!(sign_in::collect));
    }
    routes
}

/// The console's routes, each behind [`auth::console`]: authenticated, CSRF-checked for
/// sessions, and allowed only to the role it needs.
fn console_routes(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(devices::create_code, devices::list_codes))
        .routes(routes!(devices::list_devices))
        .routes(routes!(devices::get_device))
        .routes(routes!(devices::set_tags))
        .routes(routes!(devices::revoke))
        .routes(routes!(directory::get))
        .routes(routes!(directory::sync))
        .routes(routes!(workflows::list))
        .routes(routes!(workflows::get, workflows::put, workflows::delete))
        .routes(routes!(export::export))
        .routes(routes!(policies::list))
        .routes(routes!(policies::preview))
        .routes(routes!(policies::get, policies::put, policies::delete))
        .routes(routes!(console_usage))
        .routes(routes!(workflows::live_form))
        .routes(routes!(console_list))
        .routes(routes!(console_get))
        .routes(routes!(console_action))
        .routes(routes!(auth::me))
        .routes(routes!(auth::logout))
        .routes(routes!(admins::own_tokens, admins::create_token))
        .routes(routes!(admins::revoke_token))
        .routes(routes!(admins::list, admins::create))
        .routes(routes!(admins::get, admins::update, admins::delete))
        .routes(routes!(audit::list))
        .routes(routes!(audit::export))
        .routes(routes!(audit::verify))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::console))
}

/// The server answers.
#[utoipa::path(get, path = "/healthz", operation_id = "health", tag = "health",
    responses((status = 200, description = "The server answers", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// The server's metrics as OpenMetrics text (Prometheus), to the bearer of the metrics token
/// only (`metrics_token`; without one there is no such route).
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "health",
    security(("metrics_token" = [])),
    responses(
        (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
        (status = 401, description = "No or another token", body = ApiError),
    ))]
async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let exposition = match (&state.exposition, bearer(&headers)) {
        (Some(exposition), Some(token)) if eq(token, &exposition.token) => exposition,
        _ => {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the metrics token is required",
            )
        }
    };
    match state
        .metrics
        .encode(exposition.store.as_ref(), &state.workflows.apps())
        .await
    {
        Ok(text) => ([(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    }
}

/// `POST /api/agent/uninstall-check`.
#[derive(Deserialize, Default, ToSchema)]
#[serde(default)]
struct CheckBody {
    /// The prompt's language: `zh-CN` (the default) or `en-US`.
    locale: Option<String>,
    /// What the user is about to do (`uninstall` by default).
    action: Option<Action>,
}

/// What the policy says of an action on this device.
#[derive(Serialize, ToSchema)]
struct CheckAnswer {
    /// Go ahead, file for approval, or refuse.
    effect: crate::policies::EffectName,
    /// Where a request is filed (`require_approval` only).
    workflow: Option<String>,
    /// Why.
    reason: sase_policy::Reason,
    /// The policy that decided, if any.
    policy: Option<String>,
    /// The dialog to show, in the locale asked for (with fallback), when not allowed.
    prompt: Option<sase_policy::PromptText>,
    /// Whether the agent starts with the system.
    auto_start: bool,
}

/// Whether this device's user may uninstall (or log off) now, file for approval, or not at
/// all, with the bilingual prompt to show.
#[utoipa::path(post, path = "/api/agent/uninstall-check", operation_id = "uninstall_check", tag = "agent",
    security(("device_token" = [])),
    request_body = CheckBody,
    responses((status = 200, description = "The policy's decision", body = CheckAnswer)))]
async fn uninstall_check(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: JsonBody<CheckBody>,
) -> Response {
    let (dev, b) = match (device(&state, &headers).await, body(b)) {
        (Ok(d), Ok(b)) => (d, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let subject = dev.subject();
    let locale = b.locale.unwrap_or_else(|| "zh-CN".into());
    let policies = state.policies.current();
    let d = policies.evaluate(
        &subject,
        b.action.unwrap_or(Action::Uninstall),
        &Context {
            now_ms: state.engine.clock().now_ms(),
            locale: &locale,
            grant: None,
        },
    );
    let (effect, workflow) = crate::policies::effect_name(&d.effect);
    Json(CheckAnswer {
        effect,
        workflow: workflow.map(ToString::to_string),
        reason: d.reason,
        policy: d.policy.map(ToString::to_string),
        prompt: d.prompt.cloned(),
        auto_start: d.auto_start,
    })
    .into_response()
}

/// `POST /api/agent/requests`.
#[derive(Deserialize, ToSchema)]
struct FileBody {
    /// Why the user wants to do it (shown to the approver).
    reason: String,
    /// What the user wants to do (`uninstall` by default): filed under that action's
    /// template, on the workflow's form for it.
    #[serde(default)]
    action: Option<Action>,
    /// The SASE App's version, if the form maps it.
    #[serde(default)]
    app_version: Option<String>,
}

/// A request as its device sees it.
#[derive(Serialize, ToSchema)]
struct AgentRequest {
    id: RequestId,
    state: RequestState,
    /// The grant to uninstall with, once approved.
    grant: Option<SignedGrant>,
    /// Filed, Unix ms.
    created_at_ms: i64,
}

fn agent_view(r: &ApprovalRequest) -> AgentRequest {
    AgentRequest {
        id: r.id.clone(),
        state: r.state,
        grant: r.grant.clone(),
        created_at_ms: r.created_at_ms,
    }
}

/// Files a request to uninstall (or log off) on this device, as the policy says (its
/// workflow); while one is open for that action, answers that one instead (200).
#[utoipa::path(post, path = "/api/agent/requests", operation_id = "file_request", tag = "agent",
    security(("device_token" = [])),
    request_body = FileBody,
    responses(
        (status = 201, description = "Filed", body = AgentRequest),
        (status = 200, description = "A request of this device is open already: that one", body = AgentRequest),
        (status = 409, description = "`filing_not_possible`: the policy allows, refuses, or does not allow filing", body = ApiError),
        (status = 429, description = "`rate_limited`: this device files too often (`Retry-After`)", body = ApiError),
        (status = 502, description = "`dingtalk_error`: DingTalk refused or failed", body = ApiError),
    ))]
async fn file_request(State(state): State<AppState>, headers: HeaderMap, b: JsonBody<FileBody>) -> Response {
    let (dev, b) = match (device(&state, &headers).await, body(b)) {
        (Ok(d), Ok(b)) => (d, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    // The policy decides whether filing is possible, and where to.
    let action = b.action.unwrap_or(Action::Uninstall);
    let subject = dev.subject();
    let policies = state.policies.current();
    let decision = policies.evaluate(
        &subject,
        action,
        &Context {
            now_ms: state.engine.clock().now_ms(),
            locale: "en-US",
            grant: None,
        },
    );
    let Effect::RequireApproval { workflow } = decision.effect else {
        return error(
            StatusCode::CONFLICT,
            "filing_not_possible",
            format!(
                "the policy decision is {:?} ({:?})",
                decision.effect, decision.reason
            ),
        );
    };
    let mut submit = SubmitRequest::new(
        action,
        workflow.clone(),
        dev.user.clone(),
        dev.device.clone(),
        b.reason,
    );
    if let Some(v) = b.app_version {
        submit = submit.field("app_version", v);
    }
    // Filing again while a request is open answers that request (200), not a new one (201).
    match state.engine.open_request(&dev.user, &dev.device, action).await {
        Ok(Some(open)) => return Json(agent_view(&open)).into_response(),
        Ok(None) => {}
        Err(e) => return engine_error(&e),
    }
    let admitted = match state.filings.admit(&state.engine, &dev.user, &dev.device).await {
        Ok(admitted) => admitted,
        Err(e) => return engine_error(&e),
    };
    if let Err(retry_after) = admitted {
        let mut refused = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("this device files too often; try again in {retry_after} s"),
        );
        if let Ok(value) = axum::http::HeaderValue::from_str(&retry_after.to_string()) {
            refused
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        return refused;
    }
    // A concurrent filing may have opened one since the read above: the store decides.
    match state.engine.file(submit).await {
        Ok(Filing::Created(r)) => (StatusCode::CREATED, Json(agent_view(&r))).into_response(),
        Ok(filing) => Json(agent_view(&filing.into_request())).into_response(),
        Err(e) => engine_error(&e),
    }
}

/// One of this device's requests: its state, and its grant once approved.
#[utoipa::path(get, path = "/api/agent/requests/{id}", operation_id = "get_own_request", tag = "agent",
    security(("device_token" = [])),
    params(("id" = String, Path, description = "The request's id")),
    responses(
        (status = 200, description = "The request", body = AgentRequest),
        (status = 404, description = "No such request of this device", body = ApiError),
    ))]
async fn agent_request(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: PathParams<String>,
) -> Response {
    let (dev, id) = match (device(&state, &headers).await, path(id)) {
        (Ok(d), Ok(id)) => (d, id),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    match state.engine.get(&RequestId(id)).await {
        Ok(r) if r.requester == dev.user && r.device == dev.device => Json(agent_view(&r)).into_response(),
        Ok(_) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such request for this device",
        ),
        Err(e) => engine_error(&e),
    }
}

/// `POST /api/agent/grants/consume`.
#[derive(Deserialize, ToSchema)]
struct ConsumeBody {
    /// The grant the approval gave this device.
    grant: SignedGrant,
}

/// A grant marked used.
#[derive(Serialize, ToSchema)]
struct Consumed {
    /// Always `true`.
    consumed: bool,
    grant_id: sase_policy::ids::GrantId,
}

/// The online step before an uninstall: the grant is marked used, or refused (revoked,
/// expired, used, another device's, not ours) with a 409 saying which.
#[utoipa::path(post, path = "/api/agent/grants/consume", operation_id = "consume_grant", tag = "agent",
    security(("device_token" = [])),
    request_body = ConsumeBody,
    responses(
        (status = 200, description = "Consumed: uninstall now", body = Consumed),
        (status = 409, description = "Refused: `grant_revoked`, `grant_expired`, `grant_used`, `grant_foreign`, `bad_signature`, …", body = ApiError),
    ))]
async fn consume_grant(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: JsonBody<ConsumeBody>,
) -> Response {
    let (dev, b) = match (device(&state, &headers).await, body(b)) {
        (Ok(d), Ok(b)) => (d, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    match state.engine.consume_grant(&b.grant, &dev.user, &dev.device).await {
        Ok(_) => Json(Consumed {
            consumed: true,
            grant_id: b.grant.grant.id,
        })
        .into_response(),
        Err(e) => engine_error(&e),
    }
}

/// The keys grants are signed with, for agents to verify grants offline.
#[derive(Serialize, ToSchema)]
struct GrantKeys {
    /// Signs new grants (Ed25519 public key, hex).
    public_key: String,
    /// Every key a grant may be signed with: the current one first, then those before a
    /// rotation, until their grants expire.
    public_keys: Vec<String>,
    /// Always `ed25519`.
    algorithm: &'static str,
}

/// The keys grants are signed with (no authentication: public keys, pinned by agents when
/// they enroll).
#[utoipa::path(get, path = "/api/agent/grant-key", operation_id = "grant_keys", tag = "agent",
    responses((status = 200, description = "The keys", body = GrantKeys)))]
async fn grant_key(State(state): State<AppState>) -> Response {
    Json(GrantKeys {
        public_key: state.engine.verifier().to_hex(),
        public_keys: state.grant_keys.iter().map(GrantVerifier::to_hex).collect(),
        algorithm: "ed25519",
    })
    .into_response()
}

/// `GET /api/console/requests?state=&requester=&offset=&limit=`: every parameter optional
/// (an empty value is an absent one), each at most once, no others.
#[derive(Default)]
struct ListQuery {
    state: Option<RequestState>,
    requester: Option<String>,
    offset: usize,
    limit: usize,
}

impl ListQuery {
    /// The query's pairs, percent-decoded; a refusal names the parameter.
    fn parse(pairs: Vec<(String, String)>) -> Result<Self, String> {
        let mut q = ListQuery::default();
        let mut seen: Vec<String> = Vec::new();
        for (name, value) in pairs {
            if seen.contains(&name) {
                return Err(format!("`{name}` is given more than once"));
            }
            seen.push(name.clone());
            match name.as_str() {
                "state" | "requester" | "offset" | "limit" if value.is_empty() => {}
                "state" => {
                    // serde's message lists the states, in step with `RequestState`.
                    let parsed: Result<_, serde::de::value::Error> =
                        RequestState::deserialize(value.as_str().into_deserializer());
                    q.state = Some(parsed.map_err(|e| format!("`state`: {e}"))?);
                }
                "requester" => q.requester = Some(value),
                // The store counts in SQLite's i64: a larger offset is refused, not read as 0.
                "offset" => {
                    q.offset = value
                        .parse::<i64>()
                        .ok()
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| {
                            format!(
                                "`offset` must be a whole number from 0 to {}, not `{value}`",
                                i64::MAX
                            )
                        })?;
                }
                "limit" => {
                    q.limit = value.parse().map_err(|_| {
                        format!(
                            "`limit` must be a whole number (0 for 100; at most 1000 are \
                             listed), not `{value}`"
                        )
                    })?;
                }
                _ => {
                    return Err(format!(
                        "unknown parameter `{name}`: use state, requester, offset and limit"
                    ))
                }
            }
        }
        Ok(q)
    }
}

/// The requests, newest first, with filters and paging.
#[utoipa::path(get, path = "/api/console/requests", operation_id = "list_requests", tag = "requests",
    params(
        ("state" = Option<RequestState>, Query, description = "Only requests in this state"),
        ("requester" = Option<String>, Query, description = "Only this user's requests"),
        ("offset" = Option<u64>, Query, description = "Skip this many"),
        ("limit" = Option<u64>, Query, description = "At most this many (0 or absent: 100; at most 1,000)"),
    ),
    responses(
        (status = 200, description = "The requests", body = Vec<ApprovalRequest>),
        (status = 400, description = "`bad_query`: naming the parameter", body = ApiError),
    ))]
async fn console_list(
    State(state): State<AppState>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let parsed = q
        .map_err(|e| e.body_text())
        .and_then(|Query(pairs)| ListQuery::parse(pairs));
    let q = match parsed {
        Ok(q) => q,
        Err(message) => return error(StatusCode::BAD_REQUEST, "bad_query", message),
    };
    let mut filter = ListFilter::default();
    filter.states = q.state.into_iter().collect();
    filter.requester = q.requester.map(UserId::new);
    filter.offset = q.offset;
    filter.limit = if q.limit == 0 { 100 } else { q.limit.min(1000) };
    match state.engine.list(&filter).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => engine_error(&e),
    }
}

/// A DingTalk app's calls this month.
#[derive(Serialize, ToSchema)]
struct AppUsage {
    /// The app's Client ID.
    client_id: String,
    /// The most calls a second to one API this server makes (`null`: unpaced).
    qps_per_api: Option<u32>,
    /// Every replica's calls this month, against the budget.
    usage: dingtalk_sdk::budget::BudgetUsage,
}

/// Each DingTalk app's calls this month (every replica's) against its budget.
#[utoipa::path(get, path = "/api/console/dingtalk/usage", operation_id = "dingtalk_usage", tag = "workflows",
    responses((status = 200, description = "One entry per app in force", body = Vec<AppUsage>)))]
async fn console_usage(State(state): State<AppState>) -> Response {
    let in_force = state.workflows.apps();
    let mut apps = Vec::with_capacity(in_force.len());
    for app in &in_force {
        apps.push(AppUsage {
            client_id: app.client_id.to_string(),
            qps_per_api: app.client.budget().qps_per_api,
            // Every replica's calls, read from the store.
            usage: app.client.shared_usage().await,
        });
    }
    Json(apps).into_response()
}

/// A request: its fields, state, history, DingTalk instance and grant.
#[utoipa::path(get, path = "/api/console/requests/{id}", operation_id = "get_request", tag = "requests",
    params(("id" = String, Path, description = "The request's id")),
    responses(
        (status = 200, description = "The request", body = ApprovalRequest),
        (status = 404, description = "`not_found`", body = ApiError),
    ))]
async fn console_get(State(state): State<AppState>, id: PathParams<String>) -> Response {
    let id = match path(id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match state.engine.get(&RequestId(id)).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => engine_error(&e),
    }
}

/// `POST /api/console/requests/{id}/{action}` (the body is optional).
#[derive(Deserialize, Default, ToSchema)]
#[serde(default, deny_unknown_fields)]
struct ActionBody {
    /// Why, recorded with the decision and written back to DingTalk.
    remark: Option<String>,
}

/// Approve, reject or revoke, recorded as the authenticated admin (a body cannot name
/// someone else); a DingTalk workflow's decision is written back to DingTalk.
#[utoipa::path(post, path = "/api/console/requests/{id}/{action}", operation_id = "decide_request", tag = "requests",
    params(
        ("id" = String, Path, description = "The request's id"),
        ("action" = String, Path, description = "`approve`, `reject` or `revoke`"),
    ),
    request_body(content = Option<ActionBody>, description = "Optional: no body is no remark"),
    responses(
        (status = 200, description = "The request after the decision", body = ApprovalRequest),
        (status = 403, description = "`forbidden`, `csrf`, or `not_an_approver` (a built-in workflow's approvers only)", body = ApiError),
        (status = 404, description = "`not_found` (no such request) or `unknown_action`", body = ApiError),
        (status = 409, description = "`illegal_transition` (already decided) or `stale_version`", body = ApiError),
        (status = 502, description = "`dingtalk_error`: DingTalk refused or failed", body = ApiError),
    ))]
async fn console_action(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    params: PathParams<(String, String)>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Response {
    let ((id, action), body) = match path(params).and_then(|p| Ok((p, body.map_err(rejection::bytes)?))) {
        Ok(v) => v,
        Err(r) => return r,
    };
    // No body (or `null`) is no remark; a body must be the JSON above.
    let b: ActionBody = if body.is_empty() {
        ActionBody::default()
    } else {
        match serde_json::from_slice::<Option<ActionBody>>(&body) {
            Ok(b) => b.unwrap_or_default(),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    format!("{e} (the body is {{\"remark\"}}; the actor is the authenticated admin)"),
                )
            }
        }
    };
    let (id, admin) = (RequestId(id), identity.name.as_str());
    let remark = b.remark.as_deref();
    let result = match action.as_str() {
        "approve" => state.engine.approve(&id, admin, remark).await,
        "reject" => state.engine.reject(&id, admin, remark).await,
        "revoke" => state.engine.revoke(&id, admin, remark).await,
        other => {
            return error(
                StatusCode::NOT_FOUND,
                "unknown_action",
                format!("`{other}`: use approve, reject or revoke"),
            )
        }
    };
    match result {
        Ok(r) => Json(r).into_response(),
        Err(e) => engine_error(&e),
    }
}
