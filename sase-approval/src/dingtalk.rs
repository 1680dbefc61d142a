//! The DingTalk adapter (feature `dingtalk`): the [`DingTalkBackend`] that creates and
//! decides instances through the OA approval API, the translation of DingTalk events into
//! [`ExternalEvent`]s, the event handler the SDK's HTTP-push route and Stream client call,
//! the check of a workflow against DingTalk ([`verify_workflow`]: credentials and each
//! mapping against its live form), and the app's call budget counted in the store
//! ([`StoreCounters`]). The engine knows none of this.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn demo(engine: Arc<sase_approval::engine::Engine>, crypto: dingtalk_sdk::crypto::EventCrypto) {
//! use dingtalk_sdk::callback::{axum::callback_route, CallbackHandler};
//! let route = callback_route(CallbackHandler::builder(crypto).build(), sase_approval::dingtalk::event_handler(&engine, "dingappkey"));
//! # }
//! ```

mod counters;
mod verify;

pub use counters::StoreCounters;
pub use verify::{form_problems, holds_text, verify_workflow, Verification};

use crate::backend::{ApprovalBackend, BackendError, BackendResult, ExternalStatus, FailureKind};
use crate::definition::{DingTalkSettings, Mapping, Workflow};
use crate::engine::{Engine, EventOutcome};
use crate::error::{Error, Result};
use crate::event::{EventOrigin, ExternalChange, ExternalEvent};
use crate::state::ApprovalRequest;
use async_trait::async_trait;
use dingtalk_sdk::client::DingTalkClient;
use dingtalk_sdk::event::{Event, InstanceChangeType, InstanceResult};
use dingtalk_sdk::workflow::{
    ExecuteTaskRequest, FormComponentValue, InstanceStatus, ListProcessInstanceIdsRequest,
    StartProcessInstanceRequest, TaskAction, TaskStatus, TerminateProcessInstanceRequest,
};
use dingtalk_sdk::ProcessCode;
use dingtalk_sdk::{ProcessInstanceId, UserId};
use futures_util::TryStreamExt as _;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The engine's view of a DingTalk failure: an unknown outcome stays ambiguous, what the SDK
/// would retry is transient, the rest permanent. The SDK error is kept as the source.
fn failure(operation: &'static str, e: dingtalk_sdk::Error) -> BackendError {
    let kind = if matches!(e, dingtalk_sdk::Error::OutcomeUnknown { .. }) {
        FailureKind::Ambiguous
    } else if e.is_retryable() {
        FailureKind::Transient
    } else {
        FailureKind::Permanent
    };
    BackendError::new(kind, operation, e)
}

/// DingTalk's code for an instance that does not exist.
const INSTANCE_NOT_FOUND: &str = "processInstanceNotExist";
/// `ListProcessInstanceIds` takes at most 10 originators and returns at most 20 ids a page.
const MAX_LISTED_USERS: usize = 10;
const MAX_LIST_PAGE: i64 = 20;

/// Approval in DingTalk: instances created from the template → form mapping.
#[derive(Debug, Clone)]
pub struct DingTalkBackend {
    client: DingTalkClient,
    /// The same client at background priority, for reconciliation: the app's call budget
    /// serves filings and console write-backs first.
    background: DingTalkClient,
    workflow: Workflow,
    settings: DingTalkSettings,
}

impl DingTalkBackend {
    /// A backend for a DingTalk workflow, calling DingTalk through `client` (its budget is the
    /// app's: filings and console actions call at foreground priority, reconciliation's
    /// `running_among` and `status` at background priority).
    ///
    /// # Errors
    /// [`Error::Definition`] if the workflow is not a DingTalk one.
    pub fn new(client: DingTalkClient, workflow: Workflow) -> Result<Self> {
        let settings = workflow.dingtalk().cloned().ok_or_else(|| Error::Definition {
            path: format!("workflows.{}.kind", workflow.id),
            reason: "not a DingTalk workflow".to_owned(),
        })?;
        Ok(Self {
            background: client.background(),
            client,
            workflow,
            settings,
        })
    }

