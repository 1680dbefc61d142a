//! A PostgreSQL store, shared by several server replicas (see [`PostgresStore`]).

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
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Executor, Postgres, QueryBuilder, Row};
use std::str::FromStr;
use std::time::Duration;

/// Schema versions, applied in order, each in its own transaction.
const MIGRATIONS: &[&[&str]] = &[
    &[
        r#"CREATE TABLE requests (
        id TEXT COLLATE "C" PRIMARY KEY,
        external_id TEXT UNIQUE,
        state TEXT NOT NULL,
        workflow TEXT NOT NULL,
        requester TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        version BIGINT NOT NULL,
        body TEXT NOT NULL,
        open_key TEXT
    )"#,
        "CREATE INDEX requests_by_state ON requests (state, created_at_ms)",
        "CREATE INDEX requests_by_requester ON requests (requester, created_at_ms)",
        // One open request per requester, device and action, enforced by the database so that
        // concurrent filings (or replicas) cannot both insert one: the key is set while the
        // request is open and cleared when it ends.
        "CREATE UNIQUE INDEX requests_open ON requests (open_key) WHERE open_key IS NOT NULL",
        "CREATE TABLE events (key TEXT PRIMARY KEY, at_ms BIGINT NOT NULL)",
        // Pruning by age.
        "CREATE INDEX events_by_time ON events (at_ms)",
    ],
    &[
        // Values every replica agrees on (Request URL ids), and leases (one reconciler).
        "CREATE TABLE shared_values (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until_ms BIGINT NOT NULL)",
    ],
    &[
        // Counts every replica shares (an app's DingTalk calls this month).
        "CREATE TABLE counters (key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    ],
    &[
        // What admins manage at runtime (devices, enrollment codes), versioned; `lookup` finds
        // one (a token hash), unique within its kind (NULLs do not collide).
        r#"CREATE TABLE documents (
        kind TEXT NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        version BIGINT NOT NULL,
        lookup TEXT,
        body TEXT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        PRIMARY KEY (kind, id)
    )"#,
        "CREATE UNIQUE INDEX documents_by_lookup ON documents (kind, lookup)",
    ],
    &[
        // The hash-chained audit log (crate::audit), append-only: `details` is canonical JSON
        // (text, not JSONB, which would reorder and refuse `\u0000`), the hashes lowercase hex.
        "CREATE TABLE audit (
        seq BIGINT PRIMARY KEY,
        at_ms BIGINT NOT NULL,
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
        // The last entry's seq and hash: its row lock serialises appends across replicas.
        "CREATE TABLE audit_head (
        id INT PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
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
        // The body is text that JSON functions refuse whole if any string in it holds
        // `\u0000` (a requester's free text may): each such escape is read as U+FFFD, which
        // leaves the JSON valid and the device as it is (PostgreSQL text, the device column,
        // cannot hold a NUL anyway).
        r"UPDATE requests SET device = replace(body, E'\\u0000', E'\\ufffd')::json ->> 'device'",
        "CREATE INDEX requests_by_time ON requests (created_at_ms, id)",
        "CREATE INDEX requests_by_device ON requests (device, created_at_ms, id)",
        "CREATE INDEX requests_by_workflow ON requests (workflow, created_at_ms, id)",
    ],
];

/// The advisory lock a migration holds for its transaction, so that replicas starting at once
/// migrate one after the other (`"sase-app"` in ASCII).
const MIGRATION_LOCK: i64 = 0x7361_7365_2d61_7070;

/// The most connections one store (one replica) opens.
const MAX_CONNECTIONS: u32 = 10;

/// How long connecting, or waiting for a pooled connection, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The name of the unique index holding open requests' keys.
const OPEN_INDEX: &str = "requests_open";

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::Store {
        reason: e.to_string(),
    }
}

