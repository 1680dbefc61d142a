//! A durable SQLite store (WAL, full sync): versioned migrations, indexed columns for lookups
//! and filters, and the whole request as JSON. Runtime queries only, so a PostgreSQL store
//! can follow the same code.

use super::{
    check_audit_record, counter_param, document_conflict, seq_param, stored_count, stored_counter,
    stored_details, stored_seq, stored_state, stored_total, ApprovalStore, Counted, DecideChange, Document,
    EventWrite, ListFilter,
};
use crate::audit::{canonical_json, AuditEntry, AuditFilter, AuditRecord};
use crate::error::{Error, Result};
use crate::state::{ApprovalRequest, RequestId, RequestState, RequestUpdate};
use async_trait::async_trait;
use sase_policy::ids::{DeviceId, UserId};
use sase_policy::Action;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Executor, QueryBuilder, Row, Sqlite};
use std::path::Path;
use std::time::Duration;

/// Schema versions, applied in order inside one transaction each.
const MIGRATIONS: &[&[&str]] = &[
    &[
        "CREATE TABLE requests (
        id TEXT PRIMARY KEY,
        external_id TEXT UNIQUE,
        state TEXT NOT NULL,
        workflow TEXT NOT NULL,
        requester TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        version INTEGER NOT NULL,
        body TEXT NOT NULL
    )",
        "CREATE INDEX requests_by_state ON requests (state, created_at_ms)",
        "CREATE INDEX requests_by_requester ON requests (requester, created_at_ms)",
        "CREATE TABLE events (key TEXT PRIMARY KEY, at_ms INTEGER NOT NULL)",
    ],
    &[
        // Pruning by age.
        "CREATE INDEX events_by_time ON events (at_ms)",
    ],
    &[
        // One open request per requester, device and action, enforced by the database so
        // that concurrent filings (or replicas) cannot both insert one: the key is set while
        // the request is open and cleared when it ends (NULLs do not collide).
        "ALTER TABLE requests ADD COLUMN open_key TEXT",
        // Requests filed before: the oldest open one of each kind holds the key (a duplicate
        // filed before this check stays as it is, keyless, until it ends).
        "UPDATE requests SET open_key = json_array(json_extract(body, '$.requester'),
            json_extract(body, '$.device'), json_extract(body, '$.action'))
         WHERE state IN ('submitted', 'pending') AND NOT EXISTS (
            SELECT 1 FROM requests o WHERE o.state IN ('submitted', 'pending')
            AND json_extract(o.body, '$.requester') = json_extract(requests.body, '$.requester')
            AND json_extract(o.body, '$.device') = json_extract(requests.body, '$.device')
            AND json_extract(o.body, '$.action') = json_extract(requests.body, '$.action')
            AND (o.created_at_ms, o.id) < (requests.created_at_ms, requests.id))",
        "CREATE UNIQUE INDEX requests_open ON requests (open_key)",
    ],
    &[
        // Values every server of the store agrees on (Request URL ids), and leases.
        "CREATE TABLE shared_values (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until_ms INTEGER NOT NULL)",
    ],
    &[
        // Counts every server of the store shares (an app's DingTalk calls this month).
        "CREATE TABLE counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    ],
    &[
        // What admins manage at runtime (devices, enrollment codes), versioned; `lookup` finds
        // one (a token hash), unique within its kind (NULLs do not collide).
        r#"CREATE TABLE documents (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        lookup TEXT,
        body TEXT NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        PRIMARY KEY (kind, id)
    )"#,
        "CREATE UNIQUE INDEX documents_by_lookup ON documents (kind, lookup)",
    ],
    &[
        // The hash-chained audit log (crate::audit), append-only: `details` is canonical JSON,
        // the hashes lowercase hex; `audit_head` is the last entry's seq and hash, moved in the
        // append's transaction (seq 0 and the genesis hash while the chain is empty).
        "CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )",
        "CREATE INDEX audit_by_actor ON audit (actor, seq)",
        "CREATE INDEX audit_by_subject ON audit (subject, seq)",
        "CREATE INDEX audit_by_time ON audit (at_ms)",
        "CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL
    )",
        "INSERT INTO audit_head (id, seq, hash)
         VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000')",
    ],
    &[
        // The console pages through requests newest first, filtered by device among others:
        // the device gets a column (set on insert; a request's device never changes),
        // backfilled from the body. Each listing then walks one index newest first and stops
        // at the page's end: by time with no filter (or a date range alone), by device or by
        // workflow (each with `id` last: no sort at all), by state or by requester (the
        // indexes of migration 1: only requests created in one millisecond are sorted, by id).
        "ALTER TABLE requests ADD COLUMN device TEXT",
        "UPDATE requests SET device = json_extract(body, '$.device')",
        "CREATE INDEX requests_by_time ON requests (created_at_ms, id)",
        "CREATE INDEX requests_by_device ON requests (device, created_at_ms, id)",
        "CREATE INDEX requests_by_workflow ON requests (workflow, created_at_ms, id)",
    ],
];

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::Store {
        reason: e.to_string(),
    }
}

