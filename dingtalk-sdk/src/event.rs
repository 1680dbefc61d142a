//! Typed DingTalk events, normalised across the three shapes DingTalk sends.
//!
//! | shape | where | metadata |
//! |---|---|---|
//! | HTTP push, current | decrypted callback body | flat `EventType`, `EventTime`, `CorpId`, `BizId`, `eventId` |
//! | HTTP push, historical | decrypted callback body | flat `EventType`, lower-case `corpId`, no `eventId` |
//! | Stream | `EVENT` frame | frame headers `eventType`, `eventId`, `eventCorpId`, `eventBornTime`; business fields in the JSON *string* `data` |
//!
//! All three become one [`Event`]. Times are Unix milliseconds (`i64`), accepted as numbers or
//! digit strings; instance results are lower-case (`agree`), task results upper-case (`AGREE`),
//! whatever case the wire used. Keys this module does not know are kept in `extra`; event types
//! it does not know are kept raw in [`Event::Unknown`].
//!
//! ```
//! use dingtalk_sdk::event::{Event, InstanceChangeType, InstanceResult};
//!
//! let event = Event::from_json(r#"{"EventType":"bpms_instance_change","eventId":"e1","processInstanceId":"pi-1",
//!     "type":"finish","result":"agree","EventTime":1741703477120,"staffId":"manager4321"}"#)?;
//! let Event::InstanceChange(change) = &event else { panic!("not an instance change") };
//! assert_eq!(change.change, Some(InstanceChangeType::Finish));
//! assert_eq!(change.result, Some(InstanceResult::Agree));
//! assert!(change.is_approved());
//! assert_eq!(event.idempotency_key(), "e1");
//! # Ok::<(), dingtalk_sdk::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::ids::{CorpId, DeptId, ProcessCode, ProcessInstanceId, UserId};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;

/// Event type of the URL-verification event sent when a Request URL is saved.
pub const CHECK_URL: &str = "check_url";
/// Event type of approval-instance changes.
pub const BPMS_INSTANCE_CHANGE: &str = "bpms_instance_change";
/// Event type of approval-task changes.
pub const BPMS_TASK_CHANGE: &str = "bpms_task_change";
/// Event type of users joining the organisation.
pub const USER_ADD_ORG: &str = "user_add_org";
/// Event type of users changing (departments, name, …).
pub const USER_MODIFY_ORG: &str = "user_modify_org";
/// Event type of users leaving the organisation.
pub const USER_LEAVE_ORG: &str = "user_leave_org";
/// Event type of users activating DingTalk after joining.
pub const USER_ACTIVE_ORG: &str = "user_active_org";
/// Event type of departments created.
pub const ORG_DEPT_CREATE: &str = "org_dept_create";
/// Event type of departments changed.
pub const ORG_DEPT_MODIFY: &str = "org_dept_modify";
/// Event type of departments removed.
pub const ORG_DEPT_REMOVE: &str = "org_dept_remove";

/// A DingTalk event, from HTTP push or Stream mode.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// URL verification (`check_url`): reply `success`, nothing else to do.
    CheckUrl(EventMeta),
    /// An approval instance started, finished, was terminated or deleted.
    InstanceChange(InstanceChange),
    /// An approval task started, finished, was cancelled or commented on.
    TaskChange(TaskChange),
    /// Users joined, changed, left or activated (`user_add_org`, `user_modify_org`,
    /// `user_leave_org`, `user_active_org`).
    UserChange(UserChange),
    /// Departments were created, changed or removed (`org_dept_create`, `org_dept_modify`,
    /// `org_dept_remove`).
    DeptChange(DeptChange),
    /// Any other event, kept raw.
    Unknown(UnknownEvent),
}

