//! Approval instances as the mock keeps them, and how approver actions move them.
//!
//! Approvers form sequential nodes; a node is `OR`/`NONE` (one decision completes it) or `AND`
//! (everyone must agree). A refusal completes the instance as refused; the last node agreeing
//! completes it as agreed. Every change yields the events DingTalk would push.

use crate::event::{InstanceChangeType, InstanceResult, TaskChangeType, TaskResult};
use crate::workflow::{InstanceStatus, TaskStatus};
use serde_json::{json, Map, Value};

/// An event the mock will deliver: its type and its business fields.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EventDraft {
    pub(crate) client_id: String,
    pub(crate) event_type: String,
    pub(crate) fields: Map<String, Value>,
    /// A chosen `eventId` (control API); a fresh one otherwise.
    pub(crate) event_id: Option<String>,
    /// A chosen channel (control API); the app's configured delivery otherwise.
    pub(crate) via: Option<super::delivery::Via>,
}

/// One approver's task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Task {
    pub(crate) task_id: i64,
    pub(crate) user_id: String,
    pub(crate) node: usize,
    /// `NEW` → `RUNNING` → `COMPLETED` or `CANCELED`.
    pub(crate) status: TaskStatus,
    /// `AGREE` or `REFUSE` once completed.
    pub(crate) result: Option<TaskResult>,
    pub(crate) create_ms: i64,
    pub(crate) finish_ms: Option<i64>,
}

impl Task {
    /// Not yet decided: waiting for its node (`NEW`) or its approver (`RUNNING`).
    fn is_open(&self) -> bool {
        matches!(self.status, TaskStatus::New | TaskStatus::Running)
    }
}

/// One entry of `operationRecords`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) user_id: String,
    pub(crate) at_ms: i64,
    pub(crate) kind: &'static str,
    /// The approver's decision; `NONE` on the wire for other records.
    pub(crate) result: Option<TaskResult>,
    pub(crate) remark: Option<String>,
}

/// An approval instance.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Instance {
    pub(crate) id: String,
    pub(crate) client_id: String,
    pub(crate) corp_id: String,
    pub(crate) process_code: String,
    pub(crate) title: String,
    pub(crate) business_id: String,
    pub(crate) originator: String,
    pub(crate) dept_id: i64,
    /// `RUNNING` → `COMPLETED` or `TERMINATED`.
    pub(crate) status: InstanceStatus,
    /// `agree` / `refuse` once completed.
    pub(crate) result: Option<InstanceResult>,
    pub(crate) create_ms: i64,
    pub(crate) finish_ms: Option<i64>,
    /// `(name, value, componentType)`.
    pub(crate) form: Vec<(String, String, String)>,
    /// `AND`, `OR` or `NONE` per node.
    pub(crate) node_modes: Vec<String>,
    pub(crate) tasks: Vec<Task>,
    pub(crate) records: Vec<Record>,
    pub(crate) cc: Vec<String>,
}

/// Why an approver action was refused, with DingTalk's error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

