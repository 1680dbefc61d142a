//! The engine: submit requests, follow them through external events, console actions and
//! reconciliation, issue grants on approval, and tell subscribers about every change.

use crate::audit::{AuditEntry, AuditRecord};
use crate::backend::{ApprovalBackend, BackendResult, FailureKind};
use crate::clock::{millis, Clock, SystemClock};
use crate::definition::{Template, Workflow, WorkflowKind};
use crate::error::{Error, GrantRefusal, Result};
use crate::event::{EventOrigin, ExternalChange, ExternalEvent};
use crate::recheck::RecheckSchedule;
use crate::state::{plan, ApprovalRequest, Change, Plan, RequestId, RequestState, Source};
use crate::store::{ApprovalStore, EventWrite, ListFilter};
use sase_policy::ids::{DeviceId, GrantId, UserId, WorkflowId};
use sase_policy::{Action, Grant, GrantSigner, GrantVerifier, SignedGrant};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::broadcast;

mod reconcile;

/// What a requester files.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubmitRequest {
    /// The template (`app_uninstall`, `app_logoff`).
    pub template: String,
    /// The workflow the policy named.
    pub workflow: WorkflowId,
    /// Who files.
    pub requester: UserId,
    /// For which device.
    pub device: DeviceId,
    /// For which action.
    pub action: Action,
    /// System field values, e.g. `reason`, `app_version`.
    pub fields: BTreeMap<String, String>,
}

impl SubmitRequest {
    /// An app-uninstall request with a reason.
    pub fn uninstall(
        workflow: WorkflowId,
        requester: UserId,
        device: DeviceId,
        reason: impl Into<String>,
    ) -> Self {
        Self::new(Action::Uninstall, workflow, requester, device, reason)
    }

    /// A request for `action` with a reason, under that action's template
    /// ([`Template::id_for`]).
    pub fn new(
        action: Action,
        workflow: WorkflowId,
        requester: UserId,
        device: DeviceId,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            template: Template::id_for(action),
            workflow,
            requester,
            device,
            action,
            fields: [("reason".to_owned(), reason.into())].into(),
        }
    }

    /// Adds a system field value.
    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.insert(name.into(), value.into());
        self
    }
}

pub use crate::state::RequestUpdate;

/// What [`Engine::file`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Filing {
    /// A new request was filed.
    Created(ApprovalRequest),
    /// A request was already open for the requester, device and action: this one.
    AlreadyOpen(ApprovalRequest),
}

impl Filing {
    /// The request filed, or the one already open.
    pub fn into_request(self) -> ApprovalRequest {
        match self {
            Filing::Created(r) | Filing::AlreadyOpen(r) => r,
        }
    }
}

/// What handling an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventOutcome {
    /// The request moved.
    Applied,
    /// Recorded for the audit trail (task events) or already in that state.
    Recorded,
    /// Seen before: nothing done.
    Duplicate,
    /// Older than the current state, or not allowed from it: nothing done.
    Stale,
    /// Not about any request of ours (or not an approval event).
    Ignored,
    /// About a request of a workflow the event's origin may not decide (another DingTalk
    /// app's, or another form's): nothing done, nothing recorded, logged.
    Refused,
}

/// What a reconciliation pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReconcileReport {
    /// Requests looked at (due on the recheck schedule, unlinked, or overdue).
    pub checked: usize,
    /// Pending requests not due for a look yet.
    pub not_due: usize,
    /// Instances asked about one by one (no longer running, or not listable).
    pub looked_up: usize,
    /// Requests whose state changed.
    pub changed: usize,
    /// External instances created or found for requests that had none.
    pub linked: usize,
    /// Processed event keys pruned (older than the engine's event retention).
    pub pruned_events: u64,
}

/// Whether a create is the first for its request (right after it was stored), or may follow
/// one that made an instance whose id was never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    First,
    Again,
}

struct Registered {
    definition: Workflow,
    backend: Arc<dyn ApprovalBackend>,
}

/// Builder for [`Engine`].
pub struct EngineBuilder {
    store: Arc<dyn ApprovalStore>,
    signer: GrantSigner,
    templates: Vec<Template>,
    workflows: Vec<(Workflow, Arc<dyn ApprovalBackend>)>,
    grant_ttl: Duration,
    expire_after: Option<Duration>,
    event_retention: Duration,
    clock: Arc<dyn Clock>,
    max_reason_chars: usize,
    recheck: RecheckSchedule,
    audit: Option<AuditSink>,
}

/// Told of each entry the engine appends to the audit chain (e.g. to log it for a SIEM).
pub type AuditSink = Arc<dyn Fn(&AuditEntry) + Send + Sync>;

/// How many characters a reason may have by default (the approver reads it in DingTalk).
pub const DEFAULT_MAX_REASON_CHARS: usize = 2_000;

/// How many characters any other filed field may have.
const MAX_FIELD_CHARS: usize = 200;

/// A filed text as it may reach the approver: CRLF and lone CR become LF; control characters
/// (NUL, ESC sequences…) other than tab and newline, and bidirectional overrides that would make
/// the approver read something else than was filed, are refused; at most `cap` characters.
fn clean_text(field: &str, value: &str, cap: usize) -> Result<String> {
    let refuse = |reason: String| Error::InvalidRequest {
        field: field.to_owned(),
        reason,
    };
    let value = value.replace("\r\n", "\n").replace('\r', "\n");
    if let Some(bad) = value.chars().find(|&c| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    }) {
        return Err(refuse(format!(
            "contains the control character U+{:04X}",
            u32::from(bad)
        )));
    }
    let chars = value.chars().count();
    if chars > cap {
        return Err(refuse(format!("{chars} characters; at most {cap}")));
    }
    Ok(value)
}