/// Metadata every event carries (as far as its shape provides it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EventMeta {
    /// `EventType` / Stream header `eventType`.
    pub event_type: String,
    /// Unique event id (`eventId`); absent in the historical HTTP format.
    pub event_id: Option<String>,
    /// The organisation (`CorpId`, `corpId`, Stream `eventCorpId`).
    pub corp_id: Option<CorpId>,
    /// When the event happened, Unix ms (`EventTime`, Stream `eventBornTime`).
    pub event_time: Option<i64>,
    /// `BizId`: no business meaning, an idempotency key (HTTP push only).
    pub biz_id: Option<String>,
    /// Stream `eventUnifiedAppId`.
    pub unified_app_id: Option<String>,
}

/// What happened to an approval instance (`type` of `bpms_instance_change`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InstanceChangeType {
    /// The instance was started (status RUNNING).
    Start,
    /// The instance finished; see [`InstanceChange::result`] (COMPLETED).
    Finish,
    /// The instance was terminated (revoked by the originator or through the API); no result.
    Terminate,
    /// The instance was deleted.
    Delete,
    /// A value this SDK does not know yet.
    Other(String),
}

/// The outcome of a finished approval instance. Lower-case on the wire (`agree`, `refuse`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InstanceResult {
    /// Approved.
    Agree,
    /// Rejected.
    Refuse,
    /// A value this SDK does not know yet.
    Other(String),
}

/// What happened to an approval task (`type` of `bpms_task_change`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskChangeType {
    /// The task reached its approver.
    Start,
    /// The approver acted; see [`TaskChange::result`].
    Finish,
    /// Another approver of an OR-sign node acted, so this task was cancelled.
    Cancel,
    /// A comment was added.
    Comment,
    /// A value this SDK does not know yet.
    Other(String),
}

/// The outcome of an approval task. Upper-case, as the workflow API spells it (`AGREE`,
/// `REFUSE`, `REDIRECTED`), although events send lower-case `agree`/`refuse`/`redirect`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskResult {
    /// `AGREE`.
    Agree,
    /// `REFUSE`.
    Refuse,
    /// `REDIRECTED` (transferred to another approver).
    Redirected,
    /// `AUDIT` (a handler node).
    Audit,
    /// A value this SDK does not know yet.
    Other(String),
}

/// A `bpms_instance_change` event.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct InstanceChange {
    /// Event metadata.
    pub meta: EventMeta,
    /// The approval instance (always sent in practice; optional like every field but
    /// `EventType`, as the historical formats vary).
    pub process_instance_id: Option<ProcessInstanceId>,
    /// The approval template (`PROC-…`).
    pub process_code: Option<ProcessCode>,
    /// What happened (`type`).
    pub change: Option<InstanceChangeType>,
    /// The outcome; only for `finish` (absent for `start` and `terminate`).
    pub result: Option<InstanceResult>,
    /// The instance's originator (`staffId`).
    pub staff_id: Option<UserId>,
    /// Instance title, e.g. `张三提交的…申请`.
    pub title: Option<String>,
    /// Approval serial number (`businessId`).
    pub business_id: Option<String>,
    /// Business category (`bizCategoryId`), often empty.
    pub biz_category_id: Option<String>,
    /// Business identity (`businessType`), often empty.
    pub business_type: Option<String>,
    /// Link to the instance in DingTalk.
    pub url: Option<String>,
    /// Creation time, Unix ms.
    pub create_time: Option<i64>,
    /// Finish time, Unix ms (absent for `start`).
    pub finish_time: Option<i64>,
    /// Keys this SDK does not model, kept as sent.
    pub extra: Map<String, Value>,
}

impl InstanceChange {
    /// `type=finish` with `result=agree`. Note that `status=COMPLETED` alone is not approval.
    pub fn is_approved(&self) -> bool {
        self.change == Some(InstanceChangeType::Finish) && self.result == Some(InstanceResult::Agree)
    }

    /// `type=finish` with `result=refuse`.
    pub fn is_refused(&self) -> bool {
        self.change == Some(InstanceChangeType::Finish) && self.result == Some(InstanceResult::Refuse)
    }
}