    fn mapping(&self, operation: &'static str, request: &ApprovalRequest) -> BackendResult<&Mapping> {
        self.workflow.mapping(&request.template).ok_or_else(|| {
            let missing = Error::Definition {
                path: format!("workflows.{}.mappings", self.workflow.id),
                reason: format!("no mapping for template `{}`", request.template),
            };
            BackendError::new(FailureKind::Permanent, operation, missing)
        })
    }

    /// The form values for `request`: each mapped system field under its form label.
    fn form(mapping: &Mapping, request: &ApprovalRequest) -> Vec<FormComponentValue> {
        mapping
            .fields
            .iter()
            .filter_map(|(field, label)| {
                request
                    .system_value(field)
                    .map(|value| FormComponentValue::new(label, value))
            })
            .collect()
    }

    async fn decide(
        &self,
        operation: &'static str,
        external_id: &str,
        admin: &str,
        remark: Option<&str>,
        action: TaskAction,
    ) -> BackendResult<()> {
        let id = ProcessInstanceId::new(external_id);
        let instance = self
            .client
            .workflow()
            .get_instance(&id)
            .await
            .map_err(|e| failure(operation, e))?;
        let task = instance
            .tasks
            .iter()
            .find(|t| t.status == TaskStatus::Running && t.user_id.is_some())
            .ok_or_else(|| {
                BackendError::new(
                    FailureKind::Permanent,
                    operation,
                    format!("instance {external_id} has no running task"),
                )
            })?;
        let actioner = task.user_id.clone().unwrap_or_else(|| UserId::new(admin));
        let request =
            ExecuteTaskRequest::new(id, task.task_id, actioner, action).remark(console_remark(admin, remark));
        self.client
            .workflow()
            .execute_task(&request)
            .await
            .map_err(|e| failure(operation, e))?;
        Ok(())
    }
}

/// A console action's remark as DingTalk shows it: the admin's words and who acted.
fn console_remark(admin: &str, remark: Option<&str>) -> String {
    format!("{} (console: {admin})", remark.unwrap_or_default())
        .trim()
        .to_owned()
}

#[async_trait]
impl ApprovalBackend for DingTalkBackend {
    async fn create(&self, request: &ApprovalRequest) -> BackendResult<String> {
        const OPERATION: &str = "create";
        let mapping = self.mapping(OPERATION, request)?;
        let start = StartProcessInstanceRequest::new(
            mapping.process_code.clone(),
            UserId::new(request.requester.as_str()),
            Self::form(mapping, request),
        )
        .dept_id(self.settings.dept_id);
        let id = self
            .client
            .workflow()
            .start_instance(&start)
            .await
            .map_err(|e| failure(OPERATION, e))?;
        Ok(id.into_string())
    }