fn refusal(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

impl Instance {
    fn base_fields(&self) -> Map<String, Value> {
        let mut f = Map::new();
        f.insert("processInstanceId".into(), json!(self.id));
        f.insert("processCode".into(), json!(self.process_code));
        f.insert("bizCategoryId".into(), json!(""));
        f.insert("businessId".into(), json!(self.business_id));
        f.insert("title".into(), json!(self.title));
        f.insert("createTime".into(), json!(self.create_ms));
        f.insert(
            "url".into(),
            json!(format!(
                "https://aflow.dingtalk.com/dingtalk/mobile/homepage.htm?corpid={}&procInstId={}",
                self.corp_id, self.id
            )),
        );
        f
    }

    fn draft(&self, event_type: &'static str, fields: Map<String, Value>) -> EventDraft {
        EventDraft {
            client_id: self.client_id.clone(),
            event_type: event_type.to_owned(),
            fields,
            event_id: None,
            via: None,
        }
    }

    /// The `bpms_instance_change` event for the instance's current state.
    pub(crate) fn instance_event(&self, kind: InstanceChangeType) -> EventDraft {
        let mut f = self.base_fields();
        f.insert("staffId".into(), json!(self.originator));
        if let Some(result) = self
            .result
            .as_ref()
            .filter(|_| kind == InstanceChangeType::Finish)
        {
            f.insert("result".into(), json!(result));
        }
        f.insert("type".into(), json!(kind));
        if let Some(finish) = self.finish_ms {
            f.insert("finishTime".into(), json!(finish));
        }
        f.insert("businessType".into(), json!(""));
        self.draft(crate::event::BPMS_INSTANCE_CHANGE, f)
    }

    /// A `bpms_task_change` event. Its `result` is spelled lower-case (`agree`, `refuse`),
    /// like an instance's, unlike the task's `AGREE` in the workflow API.
    fn task_event(
        &self,
        task: &Task,
        kind: TaskChangeType,
        result: Option<&InstanceResult>,
        remark: Option<&str>,
    ) -> EventDraft {
        let mut f = self.base_fields();
        f.insert("type".into(), json!(kind));
        f.insert("taskId".into(), json!(task.task_id));
        f.insert("staffId".into(), json!(task.user_id));
        f.insert("createTime".into(), json!(task.create_ms));
        if let Some(finish) = task.finish_ms {
            f.insert("finishTime".into(), json!(finish));
        }
        if let Some(result) = result {
            f.insert("result".into(), json!(result));
        }
        if let Some(remark) = remark {
            f.insert("remark".into(), json!(remark));
        }
        self.draft(crate::event::BPMS_TASK_CHANGE, f)
    }

    /// Starts the first node: the start events.
    pub(crate) fn start(&mut self, now: i64) -> Vec<EventDraft> {
        self.records.push(Record {
            user_id: self.originator.clone(),
            at_ms: now,
            kind: "START_PROCESS_INSTANCE",
            result: None,
            remark: None,
        });
        let mut events = vec![self.instance_event(InstanceChangeType::Start)];
        events.extend(self.open_node(0, now));
        events
    }

    fn open_node(&mut self, node: usize, now: i64) -> Vec<EventDraft> {
        let mut opened = Vec::new();
        for task in self
            .tasks
            .iter_mut()
            .filter(|t| t.node == node && t.status == TaskStatus::New)
        {
            task.status = TaskStatus::Running;
            task.create_ms = now;
            opened.push(task.clone());
        }
        opened
            .iter()
            .map(|t| self.task_event(t, TaskChangeType::Start, None, None))
            .collect()
    }

    /// The running task of `user` (or, without a user, the first running task).
    pub(crate) fn running_task(&self, user: Option<&str>) -> Option<&Task> {
        self.tasks
            .iter()
            .find(|t| t.status == TaskStatus::Running && user.is_none_or(|u| t.user_id == u))
    }

    /// An approver agrees or refuses (`ExecuteProcessInstance`, or the control API).
    pub(crate) fn execute(
        &mut self,
        task_id: i64,
        actioner: &str,
        agree: bool,
        remark: Option<&str>,
        now: i64,
    ) -> Result<Vec<EventDraft>, Refusal> {
        if self.status != InstanceStatus::Running {
            return Err(refusal("processInstanceFinished", "审批实例已结束"));
        }
        let Some(index) = self.tasks.iter().position(|t| t.task_id == task_id) else {
            return Err(refusal("taskNotExist", format!("task {task_id} does not exist")));
        };
        let Some(task) = self.tasks.get_mut(index) else {
            return Err(refusal("taskNotExist", format!("task {task_id} does not exist")));
        };
        if task.user_id != actioner {
            return Err(refusal(
                "actionerNotMatch",
                "actionerUserId is not the task's approver",
            ));
        }
        if task.status != TaskStatus::Running {
            return Err(refusal(
                "taskNotRunning",
                format!("task {task_id} is {}", task.status),
            ));
        }
        let (task_result, outcome) = if agree {
            (TaskResult::Agree, InstanceResult::Agree)
        } else {
            (TaskResult::Refuse, InstanceResult::Refuse)
        };
        task.status = TaskStatus::Completed;
        task.result = Some(task_result.clone());
        task.finish_ms = Some(now);
        let (node, done) = (task.node, task.clone());
        self.records.push(Record {
            user_id: actioner.to_owned(),
            at_ms: now,
            kind: "EXECUTE_TASK_NORMAL",
            result: Some(task_result),
            remark: remark.map(str::to_owned),
        });
        let mut events = vec![self.task_event(&done, TaskChangeType::Finish, Some(&outcome), remark)];

        let all_agree = self.node_modes.get(node).is_some_and(|m| m == "AND");
        let node_done = !agree
            || !all_agree
            || self
                .tasks
                .iter()
                .all(|t| t.node != node || t.status == TaskStatus::Completed);
        if !node_done {
            return Ok(events);
        }
        // Other approvers of an OR node (or everyone after a refusal) are cancelled.
        let cancel_all = !agree;
        let mut cancelled = Vec::new();
        for t in self.tasks.iter_mut() {
            if (t.node == node || cancel_all) && t.is_open() {
                t.status = TaskStatus::Canceled;
                t.finish_ms = Some(now);
                cancelled.push(t.clone());
            }
        }
        events.extend(
            cancelled
                .iter()
                .map(|t| self.task_event(t, TaskChangeType::Cancel, None, None)),
        );
        let has_next = self.tasks.iter().any(|t| t.node == node + 1);
        if agree && has_next {
            events.extend(self.open_node(node + 1, now));
            return Ok(events);
        }
        self.status = InstanceStatus::Completed;
        self.result = Some(outcome);
        self.finish_ms = Some(now);
        self.records.push(Record {
            user_id: self.originator.clone(),
            at_ms: now,
            kind: "FINISH_PROCESS_INSTANCE",
            result: None,
            remark: None,
        });
        events.push(self.instance_event(InstanceChangeType::Finish));
        Ok(events)
    }

    /// Revokes the instance (`TerminateProcessInstance`, or the originator in the app).
    pub(crate) fn terminate(
        &mut self,
        operator: &str,
        remark: Option<&str>,
        now: i64,
        grace_ms: i64,
    ) -> Result<Vec<EventDraft>, Refusal> {
        if self.status != InstanceStatus::Running {
            return Err(refusal("processInstanceFinished", "只能撤销审批中的实例"));
        }
        if now - self.create_ms < grace_ms {
            return Err(refusal("terminateTooEarly", "审批发起15秒内不能撤销审批流程"));
        }
        for t in self.tasks.iter_mut().filter(|t| t.is_open()) {
            t.status = TaskStatus::Canceled;
            t.finish_ms = Some(now);
        }
        self.status = InstanceStatus::Terminated;
        self.finish_ms = Some(now);
        self.records.push(Record {
            user_id: operator.to_owned(),
            at_ms: now,
            kind: "TERMINATE_PROCESS_INSTANCE",
            result: None,
            remark: remark.map(str::to_owned),
        });
        Ok(vec![self.instance_event(InstanceChangeType::Terminate)])
    }

    /// Adds a comment (`AddProcessInstanceComment`).
    pub(crate) fn comment(&mut self, user: &str, text: &str, now: i64) -> Vec<EventDraft> {
        self.records.push(Record {
            user_id: user.to_owned(),
            at_ms: now,
            kind: "ADD_REMARK",
            result: None,
            remark: Some(text.to_owned()),
        });
        let task = self.running_task(None).cloned().unwrap_or(Task {
            task_id: 0,
            user_id: user.to_owned(),
            node: 0,
            status: TaskStatus::Completed,
            result: None,
            create_ms: now,
            finish_ms: None,
        });
        let mut task = task;
        task.user_id = user.to_owned();
        vec![self.task_event(&task, TaskChangeType::Comment, None, Some(text))]
    }

    /// The `result` object of `GetProcessInstance`.
    pub(crate) fn to_json(&self) -> Value {
        let tasks: Vec<Value> = self
            .tasks
            .iter()
            .filter(|t| t.status != TaskStatus::New)
            .map(|t| {
                let mut v = json!({
                    "taskId": t.task_id, "userId": t.user_id, "status": t.status,
                    "processInstanceId": self.id, "activityId": format!("node-{}", t.node),
                    "createTime": minute_utc(t.create_ms), "taskGroupName": "审批人",
                    "mobileUrl": "https://aflow.dingtalk.com/m", "pcUrl": "https://aflow.dingtalk.com/pc",
                });
                if let (Some(obj), Some(result)) = (v.as_object_mut(), &t.result) {
                    obj.insert("result".into(), json!(result));
                }
                if let (Some(obj), Some(finish)) = (v.as_object_mut(), t.finish_ms) {
                    obj.insert("finishTime".into(), json!(minute_utc(finish)));
                }
                v
            })
            .collect();
        let records: Vec<Value> = self
            .records
            .iter()
            .map(|r| {
                let mut v = json!({"userId": r.user_id, "date": minute_utc(r.at_ms), "type": r.kind,
                                   "result": r.result.as_ref().map_or("NONE", TaskResult::as_str),
                                   "attachments": []});
                if let (Some(obj), Some(remark)) = (v.as_object_mut(), &r.remark) {
                    obj.insert("remark".into(), json!(remark));
                }
                v
            })
            .collect();
        let form: Vec<Value> = self
            .form
            .iter()
            .enumerate()
            .map(|(i, (name, value, component))| {
                json!({"id": format!("{component}-{i}"), "name": name, "value": value,
                       "componentType": component, "bizAlias": ""})
            })
            .collect();
        let approvers: Vec<&str> = self.tasks.iter().map(|t| t.user_id.as_str()).collect();
        let mut result = json!({
            "title": self.title, "originatorUserId": self.originator,
            "originatorDeptId": self.dept_id.to_string(), "originatorDeptName": "mock",
            "status": self.status, "businessId": self.business_id, "bizAction": "NONE",
            "approverUserIds": approvers, "ccUserIds": self.cc, "createTime": minute_utc(self.create_ms),
            "formComponentValues": form, "tasks": tasks, "operationRecords": records,
            "attachedProcessInstanceIds": [],
        });
        if let Some(obj) = result.as_object_mut() {
            if let Some(r) = &self.result {
                obj.insert("result".into(), json!(r));
            }
            if let Some(finish) = self.finish_ms {
                obj.insert("finishTime".into(), json!(minute_utc(finish)));
            }
        }
        result
    }
}

/// `yyyy-MM-ddTHH:mmZ` (minute precision, UTC), the workflow API's time format.
pub(crate) fn minute_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::minute_utc;

    #[test]
    fn minute_precision_utc() {
        assert_eq!(minute_utc(0), "1970-01-01T00:00Z");
        assert_eq!(minute_utc(1_741_699_876_000), "2025-03-11T13:31Z");
        assert_eq!(minute_utc(951_782_400_000), "2000-02-29T00:00Z");
    }
}