/// A `bpms_task_change` event.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TaskChange {
    /// Event metadata.
    pub meta: EventMeta,
    /// The approval instance the task belongs to.
    pub process_instance_id: Option<ProcessInstanceId>,
    /// The approval template (`PROC-…`).
    pub process_code: Option<ProcessCode>,
    /// The task id (exceeds 2^32 in practice).
    pub task_id: Option<i64>,
    /// What happened (`type`).
    pub change: Option<TaskChangeType>,
    /// The approver's action; for `finish`.
    pub result: Option<TaskResult>,
    /// The approver (or the user who transferred the task), not the originator.
    pub staff_id: Option<UserId>,
    /// The approver's comment.
    pub remark: Option<String>,
    /// Instance title.
    pub title: Option<String>,
    /// Approval serial number (`businessId`).
    pub business_id: Option<String>,
    /// Business category (`bizCategoryId`).
    pub biz_category_id: Option<String>,
    /// Creation time, Unix ms.
    pub create_time: Option<i64>,
    /// Finish time, Unix ms.
    pub finish_time: Option<i64>,
    /// Keys this SDK does not model, kept as sent.
    pub extra: Map<String, Value>,
}

/// What happened to the users of a [`UserChange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UserChangeType {
    /// `user_add_org`: they joined.
    Add,
    /// `user_modify_org`: their details or departments changed.
    Modify,
    /// `user_leave_org`: they left (reading them now answers "user not found").
    Leave,
    /// `user_active_org`: they activated DingTalk after joining.
    Active,
}

/// What happened to the departments of a [`DeptChange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeptChangeType {
    /// `org_dept_create`.
    Create,
    /// `org_dept_modify`.
    Modify,
    /// `org_dept_remove`.
    Remove,
}

/// A contact-change event about users. It carries ids only: read the users to learn what
/// changed (`docs/dingtalk-directory.md` c).
///
/// ```
/// use dingtalk_sdk::event::{Event, UserChangeType};
///
/// // The historical HTTP-push body (DingTalk's archived server docs).
/// let event = Event::from_json(r#"{"EventType":"user_leave_org","TimeStamp":"1608017258073",
///     "UserId":["0119296xxx"],"OptStaffId":"WB8351xx","CorpId":"dinge8a5xxxx"}"#)?;
/// let Event::UserChange(change) = &event else { panic!("not a user change") };
/// assert_eq!(change.change, UserChangeType::Leave);
/// assert_eq!(change.user_ids, ["0119296xxx"]);
/// assert_eq!(event.idempotency_key(), "user_leave_org:0119296xxx:1608017258073");
/// # Ok::<(), dingtalk_sdk::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct UserChange {
    /// Event metadata.
    pub meta: EventMeta,
    /// What happened.
    pub change: UserChangeType,
    /// The users concerned (`userId` / historical `UserId`).
    pub user_ids: Vec<UserId>,
    /// When, Unix ms (`timeStamp` / `TimeStamp`).
    pub time_stamp: Option<i64>,
    /// Who made the change (historical `OptStaffId`).
    pub operator: Option<UserId>,
    /// Keys this SDK does not model, kept as sent.
    pub extra: Map<String, Value>,
}

/// A contact-change event about departments. It carries ids only.
///
/// ```
/// use dingtalk_sdk::event::{DeptChangeType, Event};
/// use dingtalk_sdk::DeptId;
///
/// // The current HTTP-push body (open.dingtalk.com "通讯录企业部门创建").
/// let event = Event::from_json(r#"{"EventType":"org_dept_create","EventTime":1663143335567,
///     "CorpId":"ding9f50b15bxxxx16741","BizId":"1663**35567","eventId":"c7c7120f2c07419**ebdba0318c8",
///     "deptId":[432825033]}"#)?;
/// let Event::DeptChange(change) = &event else { panic!("not a department change") };
/// assert_eq!((change.change, change.dept_ids.as_slice()), (DeptChangeType::Create, &[DeptId::new(432825033)][..]));
/// # Ok::<(), dingtalk_sdk::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeptChange {
    /// Event metadata.
    pub meta: EventMeta,
    /// What happened.
    pub change: DeptChangeType,
    /// The departments concerned (`deptId` / historical `DeptId`).
    pub dept_ids: Vec<DeptId>,
    /// When, Unix ms (historical `TimeStamp`; the current format has none).
    pub time_stamp: Option<i64>,
    /// Keys this SDK does not model, kept as sent.
    pub extra: Map<String, Value>,
}

