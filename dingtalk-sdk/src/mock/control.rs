//! The control API: act as approvers and administrators would, push chosen events, inspect,
//! set quotas and inject faults.
//! Served over HTTP under `/__mock/` (clearly apart from DingTalk's own paths) and used by the
//! Rust methods of [`MockDingTalk`](super::MockDingTalk).
//!
//! | method and path | body | does |
//! |---|---|---|
//! | `POST /__mock/instances/{id}/approve` | `{"userId"?, "remark"?}` | the approver (default: first running task) agrees |
//! | `POST /__mock/instances/{id}/refuse` | `{"userId"?, "remark"?}` | the approver refuses |
//! | `POST /__mock/instances/{id}/terminate` | `{"remark"?}` | the originator revokes it |
//! | `POST /__mock/instances/{id}/comment` | `{"userId", "text"}` | adds a comment |
//! | `GET /__mock/instances` / `GET /__mock/instances/{id}` | | instances as `GetProcessInstance` shows them |
//! | `GET /__mock/journal` | | every OpenAPI request received |
//! | `GET /__mock/deliveries` | | every event delivery attempt |
//! | `PUT /__mock/faults` | [`MockFaults`] | sets the injected faults |
//! | `POST /__mock/tokens/revoke` | | invalidates every access token (v1.0, old API, users') |
//! | `POST /__mock/apps` | [`MockApp`] | registers an app (sends `check_url` to its Request URL) |
//! | `POST /__mock/processes` | [`MockProcess`] | registers a process |
//! | `POST /__mock/events` | [`MockEvent`]: `{"app", "eventType", "processInstanceId"?, "eventId"?, "fields"?, "via"?: "http_push"\|"stream"}` | pushes that event (same encryption and frames as real ones); answers `{"ok": true, "deliveries": [Delivery…]}` |
//! | `GET /__mock/stream/journal` | | what the Stream gateway did with each event: `pushed`, `redelivered`, `consumed`, `later`, `warning` (an ACK off the protocol), `dropped` |
//! | `PUT /__mock/quotas` / `GET /__mock/quotas` | [`MockQuotas`]: `{"qps_per_app_and_api"?, "calls_per_month"?}` | sets (or shows) the enforced quotas |
//! | `GET /__mock/usage` | | calls per app and API in the clock's month, with refusals: [`MockUsage`](super::MockUsage) |
//! | `GET /__mock/directory` | | the directory: [`MockDirectory`](super::MockDirectory) |
//! | `POST /__mock/directory/users[?deliver=false]` | [`MockUser`]: `{"user_id", "name", "dept_ids", "corp_id"?, "union_id"?, "mobile"?, "email"?}` | a user joins; `user_add_org` to the apps of the user's corp |
//! | `PUT /__mock/directory/users/{userId}/departments[?corpId=&deliver=false]` | `{"deptIds": [2, 3]}` | the user moves; `user_modify_org` |
//! | `DELETE /__mock/directory/users/{userId}[?corpId=&deliver=false]` | | the user leaves; `user_leave_org` |
//! | `POST /__mock/directory/departments[?deliver=false]` | [`MockDepartment`]: `{"id", "name", "parent", "corp_id"?}` | a department is created; `org_dept_create` |
//! | `PUT /__mock/directory/departments/{id}[?corpId=&deliver=false]` | `{"name"}` | it is renamed; `org_dept_modify` |
//! | `DELETE /__mock/directory/departments/{id}[?corpId=&deliver=false]` | | an empty department is removed; `org_dept_remove` |
//! | `POST /__mock/oauth/code` | [`MockSignIn`]: `{"userId", "redirectUri", "state"?, "clientId"?, "corpId"?}` | signs the user in without a browser: `{"authCode", "location"}` |
//!
//! Directory changes answer `{"ok": true}` and deliver their event like every other event
//! (HTTP push and/or Stream, in order, after the answer); `deliver=false` changes the directory
//! silently, as when DingTalk's event is lost. `corpId` defaults to the mock's organisation.

