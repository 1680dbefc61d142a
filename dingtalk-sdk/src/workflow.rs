//! The OA approval (workflow) v1.0 API: typed requests and responses with DingTalk's exact
//! field names and types, and (feature `client`) the calls themselves.
//!
//! Types follow the wire, traps included: `taskId`, `deptId` and the request's `nextToken` are
//! `i64`; form values are always strings (JSON-encode structured ones); the response's
//! `nextToken` is a string; `success` is the string `"true"` in `GetProcessInstance` and a
//! boolean elsewhere; times are `yyyy-MM-ddTHH:mmZ` strings; instance results are lower-case,
//! task results upper-case; status and result enums keep values they do not know.
//!
//! Wire types implement both `Serialize` and `Deserialize`, so a server (or a mock) can use
//! them too.

use crate::event::{InstanceResult, TaskResult};
use crate::ids::{ProcessCode, ProcessInstanceId, UserId};
use serde::{Deserialize, Deserializer, Serialize};

#[cfg(feature = "client")]
mod api;
#[cfg(feature = "client")]
pub use api::Workflow;

/// One form value of a start request (`formComponentValues[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FormComponentValue {
    /// The component's label in the form (for a date range, a JSON array of both labels).
    pub name: String,
    /// Always a string: JSON-encode arrays and tables; dates are `yyyy-MM-dd`.
    pub value: String,
    /// Component id, e.g. `TextField-K2AD4O5B`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Business alias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biz_alias: Option<String>,
    /// `TextField`, `TextareaField`, `DDDateRangeField`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_type: Option<String>,
    /// Extra value (≤ 65535 chars).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_value: Option<String>,
    /// Table rows; the official client always sends `[]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<FormComponentValue>>,
}

impl FormComponentValue {
    /// A value for the component labelled `name`.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
            id: None,
            biz_alias: None,
            component_type: None,
            ext_value: None,
            details: Some(Vec::new()),
        }
    }

    /// Sets the component type (`TextareaField`, …).
    pub fn component_type(mut self, component_type: impl Into<String>) -> Self {
        self.component_type = Some(component_type.into());
        self
    }
}

wire_enum!(ActionType { And => "AND", Or => "OR", None => "NONE" });

/// How the approvers of one node decide.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ActionType {
    /// 会签: everyone must agree.
    And,
    /// 或签: one decision is enough.
    Or,
    /// A single approver.
    None,
    /// A value this SDK does not know yet.
    Other(String),
}

/// One approver node of a start request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Approver {
    /// How the node's approvers decide.
    pub action_type: ActionType,
    /// The approvers.
    pub user_ids: Vec<UserId>,
}

impl Approver {
    /// A node of the given kind.
    pub fn new(action_type: ActionType, user_ids: Vec<UserId>) -> Self {
        Self {
            action_type,
            user_ids,
        }
    }
}

/// An originator-chosen approver (`targetSelectActioners[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TargetSelectActioner {
    /// The node's key, from the process-forecast API.
    pub actioner_key: String,
    /// The chosen approvers.
    pub actioner_user_ids: Vec<UserId>,
}

impl TargetSelectActioner {
    /// Chooses `users` for the node `key`.
    pub fn new(key: impl Into<String>, users: Vec<UserId>) -> Self {
        Self {
            actioner_key: key.into(),
            actioner_user_ids: users,
        }
    }
}

/// Body of `POST /v1.0/workflow/processInstances` (StartProcessInstance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct StartProcessInstanceRequest {
    /// The approval template.
    pub process_code: ProcessCode,
    /// Who files it.
    pub originator_user_id: UserId,
    /// The originator's department; required when `approvers` is absent (`-1` = root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dept_id: Option<i64>,
    /// The app's AgentId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub microapp_agent_id: Option<i64>,
    /// Approver nodes; if present they replace the console-defined flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Vec<Approver>>,
    /// CC users (ignored by DingTalk without `approvers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cc_list: Option<Vec<UserId>>,
    /// `START`, `FINISH` or `START_FINISH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cc_position: Option<String>,
    /// Originator-chosen approvers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_select_actioners: Option<Vec<TargetSelectActioner>>,
    /// Form values (≤ 150).
    pub form_component_values: Vec<FormComponentValue>,
}

impl StartProcessInstanceRequest {
    /// A request with the required fields; add the rest with the setters.
    pub fn new(process_code: ProcessCode, originator: UserId, form: Vec<FormComponentValue>) -> Self {
        Self {
            process_code,
            originator_user_id: originator,
            dept_id: None,
            microapp_agent_id: None,
            approvers: None,
            cc_list: None,
            cc_position: None,
            target_select_actioners: None,
            form_component_values: form,
        }
    }