impl UserChangeType {
    fn of(event_type: &str) -> Option<Self> {
        Some(match event_type {
            USER_ADD_ORG => Self::Add,
            USER_MODIFY_ORG => Self::Modify,
            USER_LEAVE_ORG => Self::Leave,
            USER_ACTIVE_ORG => Self::Active,
            _ => return None,
        })
    }

    /// The event type.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::Add => USER_ADD_ORG,
            Self::Modify => USER_MODIFY_ORG,
            Self::Leave => USER_LEAVE_ORG,
            Self::Active => USER_ACTIVE_ORG,
        }
    }
}

impl DeptChangeType {
    fn of(event_type: &str) -> Option<Self> {
        Some(match event_type {
            ORG_DEPT_CREATE => Self::Create,
            ORG_DEPT_MODIFY => Self::Modify,
            ORG_DEPT_REMOVE => Self::Remove,
            _ => return None,
        })
    }

    /// The event type.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::Create => ORG_DEPT_CREATE,
            Self::Modify => ORG_DEPT_MODIFY,
            Self::Remove => ORG_DEPT_REMOVE,
        }
    }
}

/// Whether an event type is a contact change this module types.
fn is_contact_change(event_type: &str) -> bool {
    UserChangeType::of(event_type).is_some() || DeptChangeType::of(event_type).is_some()
}

/// An event type this SDK does not model, kept raw.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnknownEvent {
    /// Event metadata.
    pub meta: EventMeta,
    /// The JSON as received: the decrypted body (HTTP push) or the `data` string (Stream).
    pub raw: String,
}

/// The event headers of a Stream-mode `EVENT` frame. Header values are strings on the wire;
/// numeric ones are accepted as strings or numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct StreamEventHeaders {
    /// `eventType`.
    pub event_type: String,
    /// `eventId`.
    #[serde(default)]
    pub event_id: Option<String>,
    /// `eventCorpId`.
    #[serde(default)]
    pub event_corp_id: Option<CorpId>,
    /// `eventBornTime`, Unix ms.
    #[serde(default, deserialize_with = "millis_opt")]
    pub event_born_time: Option<i64>,
    /// `eventUnifiedAppId`.
    #[serde(default)]
    pub event_unified_app_id: Option<String>,
}

impl StreamEventHeaders {
    /// Headers for an event of the given type; set the other fields as needed.
    pub fn new(event_type: impl Into<String>) -> Self {
        Self {
            event_type: event_type.into(),
            ..Self::default()
        }
    }
}

impl Event {
    /// Parses a decrypted HTTP-push event body (current or historical format).
    ///
    /// # Errors
    /// [`Error::BadEvent`] if the body is not a JSON object with a string `EventType`, or if a
    /// known event has a field of the wrong type (every field but `EventType` is optional).
    pub fn from_json(plaintext: &str) -> Result<Self> {
        let mut fields: Fields<'_> = serde_json::from_str(plaintext).map_err(Error::bad_event)?;
        let event_type = match fields.event_type.take() {
            Some(Scalar::Str(t)) => t.into_owned(),
            _ => return Err(Error::bad_event("missing string field `EventType`")),
        };
        let meta = EventMeta {
            event_type,
            event_id: fields.text(F::EventId)?,
            corp_id: fields.text(F::CorpId)?.map(CorpId::new),
            event_time: fields.millis(F::EventTime)?,
            biz_id: fields.text(F::BizId)?,
            unified_app_id: None,
        };
        Self::build(meta, fields, plaintext)
    }

