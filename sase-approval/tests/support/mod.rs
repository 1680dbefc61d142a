//! Set-up shared by this crate's integration tests: SQLite files in temporary directories,
//! (feature `postgres`) PostgreSQL databases made for one test, and a console-approved
//! (built-in) workflow.

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
use sase_policy::ids::{UserId, WorkflowId};
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

/// PostgreSQL databases made for one test.
#[cfg(feature = "postgres")]
pub(crate) mod postgres {
    use sase_approval::store::PostgresStore;
    use sqlx::{Connection, Executor, PgConnection};
    use std::io::Write as _;
    use std::time::Duration;

    /// Where the tests create their databases, unless `SASE_TEST_POSTGRES` says otherwise.
    const DEFAULT_URL: &str = "postgres://root@127.0.0.1:5432/postgres";

    /// A PostgreSQL database made for one test (`sase_test_<random>`), dropped with this.
    ///
    /// It is made with ICU's `en-US` collation where the server has ICU, which sorts text
    /// unlike the byte order the stores list in.
    pub(crate) struct TempPostgres {
        /// The server's URL, to drop the database.
        admin: String,
        name: String,
        /// The database's URL.
        pub(crate) url: String,
    }

    impl TempPostgres {
        /// A new database on the server at `SASE_TEST_POSTGRES` (default
        /// `postgres://root@127.0.0.1:5432/postgres`). `None`, saying so on standard error,
        /// when the server cannot be reached; unless `SASE_REQUIRE_POSTGRES=1` (as in CI),
        /// which makes that a failure.
        pub(crate) async fn new() -> Option<Self> {
            let admin = std::env::var("SASE_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_URL.to_owned());
            let connected = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&admin))
                .await
                .map_err(|_| "no connection within 5 s".to_owned())
                .and_then(|c| c.map_err(|e| e.to_string()));
            let mut conn = match connected {
                Ok(conn) => conn,
                Err(error) => {
                    let required = std::env::var("SASE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
                    assert!(
                        !required,
                        "PostgreSQL not reachable at {admin} ({error}) and SASE_REQUIRE_POSTGRES=1"
                    );
                    // Straight to the process's standard error: the test harness captures (and
                    // hides, for a passing test) what `eprintln!` prints.
                    let _ = writeln!(
                        std::io::stderr().lock(),
                        "SKIPPED: PostgreSQL not reachable at {admin} ({error}); set SASE_TEST_POSTGRES"
                    );
                    return None;
                }
            };
            let name = format!("sase_test_{:016x}", rand::random::<u64>());
            let icu =
                format!("CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'");
            if conn.execute(icu.as_str()).await.is_err() {
                conn.execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .unwrap();
            }
            conn.close().await.unwrap();
            let mut url = url::Url::parse(&admin).unwrap();
            url.set_path(&name);
            Some(Self {
                admin,
                name,
                url: url.to_string(),
            })
        }

        /// Connects a store (a replica) to the database.
        pub(crate) async fn open(&self) -> PostgresStore {
            PostgresStore::connect(&self.url).await.unwrap()
        }
    }

    impl Drop for TempPostgres {
        // On a thread of its own with a runtime of its own: this runs inside the test's
        // runtime (or while its panic unwinds), which cannot block on a future.
        fn drop(&mut self) {
            let (admin, name) = (self.admin.clone(), self.name.clone());
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime
                    .block_on(async {
                        let mut conn = PgConnection::connect(&admin).await?;
                        conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                            .await?;
                        conn.close().await
                    })
                    .map_err(|e| e.to_string())
            })
            .join();
            if let Ok(Err(e)) = dropped {
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "could not drop the test database {}: {e}",
                    self.name
                );
            }
        }
    }
}

/// A built-in workflow `id`: approved in the console, nothing external.
pub(crate) fn builtin_workflow(id: &str) -> Workflow {
    Workflow {
        id: WorkflowId::new(id),
        name: "console".into(),
        kind: WorkflowKind::BuiltIn {
            approvers: vec![UserId::new("admin")],
        },
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