    /// The originator's department (`-1` = root).
    pub fn dept_id(mut self, dept_id: i64) -> Self {
        self.dept_id = Some(dept_id);
        self
    }

    /// The app's AgentId.
    pub fn microapp_agent_id(mut self, agent_id: i64) -> Self {
        self.microapp_agent_id = Some(agent_id);
        self
    }

    /// Approver nodes (replacing the console-defined flow).
    pub fn approvers(mut self, approvers: Vec<Approver>) -> Self {
        self.approvers = Some(approvers);
        self
    }

    /// CC users and when they are notified (`START`, `FINISH`, `START_FINISH`).
    pub fn cc(mut self, users: Vec<UserId>, position: impl Into<String>) -> Self {
        self.cc_list = Some(users);
        self.cc_position = Some(position.into());
        self
    }

    /// Originator-chosen approvers.
    pub fn target_select_actioners(mut self, actioners: Vec<TargetSelectActioner>) -> Self {
        self.target_select_actioners = Some(actioners);
        self
    }
}

/// Answer of StartProcessInstance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct StartProcessInstanceResponse {
    /// The new instance.
    pub instance_id: ProcessInstanceId,
}

wire_enum!(InstanceStatus { New => "NEW", Running => "RUNNING", Terminated => "TERMINATED", Completed => "COMPLETED", Canceled => "CANCELED" });

/// Status of an instance. `Completed` alone is not approval: check the result.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InstanceStatus {
    /// Created, not yet running.
    New,
    /// Waiting for approvers.
    Running,
    /// Revoked.
    Terminated,
    /// Finished; see the result.
    Completed,
    /// Cancelled.
    Canceled,
    /// A value this SDK does not know yet.
    Other(String),
}

wire_enum!(TaskStatus { New => "NEW", Running => "RUNNING", Paused => "PAUSED", Canceled => "CANCELED", Completed => "COMPLETED", Terminated => "TERMINATED" });

/// Status of an approver's task.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskStatus {
    /// Not reached yet.
    New,
    /// Waiting for this approver.
    Running,
    /// Paused.
    Paused,
    /// Cancelled (e.g. another approver of an OR node acted).
    Canceled,
    /// Done; see the result.
    Completed,
    /// The instance was terminated.
    Terminated,
    /// A value this SDK does not know yet.
    Other(String),
}

/// One task of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Task {
    /// Task id (exceeds 2^32).
    pub task_id: i64,
    /// The approver.
    #[serde(default)]
    pub user_id: Option<UserId>,
    /// Task status.
    pub status: TaskStatus,
    /// The approver's action (`AGREE`, `REFUSE`, `REDIRECTED`).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub result: Option<TaskResult>,
    /// Node id.
    #[serde(default)]
    pub activity_id: Option<String>,
    /// `yyyy-MM-ddTHH:mmZ`.
    #[serde(default)]
    pub create_time: Option<String>,
    /// `yyyy-MM-ddTHH:mmZ`.
    #[serde(default)]
    pub finish_time: Option<String>,
    /// Mobile link.
    #[serde(default)]
    pub mobile_url: Option<String>,
    /// Desktop link.
    #[serde(default)]
    pub pc_url: Option<String>,
}

/// One entry of an instance's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct OperationRecord {
    /// Who acted.
    #[serde(default)]
    pub user_id: Option<UserId>,
    /// `yyyy-MM-ddTHH:mmZ`.
    #[serde(default)]
    pub date: Option<String>,
    /// `START_PROCESS_INSTANCE`, `EXECUTE_TASK_NORMAL`, `TERMINATE_PROCESS_INSTANCE`, …
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// `AGREE`, `REFUSE`, `NONE`.
    #[serde(default)]
    pub result: Option<String>,
    /// The comment.
    #[serde(default)]
    pub remark: Option<String>,
    /// Display name of the step.
    #[serde(default)]
    pub show_name: Option<String>,
}

/// An instance, as GetProcessInstance returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ProcessInstance {
    /// Title.
    #[serde(default)]
    pub title: Option<String>,
    /// Who filed it.
    #[serde(default)]
    pub originator_user_id: Option<UserId>,
    /// The originator's department, a string (`"-1"` = root).
    #[serde(default)]
    pub originator_dept_id: Option<String>,
    /// Status.
    pub status: InstanceStatus,
    /// `agree` / `refuse`; only meaningful with `Completed`.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub result: Option<InstanceResult>,
    /// Approval serial number.
    #[serde(default)]
    pub business_id: Option<String>,
    /// `yyyy-MM-ddTHH:mmZ`.
    #[serde(default)]
    pub create_time: Option<String>,
    /// `yyyy-MM-ddTHH:mmZ`.
    #[serde(default)]
    pub finish_time: Option<String>,
    /// Approvers (API-created instances).
    #[serde(default)]
    pub approver_user_ids: Vec<UserId>,
    /// CC users.
    #[serde(default)]
    pub cc_user_ids: Vec<UserId>,
    /// Form values.
    #[serde(default)]
    pub form_component_values: Vec<FormComponentValue>,
    /// Tasks.
    #[serde(default)]
    pub tasks: Vec<Task>,
    /// History.
    #[serde(default)]
    pub operation_records: Vec<OperationRecord>,
}

