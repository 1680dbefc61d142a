//! Set-up shared by this crate's integration tests: SQLite files in temporary directories and
//! a console-approved (built-in) workflow.

#![expect(clippy::unwrap_used, reason = "set-up fails loudly")]
#![allow(
    dead_code,
    reason = "each test file uses part of this; an expect would be unfulfilled in those using all"
)]

use sase_approval::definition::{new_callback_id, Workflow, WorkflowKind};
use sase_approval::store::SqliteStore;
use sase_policy::ids::WorkflowId;
use std::path::PathBuf;

/// A SQLite file in a temporary directory, removed with it.
pub(crate) struct TempDb {
    _dir: tempfile::TempDir,
    pub(crate) path: PathBuf,
}

impl TempDb {
    pub(crate) fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        Self { _dir: dir, path }
    }

    /// Opens (creating, or reopening) the file as a store.
    pub(crate) async fn open(&self) -> SqliteStore {
        SqliteStore::open(&self.path).await.unwrap()
    }
}

/// A built-in workflow `id`: approved in the console, nothing external.
pub(crate) fn builtin_workflow(id: &str) -> Workflow {
    Workflow {
        id: WorkflowId::new(id),
        name: "console".into(),
        kind: WorkflowKind::BuiltIn { approvers: vec![] },
        mappings: vec![],
        callback_id: new_callback_id(),
    }
}
