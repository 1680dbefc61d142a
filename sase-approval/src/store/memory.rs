//! An in-memory store: for tests and single-process deployments that accept losing state.

use super::{
    check_audit_record, document_conflict, ApprovalStore, Counted, DecideChange, Document, EventWrite,
    ListFilter,
};
use crate::audit::{AuditEntry, AuditFilter, AuditRecord, GENESIS};
use crate::error::{Error, Result};
use crate::state::{ApprovalRequest, RequestId, RequestState, RequestUpdate};
use async_trait::async_trait;
use rustc_hash::FxHashMap;
use sase_policy::ids::{DeviceId, UserId};
use sase_policy::Action;
use std::collections::hash_map::Entry;
use std::collections::BTreeMap;
use std::hash::BuildHasher as _;
use std::sync::{Mutex, MutexGuard};

// Keys are our request ids and DingTalk's (signature-checked) instance and event ids, so a
// fast non-keyed hash is safe. Hashed, not ordered: lookups stay O(1) with many requests, and
// `list` sorts anyway. Both indexes point into one list, so an event's lookup by instance id
// is a single hash probe; requests are never removed, so an index stays valid, and boxed, so
// growing the list moves pointers, not requests.
#[derive(Debug, Default)]
struct Inner {
    #[expect(
        clippy::vec_box,
        reason = "growing a list of a million requests must not copy them all under the lock"
    )]
    requests: Vec<Box<ApprovalRequest>>,
    by_id: FxHashMap<RequestId, usize>,
    by_external: FxHashMap<String, usize>,
    /// The open request of each requester, device and action.
    open: FxHashMap<OpenKey, usize>,
}

type OpenKey = (UserId, DeviceId, Action);

fn open_key(r: &ApprovalRequest) -> OpenKey {
    (r.requester.clone(), r.device.clone(), r.action)
}

impl Inner {
    /// Releases `index`'s open key once its request has ended.
    fn closed(&mut self, index: usize) {
        let Some(request) = self.requests.get(index) else {
            return;
        };
        if request.state.is_final() {
            let key = open_key(request);
            if self.open.get(&key) == Some(&index) {
                self.open.remove(&key);
            }
        }
    }

    fn get(&self, id: &RequestId) -> Option<&ApprovalRequest> {
        self.by_id
            .get(id)
            .and_then(|&i| self.requests.get(i))
            .map(|r| &**r)
    }
}

#[derive(Debug, Default)]
struct Shared {
    values: FxHashMap<String, String>,
    /// Lease name → (holder, until Unix ms).
    leases: FxHashMap<String, (String, i64)>,
    counters: FxHashMap<String, u64>,
    /// (kind, id) → document; ordered, so a kind lists by id.
    documents: BTreeMap<(String, String), Document>,
    /// (kind, lookup) → id.
    lookups: FxHashMap<(String, String), String>,
}

/// Processed event keys and when they were recorded, split in shards so that growing (a
/// rehash) or pruning one never stalls every event: each touches 1/`EVENT_SHARDS` of them.
const EVENT_SHARDS: usize = 64;

/// Requests in a mutex-guarded map.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// Shared values and leases: one process, so a lock is the whole story.
    shared: Mutex<Shared>,
    events: [Mutex<FxHashMap<String, i64>>; EVENT_SHARDS],
    /// The audit chain, entry `seq` at index `seq - 1`; its head is the last entry. Appends
    /// take the lock one at a time.
    audit: Mutex<Vec<AuditEntry>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            shared: Mutex::default(),
            events: std::array::from_fn(|_| Mutex::default()),
            audit: Mutex::default(),
        }
    }
}

fn unpoison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        unpoison(&self.inner)
    }

    fn events(&self, key: &str) -> MutexGuard<'_, FxHashMap<String, i64>> {
        let hash = rustc_hash::FxBuildHasher.hash_one(key);
        let shard = usize::try_from(hash % EVENT_SHARDS as u64).unwrap_or(0);
        let [first, ..] = &self.events;
        unpoison(self.events.get(shard).unwrap_or(first))
    }
}

