//! The mock's OpenAPI endpoints: real paths, JSON shapes and error bodies. Request bodies are
//! validated as raw JSON, the way DingTalk's gateway does, independently of this crate's own
//! client types, so a client that sends a wrong name or type is caught here.

use super::api_error;
use super::server::{Shared, TOKEN_HEADER};
use super::state::{Instance, Task};
use crate::workflow::{InstanceStatus, TaskStatus};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

type Params = Query<HashMap<String, String>>;

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1.0/oauth2/accessToken", post(access_token))
        .route(
            "/v1.0/workflow/processInstances",
            get(get_instance).post(start_instance),
        )
        .route("/v1.0/workflow/processInstances/terminate", post(terminate))
        .route("/v1.0/workflow/processInstances/execute", post(execute))
        .route("/v1.0/workflow/processInstances/comments", post(comment))
        .route(
            "/v1.0/workflow/processes/instanceIds/query",
            post(list_instance_ids),
        )
        .route("/v1.0/workflow/forms/schemas/processCodes", get(form_schema))
}

/// Resolves the access token of a workflow call to its app.
fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<String, Response> {
    let Some(token) = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            "AuthenticationFailed.MissingParameter",
            "缺少参数：x-acs-dingtalk-access-token",
        ));
    };
    match shared.lock().tokens.get(token) {
        Some((client_id, expires)) if Instant::now() < *expires => Ok(client_id.clone()),
        _ => Err(api_error(
            StatusCode::BAD_REQUEST,
            "InvalidAuthentication",
            "不合法的access_token",
        )),
    }
}

fn invalid(message: impl AsRef<str>) -> Response {
    api_error(StatusCode::BAD_REQUEST, "invalidParameter", message.as_ref())
}

fn ok_true() -> Response {
    Json(json!({"result": true, "success": true})).into_response()
}

/// Reads a JSON body as an object (any other shape is a 400).
fn object(
    body: &Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<&Map<String, Value>, Response> {
    match body {
        Ok(Json(Value::Object(map))) => Ok(map),
        Ok(_) => Err(invalid("the body must be a JSON object")),
        Err(e) => Err(invalid(format!("malformed JSON body: {e}"))),
    }
}

fn req_str<'a>(body: &'a Map<String, Value>, key: &str) -> Result<&'a str, Response> {
    match body.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(invalid(format!("{key} is required"))),
        Some(_) => Err(invalid(format!("{key} must be a string"))),
    }
}

fn opt_i64(body: &Map<String, Value>, key: &str) -> Result<Option<i64>, Response> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| invalid(format!("{key} must be an integer"))),
    }
}

fn str_list(body: &Map<String, Value>, key: &str, max: usize) -> Result<Vec<String>, Response> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() <= max => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(format!("{key} must hold strings")))
            })
            .collect(),
        Some(Value::Array(_)) => Err(invalid(format!("{key} holds more than {max} items"))),
        Some(_) => Err(invalid(format!("{key} must be an array"))),
    }
}

async fn access_token(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let body = match object(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (Some(key), Some(secret)) = (
        body.get("appKey").and_then(Value::as_str),
        body.get("appSecret").and_then(Value::as_str),
    ) else {
        return invalid("appKey and appSecret are required");
    };
    let mut store = shared.lock();
    if store.apps.get(key).map(|a| a.client_secret.as_str()) != Some(secret) {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalidClientIdOrSecret",
            "无效的clientId或者clientSecret",
        );
    }
    // Within its validity a repeated fetch returns the same token and extends it (DOC-TOKEN).
    let expires = Instant::now() + shared.token_ttl;
    let existing = store
        .tokens
        .iter()
        .find(|(_, (app, at))| app == key && Instant::now() < *at)
        .map(|(token, _)| token.clone());
    let token = existing.unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
    store.tokens.insert(token.clone(), (key.to_owned(), expires));
    Json(json!({"accessToken": token, "expireIn": shared.token_ttl.as_secs()})).into_response()
}

