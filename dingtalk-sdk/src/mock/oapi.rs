//! The old API as the mock serves it (`docs/dingtalk-directory.md` b): `GET /gettoken` (its own
//! tokens, distinct from the v1.0 ones) and the directory's `topapi` calls, with DingTalk's
//! error shape: HTTP 200 and an `errcode`. Bodies are read as JSON or form fields.

use super::server::{Shared, Store};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

type Params = Query<HashMap<String, String>>;

/// An old-API error answer: HTTP 200 with `errcode`, `errmsg` and `request_id`.
pub(crate) fn oapi_error(errcode: i64, errmsg: &str) -> Response {
    Json(json!({"errcode": errcode, "errmsg": errmsg, "request_id": request_id()})).into_response()
}

fn request_id() -> String {
    format!("{:012x}", rand::random::<u64>() >> 16)
}

/// `88` with a `sub_code`: an access token that is missing (`40000`) or invalid (`40014`).
fn auth_error(sub_code: &str, sub_msg: &str) -> Response {
    Json(json!({"errcode": 88, "sub_code": sub_code, "sub_msg": sub_msg,
                "errmsg": format!("ding talk error[subcode={sub_code},submsg={sub_msg}]"),
                "request_id": request_id()}))
    .into_response()
}

fn ok(result: Value) -> Response {
    Json(json!({"errcode": 0, "errmsg": "ok", "result": result, "request_id": request_id()})).into_response()
}

const USER_NOT_FOUND: (i64, &str) = (60121, "找不到该用户");
const DEPT_NOT_FOUND: (i64, &str) = (60003, "部门不存在");

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/gettoken", get(gettoken))
        .route("/topapi/user/getbyunionid", post(by_union_id))
        .route("/topapi/v2/user/get", post(user_get))
        .route("/topapi/v2/user/list", post(user_list))
        .route("/topapi/v2/department/listsub", post(list_sub))
        .route("/topapi/v2/department/get", post(dept_get))
        .route("/topapi/v2/department/listparentbydept", post(parents_by_dept))
        .route("/topapi/v2/department/listparentbyuser", post(parents_by_user))
}

/// The app of an old-API token, if it is valid.
pub(crate) fn token_app(store: &Store, token: &str) -> Option<String> {
    store
        .oapi_tokens
        .get(token)
        .filter(|(_, expires)| Instant::now() < *expires)
        .map(|(client_id, _)| client_id.clone())
}