use super::api_error;
use super::config::{MockApp, MockFaults, MockProcess, MockQuotas};
use super::delivery::{self, Delivery, MockEvent};
use super::directory::{Change, MockDepartment, MockUser};
use super::server::{Notify, Shared};
use super::signin::{self, MockSignIn};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// A refused control action: DingTalk's error code and message.
pub(crate) type Refused = (String, String);

fn not_found() -> Refused {
    ("processInstanceNotExist".to_owned(), "审批实例不存在".to_owned())
}

/// An approver decides: the running task of `approver`, or the first running task.
pub(crate) fn decide(
    shared: &Shared,
    id: &str,
    approver: Option<&str>,
    agree: bool,
    remark: Option<&str>,
) -> Result<(), Refused> {
    let events = {
        let mut store = shared.lock();
        let instance = store.instances.get_mut(id).ok_or_else(not_found)?;
        let task = instance.running_task(approver).cloned().ok_or_else(|| {
            (
                "taskNotExist".to_owned(),
                "no running task for that approver".to_owned(),
            )
        })?;
        instance
            .execute(task.task_id, &task.user_id, agree, remark, shared.now())
            .map_err(|r| (r.code.to_owned(), r.message))?
    };
    shared.emit(events);
    Ok(())
}

/// The originator revokes the instance in the DingTalk app (no 15-second rule there).
pub(crate) fn terminate(shared: &Shared, id: &str, remark: Option<&str>) -> Result<(), Refused> {
    let events = {
        let mut store = shared.lock();
        let instance = store.instances.get_mut(id).ok_or_else(not_found)?;
        let originator = instance.originator.clone();
        instance
            .terminate(&originator, remark, shared.now(), 0)
            .map_err(|r| (r.code.to_owned(), r.message))?
    };
    shared.emit(events);
    Ok(())
}

/// Adds a comment as `user`.
pub(crate) fn comment(shared: &Shared, id: &str, user: &str, text: &str) -> Result<(), Refused> {
    let events = {
        let mut store = shared.lock();
        let instance = store.instances.get_mut(id).ok_or_else(not_found)?;
        instance.comment(user, text, shared.now())
    };
    shared.emit(events);
    Ok(())
}

/// Pushes a chosen event over the app's channels (or the chosen one).
pub(crate) async fn push_event(shared: &Arc<Shared>, event: MockEvent) -> Result<Vec<Delivery>, Refused> {
    let invalid = |message: String| ("invalidParameter".to_owned(), message);
    let app = shared.lock().apps.get(&event.app).cloned();
    let Some(app) = app else {
        return Err(invalid(format!("unknown app {}", event.app)));
    };
    if event.event_type.is_empty() {
        return Err(invalid("eventType is required".to_owned()));
    }
    if event.via.is_none() && app.request_url.is_none() && !app.stream {
        return Err(invalid(format!(
            "app {} has no event delivery (no request_url, stream = false): pass via",
            app.client_id
        )));
    }
    Ok(delivery::deliver(shared, event.into_draft()).await)
}

/// Changes the directory and, unless `notify` says to skip it, queues the contact-change
/// event for every app of the corp concerned.
pub(crate) fn change_directory(shared: &Shared, change: Change, notify: Notify) -> Result<(), Refused> {
    let now = shared.now();
    let events = {
        let mut store = shared.lock();
        let touched = store.directory.apply(change)?;
        store
            .apps
            .values()
            .filter(|app| app.corp_id == touched.corp_id())
            .map(|app| touched.draft(&app.client_id, now))
            .collect::<Vec<_>>()
    };
    if notify == Notify::Deliver {
        shared.emit(events);
    }
    Ok(())
}