async fn start_instance(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let client_id = match authenticate(&shared, &headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let body = match object(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match create(&shared, &client_id, body) {
        Ok((id, events)) => {
            let fail_after_create = {
                let mut store = shared.lock();
                let fail = store.faults.create_then_fail_next > 0;
                store.faults.create_then_fail_next = store.faults.create_then_fail_next.saturating_sub(1);
                fail
            };
            shared.emit(events);
            if fail_after_create {
                return api_error(StatusCode::INTERNAL_SERVER_ERROR, "systemError", "系统错误");
            }
            Json(json!({ "instanceId": id })).into_response()
        }
        Err(response) => response,
    }
}

fn create(
    shared: &Shared,
    client_id: &str,
    body: &Map<String, Value>,
) -> Result<(String, Vec<super::state::EventDraft>), Response> {
    let code = req_str(body, "processCode")?;
    let originator = req_str(body, "originatorUserId")?;
    let dept_id = opt_i64(body, "deptId")?;
    let mut store = shared.lock();
    let Some(process) = store.processes.get(code).cloned() else {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            "processCodeError",
            "processCode不存在",
        ));
    };
    let Some(Value::Array(values)) = body.get("formComponentValues") else {
        return Err(invalid("formComponentValues is required and must be an array"));
    };
    if values.len() > 150 {
        return Err(invalid("formComponentValues holds more than 150 items"));
    }
    let mut form = Vec::new();
    for (i, item) in values.iter().enumerate() {
        let (Some(name), Some(value)) = (item.get("name"), item.get("value")) else {
            return Err(invalid(format!("formComponentValues[{i}] needs name and value")));
        };
        let (Some(name), Some(value)) = (name.as_str(), value.as_str()) else {
            return Err(invalid(format!(
                "formComponentValues[{i}].name and .value must be strings"
            )));
        };
        let Some(field) = process.form.iter().find(|f| f.label == name) else {
            return Err(api_error(
                StatusCode::BAD_REQUEST,
                "illegalComponent",
                &format!("表单中不存在组件: {name}"),
            ));
        };
        form.push((name.to_owned(), value.to_owned(), field.component.clone()));
    }
    for field in process.form.iter().filter(|f| f.required) {
        if !form
            .iter()
            .any(|(name, value, _)| *name == field.label && !value.trim().is_empty())
        {
            return Err(invalid(format!(
                "required form field is missing: {}",
                field.label
            )));
        }
    }
    // Approver nodes: from the request (replacing the console flow) or the process default.
    let mut nodes: Vec<(String, Vec<String>)> = Vec::new();
    match body.get("approvers") {
        None | Some(Value::Null) => {
            if dept_id.is_none() {
                return Err(invalid("deptId is required when approvers is absent"));
            }
            if !process.approvers.is_empty() {
                nodes.push(("OR".to_owned(), process.approvers.clone()));
            }
        }
        Some(Value::Array(list)) if list.len() <= 20 => {
            for (i, node) in list.iter().enumerate() {
                let mode = node.get("actionType").and_then(Value::as_str).unwrap_or("NONE");
                if !["AND", "OR", "NONE"].contains(&mode) {
                    return Err(invalid(format!(
                        "approvers[{i}].actionType must be AND, OR or NONE"
                    )));
                }
                let users = node
                    .as_object()
                    .map(|o| str_list(o, "userIds", 100))
                    .transpose()?
                    .unwrap_or_default();
                if users.is_empty() {
                    return Err(invalid(format!("approvers[{i}].userIds is required")));
                }
                nodes.push((mode.to_owned(), users));
            }
        }
        Some(_) => return Err(invalid("approvers must be an array of at most 20 nodes")),
    }
    if nodes.is_empty() {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            "targetSelectApproverMissing",
            "审批人为空",
        ));
    }
    let cc = if body.contains_key("approvers") {
        str_list(body, "ccList", 50)?
    } else {
        Vec::new()
    };
    let now = shared.now();
    let n = store.next();
    let id = format!("{:016x}{n:06}MOCK", rand::random::<u64>());
    let business_id = format!(
        "{}{n:06}",
        super::state::minute_utc(now).replace(['-', 'T', ':', 'Z'], "")
    );
    let corp_id = store
        .apps
        .get(client_id)
        .map(|a| a.corp_id.clone())
        .unwrap_or_default();
    let mut tasks = Vec::new();
    for (node, (_, users)) in nodes.iter().enumerate() {
        for user in users {
            let task_n = store.next();
            tasks.push(Task {
                // Real task ids exceed 2^32.
                task_id: 80_000_000_000 + i64::try_from(task_n).unwrap_or(0),
                user_id: user.clone(),
                node,
                status: TaskStatus::New,
                result: None,
                create_ms: now,
                finish_ms: None,
            });
        }
    }
    let mut instance = Instance {
        id: id.clone(),
        client_id: client_id.to_owned(),
        corp_id,
        process_code: code.to_owned(),
        title: format!("{originator}提交的{}", process.name),
        business_id,
        originator: originator.to_owned(),
        dept_id: dept_id.unwrap_or(-1),
        status: InstanceStatus::Running,
        result: None,
        create_ms: now,
        finish_ms: None,
        form,
        node_modes: nodes.iter().map(|(mode, _)| mode.clone()).collect(),
        tasks,
        records: Vec::new(),
        cc,
    };
    let events = instance.start(now);
    store.instances.insert(id.clone(), instance);
    store.order.push(id.clone());
    Ok((id, events))
}

