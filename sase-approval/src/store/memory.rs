//! An in-memory store: for tests and single-process deployments that accept losing state.

use super::{ApprovalStore, ListFilter};
use crate::error::{Error, Result};
use crate::state::{ApprovalRequest, RequestId};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<RequestId, ApprovalRequest>,
    by_external: HashMap<String, RequestId>,
    events: HashSet<String>,
}

/// Requests in a mutex-guarded map.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl ApprovalStore for MemoryStore {
    async fn insert(&self, request: &ApprovalRequest) -> Result<()> {
        let mut inner = self.lock();
        if inner.requests.contains_key(&request.id) {
            return Err(Error::Store {
                reason: format!("request `{}` already exists", request.id),
            });
        }
        if let Some(external) = &request.external_id {
            inner.by_external.insert(external.clone(), request.id.clone());
        }
        inner.requests.insert(request.id.clone(), request.clone());
        Ok(())
    }

    async fn get(&self, id: &RequestId) -> Result<Option<ApprovalRequest>> {
        Ok(self.lock().requests.get(id).cloned())
    }

    async fn find_by_external(&self, external_id: &str) -> Result<Option<ApprovalRequest>> {
        let inner = self.lock();
        Ok(inner
            .by_external
            .get(external_id)
            .and_then(|id| inner.requests.get(id))
            .cloned())
    }

    async fn update(&self, request: &ApprovalRequest) -> Result<()> {
        let mut inner = self.lock();
        let Some(stored) = inner.requests.get_mut(&request.id) else {
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
        *stored = request.clone();
        stored.version += 1;
        if let Some(external) = &request.external_id {
            inner.by_external.insert(external.clone(), request.id.clone());
        }
        Ok(())
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<ApprovalRequest>> {
        let inner = self.lock();
        let mut all: Vec<&ApprovalRequest> = inner.requests.values().filter(|r| filter.matches(r)).collect();
        all.sort_by_key(|r| (r.created_at_ms, r.id.clone()));
        let limit = if filter.limit == 0 {
            usize::MAX
        } else {
            filter.limit
        };
        Ok(all.into_iter().skip(filter.offset).take(limit).cloned().collect())
    }

    async fn record_event(&self, key: &str, _at_ms: i64) -> Result<bool> {
        Ok(self.lock().events.insert(key.to_owned()))
    }

    async fn forget_event(&self, key: &str) -> Result<()> {
        self.lock().events.remove(key);
        Ok(())
    }
}