/// `url` with any password in it (after the user name, or a `password` parameter) replaced
/// by `***`, to name the database in errors and logs.
fn redacted(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let mut out = String::with_capacity(url.len());
    if !scheme.is_empty() {
        out.push_str(scheme);
        out.push_str("://");
    }
    // The user info ends at the last `@`: a password with an unescaped `@`, `/` or `?` is
    // still hidden whole (a parameter value with an `@` is over-redacted instead).
    let rest = match rest.rsplit_once('@') {
        Some((user_info, host)) => {
            match user_info.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(user_info),
            }
            out.push('@');
            host
        }
        None => rest,
    };
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    out.push_str(path);
    if let Some(query) = query {
        out.push('?');
        for (i, param) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match param.split_once('=') {
                Some((name, _)) if name.to_ascii_lowercase().contains("password") => {
                    out.push_str(name);
                    out.push_str("=***");
                }
                _ => out.push_str(param),
            }
        }
    }
    out
}

/// Requests in a PostgreSQL database, shared by any number of replicas: the same schema and
/// rules as the SQLite store (indexed columns for lookups and filters, the whole request as
/// JSON text, one open request per requester, device and action enforced by a unique index),
/// versioned migrations, runtime queries only (no `DATABASE_URL` at build time).
///
/// # Schema
///
/// ```sql
/// CREATE TABLE requests (
///     id TEXT COLLATE "C" PRIMARY KEY,   -- bytewise, so `list` orders as the other stores
///     external_id TEXT UNIQUE,
///     state TEXT NOT NULL,
///     workflow TEXT NOT NULL,
///     requester TEXT NOT NULL,
///     created_at_ms BIGINT NOT NULL,
///     version BIGINT NOT NULL,
///     body TEXT NOT NULL,                -- the request as JSON
///     open_key TEXT,                     -- ["requester","device","action"] while open, else NULL
///     device TEXT                        -- migration 6; the body's device
/// );
/// CREATE INDEX requests_by_state ON requests (state, created_at_ms);
/// CREATE INDEX requests_by_requester ON requests (requester, created_at_ms);
/// CREATE UNIQUE INDEX requests_open ON requests (open_key) WHERE open_key IS NOT NULL;
/// -- migration 6: the console's listings, newest first, each down one index
/// CREATE INDEX requests_by_time ON requests (created_at_ms, id);
/// CREATE INDEX requests_by_device ON requests (device, created_at_ms, id);
/// CREATE INDEX requests_by_workflow ON requests (workflow, created_at_ms, id);
/// CREATE TABLE events (key TEXT PRIMARY KEY, at_ms BIGINT NOT NULL);
/// CREATE INDEX events_by_time ON events (at_ms);
/// -- and shared_values, leases, counters, documents; then the audit log (migration 5):
/// CREATE TABLE audit (
///     seq BIGINT PRIMARY KEY,            -- 1, 2, 3, … without gaps
///     at_ms BIGINT NOT NULL,
///     actor TEXT NOT NULL,
///     action TEXT NOT NULL,
///     subject TEXT NOT NULL,
///     details TEXT NOT NULL,             -- canonical JSON (crate::audit::canonical_json)
///     prev_hash TEXT NOT NULL,           -- hex
///     hash TEXT NOT NULL                 -- hex, crate::audit::entry_hash
/// );
/// CREATE INDEX audit_by_actor ON audit (actor, seq);
/// CREATE INDEX audit_by_subject ON audit (subject, seq);
/// CREATE INDEX audit_by_time ON audit (at_ms);
/// CREATE TABLE audit_head (id INT PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL, hash TEXT NOT NULL);
/// INSERT INTO audit_head VALUES (1, 0, '000…0');   -- seq 0, the genesis hash: empty
/// ```
///
/// The body is `TEXT`, not `JSONB`: nothing queries inside it (what is looked up and filtered
/// on has a column beside it; migration 6 read the device out of it once), text round-trips
/// exactly and is not parsed on every write, and `JSONB` refuses `\u0000`, which a
/// requester's free-text field may hold. The open-key index is partial: ended requests, the
/// great majority, are not in it.
///
/// # Replicas
///
/// Every write is one statement or one transaction, at PostgreSQL's default isolation (read
/// committed); nothing is cached in the process, so any number of replicas may share the
/// database:
/// - two filings of one kind: the unique index lets one insert and blocks the other until it
///   commits, which then fails and is answered with the open request
///   ([`Error::AlreadyOpen`]);
/// - two updates of one request: the second waits for the first's row lock, then finds the
///   version changed ([`Error::Conflict`]);
/// - one event delivered to two replicas: the second's insert of the event key waits for the
///   first's transaction and, once that commits, inserts nothing ([`EventWrite::Duplicate`]);
///   if the first rolls back (an unknown instance, `decide` failing), the second goes on;
/// - two events about one request: the second waits for the first's row lock and decides on
///   the request as the first left it.
///
/// Replicas starting at once migrate one at a time: each migration is one transaction that
/// first takes a transaction-scoped advisory lock (key `0x7361_7365_2d61_7070`, "sase-app"),
/// then reads the schema version from the table `schema_version`.
///
/// # Cost of an event
///
/// [`apply_event`](ApprovalStore::apply_event) is one transaction on one pooled connection:
///
/// | outcome | statements | round trips |
/// | --- | --- | --- |
/// | changed | 5: `BEGIN`, `INSERT INTO events … ON CONFLICT DO NOTHING`, `SELECT … FOR UPDATE`, `UPDATE requests … WHERE version = $n`, `COMMIT` | 5 |
/// | unchanged (the key alone) | 4: the same without the `UPDATE` | 4 |
/// | duplicate | 3: `BEGIN`, the insert (no row), `ROLLBACK` | 3 |
/// | unknown instance | 4: `BEGIN`, the insert, the select (no row), `ROLLBACK` | 4 |
///
/// Each statement is one round trip (measured: the wire traffic and the server's statement
/// log), with the connection's statement cache warm; the first use of each statement on a
/// connection adds one round trip to prepare it. Besides, sqlx pings a connection (one more
/// round trip, a `Sync`) when it goes back to the pool, in a task of its own: off the event's
/// path. Connections are not also pinged when taken from the pool (`test_before_acquire`
/// off), which would put a round trip on every operation's path; after the server restarts
/// or fails over, a stale idle connection fails the one operation it is used for with
/// [`Error::Store`] (retryable) and is discarded.
///
/// # Cost of an audit append
///
/// [`append_audit`](ApprovalStore::append_audit) is one transaction on one pooled connection,
/// 4 statements and 4 round trips (warm statement cache): `BEGIN`;
/// `SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE`, whose row lock makes appends on
/// every replica wait their turn; then, the hash computed in Rust, one statement inserting the
/// entry and moving the head (`WITH entry AS (INSERT INTO audit … RETURNING seq, hash) UPDATE
/// audit_head … FROM entry`); `COMMIT`. The lock is held for the two round trips between the
/// select and the commit, so appends to one database go at most at about one per two round
/// trips, whatever the number of replicas.
///
/// # Connecting
///
/// [`PostgresStore::connect`] takes a `postgres://user:password@host:port/database` URL (as
/// `libpq` does: `sslmode`, `options`, … in its query). TLS uses rustls with the webpki root
/// certificates (`sslrootcert=…` for a private authority); `sslmode` defaults to `prefer`
/// (TLS when the server offers it, unverified), so `sslmode=verify-full` should be set for a
/// PostgreSQL across a network. The pool holds up to 10 connections per store: a replica uses
/// at most that many of the server's `max_connections` (100 by default).
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The URL, password redacted.
    url: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.url)
            .field("connections", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`) and
    /// applies pending migrations. The database must exist; the tables are created in it
    /// (in the first schema of the user's `search_path`, `public` by default).
    ///
    /// # Errors
    /// [`Error::Store`], naming the URL with its password redacted, if the URL is invalid or
    /// the database cannot be reached (within 10 s) or migrated.
    pub async fn connect(url: &str) -> Result<Self> {
        let named = redacted(url);
        let at = |e: &dyn std::fmt::Display| store_err(format!("{named}: {e}"));
        let options = PgConnectOptions::from_str(url).map_err(|e| at(&e))?;
        // Connect once directly: the pool would retry a refused connection until its timeout
        // and then report only that it timed out.
        let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await
        {
            Ok(connected) => connected.map_err(|e| at(&e))?,
            Err(_) => return Err(at(&format!("no connection within {CONNECT_TIMEOUT:?}"))),
        };
        Self::migrate(&mut conn).await.map_err(|e| match e {
            Error::Store { reason } => at(&reason),
            other => other,
        })?;
        conn.close().await.map_err(|e| at(&e))?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(CONNECT_TIMEOUT)
            .test_before_acquire(false)
            .connect_lazy_with(options);
        Ok(Self { pool, url: named })
    }

    /// Applies pending migrations, one transaction each, under [`MIGRATION_LOCK`].
    async fn migrate(conn: &mut PgConnection) -> Result<()> {
        loop {
            let mut tx = conn.begin().await.map_err(store_err)?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(store_err)?;
            sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
                .execute(&mut *tx)
                .await
                .map_err(store_err)?;
            let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_version")
                .fetch_one(&mut *tx)
                .await
                .and_then(|row| row.try_get(0))
                .map_err(store_err)?;
            let done = usize::try_from(current)
                .map_err(|_| store_err(format!("negative schema version {current}")))?;
            let Some(statements) = MIGRATIONS.get(done) else {
                if done > MIGRATIONS.len() {
                    tracing::warn!(
                        schema_version = current,
                        known = MIGRATIONS.len(),
                        "the PostgreSQL schema is newer than this build knows"
                    );
                }
                return tx.commit().await.map_err(store_err);
            };
            for statement in *statements {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(store_err)?;
            }
            sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
                .bind(current + 1)
                .execute(&mut *tx)
                .await
                .map_err(store_err)?;
            tx.commit().await.map_err(store_err)?;
            tracing::info!(schema_version = current + 1, "PostgreSQL schema migrated");
        }
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

    fn decode(row: &PgRow) -> Result<ApprovalRequest> {
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

    /// The open request holding `key`, if any.
    async fn open_one(&self, key: &str) -> Result<Option<String>> {
        sqlx::query("SELECT id FROM requests WHERE open_key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .and_then(|row| row.map(|row| row.try_get::<String, _>(0)).transpose())
            .map_err(store_err)
    }

    async fn one(&self, sql: &str, key: &str) -> Result<Option<ApprovalRequest>> {
        let row = sqlx::query(sql)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_err)?;
        row.as_ref().map(Self::decode).transpose()
    }

    /// The counter `key`'s value, 0 when there is none; read without writing.
    async fn counter(&self, key: &str) -> Result<u64> {
        let value: Option<i64> = sqlx::query_scalar("SELECT value FROM counters WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_err)?;
        stored_counter(key, value.unwrap_or(0))
    }
}

/// The key an open request holds: its requester, device and action, as a JSON array (as the
/// SQLite store writes it).
fn open_key(request: &ApprovalRequest) -> Result<String> {
    open_key_of(
        request.requester.as_str(),
        request.device.as_str(),
        request.action.as_str(),
    )
}

/// The open key of a requester's device and action.
fn open_key_of(requester: &str, device: &str, action: &str) -> Result<String> {
    serde_json::to_string(&[requester, device, action]).map_err(store_err)
}

/// Writes `request` over its stored copy if that is still at `request.version`; `false` if
/// no row matched. An ended request gives up its open key.
async fn write_request<'e>(
    executor: impl Executor<'e, Database = Postgres>,
    request: &ApprovalRequest,
) -> Result<bool> {
    let mut next = request.clone();
    next.version = request.version + 1;
    let body = serde_json::to_string(&next).map_err(store_err)?;
    let expected = i64::try_from(request.version).map_err(store_err)?;
    let done = sqlx::query(
        "UPDATE requests SET external_id = $1, state = $2, version = version + 1, body = $3,
         open_key = CASE WHEN $4 THEN open_key END
         WHERE id = $5 AND version = $6",
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

/// `select` (`SELECT … FROM requests`) restricted to the requests `filter` matches, each
/// condition on an indexed column (as the SQLite store's).
fn filtered(select: &str, filter: &ListFilter) -> QueryBuilder<'static, Postgres> {
    let mut q = QueryBuilder::new(select);
    q.push(" WHERE TRUE");
    match filter.states.as_slice() {
        [] => {}
        // `=` rather than `= ANY` of one: an index scan in order, no sort.
        [state] => {
            q.push(" AND state = ").push_bind(state.as_str());
        }
        states => {
            let states: Vec<String> = states.iter().map(|s| s.as_str().to_owned()).collect();
            q.push(" AND state = ANY(").push_bind(states).push(")");
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

/// The page of requests `filter` lists, in its order.
fn list_query(filter: &ListFilter) -> QueryBuilder<'static, Postgres> {
    let mut q = filtered("SELECT body, version FROM requests", filter);
    q.push(if filter.newest_first {
        " ORDER BY created_at_ms DESC, id DESC"
    } else {
        " ORDER BY created_at_ms, id"
    });
    // `LIMIT NULL` is no limit.
    let limit = (filter.limit != 0).then(|| i64::try_from(filter.limit).unwrap_or(i64::MAX));
    q.push(" LIMIT ").push_bind(limit);
    q.push(" OFFSET ")
        .push_bind(i64::try_from(filter.offset).unwrap_or(i64::MAX));
    q
}

/// How many requests `filter` matches (its page aside).
fn count_query(filter: &ListFilter) -> QueryBuilder<'static, Postgres> {
    filtered("SELECT COUNT(*) FROM requests", filter)
}

#[async_trait]
impl ApprovalStore for PostgresStore {
    async fn insert(&self, request: &ApprovalRequest) -> Result<()> {
        let body = serde_json::to_string(request).map_err(store_err)?;
        let key = open_key(request)?;
        let inserted = sqlx::query(
            "INSERT INTO requests (id, external_id, state, workflow, requester, device, created_at_ms, version, body, open_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9)",
        )
        .bind(request.id.as_str())
        .bind(request.external_id.as_deref())
        .bind(request.state.as_str())
        .bind(request.workflow.as_str())
        .bind(request.requester.as_str())
        .bind(request.device.as_str())
        .bind(request.created_at_ms)
        .bind(body)
        .bind((!request.state.is_final()).then_some(key.as_str()))
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_database_error()
                    .is_some_and(|d| d.is_unique_violation() && d.constraint() == Some(OPEN_INDEX)) =>
            {
                // The open one may have ended since: then this is worth retrying.
                Err(self
                    .open_one(&key)
                    .await?
                    .map_or_else(|| store_err(e), |open| Error::AlreadyOpen { open }))
            }
            Err(e) => Err(store_err(e)),
        }
    }

    async fn get(&self, id: &RequestId) -> Result<Option<ApprovalRequest>> {
        self.one("SELECT body, version FROM requests WHERE id = $1", id.as_str())
            .await
    }

    async fn find_open(
        &self,
        requester: &UserId,
        device: &DeviceId,
        action: Action,
    ) -> Result<Option<ApprovalRequest>> {
        let key = open_key_of(requester.as_str(), device.as_str(), action.as_str())?;
        self.one("SELECT body, version FROM requests WHERE open_key = $1", &key)
            .await
    }

    async fn find_by_external(&self, external_id: &str) -> Result<Option<ApprovalRequest>> {
        self.one(
            "SELECT body, version FROM requests WHERE external_id = $1",
            external_id,
        )
        .await
    }

    async fn update(&self, request: &ApprovalRequest) -> Result<()> {
        if write_request(&self.pool, request).await? {
            Ok(())
        } else {
            Err(self.not_written(request).await)
        }
    }

    // One transaction: the key goes in first (a concurrent delivery of the same event, on any
    // replica, waits on it and then finds it), the request is read under its row lock (so no
    // other writer changes it before the write), and the key commits with the change.
    async fn apply_event(
        &self,
        external_id: &str,
        key: &str,
        at_ms: i64,
        decide: &mut DecideChange<'_>,
    ) -> Result<EventWrite> {
        let mut tx = self.pool.begin().await.map_err(store_err)?;
        let recorded = sqlx::query("INSERT INTO events (key, at_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(key)
            .bind(at_ms)
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        if recorded.rows_affected() == 0 {
            tx.rollback().await.map_err(store_err)?;
            return Ok(EventWrite::Duplicate);
        }
        let row = sqlx::query("SELECT body, version FROM requests WHERE external_id = $1 FOR UPDATE")
            .bind(external_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_err)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(store_err)?; // the key is not kept
            return Ok(EventWrite::Unknown);
        };
        let mut request = Self::decode(&row)?;
        let write = match decide(&request) {
            Err(e) => {
                // Nothing was committed whether or not the rollback gets through.
                let _ = tx.rollback().await;
                return Err(e);
            }
            Ok(None) => EventWrite::Unchanged,
            Ok(Some(change)) => {
                request.apply(change);
                if !write_request(&mut *tx, &request).await? {
                    return Err(store_err(format!(
                        "request `{}` changed under its row lock",
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
        let rows = list_query(filter)
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(store_err)?;
        rows.iter().map(Self::decode).collect()
    }

    async fn count(&self, filter: &ListFilter) -> Result<u64> {
        let count: i64 = count_query(filter)
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(store_err)?;
        stored_total(count)
    }

    async fn shared_value(&self, key: &str, proposed: &str) -> Result<String> {
        // The first writer wins; everyone reads what it wrote. One statement in the common
        // case; a writer that committed after this statement's snapshot began is read by a
        // second one.
        let row = sqlx::query(
            "WITH ins AS (INSERT INTO shared_values (key, value) VALUES ($1, $2)
                          ON CONFLICT (key) DO NOTHING RETURNING value)
             SELECT value FROM ins UNION ALL SELECT value FROM shared_values WHERE key = $1 LIMIT 1",
        )
        .bind(key)
        .bind(proposed)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_err)?;
        let row = match row {
            Some(row) => row,
            None => sqlx::query("SELECT value FROM shared_values WHERE key = $1")
                .bind(key)
                .fetch_one(&self.pool)
                .await
                .map_err(store_err)?,
        };
        row.try_get(0).map_err(store_err)
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
            "INSERT INTO counters (key, value) SELECT $1, $2::BIGINT WHERE $3::BIGINT IS NULL OR $2 <= $3
             ON CONFLICT (key) DO UPDATE SET value = counters.value + excluded.value
             WHERE $3 IS NULL OR counters.value + excluded.value <= $3
             RETURNING value",
        )
        .bind(key)
        .bind(counter_param(delta))
        .bind(limit.map(counter_param))
        .fetch_optional(&self.pool)
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
        // Bytewise, as the other stores compare (the column has the database's collation).
        let removed =
            sqlx::query(r#"DELETE FROM counters WHERE key COLLATE "C" >= $1 AND key COLLATE "C" < $2"#)
                .bind(from)
                .bind(to)
                .execute(&self.pool)
                .await
                .map_err(store_err)?;
        Ok(removed.rows_affected())
    }

    async fn put_document(&self, document: &Document) -> Result<u64> {
        let version = document.version + 1;
        let written = if document.version == 0 {
            sqlx::query(
                "INSERT INTO documents (kind, id, version, lookup, body, updated_at_ms)
                 VALUES ($1, $2, 1, $3, $4, $5) ON CONFLICT (kind, id) DO NOTHING",
            )
            .bind(&document.kind)
            .bind(&document.id)
            .bind(document.lookup.as_deref())
            .bind(&document.body)
            .bind(document.updated_at_ms)
            .execute(&self.pool)
            .await
        } else {
            sqlx::query(
                "UPDATE documents SET version = $1, lookup = $2, body = $3, updated_at_ms = $4
                 WHERE kind = $5 AND id = $6 AND version = $7",
            )
            .bind(counter_param(version))
            .bind(document.lookup.as_deref())
            .bind(&document.body)
            .bind(document.updated_at_ms)
            .bind(&document.kind)
            .bind(&document.id)
            .bind(counter_param(document.version))
            .execute(&self.pool)
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
            Err(e) if e.as_database_error().is_some_and(|d| d.is_unique_violation()) => {
                // Two first writes of one document at once: the later one may trip over the
                // earlier's lookup before its own (kind, id) conflict is seen. That is a
                // stale version, not another document with this lookup value.
                let actual = self.get_document(&document.kind, &document.id).await?;
                match actual {
                    Some(actual) if actual.lookup == document.lookup => Err(document_conflict(
                        &document.kind,
                        &document.id,
                        document.version,
                        actual.version,
                    )),
                    _ => Err(Error::Store {
                        reason: format!("another `{}` has the same lookup value", document.kind),
                    }),
                }
            }
            Err(e) => Err(store_err(e)),
        }
    }

    async fn get_document(&self, kind: &str, id: &str) -> Result<Option<Document>> {
        let row = sqlx::query(
            "SELECT kind, id, version, lookup, body, updated_at_ms FROM documents WHERE kind = $1 AND id = $2",
        )
        .bind(kind)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_err)?;
        row.as_ref().map(decode_document).transpose()
    }

    async fn document_version(&self, kind: &str, id: &str) -> Result<Option<u64>> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM documents WHERE kind = $1 AND id = $2")
                .bind(kind)
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(store_err)?;
        version.map(|v| stored_counter(id, v)).transpose()
    }

    async fn find_document(&self, kind: &str, lookup: &str) -> Result<Option<Document>> {
        let row = sqlx::query(
            "SELECT kind, id, version, lookup, body, updated_at_ms FROM documents WHERE kind = $1 AND lookup = $2",
        )
        .bind(kind)
        .bind(lookup)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_err)?;
        row.as_ref().map(decode_document).transpose()
    }

    async fn list_documents(&self, kind: &str) -> Result<Vec<Document>> {
        let rows = sqlx::query(
            "SELECT kind, id, version, lookup, body, updated_at_ms FROM documents WHERE kind = $1 ORDER BY id",
        )
        .bind(kind)
        .fetch_all(&self.pool)
        .await
        .map_err(store_err)?;
        rows.iter().map(decode_document).collect()
    }

    async fn delete_document(&self, kind: &str, id: &str, version: u64) -> Result<()> {
        let done = sqlx::query("DELETE FROM documents WHERE kind = $1 AND id = $2 AND version = $3")
            .bind(kind)
            .bind(id)
            .bind(counter_param(version))
            .execute(&self.pool)
            .await
            .map_err(store_err)?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        let actual = self.get_document(kind, id).await?.map_or(0, |d| d.version);
        Err(document_conflict(kind, id, version, actual))
    }

    async fn try_lease(&self, name: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<bool> {
        // Taken when free, expired or ours; one statement, so two replicas cannot both win.
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, until_ms) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = $2, until_ms = $3
             WHERE leases.holder = $2 OR leases.until_ms <= $4",
        )
        .bind(name)
        .bind(holder)
        .bind(now_ms.saturating_add(ttl_ms))
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(store_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn prune_events(&self, before_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM events WHERE at_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .map_err(store_err)?;
        Ok(done.rows_affected())
    }

    async fn count_by_state(&self) -> Result<Vec<(RequestState, u64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM requests GROUP BY state")
            .fetch_all(&self.pool)
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

    // One transaction: the head's row lock serialises appends among replicas (a second
    // append waits for the first to commit, then reads the head it left); the entry goes in
    // and the head moves in one statement.
    async fn append_audit(&self, record: &AuditRecord) -> Result<AuditEntry> {
        check_audit_record(record)?;
        let details = canonical_json(&record.details);
        let mut tx = self.pool.begin().await.map_err(store_err)?;
        let head: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
                .fetch_optional(&mut *tx)
                .await
                .map_err(store_err)?;
        let Some((head_seq, head_hash)) = head else {
            return Err(store_err("the audit head (table audit_head, id 1) is missing"));
        };
        let entry = AuditEntry::chained(stored_seq(head_seq)? + 1, head_hash, record.clone());
        let moved = sqlx::query(
            "WITH entry AS (
                INSERT INTO audit (seq, at_ms, actor, action, subject, details, prev_hash, hash)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq, hash)
             UPDATE audit_head SET seq = entry.seq, hash = entry.hash
             FROM entry WHERE audit_head.id = 1 AND audit_head.seq = $9",
        )
        .bind(seq_param(entry.seq)?)
        .bind(record.at_ms)
        .bind(&record.actor)
        .bind(&record.action)
        .bind(&record.subject)
        .bind(details)
        .bind(&entry.prev_hash)
        .bind(&entry.hash)
        .bind(head_seq)
        .execute(&mut *tx)
        .await
        .map_err(store_err)?;
        if moved.rows_affected() != 1 {
            return Err(store_err("the audit head moved under its row lock"));
        }
        tx.commit().await.map_err(store_err)?;
        Ok(entry)
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut q: QueryBuilder<'_, Postgres> = QueryBuilder::new(
            "SELECT seq, at_ms, actor, action, subject, details, prev_hash, hash FROM audit WHERE seq > ",
        );
        q.push_bind(i64::try_from(filter.after_seq).unwrap_or(i64::MAX));
        if let Some(actor) = &filter.actor {
            q.push(" AND actor = ").push_bind(actor.clone());
        }
        if let Some(prefix) = &filter.action_prefix {
            // Bytewise and case-sensitive (not LIKE, with its wildcards).
            q.push(" AND starts_with(action, ")
                .push_bind(prefix.clone())
                .push(")");
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
        // `LIMIT NULL` is no limit.
        let limit = (filter.limit != 0).then(|| i64::try_from(filter.limit).unwrap_or(i64::MAX));
        q.push(" ORDER BY seq LIMIT ").push_bind(limit);
        let rows = q.build().fetch_all(&self.pool).await.map_err(store_err)?;
        rows.iter().map(decode_audit).collect()
    }

    async fn audit_head(&self) -> Result<Option<(u64, String)>> {
        let head: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(&self.pool)
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
fn decode_audit(row: &PgRow) -> Result<AuditEntry> {
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
fn decode_document(row: &sqlx::postgres::PgRow) -> Result<Document> {
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
    use super::redacted;

    #[test]
    fn passwords_are_redacted_from_urls() {
        for (url, shown) in [
            (
                "postgres://root@127.0.0.1:5432/db",
                "postgres://root@127.0.0.1:5432/db",
            ),
            (
                "postgres://u:s3cret@db.example:5432/a",
                "postgres://u:***@db.example:5432/a",
            ),
            ("postgresql://u:p@ss/w?rd@h/db", "postgresql://u:***@h/db"),
            (
                "postgres://h/db?user=u&password=s3cret&sslmode=require",
                "postgres://h/db?user=u&password=***&sslmode=require",
            ),
            ("postgres://h/db?sslpassword=x", "postgres://h/db?sslpassword=***"),
            ("postgres://:s3cret@h", "postgres://:***@h"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redacted(url), shown, "{url}");
        }
    }
}
