//! Where requests are decided: the [`ApprovalBackend`] trait, DingTalk and built-in.

use crate::definition::{DingTalkSettings, Mapping, Workflow};
use crate::error::{Error, Result};
use crate::state::ApprovalRequest;
use async_trait::async_trait;
use dingtalk_sdk::client::DingTalkClient;
use dingtalk_sdk::event::InstanceResult;
use dingtalk_sdk::workflow::{
    ExecuteTaskRequest, FormComponentValue, InstanceStatus, ListProcessInstanceIdsRequest,
    StartProcessInstanceRequest, TaskAction, TaskStatus, TerminateProcessInstanceRequest,
};
use dingtalk_sdk::{ProcessInstanceId, UserId};
use futures_util::TryStreamExt as _;

/// An external instance's decision, as the backend reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExternalStatus {
    /// Awaiting a decision.
    Running,
    /// Approved.
    Approved,
    /// Rejected.
    Rejected,
    /// Revoked or deleted.
    Revoked,
}

/// An approval system the engine drives.
#[async_trait]
pub trait ApprovalBackend: Send + Sync + std::fmt::Debug {
    /// Creates the external instance for `request` and returns its id. May fail with an
    /// unknown outcome ([`dingtalk_sdk::Error::OutcomeUnknown`]): then call
    /// [`find_existing`](Self::find_existing) before creating again.
    async fn create(&self, request: &ApprovalRequest) -> Result<String>;

    /// Instances that an earlier, uncertain create for `request` may have made, newest last.
    async fn find_existing(&self, request: &ApprovalRequest) -> Result<Vec<String>>;

    /// The instance's current decision.
    async fn status(&self, external_id: &str) -> Result<ExternalStatus>;

    /// Approves on behalf of the approver whose task is running.
    async fn approve(&self, external_id: &str, admin: &str, remark: Option<&str>) -> Result<()>;

    /// Rejects on behalf of the approver whose task is running.
    async fn reject(&self, external_id: &str, admin: &str, remark: Option<&str>) -> Result<()>;

    /// Revokes the instance.
    async fn revoke(&self, external_id: &str, admin: &str, remark: Option<&str>) -> Result<()>;
}

/// Approval in DingTalk: instances created from the template → form mapping.
#[derive(Debug, Clone)]
pub struct DingTalkBackend {
    client: DingTalkClient,
    workflow: Workflow,
    settings: DingTalkSettings,
}

impl DingTalkBackend {
    /// A backend for a DingTalk workflow, calling DingTalk through `client`.
    ///
    /// # Errors
    /// [`Error::Definition`] if the workflow is not a DingTalk one.
    pub fn new(client: DingTalkClient, workflow: Workflow) -> Result<Self> {
        let settings = workflow.dingtalk().cloned().ok_or_else(|| Error::Definition {
            path: format!("workflows.{}.kind", workflow.id),
            reason: "not a DingTalk workflow".to_owned(),
        })?;
        Ok(Self {
            client,
            workflow,
            settings,
        })
    }

    fn mapping(&self, request: &ApprovalRequest) -> Result<&Mapping> {
        self.workflow
            .mapping(&request.template)
            .ok_or_else(|| Error::Definition {
                path: format!("workflows.{}.mappings", self.workflow.id),
                reason: format!("no mapping for template `{}`", request.template),
            })
    }

    /// The form values for `request`: each mapped system field under its form label.
    fn form(&self, request: &ApprovalRequest) -> Result<Vec<FormComponentValue>> {
        let mapping = self.mapping(request)?;
        Ok(mapping
            .fields
            .iter()
            .filter_map(|(field, label)| {
                system_value(request, field).map(|value| FormComponentValue::new(label, value))
            })
            .collect())
    }

    async fn decide(
        &self,
        external_id: &str,
        admin: &str,
        remark: Option<&str>,
        action: TaskAction,
    ) -> Result<()> {
        let id = ProcessInstanceId::new(external_id);
        let instance = self.client.workflow().get_instance(&id).await?;
        let task = instance
            .tasks
            .iter()
            .find(|t| t.status == TaskStatus::Running && t.user_id.is_some())
            .ok_or_else(|| Error::Backend {
                reason: format!("instance {external_id} has no running task"),
            })?;
        let actioner = task.user_id.clone().unwrap_or_else(|| UserId::new(admin));
        let remark = format!("{} (console: {admin})", remark.unwrap_or_default())
            .trim()
            .to_owned();
        self.client
            .workflow()
            .execute_task(&ExecuteTaskRequest::new(id, task.task_id, actioner, action).remark(remark))
            .await?;
        Ok(())
    }
}