/// Requests in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Reads: several connections (in WAL mode they run beside the writer).
    readers: SqlitePool,
    /// Writes: one connection. SQLite admits one writer at a time; concurrent writers on
    /// several connections get `SQLITE_BUSY` and sleep in its busy handler (backing off up to
    /// 100 ms a try), which starves some of them under load. One connection makes them queue
    /// in the pool instead, in order.
    writer: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    ///
    /// # Errors
    /// [`Error::Store`] if the file cannot be opened or migrated.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        // SQLite's own messages ("unable to open database file") do not say which file.
        let at = |e: sqlx::Error| store_err(format!("{}: {e}", path.display()));
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(at)?;
        Self::migrate(&writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(at)?;
        Ok(Self { readers, writer })
    }

    async fn migrate(writer: &SqlitePool) -> Result<()> {
        let mut tx = writer.begin().await.map_err(store_err)?;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            .fetch_one(&mut *tx)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(store_err)?;
        for (i, statements) in MIGRATIONS.iter().enumerate() {
            let version = i64::try_from(i).unwrap_or(i64::MAX) + 1;
            if version <= current {
                continue;
            }
            for statement in *statements {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(store_err)?;
            }
            sqlx::query("INSERT INTO schema_version (version) VALUES (?)")
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(store_err)?;
        }
        tx.commit().await.map_err(store_err)
    }

    /// Why a versioned write changed no row: someone else's update, or no such request.
    async fn not_written(&self, request: &ApprovalRequest) -> Error {
        match self.get(&request.id).await {
            Ok(Some(stored)) => Error::Conflict {
                id: request.id.to_string(),
                expected: request.version,
                actual: stored.version,
            },
            Ok(None) => Error::NotFound {
                id: request.id.to_string(),
            },
            Err(e) => e,
        }
    }

    fn decode(row: &sqlx::sqlite::SqliteRow) -> Result<ApprovalRequest> {
        let body: String = row.try_get("body").map_err(store_err)?;
        let version: i64 = row.try_get("version").map_err(store_err)?;
        let mut request: ApprovalRequest = serde_json::from_str(&body).map_err(store_err)?;
        request.version = u64::try_from(version).map_err(|_| {
            store_err(format!(
                "request `{}` has a negative version {version}",
                request.id
            ))
        })?;
        Ok(request)
    }

    /// The open request holding `request`'s requester, device and action, if any.
    async fn open_one(&self, request: &ApprovalRequest) -> Result<Option<String>> {
        sqlx::query("SELECT id FROM requests WHERE open_key = json_array(?, ?, ?)")
            .bind(request.requester.as_str())
            .bind(request.device.as_str())
            .bind(request.action.as_str())
            .fetch_optional(&self.writer)
            .await
            .and_then(|row| row.map(|row| row.try_get::<String, _>(0)).transpose())
            .map_err(store_err)
    }

    async fn one(&self, sql: &str, key: &str) -> Result<Option<ApprovalRequest>> {
        let row = sqlx::query(sql)
            .bind(key)
            .fetch_optional(&self.readers)
            .await
            .map_err(store_err)?;
        row.as_ref().map(Self::decode).transpose()
    }

    /// The counter `key`'s value, 0 when there is none; read without writing.
    async fn counter(&self, key: &str) -> Result<u64> {
        let value: Option<i64> = sqlx::query_scalar("SELECT value FROM counters WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.readers)
            .await
            .map_err(store_err)?;
        stored_counter(key, value.unwrap_or(0))
    }
}

