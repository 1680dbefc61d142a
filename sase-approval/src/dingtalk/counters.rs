//! The SDK's call-budget counters kept in the approval store, so that every replica of a
//! server on one database counts an app's DingTalk calls together.

use crate::store::ApprovalStore;
use async_trait::async_trait;
use dingtalk_sdk::budget::{CounterAdd, SharedCounters};
use std::sync::Arc;

/// [`SharedCounters`] in an [`ApprovalStore`] ([`add_to_counter`](ApprovalStore::add_to_counter)):
/// give it to [`DingTalkClientBuilder::shared_counters`](dingtalk_sdk::client::DingTalkClientBuilder::shared_counters)
/// on every replica, and the monthly call limit holds for the app, not for each replica.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use dingtalk_sdk::client::DingTalkClient;
/// use dingtalk_sdk::token::Credentials;
/// use sase_approval::dingtalk::StoreCounters;
/// use sase_approval::store::MemoryStore;
/// use std::sync::Arc;
///
/// let store = Arc::new(MemoryStore::new());
/// let client = DingTalkClient::builder(Credentials::new("dingappkey", "app-secret"))
///     .shared_counters(Arc::new(StoreCounters::new(store)))
///     .build()?;
/// assert_eq!(client.shared_usage().await.calls, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct StoreCounters {
    store: Arc<dyn ApprovalStore>,
}

impl StoreCounters {
    /// Counters in `store`.
    pub fn new(store: Arc<dyn ApprovalStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl SharedCounters for StoreCounters {
    async fn add(
        &self,
        key: &str,
        delta: u64,
        limit: Option<u64>,
    ) -> Result<CounterAdd, Box<dyn std::error::Error + Send + Sync>> {
        let counted = self.store.add_to_counter(key, delta, limit).await?;
        Ok(CounterAdd {
            value: counted.value,
            added: counted.added,
        })
    }
}
