//! Where requests live: the [`ApprovalStore`] trait, an in-memory store, (feature `sqlite`)
//! a durable SQLite store and (feature `postgres`) a PostgreSQL store that several server
//! replicas share. Updates use optimistic concurrency: each request has a
//! version, and an update against a stale version fails with [`Error::Conflict`](crate::Error::Conflict); events are
//! applied atomically where the request is ([`ApprovalStore::apply_event`]). Every store also
//! keeps the hash-chained audit log ([`ApprovalStore::append_audit`], [`crate::audit`]).

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::SqliteStore;

use crate::audit::{AuditEntry, AuditFilter, AuditRecord};
use crate::error::Result;
use crate::state::{ApprovalRequest, Change, RequestId, RequestState, RequestUpdate};
use async_trait::async_trait;
use sase_policy::ids::{DeviceId, UserId, WorkflowId};
use sase_policy::Action;

/// Which requests to list (or count: [`ApprovalStore::count`]), in which order, and which page
/// of them. Built from [`ListFilter::default`] (every request, oldest first) by assigning the
/// fields or with the builder methods.
///
/// The SQL stores find a page, newest (or oldest) first, down an index, reading the rows up to
/// the page's end and no further: with no filter or a date range alone (by time), a state, a
/// requester, a device or a workflow (each optionally within a date range). Several states at
/// once are found by index too, but may be sorted whole before the page is taken. The memory
/// store reads every request under its lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListFilter {
    /// Only in these states (any, if empty).
    pub states: Vec<RequestState>,
    /// Only this requester.
    pub requester: Option<UserId>,
    /// Only this device's requests.
    pub device: Option<DeviceId>,
    /// Only this workflow.
    pub workflow: Option<WorkflowId>,
    /// Only created at or after, Unix ms.
    pub created_from_ms: Option<i64>,
    /// Only created before, Unix ms.
    pub created_to_ms: Option<i64>,
    /// Newest first: by `created_at_ms`, then id, both descending. Otherwise oldest first
    /// (both ascending). Ids compare bytewise.
    pub newest_first: bool,
    /// Skip this many (in the listing's order).
    pub offset: usize,
    /// At most this many (all, if zero).
    pub limit: usize,
}

impl ListFilter {
    /// Whether `r` passes the filter (order, offset and limit aside).
    pub fn matches(&self, r: &ApprovalRequest) -> bool {
        (self.states.is_empty() || self.states.contains(&r.state))
            && self.requester.as_ref().is_none_or(|u| *u == r.requester)
            && self.device.as_ref().is_none_or(|d| *d == r.device)
            && self.workflow.as_ref().is_none_or(|w| *w == r.workflow)
            && self.created_from_ms.is_none_or(|t| r.created_at_ms >= t)
            && self.created_to_ms.is_none_or(|t| r.created_at_ms < t)
    }

    /// Only these states.
    #[must_use]
    pub fn states(mut self, states: Vec<RequestState>) -> Self {
        self.states = states;
        self
    }

    /// Only this requester.
    #[must_use]
    pub fn requester(mut self, user: UserId) -> Self {
        self.requester = Some(user);
        self
    }

    /// Only this device's requests.
    #[must_use]
    pub fn device(mut self, device: DeviceId) -> Self {
        self.device = Some(device);
        self
    }

    /// Only this workflow.
    #[must_use]
    pub fn workflow(mut self, workflow: WorkflowId) -> Self {
        self.workflow = Some(workflow);
        self
    }

    /// Only created at or after `at_ms`, Unix ms.
    #[must_use]
    pub fn created_from_ms(mut self, at_ms: i64) -> Self {
        self.created_from_ms = Some(at_ms);
        self
    }

    /// Only created before `at_ms`, Unix ms.
    #[must_use]
    pub fn created_to_ms(mut self, at_ms: i64) -> Self {
        self.created_to_ms = Some(at_ms);
        self
    }

    /// Only the page skipping `offset` and holding at most `limit` (all, if zero).
    #[must_use]
    pub fn page(mut self, offset: usize, limit: usize) -> Self {
        self.offset = offset;
        self.limit = limit;
        self
    }

    /// Newest first (`created_at_ms`, then id, both descending).
    #[must_use]
    pub fn newest_first(mut self) -> Self {
        self.newest_first = true;
        self
    }
}