/// Registers (or replaces) an app; a Request URL gets `check_url` first.
pub(crate) async fn register_app(shared: &Arc<Shared>, app: MockApp) -> Option<Delivery> {
    shared.gateway.register_mock_app(&app);
    shared.lock().apps.insert(app.client_id.clone(), app.clone());
    if app.request_url.is_some() {
        Some(delivery::check_url(shared, &app).await)
    } else {
        None
    }
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/__mock/instances", get(list))
        .route("/__mock/instances/{id}", get(one))
        .route("/__mock/instances/{id}/approve", post(approve))
        .route("/__mock/instances/{id}/refuse", post(refuse))
        .route("/__mock/instances/{id}/terminate", post(revoke))
        .route("/__mock/instances/{id}/comment", post(add_comment))
        .route("/__mock/journal", get(journal))
        .route("/__mock/deliveries", get(deliveries))
        .route("/__mock/faults", put(set_faults).get(get_faults))
        .route("/__mock/tokens/revoke", post(revoke_tokens))
        .route("/__mock/apps", post(add_app))
        .route("/__mock/processes", post(add_process))
        .route("/__mock/events", post(push))
        .route("/__mock/stream/journal", get(stream_journal))
        .route("/__mock/quotas", put(set_quotas).get(get_quotas))
        .route("/__mock/usage", get(usage))
        .route("/__mock/directory", get(directory))
        .route("/__mock/directory/users", post(add_user))
        .route("/__mock/directory/users/{id}", delete(remove_user))
        .route("/__mock/directory/users/{id}/departments", put(move_user))
        .route("/__mock/directory/departments", post(add_department))
        .route(
            "/__mock/directory/departments/{id}",
            put(rename_department).delete(remove_department),
        )
        .route("/__mock/oauth/code", post(sign_in_code))
}

/// `?corpId=&deliver=` of the directory routes.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Target {
    corp_id: Option<String>,
    deliver: Option<bool>,
}

impl Target {
    fn corp_id(&self) -> String {
        self.corp_id
            .clone()
            .unwrap_or_else(|| super::config::DEFAULT_CORP_ID.to_owned())
    }