/// Workflow ids for a message or a log field: `wf-a, wf-b`.
fn join(workflows: &[WorkflowId]) -> String {
    workflows
        .iter()
        .map(WorkflowId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Filing answered with the request already open.
fn log_already_open(open: &ApprovalRequest) {
    tracing::info!(
        request = %open.id,
        workflow = %open.workflow,
        requester = %open.requester,
        device = %open.device,
        action = open.action.as_str(),
        state = open.state.as_str(),
        "request already open"
    );
}

/// What a create (or the search for the instance an uncertain create made) came to, once
/// stored; nothing when another pass linked the request meanwhile.
fn log_create(after: &ApprovalRequest, external: &BackendResult<String>, found: bool) {
    match external {
        Ok(instance) if after.external_id.as_deref() == Some(instance.as_str()) => tracing::info!(
            request = %after.id,
            workflow = %after.workflow,
            instance = %instance,
            found,
            state = after.state.as_str(),
            "instance created"
        ),
        Err(e) if after.external_id.is_none() && e.kind() == FailureKind::Ambiguous => tracing::warn!(
            request = %after.id,
            workflow = %after.workflow,
            error = %e,
            "create outcome unknown"
        ),
        Err(e) if after.external_id.is_none() => tracing::warn!(
            request = %after.id,
            workflow = %after.workflow,
            will_retry = e.is_retryable(),
            state = after.state.as_str(),
            error = %e,
            "create failed"
        ),
        _ => {}
    }
}

/// A grant was issued (the request moved to approved through `source`).
fn log_grant_issued(request: &RequestId, grant: &GrantId, expires_at_ms: i64, source: &str) {
    tracing::info!(request = %request, grant = %grant, expires_at_ms, source, "grant issued");
}

/// [`log_grant_issued`] for `after`'s grant, if it is approved and holds one.
fn log_grant_issued_to(after: &ApprovalRequest, source: &str) {
    if let (RequestState::Approved, Some(signed)) = (after.state, &after.grant) {
        log_grant_issued(&after.id, &signed.grant.id, signed.grant.expires_at_ms, source);
    }
}

/// How long processed event keys are kept for de-duplication by default: far beyond any
/// redelivery (Stream mode retries for about 60 s; HTTP push retries are undocumented).
pub const DEFAULT_EVENT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// Registers a workflow and the backend that decides it.
    pub fn workflow(mut self, workflow: Workflow, backend: Arc<dyn ApprovalBackend>) -> Self {
        self.workflows.push((workflow, backend));
        self
    }

    /// Adds a template (the built-in `app_uninstall` and `app_logoff` are always there).
    pub fn template(mut self, template: Template) -> Self {
        self.templates.push(template);
        self
    }

    /// How long grants stay valid. Default: 1 hour.
    pub fn grant_ttl(mut self, ttl: Duration) -> Self {
        self.grant_ttl = ttl;
        self
    }

    /// Pending requests older than this expire at reconciliation. Default: never.
    pub fn expire_after(mut self, after: Duration) -> Self {
        self.expire_after = Some(after);
        self
    }

    /// How long processed event keys are kept for de-duplication; reconciliation prunes
    /// older ones so the record stays bounded. Default: [`DEFAULT_EVENT_RETENTION`].
    pub fn event_retention(mut self, retention: Duration) -> Self {
        self.event_retention = retention;
        self
    }

    /// How many characters a filed reason may have. Default: [`DEFAULT_MAX_REASON_CHARS`].
    pub fn max_reason_chars(mut self, chars: usize) -> Self {
        self.max_reason_chars = chars;
        self
    }

    /// Records every request's filing and change of state, and every grant issued, consumed,
    /// refused or revoked, in the store's hash-chained audit log
    /// ([`ApprovalStore::append_audit`]), telling `sink` of each entry. Default: off.
    pub fn audit(mut self, sink: AuditSink) -> Self {
        self.audit = Some(sink);
        self
    }

    /// When reconciliation looks at a pending request again. Default:
    /// [`RecheckSchedule::default`].
    pub fn recheck(mut self, schedule: RecheckSchedule) -> Self {
        self.recheck = schedule;
        self
    }

    /// Where the engine reads the time. Default: [`SystemClock`]; tests pass a
    /// [`ManualClock`](crate::clock::ManualClock) and move it.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Validates the workflows against the templates and builds the engine.
    ///
    /// # Errors
    /// [`Error::Definition`] naming the first invalid field.
    pub fn build(self) -> Result<Engine> {
        let workflows = registered(self.workflows, &self.templates)?;
        Ok(Engine {
            store: self.store,
            signer: self.signer,
            templates: self.templates,
            workflows: RwLock::new(workflows),
            grant_ttl: self.grant_ttl,
            expire_after: self.expire_after,
            event_retention: self.event_retention,
            clock: self.clock,
            max_reason_chars: self.max_reason_chars,
            recheck: self.recheck,
            rechecks: Mutex::default(),
            audit: self.audit,
            updates: broadcast::channel(1024).0,
        })
    }
}

/// The approval engine.
pub struct Engine {
    store: Arc<dyn ApprovalStore>,
    signer: GrantSigner,
    templates: Vec<Template>,
    /// Replaced whole when the workflows change at runtime ([`Engine::set_workflows`]).
    workflows: RwLock<Workflows>,
    grant_ttl: Duration,
    expire_after: Option<Duration>,
    event_retention: Duration,
    clock: Arc<dyn Clock>,
    max_reason_chars: usize,
    recheck: RecheckSchedule,
    /// When each pending request last saw an event and was last looked at by
    /// reconciliation, on our clock (lost on restart: each request is then looked at once,
    /// at its latest schedule point from its filing).
    rechecks: Mutex<reconcile::Memory>,
    updates: broadcast::Sender<RequestUpdate>,
    audit: Option<AuditSink>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.store)
            .field("workflows", &self.registry().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What an audited change compares with: the request's state, whether its grant was
/// consumed, and its grant's id, before the change.
struct Before {
    state: RequestState,
    consumed: bool,
    grant: Option<String>,
}

impl Before {
    fn of(request: &ApprovalRequest) -> Self {
        Self {
            state: request.state,
            consumed: request.grant_consumed_at_ms.is_some(),
            grant: request.grant.as_ref().map(|g| g.grant.id.to_string()),
        }
    }
}

/// The registered workflows, by id.
type Workflows = Arc<HashMap<WorkflowId, Arc<Registered>>>;

/// `workflows`, each validated against `templates`.
fn registered(
    workflows: impl IntoIterator<Item = (Workflow, Arc<dyn ApprovalBackend>)>,
    templates: &[Template],
) -> Result<Workflows> {
    let mut registered = HashMap::new();
    for (definition, backend) in workflows {
        definition.validate(templates)?;
        registered.insert(
            definition.id.clone(),
            Arc::new(Registered { definition, backend }),
        );
    }
    Ok(Arc::new(registered))
}

impl Engine {
    /// Starts a builder: requests live in `store`, grants are signed with `signer`.
    pub fn builder(store: Arc<dyn ApprovalStore>, signer: GrantSigner) -> EngineBuilder {
        EngineBuilder {
            store,
            signer,
            templates: Template::all_built_in(),
            workflows: Vec::new(),
            grant_ttl: Duration::from_secs(3600),
            expire_after: None,
            event_retention: DEFAULT_EVENT_RETENTION,
            clock: Arc::new(SystemClock),
            max_reason_chars: DEFAULT_MAX_REASON_CHARS,
            recheck: RecheckSchedule::default(),
            audit: None,
        }
    }

    /// The clock the engine reads.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// The public key agents verify grants with.
    pub fn verifier(&self) -> GrantVerifier {
        self.signer.verifier()
    }

    /// Every state change, as it is stored.
    pub fn subscribe(&self) -> broadcast::Receiver<RequestUpdate> {
        self.updates.subscribe()
    }

    /// The workflow definitions in force.
    pub fn workflows(&self) -> Vec<Workflow> {
        self.registry().values().map(|r| r.definition.clone()).collect()
    }

    /// The ids of the workflows in force that `matches` accepts (without copying the
    /// definitions: an event's origin is looked up this way on every event).
    pub fn workflow_ids(&self, matches: impl Fn(&Workflow) -> bool) -> Vec<WorkflowId> {
        self.registry()
            .values()
            .filter(|r| matches(&r.definition))
            .map(|r| r.definition.id.clone())
            .collect()
    }

    /// The workflow `id`, if it is in force.
    pub fn workflow(&self, id: &WorkflowId) -> Option<Workflow> {
        self.registry().get(id).map(|r| r.definition.clone())
    }

    /// Replaces the workflows in force, each with the backend that decides it: filings and
    /// console actions use the new set at once; requests of a workflow no longer in it can
    /// no longer be filed, acted on or reconciled (their state is kept).
    ///
    /// # Errors
    /// [`Error::Definition`] naming the first invalid field; nothing is replaced then.
    pub fn set_workflows(
        &self,
        workflows: impl IntoIterator<Item = (Workflow, Arc<dyn ApprovalBackend>)>,
    ) -> Result<()> {
        let workflows = registered(workflows, &self.templates)?;
        *self.workflows.write().unwrap_or_else(PoisonError::into_inner) = workflows;
        Ok(())
    }

    /// The workflows in force now (a snapshot: a later [`set_workflows`](Self::set_workflows)
    /// does not change it).
    fn registry(&self) -> Workflows {
        Arc::clone(&self.workflows.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// A request by id.
    ///
    /// # Errors
    /// [`Error::NotFound`], or a store error.
    pub async fn get(&self, id: &RequestId) -> Result<ApprovalRequest> {
        self.store
            .get(id)
            .await?
            .ok_or_else(|| Error::NotFound { id: id.to_string() })
    }

    /// Requests matching `filter`.
    ///
    /// # Errors
    /// A store error.
    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<ApprovalRequest>> {
        self.store.list(filter).await
    }

    /// How many requests match `filter`, whatever its page (its offset and limit are
    /// ignored): the total a console shows beside a page of [`list`](Self::list). One store
    /// query.
    ///
    /// # Errors
    /// A store error.
    pub async fn count(&self, filter: &ListFilter) -> Result<u64> {
        self.store.count(filter).await
    }

    fn backend(&self, workflow: &WorkflowId) -> Result<Arc<dyn ApprovalBackend>> {
        self.registry()
            .get(workflow)
            .map(|r| Arc::clone(&r.backend))
            .ok_or_else(|| Error::InvalidRequest {
                field: "workflow".into(),
                reason: format!("unknown workflow `{workflow}`"),
            })
    }

    /// Files a request, unless the requester already has one open for the same device and
    /// action ([`open_request`](Self::open_request), returned then): stores it with the intent
    /// to create its external instance, then creates it. An outage leaves it `Submitted` (created later by
    /// [`reconcile`](Self::reconcile)); a create whose outcome is unknown, or that a crash
    /// interrupted before its instance id was stored, is resolved by finding the instance it
    /// made before creating again, never blindly repeated.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for an unknown workflow/template, unknown or missing fields;
    /// store errors.
    pub async fn submit(&self, submit: SubmitRequest) -> Result<ApprovalRequest> {
        self.file(submit).await.map(Filing::into_request)
    }

    /// [`submit`](Self::submit), saying whether the request is new or was already open.
    ///
    /// # Errors
    /// As [`submit`](Self::submit).
    pub async fn file(&self, submit: SubmitRequest) -> Result<Filing> {
        let backend = self.backend(&submit.workflow)?;
        let Some(template) = self.templates.iter().find(|t| t.id == submit.template) else {
            return Err(Error::InvalidRequest {
                field: "template".into(),
                reason: format!("unknown template `{}`", submit.template),
            });
        };
        // A DingTalk workflow creates instances only on the forms it maps: refused here,
        // before anything is stored, rather than a request that can never be created.
        let registry = self.registry();
        if let Some(definition) = registry.get(&submit.workflow).map(|r| &r.definition) {
            if definition.dingtalk().is_some() && definition.mapping(&template.id).is_none() {
                return Err(Error::InvalidRequest {
                    field: "template".into(),
                    reason: format!(
                        "workflow `{}` maps no DingTalk form for template `{}`",
                        submit.workflow, template.id
                    ),
                });
            }
        }
        if let Some(field) = submit.fields.keys().find(|f| !template.fields.contains(f)) {
            return Err(Error::InvalidRequest {
                field: field.clone(),
                reason: "not a system field of the template".into(),
            });
        }
        if submit.fields.get("reason").is_none_or(|r| r.trim().is_empty()) {
            return Err(Error::InvalidRequest {
                field: "reason".into(),
                reason: "a reason is required".into(),
            });
        }
        let mut fields = submit.fields;
        for (name, value) in &mut fields {
            let cap = if name == "reason" {
                self.max_reason_chars
            } else {
                MAX_FIELD_CHARS
            };
            *value = clean_text(name, value, cap)?;
        }
        // One open request per requester, device and action: filing again (a double click, a
        // retrying or hostile agent) returns it instead of another instance in the approvers'
        // inbox. This read answers the common case; the store's insert decides races.
        if let Some(open) = self
            .open_request(&submit.requester, &submit.device, submit.action)
            .await?
        {
            return Ok(Filing::AlreadyOpen(open));
        }
        let now = self.clock.now_ms();
        let mut request = ApprovalRequest {
            id: RequestId::generate(),
            template: submit.template,
            workflow: submit.workflow,
            requester: submit.requester,
            device: submit.device,
            action: submit.action,
            fields: Arc::new(fields),
            state: RequestState::Submitted,
            state_at_ms: 0,
            external_id: None,
            // The intent to create, durable before the call: whatever happens between
            // DingTalk creating the instance and us storing its id, a restart finds it.
            create_uncertain: true,
            created_at_ms: now,
            grant: None,
            grant_consumed_at_ms: None,
            version: 0,
            history: Vec::new(),
            history_dropped: 0,
        };
        let requester = request.requester.to_string();
        request.record(RequestState::Submitted, now, &requester, Source::Agent, None);
        match self.store.insert(&request).await {
            Ok(()) => {}
            Err(Error::AlreadyOpen { open }) => {
                let open = self.get(&RequestId(open)).await?;
                log_already_open(&open);
                return Ok(Filing::AlreadyOpen(open));
            }
            Err(e) => return Err(e),
        }
        // The reason is the requester's own words: its length is logged, never its text.
        tracing::info!(
            request = %request.id,
            workflow = %request.workflow,
            template = %request.template,
            requester = %request.requester,
            device = %request.device,
            action = request.action.as_str(),
            reason_chars = request.fields.get("reason").map_or(0, |r| r.chars().count()),
            "request filed"
        );
        self.notify(RequestUpdate::of(&request));
        let details = || {
            serde_json::json!({
                "workflow": request.workflow, "template": request.template, "device": request.device,
                "action": request.action.as_str(),
                "reason_chars": request.fields.get("reason").map_or(0, |r| r.chars().count()),
            })
        };
        self.audit(request.requester.as_str(), "request.filed", &request.id, details)
            .await;
        self.create_external(&request.id, backend.as_ref(), Attempt::First)
            .await
            .map(Filing::Created)
    }

    /// The request of `requester` for `action` on `device` that is still open (submitted or
    /// pending), if there is one; [`submit`](Self::submit) returns it instead of filing again
    /// (and it is logged as `request already open`: this is the filing's check).
    ///
    /// # Errors
    /// Store errors.
    pub async fn open_request(
        &self,
        requester: &UserId,
        device: &DeviceId,
        action: Action,
    ) -> Result<Option<ApprovalRequest>> {
        let open = self.store.find_open(requester, device, action).await?;
        if let Some(open) = &open {
            log_already_open(open);
        }
        Ok(open)
    }

    /// Creates the external instance or, when an earlier attempt may have made one, finds it
    /// first. `create_uncertain` is stored set before any create is sent and cleared only
    /// once the instance id is stored with it (or the create failed for good).
    async fn create_external(
        &self,
        id: &RequestId,
        backend: &dyn ApprovalBackend,
        attempt: Attempt,
    ) -> Result<ApprovalRequest> {
        let mut request = self.get(id).await?;
        if !request.create_uncertain {
            // Filed before the intent was recorded at submission: record it now.
            request = self
                .mutate(id, |r| {
                    let changed = !r.create_uncertain && r.external_id.is_none();
                    r.create_uncertain = true;
                    Ok(changed)
                })
                .await?;
        }
        if request.external_id.is_some() {
            return Ok(request);
        }
        let (external, note) = if attempt == Attempt::Again {
            let mut linked = None;
            for candidate in backend.find_existing(&request).await? {
                if self.store.find_by_external(&candidate).await?.is_none() {
                    linked = Some(candidate);
                    break;
                }
            }
            match linked {
                Some(found) => (
                    Ok(found),
                    Some("found the instance an uncertain create had made".to_owned()),
                ),
                None => (backend.create(&request).await, None),
            }
        } else {
            (backend.create(&request).await, None)
        };
        let now = self.clock.now_ms();
        let found = note.is_some();
        self.mutate(id, |r| {
            if r.external_id.is_some() {
                return Ok(false);
            }
            match &external {
                Ok(ext) => {
                    r.external_id = Some(ext.clone());
                    r.create_uncertain = false;
                    self.apply(
                        r,
                        RequestState::Pending,
                        now,
                        "system",
                        Source::System,
                        note.clone(),
                    )
                }
                Err(e) if e.kind() == FailureKind::Ambiguous => {
                    r.record(r.state, now, "system", Source::System, Some(e.to_string()));
                    Ok(true)
                }
                Err(e) if e.is_retryable() => {
                    r.record(
                        r.state,
                        now,
                        "system",
                        Source::System,
                        Some(format!("will retry: {e}")),
                    );
                    Ok(true)
                }
                Err(e) => {
                    r.create_uncertain = false;
                    self.apply(
                        r,
                        RequestState::Failed,
                        now,
                        "system",
                        Source::System,
                        Some(e.to_string()),
                    )
                }
            }
        })
        .await
        .inspect(|after| log_create(after, &external, found))
    }

    /// Applies a state (plan + record + grant) to a loaded request; `Ok(false)` if unchanged.
    fn apply(
        &self,
        r: &mut ApprovalRequest,
        to: RequestState,
        at_ms: i64,
        actor: &str,
        source: Source,
        note: Option<String>,
    ) -> Result<bool> {
        if plan(r, to, at_ms)? != Plan::Apply {
            return Ok(false);
        }
        r.apply(self.change_to(r, to, at_ms, actor, source).note(note));
        Ok(true)
    }

    /// The change moving `r` to `to` (once [`plan`] said [`Plan::Apply`]): an approval
    /// issues the grant, a revocation withdraws it.
    fn change_to(
        &self,
        r: &ApprovalRequest,
        to: RequestState,
        at_ms: i64,
        actor: &str,
        source: Source,
    ) -> Change {
        let change = Change::new(to, at_ms, actor, source);
        match to {
            RequestState::Approved => {
                let now = self.clock.now_ms();
                change.grant(Some(self.signer.sign(Grant {
                    id: GrantId::new(format!("grant-{:024x}", rand::random::<u128>() >> 32)),
                    user: r.requester.clone(),
                    device: r.device.clone(),
                    action: r.action,
                    issued_at_ms: now,
                    expires_at_ms: now.saturating_add(millis(self.grant_ttl)),
                    request_id: Some(r.id.to_string()),
                })))
            }
            // Revoked after approval: the unused grant dies with it.
            RequestState::Revoked => change.grant(None),
            _ => change,
        }
    }

    /// Loads, changes and stores a request, retrying on concurrent updates.
    async fn mutate(
        &self,
        id: &RequestId,
        mut change: impl FnMut(&mut ApprovalRequest) -> Result<bool>,
    ) -> Result<ApprovalRequest> {
        for _ in 0..8 {
            let mut request = self.get(id).await?;
            // What the audit entry compares with, kept only when the change is audited.
            let before = self.audit.as_ref().map(|_| Before::of(&request));
            if !change(&mut request)? {
                return Ok(request);
            }
            match self.store.update(&request).await {
                Ok(()) => {
                    request.version += 1;
                    self.notify(RequestUpdate::of(&request));
                    if let Some(before) = before {
                        self.audit_change(before, &request).await;
                    }
                    return Ok(request);
                }
                Err(Error::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Err(Error::Store {
            reason: format!("request `{id}` kept changing concurrently"),
        })
    }

    fn notify(&self, update: RequestUpdate) {
        // A subscriber leaving meanwhile is fine; nobody listening too.
        let _ = self.updates.send(update);
    }

    /// Appends what happened to `request` to the audit chain, when the engine keeps one; its
    /// `details` are made only then (an event's path pays nothing for an audit that is off).
    /// The change is stored already: an entry that cannot be written is logged, not undone.
    async fn audit(
        &self,
        actor: &str,
        action: &str,
        request: &RequestId,
        details: impl FnOnce() -> serde_json::Value,
    ) {
        let Some(sink) = &self.audit else { return };
        let record = AuditRecord::new(
            self.clock.now_ms(),
            actor,
            action,
            format!("request/{request}"),
            details(),
        );
        match self.store.append_audit(&record).await {
            Ok(entry) => sink(&entry),
            Err(e) => tracing::error!(error = %e, request = %request, action, "audit entry not written"),
        }
    }

    /// Audits the change `mutate` stored: a change of state (with the grant issued, or the
    /// one the request held `before` withdrawn), a grant consumed, or a note.
    async fn audit_change(&self, before: Before, after: &ApprovalRequest) {
        let Before {
            state: from,
            consumed: consumed_before,
            grant,
        } = before;
        let Some(last) = after.history.last() else { return };
        let action = if after.state != from {
            format!("request.{}", after.state.as_str())
        } else if after.grant_consumed_at_ms.is_some() && !consumed_before {
            "grant.consumed".to_owned()
        } else {
            "request.noted".to_owned()
        };
        let details = || {
            serde_json::json!({
                "from": from.as_str(), "to": after.state.as_str(), "source": last.source,
                "note": last.note, "workflow": after.workflow, "requester": after.requester,
                "device": after.device, "grant": after.grant.as_ref().map(|g| g.grant.id.as_str()),
                "grant_withdrawn": grant.filter(|_| after.grant.is_none()),
            })
        };
        self.audit(&last.actor, &action, &after.id, details).await;
    }

    /// Handles an event from an external approval system (translated by its adapter, e.g.
    /// `sase_approval::dingtalk::handle_event`), exactly once per [`key`](ExternalEvent::key),
    /// ordered by its time. It decides only a request of a workflow `origin` allows, and, when
    /// the event names a form, only one whose workflow maps its template to that form;
    /// anything else is [`EventOutcome::Refused`] and logged with both workflows named.
    ///
    /// # Errors
    /// Store errors; the event is then not recorded, so a redelivery is processed again.
    pub async fn handle_external(&self, origin: &EventOrigin, event: &ExternalEvent) -> Result<EventOutcome> {
        let at = event.at_ms.unwrap_or_else(|| self.clock.now_ms());
        let source = Source::External {
            event: event.key.clone(),
        };
        let mut outcome = EventOutcome::Recorded;
        // For the log line: the request as the event found it, and the grant it issued.
        let mut found: Option<(RequestState, WorkflowId)> = None;
        let mut issued: Option<(GrantId, i64)> = None;
        let mut decide = |r: &ApprovalRequest| {
            self.check_origin(origin, event, r)?;
            found = Some((r.state, r.workflow.clone()));
            issued = None;
            match &event.change {
                // An audit entry: the outcome stays `Recorded`.
                ExternalChange::Note(note) => Ok(Some(
                    Change::new(r.state, at, &event.actor, source.clone()).note(Some(note.clone())),
                )),
                ExternalChange::Status(status) => {
                    let to = status.request_state();
                    match plan(r, to, at) {
                        Ok(Plan::Apply) => {
                            outcome = EventOutcome::Applied;
                            let change = self.change_to(r, to, at, &event.actor, source.clone());
                            issued = change
                                .grant
                                .as_ref()
                                .and_then(Option::as_ref)
                                .map(|g| (g.grant.id.clone(), g.grant.expires_at_ms));
                            Ok(Some(change))
                        }
                        Ok(Plan::Unchanged) => Ok(None),
                        Ok(Plan::Stale) | Err(Error::IllegalTransition { .. }) => {
                            outcome = EventOutcome::Stale;
                            Ok(None)
                        }
                        Err(e) => Err(e),
                    }
                }
            }
        };
        // The key is recorded with the change it causes, so an event that is not ours yet
        // (the create may still be in flight) or not stored is processed again on
        // redelivery or by reconciliation; a refused one is not recorded, so it cannot shadow
        // the genuine event with the same key.
        let write = match self
            .store
            .apply_event(&event.instance, &event.key, self.clock.now_ms(), &mut decide)
            .await
        {
            Ok(write) => write,
            Err(Error::ForeignEvent {
                instance,
                origin: from,
                request,
                workflow,
                reason,
            }) => {
                tracing::warn!(
                    request = %request,
                    workflow = %workflow,
                    instance = %instance,
                    key = %event.key,
                    origin = %from,
                    origin_workflows = %join(origin.workflows()),
                    reason = %reason,
                    "event refused"
                );
                return Ok(EventOutcome::Refused);
            }
            Err(e) => return Err(e),
        };
        let ignored = |reason: &str| {
            // Unset for a duplicate: the request is not read then.
            let (state, workflow) = found.as_ref().map(|(s, w)| (s.as_str(), w.as_str())).unzip();
            tracing::info!(
                instance = %event.instance,
                key = %event.key,
                workflow,
                state,
                reason,
                "event ignored"
            );
        };
        Ok(match write {
            EventWrite::Unknown => {
                // Debug, not info: an app receives the events of every approval of its
                // organisation's forms, most about instances that are not ours (and ours may
                // arrive before the create stored the instance id; reconciliation catches up).
                tracing::debug!(instance = %event.instance, key = %event.key, reason = "not ours", "event ignored");
                EventOutcome::Ignored
            }
            EventWrite::Duplicate => {
                // A redelivery: bounded by DingTalk's retries, and about one of our events.
                ignored("duplicate");
                EventOutcome::Duplicate
            }
            EventWrite::Unchanged => {
                ignored(match outcome {
                    EventOutcome::Stale => "stale",
                    _ => "already in that state",
                });
                outcome
            }
            EventWrite::Changed(update) => {
                // Any event about a request puts its next look back to the schedule's first.
                self.note_activity(&update.id);
                match (outcome, &found) {
                    (EventOutcome::Applied, Some((from, workflow))) => {
                        tracing::info!(
                            request = %update.id,
                            workflow = %workflow,
                            instance = %event.instance,
                            key = %event.key,
                            actor = %event.actor,
                            origin = origin.name(),
                            from = from.as_str(),
                            to = update.state.as_str(),
                            "event applied"
                        );
                        if let Some((grant, expires_at_ms)) = &issued {
                            log_grant_issued(&update.id, grant, *expires_at_ms, "external");
                        }
                    }
                    _ => ignored("audit-only recorded"),
                }
                let from = found.as_ref().map_or("", |(from, _)| from.as_str());
                let action = if outcome == EventOutcome::Applied {
                    format!("request.{}", update.state.as_str())
                } else {
                    "request.noted".to_owned()
                };
                let details = || {
                    serde_json::json!({
                        "from": from, "to": update.state.as_str(), "source": "external",
                        "origin": origin.name(), "instance": event.instance, "event": event.key,
                        "grant": issued.as_ref().map(|(grant, _)| grant.as_str()),
                    })
                };
                self.audit(&event.actor, &action, &update.id, details).await;
                self.notify(update);
                outcome
            }
        })
    }

    /// [`Error::ForeignEvent`] unless `event`, from `origin`, may decide `request`.
    fn check_origin(
        &self,
        origin: &EventOrigin,
        event: &ExternalEvent,
        request: &ApprovalRequest,
    ) -> Result<()> {
        let refuse = |reason: String| Error::ForeignEvent {
            instance: event.instance.clone(),
            origin: origin.name().to_owned(),
            request: request.id.to_string(),
            workflow: request.workflow.to_string(),
            reason,
        };
        if !origin.allows(&request.workflow) {
            return Err(refuse(format!(
                "its origin decides workflows [{}] only",
                join(origin.workflows())
            )));
        }
        // Historical event shapes may not name the form: the origin check then stands alone.
        let Some(form) = &event.form else {
            return Ok(());
        };
        let registry = self.registry();
        let mapped = registry
            .get(&request.workflow)
            .and_then(|w| w.definition.mapping(&request.template))
            .map(|m| m.process_code.as_str());
        if mapped == Some(form.as_str()) {
            Ok(())
        } else {
            Err(refuse(format!(
                "it names form `{form}`, the workflow maps {}",
                mapped.map_or_else(|| "no form".to_owned(), |m| format!("`{m}`"))
            )))
        }
    }

    /// An admin approves from the console; written back to the external system first. A
    /// built-in workflow's request is approved or rejected only by one of its approvers (any
    /// admin may revoke).
    ///
    /// # Errors
    /// [`Error::IllegalTransition`] (e.g. after a revoke); [`Error::NotAnApprover`]; a
    /// backend error leaves the request unchanged.
    pub async fn approve(
        &self,
        id: &RequestId,
        admin: &str,
        remark: Option<&str>,
    ) -> Result<ApprovalRequest> {
        self.console(id, RequestState::Approved, admin, remark).await
    }

    /// An admin rejects from the console. See [`approve`](Self::approve).
    ///
    /// # Errors
    /// As [`approve`](Self::approve).
    pub async fn reject(&self, id: &RequestId, admin: &str, remark: Option<&str>) -> Result<ApprovalRequest> {
        self.console(id, RequestState::Rejected, admin, remark).await
    }

    /// An admin revokes, also after approval (the grant dies with it). See
    /// [`approve`](Self::approve).
    ///
    /// # Errors
    /// As [`approve`](Self::approve).
    pub async fn revoke(&self, id: &RequestId, admin: &str, remark: Option<&str>) -> Result<ApprovalRequest> {
        self.console(id, RequestState::Revoked, admin, remark).await
    }

    /// `actor` may decide `request`: any admin for an external workflow (the external
    /// system decides who approves), one of its approvers for a built-in one.
    fn check_approver(&self, request: &ApprovalRequest, actor: &str) -> Result<()> {
        let registry = self.registry();
        let Some(WorkflowKind::BuiltIn { approvers }) =
            registry.get(&request.workflow).map(|r| &r.definition.kind)
        else {
            return Ok(());
        };
        if approvers.iter().any(|a| a.as_str() == actor) {
            Ok(())
        } else {
            Err(Error::NotAnApprover {
                id: request.id.to_string(),
                actor: actor.to_owned(),
                workflow: request.workflow.to_string(),
            })
        }
    }

    async fn console(
        &self,
        id: &RequestId,
        to: RequestState,
        admin: &str,
        remark: Option<&str>,
    ) -> Result<ApprovalRequest> {
        let request = self.get(id).await?;
        // An admin decides after every event the request has seen, whatever the external
        // system's clock said about them: their time never makes a console action stale.
        let at = |r: &ApprovalRequest| self.clock.now_ms().max(r.state_at_ms);
        // The remark is the admin's free text: whether there is one is logged, not its text.
        let log = |from: RequestState, after: &ApprovalRequest, changed: bool| {
            tracing::info!(
                request = %after.id,
                workflow = %after.workflow,
                action = match to {
                    RequestState::Approved => "approve",
                    RequestState::Rejected => "reject",
                    _ => "revoke",
                },
                actor = admin,
                remark = remark.is_some(),
                from = from.as_str(),
                to = after.state.as_str(),
                changed,
                "console action"
            );
        };
        if to != RequestState::Revoked {
            self.check_approver(&request, admin)?;
        }
        if plan(&request, to, at(&request))? == Plan::Unchanged {
            log(request.state, &request, false);
            return Ok(request);
        }
        // Write back first: if the external system refuses, nothing changes here.
        if let (Some(external), true) = (&request.external_id, request.state == RequestState::Pending) {
            let backend = self.backend(&request.workflow)?;
            match to {
                RequestState::Approved => backend.approve(external, admin, remark).await?,
                RequestState::Rejected => backend.reject(external, admin, remark).await?,
                _ => backend.revoke(external, admin, remark).await?,
            }
        }
        let note = remark.map(str::to_owned);
        let mut moved = false;
        let after = self
            .mutate(id, |r| {
                moved = false;
                if r.state == to {
                    // The external system's own event for our write-back landed first: the
                    // decision stands, and the history still says who made it and why.
                    r.record(r.state, at(r), admin, Source::Console, note.clone());
                    return Ok(true);
                }
                moved = self.apply(r, to, at(r), admin, Source::Console, note.clone())?;
                Ok(moved)
            })
            .await?;
        if after.state == to {
            log(request.state, &after, moved);
            if moved {
                log_grant_issued_to(&after, "console");
            }
            Ok(after)
        } else {
            // Changed meanwhile (an event landed): say so instead of answering as if done.
            Err(Error::IllegalTransition {
                id: id.to_string(),
                from: after.state,
                to,
            })
        }
    }

    /// The agent uses its grant: the server's half of single use. The grant must be the one
    /// its request holds now (so a revoked request's grant is refused, whatever its
    /// signature), for `user` on `device`, unexpired and not consumed before; it is then
    /// marked consumed, with an audit entry.
    ///
    /// # Errors
    /// [`Error::GrantRefused`] saying why; store errors.
    pub async fn consume_grant(
        &self,
        grant: &SignedGrant,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<ApprovalRequest> {
        let refused = |refusal| Error::GrantRefused { refusal };
        let log_refused = |refusal: GrantRefusal| {
            tracing::info!(
                request = grant.grant.request_id.as_deref(),
                // Presented by the agent, unverified: a quoted string, never raw.
                grant = grant.grant.id.as_str(),
                user = %user,
                device = %device,
                reason = refusal.code(),
                "grant refused"
            );
        };
        let Some(request_id) = grant.grant.request_id.as_deref() else {
            log_refused(GrantRefusal::Unknown);
            return Err(refused(GrantRefusal::Unknown));
        };
        let id = RequestId(request_id.to_owned());
        let check = |r: &ApprovalRequest, now: i64| {
            if r.state == RequestState::Revoked {
                return Err(refused(GrantRefusal::Revoked));
            }
            if r.grant.as_ref() != Some(grant) {
                return Err(refused(GrantRefusal::Unknown));
            }
            if grant.grant.user != *user || grant.grant.device != *device {
                return Err(refused(GrantRefusal::Foreign));
            }
            if now >= grant.grant.expires_at_ms {
                return Err(refused(GrantRefusal::Expired));
            }
            if r.grant_consumed_at_ms.is_some() {
                return Err(refused(GrantRefusal::Used));
            }
            Ok(())
        };
        let result = self
            .mutate(&id, |r| {
                let now = self.clock.now_ms();
                check(r, now)?;
                r.grant_consumed_at_ms = Some(now);
                r.record(
                    r.state,
                    now,
                    user.as_str(),
                    Source::Agent,
                    Some(format!("grant {} consumed on {device}", grant.grant.id)),
                );
                Ok(true)
            })
            .await;
        let result = match result {
            Err(Error::NotFound { .. }) => Err(refused(GrantRefusal::Unknown)),
            other => other,
        };
        match &result {
            Ok(r) => tracing::info!(
                request = %r.id,
                workflow = %r.workflow,
                grant = %grant.grant.id,
                user = %user,
                device = %device,
                "grant consumed"
            ),
            Err(Error::GrantRefused { refusal }) => {
                log_refused(*refusal);
                // Presented by the agent, unverified: recorded as a quoted value only.
                let details = || {
                    serde_json::json!({
                        "grant": grant.grant.id.as_str(), "device": device, "reason": refusal.code(),
                    })
                };
                self.audit(user.as_str(), "grant.refused", &id, details).await;
            }
            Err(_) => {}
        }
        result
    }
}