/// The value of a system field for `request`.
pub fn system_value(request: &ApprovalRequest, field: &str) -> Option<String> {
    match field {
        "requester" => Some(request.requester.to_string()),
        "device" => Some(request.device.to_string()),
        "requested_at" => Some(request.created_at_ms.to_string()),
        other => request.fields.get(other).cloned(),
    }
}

#[async_trait]
impl ApprovalBackend for DingTalkBackend {
    async fn create(&self, request: &ApprovalRequest) -> Result<String> {
        let mapping = self.mapping(request)?;
        let start = StartProcessInstanceRequest::new(
            mapping.process_code.clone(),
            UserId::new(request.requester.as_str()),
            self.form(request)?,
        )
        .dept_id(self.settings.dept_id);
        Ok(self.client.workflow().start_instance(&start).await?.into_string())
    }

    async fn find_existing(&self, request: &ApprovalRequest) -> Result<Vec<String>> {
        let mapping = self.mapping(request)?;
        let expected = self.form(request)?;
        let list =
            ListProcessInstanceIdsRequest::new(mapping.process_code.clone(), request.created_at_ms - 60_000)
                .user_ids(vec![UserId::new(request.requester.as_str())]);
        let ids: Vec<ProcessInstanceId> = self
            .client
            .workflow()
            .list_instance_ids(list)
            .try_collect()
            .await?;
        let mut found = Vec::new();
        for id in ids {
            let instance = self.client.workflow().get_instance(&id).await?;
            let same = expected.iter().all(|want| {
                instance
                    .form_component_values
                    .iter()
                    .any(|got| got.name == want.name && got.value == want.value)
            });
            if same {
                found.push(id.into_string());
            }
        }
        Ok(found)
    }

    async fn status(&self, external_id: &str) -> Result<ExternalStatus> {
        let instance = self
            .client
            .workflow()
            .get_instance(&ProcessInstanceId::new(external_id))
            .await?;
        Ok(match (instance.status, instance.result) {
            (InstanceStatus::Completed, Some(InstanceResult::Agree)) => ExternalStatus::Approved,
            (InstanceStatus::Completed, _) => ExternalStatus::Rejected,
            (InstanceStatus::Terminated | InstanceStatus::Canceled, _) => ExternalStatus::Revoked,
            _ => ExternalStatus::Running,
        })
    }

    async fn approve(&self, external_id: &str, admin: &str, remark: Option<&str>) -> Result<()> {
        self.decide(external_id, admin, remark, TaskAction::Agree).await
    }

    async fn reject(&self, external_id: &str, admin: &str, remark: Option<&str>) -> Result<()> {
        self.decide(external_id, admin, remark, TaskAction::Refuse).await
    }

    async fn revoke(&self, external_id: &str, admin: &str, remark: Option<&str>) -> Result<()> {
        let terminate = TerminateProcessInstanceRequest::new(ProcessInstanceId::new(external_id))
            .system(true)
            .remark(
                format!("{} (console: {admin})", remark.unwrap_or_default())
                    .trim()
                    .to_owned(),
            );
        self.client.workflow().terminate(&terminate).await?;
        Ok(())
    }
}

/// Approval in SASE's own console: nothing external, decisions come from admins.
#[derive(Debug, Clone, Default)]
pub struct BuiltinBackend;

#[async_trait]
impl ApprovalBackend for BuiltinBackend {
    async fn create(&self, request: &ApprovalRequest) -> Result<String> {
        Ok(format!("builtin-{}", request.id))
    }

    async fn find_existing(&self, _request: &ApprovalRequest) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    async fn status(&self, _external_id: &str) -> Result<ExternalStatus> {
        Ok(ExternalStatus::Running)
    }

    async fn approve(&self, _: &str, _: &str, _: Option<&str>) -> Result<()> {
        Ok(())
    }

    async fn reject(&self, _: &str, _: &str, _: Option<&str>) -> Result<()> {
        Ok(())
    }

    async fn revoke(&self, _: &str, _: &str, _: Option<&str>) -> Result<()> {
        Ok(())
    }
}
