//! Set-up shared by this crate's integration tests: SQLite files in temporary directories and
//! a console-approved (built-in) workflow.

#![expect(clippy::unwrap_used, reason = "set-up fails loudly")]
#![allow(
    dead_code,
    reason = "each test file uses part of this; an expect would be unfulfilled in those using all"
)]

use dingtalk_sdk::mock::{MockFormField, MockProcess};
use dingtalk_sdk::ProcessCode;
use sase_approval::definition::{
    new_callback_id, Delivery, DingTalkSettings, Mapping, Workflow, WorkflowKind,
};
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

pub(crate) const APP: &str = "dingappkey0001";
pub(crate) const SECRET: &str = "secret";
pub(crate) const TOKEN: &str = "sase1token2cb";
pub(crate) const AES_KEY: &str = "kYd8sJ2pQ7wE4rT9uV1xZ3cB6nM0aL5gH8jK2fD4sAx";
pub(crate) const CODE: &str = "PROC-UNINSTALL";

/// The DingTalk workflow `wf-dingtalk` on app [`APP`], mapping uninstalls to form [`CODE`].
pub(crate) fn workflow() -> Workflow {
    Workflow {
        id: WorkflowId::new("wf-dingtalk"),
        name: "DingTalk approval".into(),
        kind: WorkflowKind::DingTalk(DingTalkSettings {
            client_id: APP.into(),
            client_secret: SECRET.into(),
            token: TOKEN.into(),
            aes_key: AES_KEY.into(),
            receiver_id: APP.into(),
            delivery: Delivery::HttpPush,
            dept_id: -1,
        }),
        mappings: vec![Mapping {
            template: "app_uninstall".into(),
            process_code: ProcessCode::new(CODE),
            fields: [
                ("device", "设备名称"),
                ("reason", "卸载原因"),
                ("requester", "申请人"),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect(),
        }],
        callback_id: new_callback_id(),
    }
}

/// The uninstall form the mock serves, with one default approver.
pub(crate) fn form() -> MockProcess {
    MockProcess::new(
        CODE,
        "安全客户端卸载申请",
        vec![
            MockFormField::new("设备名称", "TextField", true),
            MockFormField::new("卸载原因", "TextareaField", true),
            MockFormField::new("申请人", "TextField", false),
        ],
        vec!["approver1".into()],
    )
}