/// Writes `request` over its stored copy if that is still at `request.version`; `false` if
/// no row matched.
async fn write_request<'e>(
    executor: impl Executor<'e, Database = Sqlite>,
    request: &ApprovalRequest,
) -> Result<bool> {
    let mut next = request.clone();
    next.version = request.version + 1;
    let body = serde_json::to_string(&next).map_err(store_err)?;
    let expected = i64::try_from(request.version).map_err(store_err)?;
    let done = sqlx::query(
        "UPDATE requests SET external_id = ?, state = ?, version = version + 1, body = ?,
         open_key = CASE WHEN ? THEN open_key END
         WHERE id = ? AND version = ?",
    )
    .bind(request.external_id.as_deref())
    .bind(request.state.as_str())
    .bind(body)
    .bind(!request.state.is_final())
    .bind(request.id.as_str())
    .bind(expected)
    .execute(executor)
    .await
    .map_err(store_err)?;
    Ok(done.rows_affected() == 1)
}

/// Records an event key; `false` if it was already there.
async fn insert_event<'e>(
    executor: impl Executor<'e, Database = Sqlite>,
    key: &str,
    at_ms: i64,
) -> Result<bool> {
    let done = sqlx::query("INSERT OR IGNORE INTO events (key, at_ms) VALUES (?, ?)")
        .bind(key)
        .bind(at_ms)
        .execute(executor)
        .await
        .map_err(store_err)?;
    Ok(done.rows_affected() == 1)
}

/// `select` (`SELECT … FROM requests`) restricted to the requests `filter` matches, each
/// condition on an indexed column.
fn filtered(select: &str, filter: &ListFilter) -> QueryBuilder<'static, Sqlite> {
    let mut q = QueryBuilder::new(select);
    q.push(" WHERE 1 = 1");
    match filter.states.as_slice() {
        [] => {}
        // `=` rather than `IN` of one, to be plain to the planner.
        [state] => {
            q.push(" AND state = ").push_bind(state.as_str());
        }
        states => {
            q.push(" AND state IN (");
            let mut sep = q.separated(", ");
            for state in states {
                sep.push_bind(state.as_str());
            }
            q.push(")");
        }
    }
    if let Some(user) = &filter.requester {
        q.push(" AND requester = ").push_bind(user.as_str().to_owned());
    }
    if let Some(device) = &filter.device {
        q.push(" AND device = ").push_bind(device.as_str().to_owned());
    }
    if let Some(workflow) = &filter.workflow {
        q.push(" AND workflow = ").push_bind(workflow.as_str().to_owned());
    }
    if let Some(from) = filter.created_from_ms {
        q.push(" AND created_at_ms >= ").push_bind(from);
    }
    if let Some(to) = filter.created_to_ms {
        q.push(" AND created_at_ms < ").push_bind(to);
    }
    q
}

/// What [`ApprovalStore::list`] selects.
const LIST: &str = "SELECT body, version FROM requests";

/// What [`ApprovalStore::count`] selects.
const COUNT: &str = "SELECT COUNT(*) FROM requests";

/// The page of requests `filter` lists, in its order: `select` ([`LIST`]) with its conditions,
/// order, limit and offset.
fn list_query(select: &str, filter: &ListFilter) -> QueryBuilder<'static, Sqlite> {
    let mut q = filtered(select, filter);
    q.push(if filter.newest_first {
        " ORDER BY created_at_ms DESC, id DESC"
    } else {
        " ORDER BY created_at_ms, id"
    });
    let limit = if filter.limit == 0 {
        i64::MAX
    } else {
        i64::try_from(filter.limit).unwrap_or(i64::MAX)
    };
    q.push(" LIMIT ").push_bind(limit);
    q.push(" OFFSET ")
        .push_bind(i64::try_from(filter.offset).unwrap_or(i64::MAX));
    q
}