impl ProcessInstance {
    /// `COMPLETED` with result `agree`.
    pub fn is_approved(&self) -> bool {
        self.status == InstanceStatus::Completed && self.result == Some(InstanceResult::Agree)
    }

    /// The running task of `user`, to approve or refuse it through the API.
    pub fn running_task_of(&self, user: &UserId) -> Option<&Task> {
        self.tasks
            .iter()
            .find(|t| t.status == TaskStatus::Running && t.user_id.as_ref() == Some(user))
    }
}

/// Answer of GetProcessInstance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GetProcessInstanceResponse {
    /// The string `"true"` here (a boolean elsewhere); both are accepted.
    #[serde(default, deserialize_with = "bool_or_string")]
    pub success: bool,
    /// The instance.
    pub result: ProcessInstance,
}

/// Body of `POST /v1.0/workflow/processInstances/terminate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TerminateProcessInstanceRequest {
    /// The instance to revoke.
    pub process_instance_id: ProcessInstanceId,
    /// Revoke as the system, without an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_system: Option<bool>,
    /// Why (≤ 1024 chars).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
    /// Who revokes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_user_id: Option<UserId>,
}

impl TerminateProcessInstanceRequest {
    /// Revokes `id`; set the optional fields as needed.
    pub fn new(id: ProcessInstanceId) -> Self {
        Self {
            process_instance_id: id,
            is_system: None,
            remark: None,
            operating_user_id: None,
        }
    }

    /// As the system (`isSystem: true`).
    pub fn system(mut self, is_system: bool) -> Self {
        self.is_system = Some(is_system);
        self
    }

    /// With a remark.
    pub fn remark(mut self, remark: impl Into<String>) -> Self {
        self.remark = Some(remark.into());
        self
    }

    /// By this operator.
    pub fn operator(mut self, user: UserId) -> Self {
        self.operating_user_id = Some(user);
        self
    }
}

wire_enum!(TaskAction { Agree => "agree", Refuse => "refuse" });

/// An approver's decision in ExecuteProcessInstance (lower-case on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskAction {
    /// Approve.
    Agree,
    /// Reject.
    Refuse,
    /// A value this SDK does not know yet.
    Other(String),
}

/// Body of `POST /v1.0/workflow/processInstances/execute`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ExecuteTaskRequest {
    /// The instance.
    pub process_instance_id: ProcessInstanceId,
    /// The approver's running task.
    pub task_id: i64,
    /// The approver.
    pub actioner_user_id: UserId,
    /// Agree or refuse.
    pub result: TaskAction,
    /// Comment (≤ 1024 chars).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
}

impl ExecuteTaskRequest {
    /// `actioner` decides task `task_id` of `id`.
    pub fn new(id: ProcessInstanceId, task_id: i64, actioner: UserId, result: TaskAction) -> Self {
        Self {
            process_instance_id: id,
            task_id,
            actioner_user_id: actioner,
            result,
            remark: None,
        }
    }

    /// With a comment.
    pub fn remark(mut self, remark: impl Into<String>) -> Self {
        self.remark = Some(remark.into());
        self
    }
}

/// Body of `POST /v1.0/workflow/processes/instanceIds/query`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ListProcessInstanceIdsRequest {
    /// The template.
    pub process_code: ProcessCode,
    /// Created at or after, Unix ms (≤ 120 days ago without `end_time`).
    pub start_time: i64,
    /// Created at or before, Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    /// Page cursor: 0 first, then the previous answer's `nextToken` (a number here).
    pub next_token: i64,
    /// Page size, ≤ 20.
    pub max_results: i64,
    /// Originators (≤ 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_ids: Option<Vec<UserId>>,
    /// Statuses to include.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statuses: Option<Vec<InstanceStatus>>,
}

impl ListProcessInstanceIdsRequest {
    /// Instances of `process_code` created since `start_time` (Unix ms), 20 per page.
    pub fn new(process_code: ProcessCode, start_time: i64) -> Self {
        Self {
            process_code,
            start_time,
            end_time: None,
            next_token: 0,
            max_results: 20,
            user_ids: None,
            statuses: None,
        }
    }