/// Looks an instance up for the calling app.
fn with_instance<T>(
    shared: &Shared,
    client_id: &str,
    id: &str,
    f: impl FnOnce(&mut Instance) -> Result<T, Response>,
) -> Result<T, Response> {
    let mut store = shared.lock();
    match store.instances.get_mut(id) {
        Some(instance) if instance.client_id == client_id => f(instance),
        _ => Err(api_error(
            StatusCode::BAD_REQUEST,
            "processInstanceNotExist",
            "审批实例不存在",
        )),
    }
}

async fn get_instance(State(shared): State<Arc<Shared>>, headers: HeaderMap, Query(q): Params) -> Response {
    let client_id = match authenticate(&shared, &headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(id) = q.get("processInstanceId").filter(|id| !id.is_empty()) else {
        return invalid("processInstanceId is required");
    };
    match with_instance(&shared, &client_id, id, |i| Ok(i.to_json())) {
        // `success` is the string "true" here, unlike every other workflow API.
        Ok(result) => Json(json!({"success": "true", "result": result})).into_response(),
        Err(r) => r,
    }
}

async fn terminate(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: JsonBody) -> Response {
    instance_action(&shared, &headers, &body, |client_id, body| {
        let id = req_str(body, "processInstanceId")?;
        if body
            .get("isSystem")
            .is_some_and(|v| !v.is_boolean() && !v.is_null())
        {
            return Err(invalid("isSystem must be a boolean"));
        }
        let operator = body
            .get("operatingUserId")
            .and_then(Value::as_str)
            .unwrap_or("system");
        let remark = body.get("remark").and_then(Value::as_str);
        let grace = shared.terminate_grace_ms;
        with_instance(&shared, client_id, id, |i| {
            i.terminate(operator, remark, shared.now(), grace)
                .map_err(Response::from)
        })
    })
}

async fn execute(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: JsonBody) -> Response {
    instance_action(&shared, &headers, &body, |client_id, body| {
        let id = req_str(body, "processInstanceId")?;
        let actioner = req_str(body, "actionerUserId")?;
        let task_id = opt_i64(body, "taskId")?.ok_or_else(|| invalid("taskId is required"))?;
        let agree = match req_str(body, "result")? {
            "agree" => true,
            "refuse" => false,
            other => return Err(invalid(format!("result must be agree or refuse, not {other}"))),
        };
        let remark = body.get("remark").and_then(Value::as_str);
        with_instance(&shared, client_id, id, |i| {
            i.execute(task_id, actioner, agree, remark, shared.now())
                .map_err(Response::from)
        })
    })
}

async fn comment(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: JsonBody) -> Response {
    instance_action(&shared, &headers, &body, |client_id, body| {
        let id = req_str(body, "processInstanceId")?;
        let text = req_str(body, "text")?;
        let user = req_str(body, "commentUserId")?;
        with_instance(&shared, client_id, id, |i| {
            Ok(i.comment(user, text, shared.now()))
        })
    })
}

type JsonBody = Result<Json<Value>, axum::extract::rejection::JsonRejection>;

/// Runs an action on an instance (terminate, execute, comment): authentication, the JSON
/// body, then `act`; answers `{"result":true,"success":true}` and pushes the events.
fn instance_action(
    shared: &Shared,
    headers: &HeaderMap,
    body: &JsonBody,
    act: impl FnOnce(&str, &Map<String, Value>) -> Result<Vec<super::state::EventDraft>, Response>,
) -> Response {
    let result = authenticate(shared, headers).and_then(|client_id| act(&client_id, object(body)?));
    match result {
        Ok(events) => {
            shared.emit(events);
            ok_true()
        }
        Err(r) => r,
    }
}

async fn list_instance_ids(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let result = (|| {
        let client_id = authenticate(&shared, &headers)?;
        let body = object(&body)?;
        let code = req_str(body, "processCode")?;
        let start = opt_i64(body, "startTime")?.ok_or_else(|| invalid("startTime is required"))?;
        let end = opt_i64(body, "endTime")?.unwrap_or(i64::MAX);
        // The request's nextToken is a number (the response's is a string).
        let offset = opt_i64(body, "nextToken")?.ok_or_else(|| invalid("nextToken is required (0 first)"))?;
        let max = opt_i64(body, "maxResults")?.ok_or_else(|| invalid("maxResults is required"))?;
        if !(1..=20).contains(&max) {
            return Err(invalid("maxResults must be between 1 and 20"));
        }
        let users = str_list(body, "userIds", 10)?;
        let statuses = str_list(body, "statuses", 3)?;
        let store = shared.lock();
        let matching: Vec<String> = store
            .order
            .iter()
            .filter_map(|id| store.instances.get(id))
            .filter(|i| {
                i.client_id == client_id
                    && i.process_code == code
                    && (start..=end).contains(&i.create_ms)
                    && (users.is_empty() || users.contains(&i.originator))
                    && (statuses.is_empty() || statuses.iter().any(|s| s == i.status.as_str()))
            })
            .map(|i| i.id.clone())
            .collect();
        let from = usize::try_from(offset.max(0)).unwrap_or(usize::MAX);
        let size = usize::try_from(max).unwrap_or(20);
        let page: Vec<&String> = matching.iter().skip(from).take(size).collect();
        let mut result = json!({ "list": page });
        if from.saturating_add(size) < matching.len() {
            if let Some(obj) = result.as_object_mut() {
                obj.insert("nextToken".into(), json!((from + size).to_string()));
            }
        }
        Ok(result)
    })();
    match result {
        Ok(result) => Json(json!({"success": true, "result": result})).into_response(),
        Err(r) => r,
    }
}

async fn form_schema(State(shared): State<Arc<Shared>>, headers: HeaderMap, Query(q): Params) -> Response {
    if let Err(r) = authenticate(&shared, &headers) {
        return r;
    }
    let Some(code) = q.get("processCode") else {
        return invalid("processCode is required");
    };
    let Some(process) = shared.lock().processes.get(code).cloned() else {
        return api_error(StatusCode::BAD_REQUEST, "processCodeError", "processCode不存在");
    };
    let items: Vec<Value> = process
        .form
        .iter()
        .enumerate()
        .map(|(i, f)| {
            json!({"componentName": f.component, "children": [],
                   "props": {"componentId": format!("{}-{i}", f.component), "label": f.label,
                             "required": f.required, "bizAlias": ""}})
        })
        .collect();
    Json(json!({"result": {
        "name": process.name, "formCode": process.process_code, "formUuid": format!("FORM-{}", process.process_code),
        "status": "PUBLISHED", "procType": "inner", "memo": "", "appType": 0, "engineType": 0,
        "schemaContent": {"title": process.name, "icon": "common", "items": items},
    }}))
    .into_response()
}
