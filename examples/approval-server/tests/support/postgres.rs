//! PostgreSQL for the tests: a database of the test's own on the server at
//! `SASE_TEST_POSTGRES` (default `postgres://root@127.0.0.1:5432/postgres`), dropped after
//! it; a visible `SKIPPED` line where there is none, a failure under `SASE_REQUIRE_POSTGRES=1`.

use sqlx::{Connection as _, Executor as _, PgConnection};
use std::io::Write as _;
use std::time::Duration;

/// A database made for one test (`sase_replicas_<random>`), dropped with this.
pub(crate) struct TempDb {
    admin: String,
    name: String,
    /// Its URL.
    pub(crate) url: String,
}

impl TempDb {
    /// A new database on the server at `SASE_TEST_POSTGRES`; `None` (saying so on standard
    /// error) when it cannot be reached, unless `SASE_REQUIRE_POSTGRES=1`.
    pub(crate) async fn new() -> Option<Self> {
        let admin = std::env::var("SASE_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".to_owned());
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
                // Past the harness's capture: a skipped test must be visible.
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "SKIPPED: PostgreSQL not reachable at {admin} ({error}); set SASE_TEST_POSTGRES"
                );
                return None;
            }
        };
        let name = format!("sase_replicas_{:016x}", rand::random::<u64>());
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        conn.close().await.unwrap();
        // The same server and user, the new database.
        let (base, query) = admin.split_once('?').unwrap_or((admin.as_str(), ""));
        let authority_at = base.find("://").map_or(0, |i| i + 3);
        let path_at = base
            .get(authority_at..)
            .and_then(|rest| rest.find('/'))
            .map_or(base.len(), |i| authority_at + i);
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        let url = format!("{}/{name}{query}", base.get(..path_at).unwrap());
        Some(Self { admin, name, url })
    }
}

impl Drop for TempDb {
    // On a thread of its own with a runtime of its own: this runs inside the test's runtime
    // (or while its panic unwinds), which cannot block on a future.
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