/// What [`ApprovalStore::apply_event`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventWrite {
    /// No request is linked to the instance: nothing written, the key not recorded.
    Unknown,
    /// The key was already recorded: nothing written.
    Duplicate,
    /// The event changes nothing: the key is recorded alone.
    Unchanged,
    /// The request changed (as announced) and the key is recorded with it.
    Changed(RequestUpdate),
}

/// Decides, from the stored request, what an event changes (`None`: nothing). See
/// [`ApprovalStore::apply_event`].
pub type DecideChange<'a> = dyn FnMut(&ApprovalRequest) -> Result<Option<Change>> + Send + 'a;

/// What [`ApprovalStore::add_to_counter`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// The counter's value after the call.
    pub value: u64,
    /// Whether the delta was added (`false`: it would have passed the limit).
    pub added: bool,
}

/// A versioned document an admin manages at runtime (an enrolled device, an enrollment code,
/// later workflows and policies), stored as JSON beside the requests so that every replica
/// sharing the store sees the same one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Document {
    /// What it is, e.g. `device`.
    pub kind: String,
    /// Its id within its kind.
    pub id: String,
    /// 1 once created, one more per update. Writes name the version they replace
    /// ([`ApprovalStore::put_document`]).
    pub version: u64,
    /// A value it is found by ([`ApprovalStore::find_document`]), unique within its kind: a
    /// device's token hash.
    pub lookup: Option<String>,
    /// The document, JSON; the store does not read it.
    pub body: String,
    /// When it was last written, Unix ms.
    pub updated_at_ms: i64,
}

impl Document {
    /// A document of `kind` and `id` with `body`, to be written over `version` (0: a new one).
    pub fn new(
        kind: impl Into<String>,
        id: impl Into<String>,
        version: u64,
        body: impl Into<String>,
    ) -> Self {
        Self {
            kind: kind.into(),
            id: id.into(),
            version,
            lookup: None,
            body: body.into(),
            updated_at_ms: 0,
        }
    }

    /// Found by `lookup`.
    #[must_use]
    pub fn lookup(mut self, lookup: impl Into<String>) -> Self {
        self.lookup = Some(lookup.into());
        self
    }

    /// Written at `at_ms`.
    #[must_use]
    pub fn at(mut self, at_ms: i64) -> Self {
        self.updated_at_ms = at_ms;
        self
    }

    /// The id a conflict names: `kind/id`.
    fn path(kind: &str, id: &str) -> String {
        format!("{kind}/{id}")
    }
}

/// Durable storage for requests and processed event keys.
#[async_trait]
pub trait ApprovalStore: Send + Sync + std::fmt::Debug {
    /// Stores a new request (version 0). A request is open while it is submitted or pending,
    /// and at most one is open per requester, device and action: the store enforces it
    /// atomically, so concurrent filings (on any replica) cannot both insert one.
    ///
    /// # Errors
    /// [`Error::AlreadyOpen`](crate::Error::AlreadyOpen), naming the open request, when
    /// `request` is open and another of its requester, device and action is.
    async fn insert(&self, request: &ApprovalRequest) -> Result<()>;

    /// A request by id.
    async fn get(&self, id: &RequestId) -> Result<Option<ApprovalRequest>>;

    /// The open (submitted or pending) request of `requester`'s `device` for `action`, if
    /// any: one indexed lookup, however many requests the store holds.
    async fn find_open(
        &self,
        requester: &UserId,
        device: &DeviceId,
        action: Action,
    ) -> Result<Option<ApprovalRequest>>;

    /// A request by its external instance id (DingTalk's `processInstanceId`).
    async fn find_by_external(&self, external_id: &str) -> Result<Option<ApprovalRequest>>;

    /// Replaces a request if its stored version is still `request.version`; the stored copy
    /// gets `version + 1`.
    ///
    /// # Errors
    /// [`Error::Conflict`](crate::Error::Conflict) if someone updated it first.
    async fn update(&self, request: &ApprovalRequest) -> Result<()>;

    /// The page of requests matching `filter`: oldest first (by `created_at_ms`, then id), or
    /// newest first ([`ListFilter::newest_first`]).
    async fn list(&self, filter: &ListFilter) -> Result<Vec<ApprovalRequest>>;