#[async_trait]
impl ApprovalStore for SqliteStore {
    async fn insert(&self, request: &ApprovalRequest) -> Result<()> {
        let body = serde_json::to_string(request).map_err(store_err)?;
        let inserted = sqlx::query(
            "INSERT INTO requests (id, external_id, state, workflow, requester, device, created_at_ms, version, body, open_key)
             VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, CASE WHEN ? THEN json_array(?, ?, ?) END)",
        )
        .bind(request.id.as_str())
        .bind(request.external_id.as_deref())
        .bind(request.state.as_str())
        .bind(request.workflow.as_str())
        .bind(request.requester.as_str())
        .bind(request.device.as_str())
        .bind(request.created_at_ms)
        .bind(body)
        .bind(!request.state.is_final())
        .bind(request.requester.as_str())
        .bind(request.device.as_str())
        .bind(request.action.as_str())
        .execute(&self.writer)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e) if e.as_database_error().is_some_and(|d| d.is_unique_violation()) => Err(self
                .open_one(request)
                .await?
                .map_or_else(|| store_err(e), |open| Error::AlreadyOpen { open })),
            Err(e) => Err(store_err(e)),
        }
    }

    async fn get(&self, id: &RequestId) -> Result<Option<ApprovalRequest>> {
        self.one("SELECT body, version FROM requests WHERE id = ?", id.as_str())
            .await
    }

    async fn find_open(
        &self,
        requester: &UserId,
        device: &DeviceId,
        action: Action,
    ) -> Result<Option<ApprovalRequest>> {
        let row = sqlx::query("SELECT body, version FROM requests WHERE open_key = json_array(?, ?, ?)")
            .bind(requester.as_str())
            .bind(device.as_str())
            .bind(action.as_str())
            .fetch_optional(&self.readers)
            .await
            .map_err(store_err)?;
        row.as_ref().map(Self::decode).transpose()
    }

    async fn find_by_external(&self, external_id: &str) -> Result<Option<ApprovalRequest>> {
        self.one(
            "SELECT body, version FROM requests WHERE external_id = ?",
            external_id,
        )
        .await
    }

    async fn update(&self, request: &ApprovalRequest) -> Result<()> {
        if write_request(&self.writer, request).await? {
            Ok(())
        } else {
            Err(self.not_written(request).await)
        }
    }

    // One write transaction on the single writer connection: nothing else writes between
    // the read and the write, so there is no conflict to retry, and the key commits with the
    // change. The key goes in first: a duplicate ends there.
    async fn apply_event(
        &self,
        external_id: &str,
        key: &str,
        at_ms: i64,
        decide: &mut DecideChange<'_>,
    ) -> Result<EventWrite> {
        let mut tx = self.writer.begin().await.map_err(store_err)?;
        if !insert_event(&mut *tx, key, at_ms).await? {
            return Ok(EventWrite::Duplicate); // dropping `tx` rolls back
        }
        let row = sqlx::query("SELECT body, version FROM requests WHERE external_id = ?")
            .bind(external_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_err)?;
        let Some(row) = row else {
            return Ok(EventWrite::Unknown); // the key is not kept
        };
        let mut request = Self::decode(&row)?;
        let write = match decide(&request)? {
            None => EventWrite::Unchanged,
            Some(change) => {
                request.apply(change);
                if !write_request(&mut *tx, &request).await? {
                    return Err(store_err(format!(
                        "request `{}` changed inside a write transaction",
                        request.id
                    )));
                }
                request.version += 1;
                EventWrite::Changed(RequestUpdate::of(&request))
            }
        };
        tx.commit().await.map_err(store_err)?;
        Ok(write)
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<ApprovalRequest>> {
        let rows = list_query(LIST, filter)
            .build()
            .fetch_all(&self.readers)
            .await
            .map_err(store_err)?;
        rows.iter().map(Self::decode).collect()
    }

    async fn count(&self, filter: &ListFilter) -> Result<u64> {
        let count: i64 = filtered(COUNT, filter)
            .build_query_scalar()
            .fetch_one(&self.readers)
            .await
            .map_err(store_err)?;
        stored_total(count)
    }

    async fn shared_value(&self, key: &str, proposed: &str) -> Result<String> {
        sqlx::query("INSERT INTO shared_values (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(proposed)
            .execute(&self.writer)
            .await
            .map_err(store_err)?;
        sqlx::query("SELECT value FROM shared_values WHERE key = ?")
            .bind(key)
            .fetch_one(&self.writer)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(store_err)
    }

    async fn add_to_counter(&self, key: &str, delta: u64, limit: Option<u64>) -> Result<Counted> {
        if delta == 0 {
            let value = self.counter(key).await?;
            return Ok(Counted {
                value,
                added: limit.is_none_or(|limit| value <= limit),
            });
        }
        // One statement adds within the limit (no row when it would pass it); then a read.
        let added: Option<i64> = sqlx::query_scalar(
            "INSERT INTO counters (key, value) SELECT ?1, ?2 WHERE ?3 IS NULL OR ?2 <= ?3
             ON CONFLICT (key) DO UPDATE SET value = counters.value + excluded.value
             WHERE ?3 IS NULL OR counters.value + excluded.value <= ?3
             RETURNING value",
        )
        .bind(key)
        .bind(counter_param(delta))
        .bind(limit.map(counter_param))
        .fetch_optional(&self.writer)
        .await
        .map_err(store_err)?;
        if let Some(value) = added {
            return Ok(Counted {
                value: stored_counter(key, value)?,
                added: true,
            });
        }
        Ok(Counted {
            value: self.counter(key).await?,
            added: false,
        })
    }

    async fn remove_counters(&self, from: &str, to: &str) -> Result<u64> {
        let removed = sqlx::query("DELETE FROM counters WHERE key >= ?1 AND key < ?2")
            .bind(from)
            .bind(to)
            .execute(&self.writer)
            .await
            .map_err(store_err)?;
        Ok(removed.rows_affected())
    }

    async fn put_document(&self, document: &Document) -> Result<u64> {
        let version = document.version + 1;
        let written = if document.version == 0 {
            sqlx::query(
                "INSERT INTO documents (kind, id, version, lookup, body, updated_at_ms)
                 VALUES (?1, ?2, 1, ?3, ?4, ?5) ON CONFLICT (kind, id) DO NOTHING",
            )
            .bind(&document.kind)
            .bind(&document.id)
            .bind(document.lookup.as_deref())
            .bind(&document.body)
            .bind(document.updated_at_ms)
            .execute(&self.writer)
            .await
        } else {
            sqlx::query(
                "UPDATE documents SET version = ?1, lookup = ?2, body = ?3, updated_at_ms = ?4
                 WHERE kind = ?5 AND id = ?6 AND version = ?7",
            )
            .bind(counter_param(version))
            .bind(document.lookup.as_deref())
            .bind(&document.body)
            .bind(document.updated_at_ms)
            .bind(&document.kind)
            .bind(&document.id)
            .bind(counter_param(document.version))
            .execute(&self.writer)
            .await
        };
        match written {
            Ok(done) if done.rows_affected() == 1 => Ok(version),
            Ok(_) => {
                let actual = self
                    .get_document(&document.kind, &document.id)
                    .await?
                    .map_or(0, |d| d.version);
                Err(document_conflict(
                    &document.kind,
                    &document.id,
                    document.version,
                    actual,
                ))
            }
            Err(e) if e.as_database_error().is_some_and(|d| d.is_unique_violation()) => Err(Error::Store {
                reason: format!("another `{}` has the same lookup value", document.kind),
            }),
            Err(e) => Err(store_err(e)),
        }
    }

    async fn get_document(&self, kind: &str, id: &str) -> Result<Option<Document>> {
        let row = sqlx::query(
            "SELECT kind, id, version, lookup, body, updated_at_ms FROM documents WHERE kind = ?1 AND id = ?2",
        )
        .bind(kind)
        .bind(id)
        .fetch_optional(&self.readers)
        .await
        .map_err(store_err)?;
        row.as_ref().map(decode_document).transpose()
    }

    async fn document_version(&self, kind: &str, id: &str) -> Result<Option<u64>> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM documents WHERE kind = ?1 AND id = ?2")
                .bind(kind)
                .bind(id)
                .fetch_optional(&self.readers)
                .await
                .map_err(store_err)?;
        version.map(|v| stored_counter(id, v)).transpose()
    }

    async fn find_document(&self, kind: &str, lookup: &str) -> Result<Option<Document>> {
        let row = sqlx::query(
            "SELECT kind, id, version, lookup, body, updated_at_ms FROM documents WHERE kind = ?1 AND lookup = ?2",
        )
        .bind(kind)
        .bind(lookup)
        .fetch_optional(&self.readers)
        .await
        .map_err(store_err)?;
        row.as_ref().map(decode_document).transpose()
    }

    async fn list_documents(&self, kind: &str) -> Result<Vec<Document>> {
        let rows = sqlx::query(
            "SELECT kind, id, version, lookup, body, updated_at_ms FROM documents WHERE kind = ?1 ORDER BY id",
        )
        .bind(kind)
        .fetch_all(&self.readers)
        .await
        .map_err(store_err)?;
        rows.iter().map(decode_document).collect()
    }

    async fn delete_document(&self, kind: &str, id: &str, version: u64) -> Result<()> {
        let done = sqlx::query("DELETE FROM documents WHERE kind = ?1 AND id = ?2 AND version = ?3")
            .bind(kind)
            .bind(id)
            .bind(counter_param(version))
            .execute(&self.writer)
            .await
            .map_err(store_err)?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        let actual = self.get_document(kind, id).await?.map_or(0, |d| d.version);
        Err(document_conflict(kind, id, version, actual))
    }

    async fn try_lease(&self, name: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<bool> {
        // Taken when free, expired or ours; one statement, so two takers cannot both win.
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, until_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET holder = ?2, until_ms = ?3
             WHERE leases.holder = ?2 OR leases.until_ms <= ?4",
        )
        .bind(name)
        .bind(holder)
        .bind(now_ms.saturating_add(ttl_ms))
        .bind(now_ms)
        .execute(&self.writer)
        .await
        .map_err(store_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn prune_events(&self, before_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM events WHERE at_ms < ?")
            .bind(before_ms)
            .execute(&self.writer)
            .await
            .map_err(store_err)?;
        Ok(done.rows_affected())
    }

    async fn count_by_state(&self) -> Result<Vec<(RequestState, u64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM requests GROUP BY state")
            .fetch_all(&self.readers)
            .await
            .map_err(store_err)?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get(0).map_err(store_err)?;
                let count: i64 = row.try_get(1).map_err(store_err)?;
                Ok((stored_state(&state)?, stored_count(&state, count)?))
            })
            .collect()
    }

    // One transaction on the writer connection, begun IMMEDIATE (the write lock taken at
    // once, so another connection to the file, another process, cannot append between the
    // head read and the write): read the head, insert the entry, move the head, commit.
    async fn append_audit(&self, record: &AuditRecord) -> Result<AuditEntry> {
        check_audit_record(record)?;
        let details = canonical_json(&record.details);
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_err)?;
        let head: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_err)?;
        let Some((head_seq, head_hash)) = head else {
            return Err(store_err("the audit head (table audit_head, id 1) is missing"));
        };
        let entry = AuditEntry::chained(stored_seq(head_seq)? + 1, head_hash, record.clone());
        let seq = seq_param(entry.seq)?;
        sqlx::query(
            "INSERT INTO audit (seq, at_ms, actor, action, subject, details, prev_hash, hash)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(seq)
        .bind(record.at_ms)
        .bind(&record.actor)
        .bind(&record.action)
        .bind(&record.subject)
        .bind(details)
        .bind(&entry.prev_hash)
        .bind(&entry.hash)
        .execute(&mut *tx)
        .await
        .map_err(store_err)?;
        let moved = sqlx::query("UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1 AND seq = ?3")
            .bind(seq)
            .bind(&entry.hash)
            .bind(head_seq)
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        if moved.rows_affected() != 1 {
            return Err(store_err("the audit head moved inside a write transaction"));
        }
        tx.commit().await.map_err(store_err)?;
        Ok(entry)
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut q: QueryBuilder<'_, Sqlite> = QueryBuilder::new(
            "SELECT seq, at_ms, actor, action, subject, details, prev_hash, hash FROM audit WHERE seq > ",
        );
        q.push_bind(i64::try_from(filter.after_seq).unwrap_or(i64::MAX));
        if let Some(actor) = &filter.actor {
            q.push(" AND actor = ").push_bind(actor.clone());
        }
        if let Some(prefix) = &filter.action_prefix {
            // Bytewise and case-sensitive, as `str::starts_with` (not LIKE: case-insensitive,
            // with wildcards).
            q.push(" AND substr(CAST(action AS BLOB), 1, length(CAST(")
                .push_bind(prefix.clone())
                .push(" AS BLOB))) = CAST(")
                .push_bind(prefix.clone())
                .push(" AS BLOB)");
        }
        if let Some(subject) = &filter.subject {
            q.push(" AND subject = ").push_bind(subject.clone());
        }
        if let Some(from) = filter.from_ms {
            q.push(" AND at_ms >= ").push_bind(from);
        }
        if let Some(to) = filter.to_ms {
            q.push(" AND at_ms < ").push_bind(to);
        }
        let limit = if filter.limit == 0 {
            i64::MAX
        } else {
            i64::try_from(filter.limit).unwrap_or(i64::MAX)
        };
        q.push(" ORDER BY seq LIMIT ").push_bind(limit);
        let rows = q.build().fetch_all(&self.readers).await.map_err(store_err)?;
        rows.iter().map(decode_audit).collect()
    }

    async fn audit_head(&self) -> Result<Option<(u64, String)>> {
        let head: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(&self.readers)
            .await
            .map_err(store_err)?;
        match head {
            None => Err(store_err("the audit head (table audit_head, id 1) is missing")),
            Some((0, _)) => Ok(None),
            Some((seq, hash)) => Ok(Some((stored_seq(seq)?, hash))),
        }
    }
}