    /// Until `end_time` (Unix ms).
    pub fn end_time(mut self, end_time: i64) -> Self {
        self.end_time = Some(end_time);
        self
    }

    /// Only these originators.
    pub fn user_ids(mut self, users: Vec<UserId>) -> Self {
        self.user_ids = Some(users);
        self
    }

    /// Only these statuses.
    pub fn statuses(mut self, statuses: Vec<InstanceStatus>) -> Self {
        self.statuses = Some(statuses);
        self
    }

    /// Page size (≤ 20).
    pub fn max_results(mut self, max: i64) -> Self {
        self.max_results = max;
        self
    }
}

/// One page of instance ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct InstanceIdPage {
    /// The ids.
    #[serde(default)]
    pub list: Vec<ProcessInstanceId>,
    /// The next cursor (a string on the wire; numbers are accepted); absent on the last page.
    #[serde(default, deserialize_with = "token_opt")]
    pub next_token: Option<i64>,
}

/// Answer of ListProcessInstanceIds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ListProcessInstanceIdsResponse {
    /// Whether the call succeeded.
    #[serde(default, deserialize_with = "bool_or_string")]
    pub success: bool,
    /// The page.
    pub result: InstanceIdPage,
}

/// Body of `POST /v1.0/workflow/processInstances/comments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AddCommentRequest {
    /// The instance.
    pub process_instance_id: ProcessInstanceId,
    /// The comment (≤ 1024 chars).
    pub text: String,
    /// Who comments.
    pub comment_user_id: UserId,
}

impl AddCommentRequest {
    /// `user` comments `text` on `id`.
    pub fn new(id: ProcessInstanceId, text: impl Into<String>, user: UserId) -> Self {
        Self {
            process_instance_id: id,
            text: text.into(),
            comment_user_id: user,
        }
    }
}

/// Answer of terminate, execute and comment: `{"result":true,"success":true}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ActionResponse {
    /// Whether the action was applied.
    #[serde(default, deserialize_with = "bool_or_string")]
    pub result: bool,
    /// Whether the call succeeded.
    #[serde(default, deserialize_with = "bool_or_string")]
    pub success: bool,
}

/// One component of a form schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FormItem {
    /// `TextField`, `TextareaField`, … (use as `componentType`).
    pub component_name: String,
    /// Its properties.
    pub props: FormItemProps,
    /// Nested components (tables).
    #[serde(default)]
    pub children: Vec<FormItem>,
}

/// Properties of a form component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FormItemProps {
    /// Component id.
    #[serde(default)]
    pub component_id: Option<String>,
    /// The label: what `formComponentValues[].name` must equal.
    pub label: String,
    /// Whether a value is required.
    #[serde(default)]
    pub required: bool,
    /// Business alias.
    #[serde(default)]
    pub biz_alias: Option<String>,
}

/// The `schemaContent` of a form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SchemaContent {
    /// Form title.
    #[serde(default)]
    pub title: Option<String>,
    /// Components.
    #[serde(default)]
    pub items: Vec<FormItem>,
}

/// A form, as QuerySchemaByProcessCode returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FormSchema {
    /// Form name.
    #[serde(default)]
    pub name: Option<String>,
    /// Form code (the process code).
    #[serde(default)]
    pub form_code: Option<String>,
    /// `PUBLISHED`, …
    #[serde(default)]
    pub status: Option<String>,
    /// The components.
    pub schema_content: SchemaContent,
}

impl FormSchema {
    /// The component labelled `label`.
    pub fn field(&self, label: &str) -> Option<&FormItem> {
        self.schema_content.items.iter().find(|i| i.props.label == label)
    }
}

/// Answer of QuerySchemaByProcessCode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FormSchemaResponse {
    /// The form.
    pub result: FormSchema,
}

fn bool_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Str(String),
    }
    Ok(match B::deserialize(d)? {
        B::Bool(b) => b,
        B::Str(s) => s.eq_ignore_ascii_case("true"),
    })
}

fn token_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum T {
        Num(i64),
        Str(String),
    }
    match Option::<T>::deserialize(d)? {
        None => Ok(None),
        Some(T::Num(n)) => Ok(Some(n)),
        Some(T::Str(s)) if s.is_empty() => Ok(None),
        Some(T::Str(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format_args!("nextToken `{s}` is not a number"))),
    }
}

/// Absent, `null` and `""` are all "no value" for results.
fn empty_as_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => T::deserialize(serde::de::value::StringDeserializer::<D::Error>::new(s)).map(Some),
    }
}