    /// Builds an event from a Stream `EVENT` frame's headers and its `data` string.
    ///
    /// # Errors
    /// [`Error::BadEvent`] if `data` of a known event type is not the expected JSON object.
    pub fn from_stream(headers: &StreamEventHeaders, data: &str) -> Result<Self> {
        let meta = EventMeta {
            event_type: headers.event_type.clone(),
            event_id: headers.event_id.clone(),
            corp_id: headers.event_corp_id.clone(),
            event_time: headers.event_born_time,
            biz_id: None,
            unified_app_id: headers.event_unified_app_id.clone(),
        };
        match meta.event_type.as_str() {
            t if t == BPMS_INSTANCE_CHANGE || t == BPMS_TASK_CHANGE || is_contact_change(t) => {
                let fields: Fields<'_> = serde_json::from_str(data).map_err(Error::bad_event)?;
                Self::build(meta, fields, data)
            }
            CHECK_URL => Ok(Event::CheckUrl(meta)),
            _ => Ok(Event::Unknown(UnknownEvent {
                meta,
                raw: data.to_owned(),
            })),
        }
    }

    fn build(meta: EventMeta, mut f: Fields<'_>, raw: &str) -> Result<Self> {
        Ok(match meta.event_type.as_str() {
            CHECK_URL => Event::CheckUrl(meta),
            BPMS_INSTANCE_CHANGE => Event::InstanceChange(InstanceChange {
                process_instance_id: f.instance_id()?,
                process_code: f.text(F::ProcessCode)?.map(ProcessCode::new),
                change: f.cow(F::Type)?.map(|t| InstanceChangeType::parse(&t)),
                result: f
                    .cow(F::Result)?
                    .filter(|r| !r.is_empty())
                    .map(|r| InstanceResult::parse(&r)),
                staff_id: f.text(F::StaffId)?.map(UserId::new),
                title: f.text(F::Title)?,
                business_id: f.text(F::BusinessId)?,
                biz_category_id: f.text(F::BizCategoryId)?,
                business_type: f.text(F::BusinessType)?,
                url: f.text(F::Url)?,
                create_time: f.millis(F::CreateTime)?,
                finish_time: f.millis(F::FinishTime)?,
                extra: std::mem::take(&mut f.extra),
                meta,
            }),
            BPMS_TASK_CHANGE => Event::TaskChange(TaskChange {
                process_instance_id: f.instance_id()?,
                process_code: f.text(F::ProcessCode)?.map(ProcessCode::new),
                task_id: f.millis(F::TaskId)?,
                change: f.cow(F::Type)?.map(|t| TaskChangeType::parse(&t)),
                result: f
                    .cow(F::Result)?
                    .filter(|r| !r.is_empty())
                    .map(|r| TaskResult::parse(&r)),
                staff_id: f.text(F::StaffId)?.map(UserId::new),
                remark: f.text(F::Remark)?,
                title: f.text(F::Title)?,
                business_id: f.text(F::BusinessId)?,
                biz_category_id: f.text(F::BizCategoryId)?,
                create_time: f.millis(F::CreateTime)?,
                finish_time: f.millis(F::FinishTime)?,
                extra: std::mem::take(&mut f.extra),
                meta,
            }),
            t => {
                if let Some(change) = UserChangeType::of(t) {
                    let extra = &mut f.extra;
                    Event::UserChange(UserChange {
                        change,
                        user_ids: take_ids(extra, &["userId", "UserId"], UserId::new)?,
                        time_stamp: take_millis(extra, &["timeStamp", "TimeStamp"])?,
                        operator: take_text(extra, "OptStaffId")?.map(UserId::new),
                        extra: std::mem::take(extra),
                        meta,
                    })
                } else if let Some(change) = DeptChangeType::of(t) {
                    let extra = &mut f.extra;
                    Event::DeptChange(DeptChange {
                        change,
                        dept_ids: take_dept_ids(extra)?,
                        time_stamp: take_millis(extra, &["timeStamp", "TimeStamp"])?,
                        extra: std::mem::take(extra),
                        meta,
                    })
                } else {
                    Event::Unknown(UnknownEvent {
                        meta,
                        raw: raw.to_owned(),
                    })
                }
            }
        })
    }