#[async_trait]
impl ApprovalStore for MemoryStore {
    async fn insert(&self, request: &ApprovalRequest) -> Result<()> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let index = inner.requests.len();
        if inner.by_id.contains_key(&request.id) {
            return Err(Error::Store {
                reason: format!("request `{}` already exists", request.id),
            });
        }
        if !request.state.is_final() {
            match inner.open.entry(open_key(request)) {
                Entry::Occupied(open) => {
                    let open = inner.requests.get(*open.get()).map(|r| r.id.to_string());
                    return Err(Error::AlreadyOpen {
                        open: open.unwrap_or_default(),
                    });
                }
                Entry::Vacant(new) => new.insert(index),
            };
        }
        inner.by_id.insert(request.id.clone(), index);
        if let Some(external) = &request.external_id {
            inner.by_external.insert(external.clone(), index);
        }
        inner.requests.push(Box::new(request.clone()));
        Ok(())
    }

    async fn get(&self, id: &RequestId) -> Result<Option<ApprovalRequest>> {
        Ok(self.lock().get(id).cloned())
    }

    async fn find_open(
        &self,
        requester: &UserId,
        device: &DeviceId,
        action: Action,
    ) -> Result<Option<ApprovalRequest>> {
        let inner = self.lock();
        let key = (requester.clone(), device.clone(), action);
        Ok(inner
            .open
            .get(&key)
            .and_then(|&i| inner.requests.get(i))
            .map(|r| (**r).clone()))
    }

    async fn find_by_external(&self, external_id: &str) -> Result<Option<ApprovalRequest>> {
        let inner = self.lock();
        Ok(inner
            .by_external
            .get(external_id)
            .and_then(|&i| inner.requests.get(i))
            .map(|r| ApprovalRequest::clone(r)))
    }

    async fn update(&self, request: &ApprovalRequest) -> Result<()> {
        let mut inner = self.lock();
        let Some((index, stored)) = inner
            .by_id
            .get(&request.id)
            .copied()
            .and_then(|i| Some((i, inner.requests.get_mut(i)?)))
        else {
            return Err(Error::NotFound {
                id: request.id.to_string(),
            });
        };
        if stored.version != request.version {
            return Err(Error::Conflict {
                id: request.id.to_string(),
                expected: request.version,
                actual: stored.version,
            });
        }
        let newly_linked = request
            .external_id
            .as_ref()
            .filter(|&e| stored.external_id.as_ref() != Some(e))
            .cloned();
        // Reuses the stored copy's buffers.
        ApprovalRequest::clone_from(stored, request);
        stored.version += 1;
        if let Some(external) = newly_linked {
            inner.by_external.insert(external, index);
        }
        inner.closed(index);
        Ok(())
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<ApprovalRequest>> {
        let inner = self.lock();
        let mut all: Vec<&ApprovalRequest> = inner
            .requests
            .iter()
            .map(|r| &**r)
            .filter(|r| filter.matches(r))
            .collect();
        let oldest_first = |a: &&ApprovalRequest, b: &&ApprovalRequest| {
            (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id))
        };
        if filter.newest_first {
            all.sort_unstable_by(|a, b| oldest_first(b, a));
        } else {
            all.sort_unstable_by(oldest_first);
        }
        let limit = if filter.limit == 0 {
            usize::MAX
        } else {
            filter.limit
        };
        Ok(all.into_iter().skip(filter.offset).take(limit).cloned().collect())
    }

    async fn count(&self, filter: &ListFilter) -> Result<u64> {
        let inner = self.lock();
        let matching = inner.requests.iter().filter(|r| filter.matches(r)).count();
        Ok(u64::try_from(matching).unwrap_or(u64::MAX))
    }

    // In place under the lock: no copy of the request out and back, no conflict to retry.
    async fn apply_event(
        &self,
        external_id: &str,
        key: &str,
        at_ms: i64,
        decide: &mut DecideChange<'_>,
    ) -> Result<EventWrite> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some((index, stored)) = inner
            .by_external
            .get(external_id)
            .copied()
            .and_then(|i| Some((i, inner.requests.get_mut(i)?)))
        else {
            return Ok(EventWrite::Unknown);
        };
        // Both locks held until the key is recorded, so the change and the key land together
        // (nothing else takes both: the order cannot deadlock).
        let mut events = self.events(key);
        let Entry::Vacant(slot) = events.entry(key.to_owned()) else {
            return Ok(EventWrite::Duplicate);
        };
        let write = match decide(stored)? {
            None => EventWrite::Unchanged,
            Some(change) => {
                stored.apply(change);
                stored.version += 1;
                EventWrite::Changed(RequestUpdate::of(stored))
            }
        };
        slot.insert(at_ms);
        drop(events);
        inner.closed(index);
        Ok(write)
    }

    async fn shared_value(&self, key: &str, proposed: &str) -> Result<String> {
        let mut shared = unpoison(&self.shared);
        Ok(shared
            .values
            .entry(key.to_owned())
            .or_insert_with(|| proposed.to_owned())
            .clone())
    }

    async fn add_to_counter(&self, key: &str, delta: u64, limit: Option<u64>) -> Result<Counted> {
        let mut shared = unpoison(&self.shared);
        if delta == 0 {
            let value = shared.counters.get(key).copied().unwrap_or(0);
            let added = limit.is_none_or(|limit| value <= limit);
            return Ok(Counted { value, added });
        }
        let value = shared.counters.entry(key.to_owned()).or_default();
        let after = value.saturating_add(delta);
        let added = limit.is_none_or(|limit| after <= limit);
        if added {
            *value = after;
        }
        Ok(Counted { value: *value, added })
    }

    async fn remove_counters(&self, from: &str, to: &str) -> Result<u64> {
        let mut shared = unpoison(&self.shared);
        let before = shared.counters.len();
        shared
            .counters
            .retain(|key, _| !(from..to).contains(&key.as_str()));
        Ok((before - shared.counters.len()) as u64)
    }

    async fn put_document(&self, document: &Document) -> Result<u64> {
        let mut shared = unpoison(&self.shared);
        let key = (document.kind.clone(), document.id.clone());
        let stored = shared.documents.get(&key);
        let actual = stored.map_or(0, |d| d.version);
        if actual != document.version {
            return Err(document_conflict(
                &document.kind,
                &document.id,
                document.version,
                actual,
            ));
        }
        let old_lookup = stored.and_then(|d| d.lookup.clone());
        if let Some(lookup) = &document.lookup {
            let taken = shared.lookups.get(&(document.kind.clone(), lookup.clone()));
            if taken.is_some_and(|id| *id != document.id) {
                return Err(Error::Store {
                    reason: format!("another `{}` has the same lookup value", document.kind),
                });
            }
        }
        if let Some(old) = old_lookup {
            shared.lookups.remove(&(document.kind.clone(), old));
        }
        if let Some(lookup) = &document.lookup {
            shared
                .lookups
                .insert((document.kind.clone(), lookup.clone()), document.id.clone());
        }
        let version = document.version + 1;
        shared.documents.insert(
            key,
            Document {
                version,
                ..document.clone()
            },
        );
        Ok(version)
    }

    async fn get_document(&self, kind: &str, id: &str) -> Result<Option<Document>> {
        let shared = unpoison(&self.shared);
        Ok(shared.documents.get(&(kind.to_owned(), id.to_owned())).cloned())
    }

    async fn document_version(&self, kind: &str, id: &str) -> Result<Option<u64>> {
        let shared = unpoison(&self.shared);
        Ok(shared
            .documents
            .get(&(kind.to_owned(), id.to_owned()))
            .map(|d| d.version))
    }

    async fn find_document(&self, kind: &str, lookup: &str) -> Result<Option<Document>> {
        let shared = unpoison(&self.shared);
        Ok(shared
            .lookups
            .get(&(kind.to_owned(), lookup.to_owned()))
            .and_then(|id| shared.documents.get(&(kind.to_owned(), id.clone())))
            .cloned())
    }

    async fn list_documents(&self, kind: &str) -> Result<Vec<Document>> {
        let shared = unpoison(&self.shared);
        Ok(shared
            .documents
            .range((kind.to_owned(), String::new())..)
            .take_while(|((k, _), _)| k == kind)
            .map(|(_, d)| d.clone())
            .collect())
    }

    async fn delete_document(&self, kind: &str, id: &str, version: u64) -> Result<()> {
        let mut shared = unpoison(&self.shared);
        let key = (kind.to_owned(), id.to_owned());
        let actual = shared.documents.get(&key).map_or(0, |d| d.version);
        if actual != version || actual == 0 {
            return Err(document_conflict(kind, id, version, actual));
        }
        if let Some(lookup) = shared.documents.remove(&key).and_then(|d| d.lookup) {
            shared.lookups.remove(&(kind.to_owned(), lookup));
        }
        Ok(())
    }

    async fn try_lease(&self, name: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<bool> {
        let mut shared = unpoison(&self.shared);
        let lease = shared
            .leases
            .entry(name.to_owned())
            .or_insert_with(|| (holder.to_owned(), i64::MIN));
        if lease.0 != holder && lease.1 > now_ms {
            return Ok(false);
        }
        *lease = (holder.to_owned(), now_ms.saturating_add(ttl_ms));
        Ok(true)
    }

    async fn prune_events(&self, before_ms: i64) -> Result<u64> {
        let mut pruned = 0;
        for shard in &self.events {
            let mut events = unpoison(shard);
            let before = events.len();
            events.retain(|_, at| *at >= before_ms);
            pruned += (before - events.len()) as u64;
        }
        Ok(pruned)
    }

    async fn count_by_state(&self) -> Result<Vec<(RequestState, u64)>> {
        let mut counts: Vec<(RequestState, u64)> = Vec::new();
        for request in &self.lock().requests {
            match counts.iter_mut().find(|(state, _)| *state == request.state) {
                Some((_, n)) => *n += 1,
                None => counts.push((request.state, 1)),
            }
        }
        Ok(counts)
    }

    async fn append_audit(&self, record: &AuditRecord) -> Result<AuditEntry> {
        check_audit_record(record)?;
        let mut audit = unpoison(&self.audit);
        let (seq, prev_hash) = audit
            .last()
            .map_or((1, GENESIS), |last| (last.seq + 1, last.hash.as_str()));
        let entry = AuditEntry::chained(seq, prev_hash, record.clone());
        audit.push(entry.clone());
        Ok(entry)
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let audit = unpoison(&self.audit);
        // Entry `seq` is at index `seq - 1`: those after `after_seq` start at its index.
        let start = usize::try_from(filter.after_seq).unwrap_or(usize::MAX);
        let limit = if filter.limit == 0 {
            usize::MAX
        } else {
            filter.limit
        };
        Ok(audit
            .get(start..)
            .unwrap_or_default()
            .iter()
            .filter(|entry| filter.matches(entry))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn audit_head(&self) -> Result<Option<(u64, String)>> {
        Ok(unpoison(&self.audit)
            .last()
            .map(|last| (last.seq, last.hash.clone())))
    }
}