    /// How many requests match `filter`, whatever its page (offset and limit are ignored): one
    /// query (or one pass under the lock), not a list of the requests.
    async fn count(&self, filter: &ListFilter) -> Result<u64>;

    /// Applies an event to the request linked to instance `external_id`: unless `key` is
    /// already recorded, `decide` sees the stored request and says what changes, and the change
    /// and the key are written together (the key alone when nothing changes), both or neither.
    /// `decide` failing writes nothing. It runs at most once, and not for a duplicate. It may
    /// run under the store's lock, so it must be short and do no I/O (the engine's decisions are pure;
    /// the longest, an approval, signs a grant: ~30 µs).
    ///
    /// Stores apply it atomically and without retrying: in place under a lock, or in one
    /// write transaction. The engine's own read-modify-[`update`](Self::update) is the one
    /// place that retries on a [`Conflict`](crate::Error::Conflict).
    ///
    /// # Errors
    /// What `decide` returns, and store errors; nothing is written then.
    async fn apply_event(
        &self,
        external_id: &str,
        key: &str,
        at_ms: i64,
        decide: &mut DecideChange<'_>,
    ) -> Result<EventWrite>;

    /// A value every server sharing the store agrees on (a workflow's Request URL id): the
    /// stored value of `key` if there is one, else `proposed`, stored. The first writer wins,
    /// also among replicas starting at once.
    async fn shared_value(&self, key: &str, proposed: &str) -> Result<String>;

    /// Adds `delta` to the counter `key` (0 when it does not exist) unless that would take it
    /// over `limit` (`None`: no limit), in one atomic step among every server sharing the
    /// store; a `delta` of 0 reads it. The DingTalk call budget of an app is counted here, so
    /// its monthly limit holds across replicas. A read writes nothing (a missing counter
    /// stays missing), so reading counters keyed by untrusted input cannot grow the store.
    async fn add_to_counter(&self, key: &str, delta: u64, limit: Option<u64>) -> Result<Counted>;

    /// Deletes the counters whose keys are in `from..to` (bytewise, `from` included, `to`
    /// not); returns how many. Counters keyed by a time window end this way once their
    /// window is over.
    async fn remove_counters(&self, from: &str, to: &str) -> Result<u64>;

    /// Writes `document` if the stored one is at `document.version` (0: there is none yet);
    /// returns the version written (`document.version + 1`). Its `updated_at_ms` is kept.
    ///
    /// # Errors
    /// [`Error::Conflict`](crate::Error::Conflict) (id `kind/id`, `actual` the stored version,
    /// 0 for none) when it is not; [`Error::Store`](crate::Error::Store) when another document
    /// of its kind has its `lookup`.
    async fn put_document(&self, document: &Document) -> Result<u64>;

    /// The document `id` of `kind`.
    async fn get_document(&self, kind: &str, id: &str) -> Result<Option<Document>>;

    /// The version of the document `id` of `kind` (`None`: there is none), without its body:
    /// what a replica asks on each reload tick of a large document that seldom changes.
    async fn document_version(&self, kind: &str, id: &str) -> Result<Option<u64>>;

    /// The document of `kind` whose `lookup` is `lookup`.
    async fn find_document(&self, kind: &str, lookup: &str) -> Result<Option<Document>>;

    /// Every document of `kind`, by id (bytewise).
    async fn list_documents(&self, kind: &str) -> Result<Vec<Document>>;

    /// Deletes the document `id` of `kind` if it is at `version`.
    ///
    /// # Errors
    /// [`Error::Conflict`](crate::Error::Conflict) when it is not (`actual` 0: there is none).
    async fn delete_document(&self, kind: &str, id: &str, version: u64) -> Result<()>;