    /// The event's metadata.
    pub fn meta(&self) -> &EventMeta {
        match self {
            Event::CheckUrl(meta) => meta,
            Event::InstanceChange(e) => &e.meta,
            Event::TaskChange(e) => &e.meta,
            Event::UserChange(e) => &e.meta,
            Event::DeptChange(e) => &e.meta,
            Event::Unknown(e) => &e.meta,
        }
    }

    /// The event type string (`check_url`, `bpms_instance_change`, …).
    pub fn event_type(&self) -> &str {
        &self.meta().event_type
    }

    /// A key to de-duplicate deliveries: the `eventId` where there is one; otherwise (the
    /// historical format) instance + type + result (+ task id) for approval events, type +
    /// ids + time stamp for contact changes, and `BizId` or the event type for the rest.
    pub fn idempotency_key(&self) -> String {
        let meta = self.meta();
        if let Some(id) = meta.event_id.as_deref().filter(|id| !id.is_empty()) {
            return id.to_owned();
        }
        match self {
            Event::InstanceChange(e) => format!(
                "{}:{}:{}:{}",
                BPMS_INSTANCE_CHANGE,
                e.process_instance_id
                    .as_ref()
                    .map_or("", ProcessInstanceId::as_str),
                e.change.as_ref().map_or("", InstanceChangeType::as_str),
                e.result.as_ref().map_or("", InstanceResult::as_str)
            ),
            Event::TaskChange(e) => format!(
                "{}:{}:{}:{}:{}",
                BPMS_TASK_CHANGE,
                e.process_instance_id
                    .as_ref()
                    .map_or("", ProcessInstanceId::as_str),
                e.task_id.unwrap_or_default(),
                e.change.as_ref().map_or("", TaskChangeType::as_str),
                e.result.as_ref().map_or("", TaskResult::as_str)
            ),
            Event::UserChange(e) => contact_key(
                &e.meta.event_type,
                e.user_ids.iter().map(UserId::as_str),
                e.time_stamp,
            ),
            Event::DeptChange(e) => contact_key(
                &e.meta.event_type,
                e.dept_ids.iter().map(DeptId::to_string),
                e.time_stamp,
            ),
            _ => meta.biz_id.clone().unwrap_or_else(|| meta.event_type.clone()),
        }
    }
}

/// `type:id1,id2:time_stamp`, the de-duplication key of a contact change without an `eventId`.
fn contact_key<S: AsRef<str>>(
    event_type: &str,
    ids: impl Iterator<Item = S>,
    time_stamp: Option<i64>,
) -> String {
    let ids: Vec<S> = ids.collect();
    let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
    let time = time_stamp.map(|t| t.to_string()).unwrap_or_default();
    format!("{event_type}:{}:{time}", ids.join(","))
}