    async fn find_existing(&self, request: &ApprovalRequest) -> BackendResult<Vec<String>> {
        const OPERATION: &str = "find_existing";
        let mapping = self.mapping(OPERATION, request)?;
        let expected = Self::form(mapping, request);
        let list =
            ListProcessInstanceIdsRequest::new(mapping.process_code.clone(), request.created_at_ms - 60_000)
                .user_ids(vec![UserId::new(request.requester.as_str())]);
        let ids: Vec<ProcessInstanceId> = self
            .client
            .workflow()
            .list_instance_ids(list)
            .try_collect()
            .await
            .map_err(|e| failure(OPERATION, e))?;
        let mut found = Vec::new();
        for id in ids {
            let instance = self
                .client
                .workflow()
                .get_instance(&id)
                .await
                .map_err(|e| failure(OPERATION, e))?;
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

    async fn status(&self, external_id: &str) -> BackendResult<ExternalStatus> {
        let instance = match self
            .background
            .workflow()
            .get_instance(&ProcessInstanceId::new(external_id))
            .await
        {
            Ok(instance) => instance,
            // Gone (deleted, or a mock that restarted): polling it again would never end.
            Err(e) if e.code() == Some(INSTANCE_NOT_FOUND) => return Ok(ExternalStatus::Missing),
            Err(e) => return Err(failure("status", e)),
        };
        Ok(match (instance.status, instance.result) {
            (InstanceStatus::Completed, Some(InstanceResult::Agree)) => ExternalStatus::Approved,
            (InstanceStatus::Completed, _) => ExternalStatus::Rejected,
            (InstanceStatus::Terminated | InstanceStatus::Canceled, _) => ExternalStatus::Revoked,
            _ => ExternalStatus::Running,
        })
    }

    /// One `ListProcessInstanceIds` page per 20 running instances of up to 10 requesters
    /// of a form (DingTalk's limits), instead of a `GetProcessInstance` per request.
    async fn running_among(
        &self,
        requests: &[&ApprovalRequest],
        now_ms: i64,
    ) -> BackendResult<HashSet<String>> {
        const OPERATION: &str = "running_among";
        // DingTalk lists instances started at most 120 days ago; older ones are not listed,
        // so they count as not running and get a `status` call each.
        const LISTABLE_MS: i64 = 119 * 24 * 3600 * 1000;
        let mut by_form: BTreeMap<&str, (&ProcessCode, i64, BTreeSet<&str>)> = BTreeMap::new();
        for request in requests {
            let mapping = self.mapping(OPERATION, request)?;
            let (_, since, users) = by_form.entry(mapping.process_code.as_str()).or_insert((
                &mapping.process_code,
                i64::MAX,
                BTreeSet::new(),
            ));
            *since = (*since).min(request.created_at_ms);
            users.insert(request.requester.as_str());
        }
        let mut running = HashSet::new();
        for (process_code, since, users) in by_form.into_values() {
            let start = since.saturating_sub(60_000).max(now_ms - LISTABLE_MS);
            let users: Vec<&str> = users.into_iter().collect();
            for chunk in users.chunks(MAX_LISTED_USERS) {
                let list = ListProcessInstanceIdsRequest::new(process_code.clone(), start)
                    .user_ids(chunk.iter().map(|u| UserId::new(*u)).collect())
                    .statuses(vec![InstanceStatus::Running])
                    .max_results(MAX_LIST_PAGE);
                let ids: Vec<ProcessInstanceId> = self
                    .background
                    .workflow()
                    .list_instance_ids(list)
                    .try_collect()
                    .await
                    .map_err(|e| failure(OPERATION, e))?;
                running.extend(ids.into_iter().map(ProcessInstanceId::into_string));
            }
        }
        Ok(running)
    }

    async fn approve(&self, external_id: &str, admin: &str, remark: Option<&str>) -> BackendResult<()> {
        self.decide("approve", external_id, admin, remark, TaskAction::Agree)
            .await
    }

    async fn reject(&self, external_id: &str, admin: &str, remark: Option<&str>) -> BackendResult<()> {
        self.decide("reject", external_id, admin, remark, TaskAction::Refuse)
            .await
    }

    async fn revoke(&self, external_id: &str, admin: &str, remark: Option<&str>) -> BackendResult<()> {
        let terminate = TerminateProcessInstanceRequest::new(ProcessInstanceId::new(external_id))
            .system(true)
            .remark(console_remark(admin, remark));
        self.client
            .workflow()
            .terminate(&terminate)
            .await
            .map_err(|e| failure("revoke", e))?;
        Ok(())
    }
}

/// What a DingTalk event means to the engine; `None` for events about no approval instance
/// (`check_url`, unknown types) or changes that decide nothing (an instance event of another
/// type).
pub fn external_event(event: &Event) -> Option<ExternalEvent> {
    match event {
        Event::InstanceChange(c) => {
            let status = match (&c.change, &c.result) {
                (Some(InstanceChangeType::Start), _) => ExternalStatus::Running,
                (Some(InstanceChangeType::Finish), Some(InstanceResult::Agree)) => ExternalStatus::Approved,
                (Some(InstanceChangeType::Finish), Some(InstanceResult::Refuse)) => ExternalStatus::Rejected,
                (Some(InstanceChangeType::Terminate | InstanceChangeType::Delete), _) => {
                    ExternalStatus::Revoked
                }
                _ => return None,
            };
            // An instance event's staffId is the originator, not the decider; the approver is
            // recorded from the task events.
            let at = c.finish_time.or(c.meta.event_time).or(c.create_time);
            Some(
                ExternalEvent::new(
                    c.process_instance_id.as_ref()?.as_str(),
                    event.idempotency_key(),
                    "dingtalk",
                    ExternalChange::Status(status),
                )
                .form(c.process_code.as_ref().map(ToString::to_string))
                .at_ms(at),
            )
        }
        Event::TaskChange(t) => {
            let note = format!(
                "task {} {} {}{}",
                t.task_id.unwrap_or_default(),
                t.change.as_ref().map_or("", |c| c.as_str()),
                t.result.as_ref().map_or("", |r| r.as_str()),
                t.remark.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
            );
            let actor = t
                .staff_id
                .as_ref()
                .map_or("dingtalk".to_owned(), ToString::to_string);
            let at = t.finish_time.or(t.meta.event_time).or(t.create_time);
            Some(
                ExternalEvent::new(
                    t.process_instance_id.as_ref()?.as_str(),
                    event.idempotency_key(),
                    actor,
                    ExternalChange::Note(note),
                )
                .form(t.process_code.as_ref().map(ToString::to_string))
                .at_ms(at),
            )
        }
        _ => None,
    }
}

/// The origin of events verified by the DingTalk app `client_id` (its event-subscription
/// crypto, over HTTP push, or its Stream connection): the engine's workflows on that app.
pub fn app_origin(engine: &Engine, client_id: &str) -> EventOrigin {
    EventOrigin::new(
        format!("DingTalk app {client_id}"),
        engine.workflow_ids(|w| w.dingtalk().is_some_and(|s| s.client_id == client_id)),
    )
}

/// Handles a DingTalk event (HTTP push or Stream) verified by the app `origin` stands for
/// ([`app_origin`]), exactly once per event: de-duplicated by its id (or instance + type +
/// result), ordered by its time, deciding only requests of that app's workflows and forms.
///
/// # Errors
/// Store errors; the event is then not recorded, so a redelivery is processed again.
pub async fn handle_event(engine: &Engine, origin: &EventOrigin, event: &Event) -> Result<EventOutcome> {
    match external_event(event) {
        Some(external) => engine.handle_external(origin, &external).await,
        None => {
            // Debug, not info: an app's subscription carries every event type it is
            // subscribed to (`check_url`, other approval changes, contacts…).
            tracing::debug!(
                event_type = event.event_type(),
                origin = origin.name(),
                reason = "not an approval decision",
                "event ignored"
            );
            Ok(EventOutcome::Ignored)
        }
    }
}

/// An event handler for the DingTalk app `client_id`, feeding [`handle_event`], for the SDK's
/// HTTP-push route (`dingtalk_sdk::callback::axum::callback_route`) verifying with that app's
/// crypto, or its Stream client: an `Err` makes DingTalk deliver the event again. A refused
/// event is answered as handled, so DingTalk does not redeliver it for ever.
pub fn event_handler(
    engine: &Arc<Engine>,
    client_id: &str,
) -> impl Fn(Event) -> Pin<Box<dyn Future<Output = Result<()>> + Send>> + Clone + Send + Sync + 'static {
    observed_event_handler(engine, client_id, |_| {})
}

/// [`event_handler`], telling `observe` what handling each event did (for metrics).
pub fn observed_event_handler(
    engine: &Arc<Engine>,
    client_id: &str,
    observe: impl Fn(&Result<EventOutcome>) + Send + Sync + 'static,
) -> impl Fn(Event) -> Pin<Box<dyn Future<Output = Result<()>> + Send>> + Clone + Send + Sync + 'static {
    let engine = Arc::clone(engine);
    let client_id: Arc<str> = client_id.into();
    let observe = Arc::new(observe);
    move |event| {
        let (engine, client_id, observe) =
            (Arc::clone(&engine), Arc::clone(&client_id), Arc::clone(&observe));
        Box::pin(async move {
            // The app's workflows as they are now: they may change at runtime.
            let origin = app_origin(&engine, &client_id);
            let outcome = handle_event(&engine, &origin, &event).await;
            observe(&outcome);
            outcome.map(|_| ())
        })
    }
}