    fn notify(&self) -> Notify {
        if self.deliver == Some(false) {
            Notify::Skip
        } else {
            Notify::Deliver
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Move {
    dept_ids: Vec<i64>,
}

#[derive(Deserialize)]
struct Rename {
    name: String,
}

fn changed(result: Result<(), Refused>) -> Response {
    match result {
        Ok(()) => Json(json!({"ok": true})).into_response(),
        Err((code, message)) => api_error(StatusCode::BAD_REQUEST, &code, &message),
    }
}

async fn directory(State(s): State<Arc<Shared>>) -> Response {
    Json(s.lock().directory.clone()).into_response()
}

async fn add_user(
    State(s): State<Arc<Shared>>,
    Query(t): Query<Target>,
    Json(user): Json<MockUser>,
) -> Response {
    changed(change_directory(&s, Change::AddUser(user), t.notify()))
}

async fn move_user(
    State(s): State<Arc<Shared>>,
    Path(user_id): Path<String>,
    Query(t): Query<Target>,
    Json(m): Json<Move>,
) -> Response {
    let change = Change::MoveUser {
        corp_id: t.corp_id(),
        user_id,
        dept_ids: m.dept_ids,
    };
    changed(change_directory(&s, change, t.notify()))
}

async fn remove_user(
    State(s): State<Arc<Shared>>,
    Path(user_id): Path<String>,
    Query(t): Query<Target>,
) -> Response {
    let change = Change::RemoveUser {
        corp_id: t.corp_id(),
        user_id,
    };
    changed(change_directory(&s, change, t.notify()))
}

async fn add_department(
    State(s): State<Arc<Shared>>,
    Query(t): Query<Target>,
    Json(dept): Json<MockDepartment>,
) -> Response {
    changed(change_directory(&s, Change::AddDepartment(dept), t.notify()))
}

async fn rename_department(
    State(s): State<Arc<Shared>>,
    Path(id): Path<i64>,
    Query(t): Query<Target>,
    Json(r): Json<Rename>,
) -> Response {
    let change = Change::RenameDepartment {
        corp_id: t.corp_id(),
        id,
        name: r.name,
    };
    changed(change_directory(&s, change, t.notify()))
}

async fn remove_department(
    State(s): State<Arc<Shared>>,
    Path(id): Path<i64>,
    Query(t): Query<Target>,
) -> Response {
    let change = Change::RemoveDepartment {
        corp_id: t.corp_id(),
        id,
    };
    changed(change_directory(&s, change, t.notify()))
}

async fn sign_in_code(State(s): State<Arc<Shared>>, Json(sign_in): Json<MockSignIn>) -> Response {
    match signin::issue_code(&s, sign_in) {
        Ok(issued) => Json(issued).into_response(),
        Err((code, message)) => api_error(StatusCode::BAD_REQUEST, &code, &message),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Action {
    user_id: Option<String>,
    remark: Option<String>,
    text: Option<String>,
}

fn outcome(result: Result<(), Refused>) -> Response {
    match result {
        Ok(()) => Json(json!({"ok": true})).into_response(),
        Err((code, message)) => api_error(StatusCode::CONFLICT, &code, &message),
    }
}

fn action(body: Option<Json<Action>>) -> Action {
    body.map(|Json(a)| a).unwrap_or_default()
}

async fn approve(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Option<Json<Action>>,
) -> Response {
    let a = action(body);
    outcome(decide(&s, &id, a.user_id.as_deref(), true, a.remark.as_deref()))
}

async fn refuse(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Option<Json<Action>>,
) -> Response {
    let a = action(body);
    outcome(decide(&s, &id, a.user_id.as_deref(), false, a.remark.as_deref()))
}

async fn revoke(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Option<Json<Action>>,
) -> Response {
    outcome(terminate(&s, &id, action(body).remark.as_deref()))
}

async fn add_comment(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Option<Json<Action>>,
) -> Response {
    let a = action(body);
    let (Some(user), Some(text)) = (a.user_id, a.text) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalidParameter",
            "userId and text are required",
        );
    };
    outcome(comment(&s, &id, &user, &text))
}

async fn list(State(s): State<Arc<Shared>>) -> Json<Value> {
    let store = s.lock();
    let all: Vec<Value> = store
        .order
        .iter()
        .filter_map(|id| store.instances.get(id))
        .map(|i| json!({"processInstanceId": i.id, "processCode": i.process_code, "instance": i.to_json()}))
        .collect();
    Json(Value::Array(all))
}

async fn one(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match s.lock().instances.get(&id) {
        Some(i) => Json(i.to_json()).into_response(),
        None => {
            let (code, message) = not_found();
            api_error(StatusCode::NOT_FOUND, &code, &message)
        }
    }
}

async fn journal(State(s): State<Arc<Shared>>) -> Response {
    Json(s.lock().journal.clone()).into_response()
}

async fn deliveries(State(s): State<Arc<Shared>>) -> Response {
    Json(s.lock().deliveries.clone()).into_response()
}

async fn set_faults(State(s): State<Arc<Shared>>, Json(faults): Json<MockFaults>) -> Response {
    s.lock().faults = faults.clone();
    Json(faults).into_response()
}

async fn get_faults(State(s): State<Arc<Shared>>) -> Response {
    Json(s.lock().faults.clone()).into_response()
}

async fn revoke_tokens(State(s): State<Arc<Shared>>) -> Response {
    s.lock().revoke_tokens();
    Json(json!({"ok": true})).into_response()
}

async fn add_app(State(s): State<Arc<Shared>>, Json(app): Json<MockApp>) -> Response {
    Json(json!({"ok": true, "checkUrl": register_app(&s, app).await})).into_response()
}

async fn push(State(s): State<Arc<Shared>>, Json(event): Json<MockEvent>) -> Response {
    match push_event(&s, event).await {
        Ok(deliveries) => Json(json!({"ok": true, "deliveries": deliveries})).into_response(),
        Err((code, message)) => api_error(StatusCode::BAD_REQUEST, &code, &message),
    }
}

async fn stream_journal(State(s): State<Arc<Shared>>) -> Response {
    Json(s.gateway.journal()).into_response()
}

async fn set_quotas(State(s): State<Arc<Shared>>, Json(quotas): Json<MockQuotas>) -> Response {
    s.lock().quotas.limits = quotas;
    Json(quotas).into_response()
}

async fn get_quotas(State(s): State<Arc<Shared>>) -> Response {
    Json(s.lock().quotas.limits).into_response()
}

async fn usage(State(s): State<Arc<Shared>>) -> Response {
    Json(s.lock().quotas.usage.clone()).into_response()
}

async fn add_process(State(s): State<Arc<Shared>>, Json(process): Json<MockProcess>) -> Response {
    s.lock().processes.insert(process.process_code.clone(), process);
    Json(json!({"ok": true})).into_response()
}