/// Removes the first of `keys` present in `extra` (contact events spell their keys
/// `userId`/`UserId` depending on the format).
fn take_any(extra: &mut Map<String, Value>, keys: &[&'static str]) -> Option<(&'static str, Value)> {
    keys.iter().find_map(|key| extra.remove(*key).map(|v| (*key, v)))
}

/// An id list: an array of strings or numbers, or a single one (third-party apps' events).
fn take_ids<T>(
    extra: &mut Map<String, Value>,
    keys: &[&'static str],
    wrap: impl Fn(String) -> T,
) -> Result<Vec<T>> {
    let Some((key, value)) = take_any(extra, keys) else {
        return Ok(Vec::new());
    };
    let one = |v: Value| match v {
        Value::String(s) => Ok(wrap(s)),
        Value::Number(n) => Ok(wrap(n.to_string())),
        _ => Err(Error::bad_event(format_args!("field `{key}`: expected ids"))),
    };
    match value {
        Value::Array(items) => items.into_iter().map(one).collect(),
        Value::Null => Ok(Vec::new()),
        single => one(single).map(|id| vec![id]),
    }
}

fn take_dept_ids(extra: &mut Map<String, Value>) -> Result<Vec<DeptId>> {
    take_ids(extra, &["deptId", "DeptId"], |s| s)?
        .into_iter()
        .map(|s| {
            s.parse()
                .map(DeptId::new)
                .map_err(|_| Error::bad_event(format_args!("field `deptId`: `{s}` is not a department id")))
        })
        .collect()
}

fn take_millis(extra: &mut Map<String, Value>, keys: &[&'static str]) -> Result<Option<i64>> {
    match take_any(extra, keys) {
        None | Some((_, Value::Null)) => Ok(None),
        Some((key, value)) => {
            millis_opt(value).map_err(|e| Error::bad_event(format_args!("field `{key}`: {e}")))
        }
    }
}

fn take_text(extra: &mut Map<String, Value>, key: &'static str) -> Result<Option<String>> {
    match extra.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::bad_event(format_args!("field `{key}`: expected a string"))),
    }
}

wire_enum!(InstanceChangeType { Start => "start", Finish => "finish", Terminate => "terminate", Delete => "delete" });
wire_enum!(InstanceResult { Agree => "agree", Refuse => "refuse" });
wire_enum!(TaskChangeType { Start => "start", Finish => "finish", Cancel => "cancel", Comment => "comment" });
wire_enum!(TaskResult { Agree => "AGREE", Refuse => "REFUSE", Redirected => "REDIRECTED" | "redirect", Audit => "AUDIT" });

// ---- parsing -------------------------------------------------------------------------------

/// The keys this module models. Parsed by a hand-written visitor so known keys cost no
/// allocation and unknown ones land in `extra` (serde's `flatten` would buffer everything).
#[derive(Clone, Copy)]
enum F {
    EventType,
    EventTime,
    CorpId,
    BizId,
    EventId,
    ProcessInstanceId,
    ProcessCode,
    BizCategoryId,
    BusinessId,
    BusinessType,
    Title,
    Type,
    Result,
    CreateTime,
    FinishTime,
    StaffId,
    Url,
    TaskId,
    Remark,
}

const FIELD_COUNT: usize = 19;

impl F {
    fn from_key(key: &str) -> Option<F> {
        Some(match key {
            "EventType" => F::EventType,
            "EventTime" => F::EventTime,
            "CorpId" | "corpId" => F::CorpId,
            "BizId" => F::BizId,
            "eventId" => F::EventId,
            "processInstanceId" => F::ProcessInstanceId,
            "processCode" => F::ProcessCode,
            "bizCategoryId" => F::BizCategoryId,
            "businessId" => F::BusinessId,
            "businessType" => F::BusinessType,
            "title" => F::Title,
            "type" => F::Type,
            "result" => F::Result,
            "createTime" => F::CreateTime,
            "finishTime" => F::FinishTime,
            "staffId" => F::StaffId,
            "url" => F::Url,
            "taskId" => F::TaskId,
            "remark" => F::Remark,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            F::EventType => "EventType",
            F::EventTime => "EventTime",
            F::CorpId => "CorpId",
            F::BizId => "BizId",
            F::EventId => "eventId",
            F::ProcessInstanceId => "processInstanceId",
            F::ProcessCode => "processCode",
            F::BizCategoryId => "bizCategoryId",
            F::BusinessId => "businessId",
            F::BusinessType => "businessType",
            F::Title => "title",
            F::Type => "type",
            F::Result => "result",
            F::CreateTime => "createTime",
            F::FinishTime => "finishTime",
            F::StaffId => "staffId",
            F::Url => "url",
            F::TaskId => "taskId",
            F::Remark => "remark",
        }
    }
}

/// A JSON value of a modelled key: typed later, once the event type is known, so that an
/// unknown event with oddly-typed keys is still kept raw instead of rejected.
#[derive(Debug)]
enum Scalar<'de> {
    /// Borrowed from the input when it has no escapes, so fields that are only matched
    /// (`type`, `result`, `EventType`) cost no allocation.
    Str(Cow<'de, str>),
    Int(i64),
    Null,
    Other(Value),
}

#[derive(Default)]
struct Fields<'de> {
    event_type: Option<Scalar<'de>>,
    values: [Option<Scalar<'de>>; FIELD_COUNT],
    extra: Map<String, Value>,
}

impl<'de> Fields<'de> {
    fn take(&mut self, field: F) -> Option<Scalar<'de>> {
        self.values.get_mut(field as usize).and_then(Option::take)
    }

    fn text(&mut self, field: F) -> Result<Option<String>> {
        Ok(self.cow(field)?.map(Cow::into_owned))
    }

    /// Like [`text`](Self::text) without copying borrowed strings.
    fn cow(&mut self, field: F) -> Result<Option<Cow<'de, str>>> {
        match self.take(field) {
            None | Some(Scalar::Null) => Ok(None),
            Some(Scalar::Str(s)) => Ok(Some(s)),
            Some(Scalar::Int(n)) => Ok(Some(Cow::Owned(n.to_string()))),
            Some(Scalar::Other(_)) => Err(Error::bad_event(format_args!(
                "field `{}`: expected a string",
                field.name()
            ))),
        }
    }

    fn millis(&mut self, field: F) -> Result<Option<i64>> {
        match self.take(field) {
            None | Some(Scalar::Null) => Ok(None),
            Some(Scalar::Int(n)) => Ok(Some(n)),
            Some(Scalar::Str(s)) if s.is_empty() => Ok(None),
            Some(Scalar::Str(s)) => s.parse().map(Some).map_err(|_| {
                Error::bad_event(format_args!(
                    "field `{}`: expected an integer, got `{s}`",
                    field.name()
                ))
            }),
            Some(Scalar::Other(_)) => Err(Error::bad_event(format_args!(
                "field `{}`: expected an integer",
                field.name()
            ))),
        }
    }

    fn instance_id(&mut self) -> Result<Option<ProcessInstanceId>> {
        Ok(self
            .text(F::ProcessInstanceId)?
            .filter(|id| !id.is_empty())
            .map(ProcessInstanceId::new))
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Fields<'de>, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Known(F::EventType) => fields.event_type = Some(map.next_value()?),
                Key::Known(field) => {
                    if let Some(slot) = fields.values.get_mut(field as usize) {
                        *slot = Some(map.next_value()?);
                    }
                }
                Key::Other(name) => {
                    fields.extra.insert(name, map.next_value()?);
                }
            }
        }
        Ok(fields)
    }
}