/// An `audit` row.
fn decode_audit(row: &sqlx::sqlite::SqliteRow) -> Result<AuditEntry> {
    let seq: i64 = row.try_get("seq").map_err(store_err)?;
    let details: String = row.try_get("details").map_err(store_err)?;
    let record = AuditRecord::new(
        row.try_get("at_ms").map_err(store_err)?,
        row.try_get::<String, _>("actor").map_err(store_err)?,
        row.try_get::<String, _>("action").map_err(store_err)?,
        row.try_get::<String, _>("subject").map_err(store_err)?,
        stored_details(seq, &details)?,
    );
    Ok(AuditEntry::stored(
        stored_seq(seq)?,
        record,
        row.try_get("prev_hash").map_err(store_err)?,
        row.try_get("hash").map_err(store_err)?,
    ))
}

/// A `documents` row.
fn decode_document(row: &sqlx::sqlite::SqliteRow) -> Result<Document> {
    let id: String = row.try_get("id").map_err(store_err)?;
    let version: i64 = row.try_get("version").map_err(store_err)?;
    Ok(Document {
        version: stored_counter(&id, version)?,
        kind: row.try_get("kind").map_err(store_err)?,
        lookup: row.try_get("lookup").map_err(store_err)?,
        body: row.try_get("body").map_err(store_err)?,
        updated_at_ms: row.try_get("updated_at_ms").map_err(store_err)?,
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{RequestState, Source};
    use sase_policy::ids::WorkflowId;
    use std::sync::Arc;

    fn request(i: usize) -> ApprovalRequest {
        let states = [
            RequestState::Approved,
            RequestState::Rejected,
            RequestState::Expired,
            RequestState::Revoked,
        ];
        let mut r = ApprovalRequest {
            id: RequestId(format!("req-{i:05}")),
            template: "app_uninstall".into(),
            workflow: WorkflowId::new(format!("wf-{}", i % 3)),
            requester: UserId::new(format!("user-{}", i % 40)),
            device: DeviceId::new(format!("dev-{}", i % 50)),
            action: Action::Uninstall,
            fields: Arc::default(),
            state: RequestState::Submitted,
            state_at_ms: 0,
            external_id: None,
            create_uncertain: false,
            created_at_ms: 1_000 * i64::try_from(i).unwrap(),
            grant: None,
            grant_consumed_at_ms: None,
            version: 0,
            history: vec![],
            history_dropped: 0,
        };
        // Ended, but for the newest few.
        if i < 990 {
            let state = states[i % states.len()];
            r.record(state, r.created_at_ms + 1, "admin", Source::System, None);
        }
        r
    }

    /// SQLite's plan for `q`, one step a line.
    async fn plan(store: &SqliteStore, mut q: QueryBuilder<'static, Sqlite>) -> String {
        let rows = q.build().fetch_all(&store.readers).await.unwrap();
        rows.iter()
            .map(|row| row.try_get::<String, _>("detail").unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whether every table access in `plan` goes through an index: a search or a scan of an
    /// index (`SCAN requests USING INDEX …`), never a bare `SCAN requests` (the whole table).
    fn indexed(plan: &str) -> bool {
        (plan.contains("USING INDEX") || plan.contains("USING COVERING INDEX"))
            && plan
                .lines()
                .filter(|step| step.contains("requests"))
                .all(|step| step.contains(" USING "))
    }

    /// The console's queries, each explained: a page of 50 newest first with no filter, a
    /// device's, a state's; the total of every request; and the other filters.
    fn console_queries() -> Vec<(&'static str, QueryBuilder<'static, Sqlite>)> {
        let explain_list = format!("EXPLAIN QUERY PLAN {LIST}");
        let explain_count = format!("EXPLAIN QUERY PLAN {COUNT}");
        let page = ListFilter::default().newest_first().page(0, 50);
        vec![
            ("list, no filter", list_query(&explain_list, &page)),
            (
                "list, a device",
                list_query(&explain_list, &page.clone().device(DeviceId::new("dev-7"))),
            ),
            (
                "list, a state",
                list_query(&explain_list, &page.clone().states(vec![RequestState::Submitted])),
            ),
            (
                "count, no filter",
                filtered(&explain_count, &ListFilter::default()),
            ),
            // And the console's other filters.
            (
                "list, a requester",
                list_query(&explain_list, &page.clone().requester(UserId::new("user-3"))),
            ),
            (
                "list, a workflow",
                list_query(&explain_list, &page.clone().workflow(WorkflowId::new("wf-1"))),
            ),
            (
                "list, a date range",
                list_query(
                    &explain_list,
                    &page.clone().created_from_ms(100_000).created_to_ms(200_000),
                ),
            ),
            (
                "list, a device in a date range",
                list_query(
                    &explain_list,
                    &page
                        .clone()
                        .device(DeviceId::new("dev-7"))
                        .created_from_ms(100_000)
                        .created_to_ms(200_000),
                ),
            ),
            (
                "list, two states",
                list_query(
                    &explain_list,
                    &page
                        .clone()
                        .states(vec![RequestState::Submitted, RequestState::Pending]),
                ),
            ),
            (
                "count, a device",
                filtered(
                    &explain_count,
                    &ListFilter::default().device(DeviceId::new("dev-7")),
                ),
            ),
            (
                "count, a state",
                filtered(
                    &explain_count,
                    &ListFilter::default().states(vec![RequestState::Approved]),
                ),
            ),
        ]
    }

    /// The console's queries each go down an index, before SQLite has statistics on the table
    /// and after `ANALYZE` has gathered them.
    #[tokio::test]
    async fn the_console_s_queries_use_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("plan.sqlite")).await.unwrap();
        for i in 0..1_000 {
            store.insert(&request(i)).await.unwrap();
        }
        for analyzed in [false, true] {
            if analyzed {
                sqlx::query("ANALYZE").execute(&store.writer).await.unwrap();
            }
            for (name, q) in console_queries() {
                let shown = plan(&store, q).await;
                println!("{name} (analyzed: {analyzed}):\n{shown}");
                assert!(indexed(&shown), "{name} (analyzed: {analyzed}): {shown}");
            }
        }
    }
}