    /// Takes or renews the lease `name` for `holder` until `now_ms + ttl_ms`: `true` if
    /// `holder` holds it now (it was free, expired, or already `holder`'s). A task that only
    /// one replica may run at a time (reconciliation) runs while it holds the lease; if that
    /// replica dies, another takes over once the lease expires.
    async fn try_lease(&self, name: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<bool>;

    /// Forgets event keys recorded before `before_ms`, bounding the de-duplication record;
    /// returns how many. A redelivery older than that is applied again, which the state
    /// machine makes harmless.
    async fn prune_events(&self, before_ms: i64) -> Result<u64>;

    /// How many requests are in each state, for monitoring: one count per state that has
    /// requests (a state with none is left out), in no particular order. One query (or one
    /// pass under the lock), not a list of the requests.
    async fn count_by_state(&self) -> Result<Vec<(RequestState, u64)>>;

    /// Appends `record` to the audit chain: the next seq, linked to the last entry's hash
    /// ([`AuditEntry::chained`]), the head moved with it, all or nothing — one append at a
    /// time across every replica sharing the store (serialised in the database). Returns the
    /// entry written.
    ///
    /// # Errors
    /// [`Error::Store`](crate::Error::Store), nothing appended, when the record's `actor`,
    /// `action` or `subject` holds a NUL character (PostgreSQL text cannot; every store
    /// refuses it alike: such text belongs in `details`), and on store errors.
    async fn append_audit(&self, record: &AuditRecord) -> Result<AuditEntry>;

    /// The audit entries matching `filter`, by seq, as stored (hashes not checked: that is
    /// [`ChainVerifier`](crate::audit::ChainVerifier)'s job).
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;

    /// The head the store recorded with the last append: `(seq, hash)` of the last entry,
    /// `None` while the chain is empty. Kept apart from the entries, so that a chain missing
    /// its tail does not end where the head says
    /// ([`ChainVerifier::finish`](crate::audit::ChainVerifier::finish)).
    async fn audit_head(&self) -> Result<Option<(u64, String)>>;
}

/// Refuses a record no store could keep as it is: a NUL in `actor`, `action` or `subject`.
fn check_audit_record(record: &AuditRecord) -> Result<()> {
    for (name, value) in [
        ("actor", &record.actor),
        ("action", &record.action),
        ("subject", &record.subject),
    ] {
        if value.contains('\0') {
            return Err(crate::Error::Store {
                reason: format!("an audit record's {name} holds a NUL character: {value:?}"),
            });
        }
    }
    Ok(())
}

/// An audit entry's seq as stored (a `BIGINT`), read back.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn stored_seq(seq: i64) -> Result<u64> {
    u64::try_from(seq).map_err(|_| crate::Error::Store {
        reason: format!("an audit entry with the negative seq {seq}"),
    })
}

/// An audit entry's seq as bound to a `BIGINT` parameter.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn seq_param(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| crate::Error::Store {
        reason: format!("the audit chain is full (seq {seq})"),
    })
}

/// An audit entry's `details` as stored (canonical JSON text), read back.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn stored_details(seq: i64, text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| crate::Error::Store {
        reason: format!("audit entry {seq}: its details are not JSON: {e}"),
    })
}

/// A counter's value as stored (a `BIGINT`), read back.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn stored_counter(key: &str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| crate::Error::Store {
        reason: format!("counter {key:?} holds {value}, not a count"),
    })
}

/// The conflict of a write expecting `expected` where `actual` is stored (0: none).
fn document_conflict(kind: &str, id: &str, expected: u64, actual: u64) -> crate::Error {
    crate::Error::Conflict {
        id: Document::path(kind, id),
        expected,
        actual,
    }
}

/// A counter's delta or limit as bound to a `BIGINT` parameter.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn counter_param(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A state as stored (its [`RequestState::as_str`] name), read back; an unknown name is a
/// store error naming it (a database written by a newer build).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn stored_state(name: &str) -> Result<RequestState> {
    use serde::de::IntoDeserializer as _;
    use serde::Deserialize as _;
    let parsed: std::result::Result<RequestState, serde::de::value::Error> =
        RequestState::deserialize(name.into_deserializer());
    parsed.map_err(|e| crate::Error::Store {
        reason: format!("a request in the unknown state `{name}`: {e}"),
    })
}

/// The `COUNT(*)` of the requests a [`ListFilter`] matches, as a count.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn stored_total(count: i64) -> Result<u64> {
    u64::try_from(count).map_err(|_| crate::Error::Store {
        reason: format!("a negative count {count} of matching requests"),
    })
}

/// A `COUNT(*)` as stored (a signed 64-bit integer), as a count.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn stored_count(state: &str, count: i64) -> Result<u64> {
    u64::try_from(count).map_err(|_| crate::Error::Store {
        reason: format!("a negative count {count} of `{state}` requests"),
    })
}