enum Key {
    Known(F),
    Other(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> std::result::Result<Key, E> {
                Ok(F::from_key(key).map_or_else(|| Key::Other(key.to_owned()), Key::Known))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> std::result::Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Scalar<'de>, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Scalar<'de>, E> {
                Ok(i64::try_from(v).map_or_else(|_| Scalar::Other(Value::from(v)), Scalar::Int))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Scalar<'de>, E> {
                Ok(Scalar::Other(Value::from(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Scalar<'de>, E> {
                Ok(Scalar::Other(Value::Bool(v)))
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<Scalar<'de>, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E: de::Error>(self) -> std::result::Result<Scalar<'de>, E> {
                Ok(Scalar::Null)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Scalar<'de>, A::Error> {
                Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(Scalar::Other)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> std::result::Result<Scalar<'de>, A::Error> {
                Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Scalar::Other)
            }
        }
        d.deserialize_any(ScalarVisitor)
    }
}

/// Deserializes an optional Unix-ms value sent as a number or a digit string.
fn millis_opt<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<i64>, D::Error> {
    match Scalar::deserialize(d)? {
        Scalar::Null => Ok(None),
        Scalar::Int(n) => Ok(Some(n)),
        Scalar::Str(s) if s.is_empty() => Ok(None),
        Scalar::Str(s) => s
            .parse()
            .map(Some)
            .map_err(|_| de::Error::custom(format_args!("expected milliseconds, got `{s}`"))),
        Scalar::Other(v) => Err(de::Error::custom(format_args!("expected milliseconds, got {v}"))),
    }
}