/// `GET /gettoken?appkey=&appsecret=` (PROTOCOL c.2): the same token within its validity.
async fn gettoken(State(shared): State<Arc<Shared>>, Query(q): Params) -> Response {
    let (Some(key), Some(secret)) = (q.get("appkey"), q.get("appsecret")) else {
        return oapi_error(40035, "缺少参数 appkey 或 appsecret");
    };
    let mut store = shared.lock();
    if store.apps.get(key).map(|a| a.client_secret.as_str()) != Some(secret.as_str()) {
        return oapi_error(40096, "不合法的appKey或appSecret");
    }
    let existing = store
        .oapi_tokens
        .iter()
        .find(|(_, (app, at))| app == key && Instant::now() < *at)
        .map(|(token, _)| token.clone());
    let token = existing.unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
    store
        .oapi_tokens
        .insert(token.clone(), (key.clone(), Instant::now() + shared.token_ttl));
    Json(json!({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": shared.token_ttl.as_secs()}))
        .into_response()
}

/// A `topapi` call's corp (from its token) and body (JSON object or form fields).
fn request(
    shared: &Shared,
    q: &HashMap<String, String>,
    body: &[u8],
) -> Result<(String, Map<String, Value>), Response> {
    let Some(token) = q.get("access_token").filter(|t| !t.is_empty()) else {
        return Err(auth_error("40000", "access_token为空"));
    };
    let corp = {
        let store = shared.lock();
        token_app(&store, token).and_then(|app| store.apps.get(&app).map(|a| a.corp_id.clone()))
    };
    let Some(corp) = corp else {
        return Err(auth_error("40014", "不合法的access_token"));
    };
    let fields = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        _ => form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect(),
    };
    Ok((corp, fields))
}

fn text(fields: &Map<String, Value>, key: &str) -> Option<String> {
    match fields.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn number(fields: &Map<String, Value>, key: &str) -> Option<i64> {
    match fields.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Runs a `topapi` call: authenticates, reads the body, answers `handle`'s result or error.
fn call(
    shared: &Shared,
    q: &HashMap<String, String>,
    body: &[u8],
    handle: impl FnOnce(&Store, &str, &Map<String, Value>) -> Result<Value, (i64, &'static str)>,
) -> Response {
    match request(shared, q, body) {
        Ok((corp, fields)) => match handle(&shared.lock(), &corp, &fields) {
            Ok(result) => ok(result),
            Err((errcode, errmsg)) => oapi_error(errcode, errmsg),
        },
        Err(response) => response,
    }
}

const MISSING: (i64, &str) = (400002, "无效的参数");

async fn by_union_id(State(s): State<Arc<Shared>>, Query(q): Params, body: Bytes) -> Response {
    call(&s, &q, &body, |store, corp, f| {
        let union_id = text(f, "unionid").ok_or(MISSING)?;
        let user = store
            .directory
            .users
            .iter()
            .find(|u| u.corp_id == corp && u.effective_union_id() == union_id)
            .ok_or(USER_NOT_FOUND)?;
        Ok(json!({"contact_type": 0, "userid": user.user_id}))
    })
}

async fn user_get(State(s): State<Arc<Shared>>, Query(q): Params, body: Bytes) -> Response {
    call(&s, &q, &body, |store, corp, f| {
        let user_id = text(f, "userid").ok_or(MISSING)?;
        Ok(store
            .directory
            .user(corp, &user_id)
            .ok_or(USER_NOT_FOUND)?
            .to_json())
    })
}

async fn user_list(State(s): State<Arc<Shared>>, Query(q): Params, body: Bytes) -> Response {
    call(&s, &q, &body, |store, corp, f| {
        let dept = number(f, "dept_id").ok_or(MISSING)?;
        let cursor = usize::try_from(number(f, "cursor").unwrap_or(0)).map_err(|_| MISSING)?;
        let size = usize::try_from(number(f, "size").ok_or(MISSING)?).map_err(|_| MISSING)?;
        if !(1..=100).contains(&size) {
            return Err(MISSING);
        }
        store.directory.department(corp, dept).ok_or(DEPT_NOT_FOUND)?;
        let members: Vec<Value> = store
            .directory
            .users
            .iter()
            .filter(|u| u.corp_id == corp && u.dept_ids.contains(&dept))
            .map(super::directory::MockUser::to_json)
            .collect();
        let page: Vec<Value> = members.iter().skip(cursor).take(size).cloned().collect();
        let next = cursor.saturating_add(page.len());
        Ok(json!({"has_more": next < members.len(), "next_cursor": next, "list": page}))
    })
}

fn dept_json(d: &super::directory::MockDepartment) -> Value {
    let mut dept =
        json!({"dept_id": d.id, "name": d.name, "create_dept_group": false, "auto_add_user": false});
    if let (Some(obj), Some(parent)) = (dept.as_object_mut(), d.parent) {
        obj.insert("parent_id".into(), json!(parent));
    }
    dept
}

async fn list_sub(State(s): State<Arc<Shared>>, Query(q): Params, body: Bytes) -> Response {
    call(&s, &q, &body, |store, corp, f| {
        let dept = number(f, "dept_id").unwrap_or(1);
        store.directory.department(corp, dept).ok_or(DEPT_NOT_FOUND)?;
        Ok(Value::Array(
            store.directory.children(corp, dept).map(dept_json).collect(),
        ))
    })
}

async fn dept_get(State(s): State<Arc<Shared>>, Query(q): Params, body: Bytes) -> Response {
    call(&s, &q, &body, |store, corp, f| {
        let dept = number(f, "dept_id").ok_or(MISSING)?;
        Ok(dept_json(
            store.directory.department(corp, dept).ok_or(DEPT_NOT_FOUND)?,
        ))
    })
}

async fn parents_by_dept(State(s): State<Arc<Shared>>, Query(q): Params, body: Bytes) -> Response {
    call(&s, &q, &body, |store, corp, f| {
        let dept = number(f, "dept_id").ok_or(MISSING)?;
        store.directory.department(corp, dept).ok_or(DEPT_NOT_FOUND)?;
        Ok(json!({"parent_id_list": store.directory.chain(corp, dept)}))
    })
}

async fn parents_by_user(State(s): State<Arc<Shared>>, Query(q): Params, body: Bytes) -> Response {
    call(&s, &q, &body, |store, corp, f| {
        let user_id = text(f, "userid").ok_or(MISSING)?;
        // DOC-PARENT-USER documents 33012 for an unknown userid.
        let user = store
            .directory
            .user(corp, &user_id)
            .ok_or((33012, "无效的userId"))?;
        let chains: Vec<Value> = user
            .dept_ids
            .iter()
            .map(|d| json!({"parent_dept_id_list": store.directory.chain(corp, *d)}))
            .collect();
        Ok(json!({"parent_list": chains}))
    })
}
