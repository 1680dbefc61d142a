//! Load benchmark of the HTTP-push callback endpoint on loopback, compared in the same run
//! with a bare axum "hello": 64 concurrent connections, requests/s and p99 latency.
//!
//! The callback path is the real one: axum route → signature check → decrypt → typed event →
//! `sase_approval::dingtalk::handle_event` → encrypted `success` reply. Two kinds of push are measured, each
//! unique, pre-encrypted and about its own pending request (so nothing is skipped or grows
//! with the run): `task` (`bpms_task_change`: de-duplication record, lookup by instance id,
//! the approver's task recorded in the history, optimistic write, subscribers notified) and
//! `start` (`bpms_instance_change` start for a pending request: recorded as seen, planned
//! unchanged, no request write). A third endpoint, `sdk-only`, takes the `task` pushes on the
//! same route with an event handler that does nothing: the SDK's share (query, signature,
//! decryption, typed event, encrypted reply) without the engine. These use the in-memory
//! store; `sqlite-task` sends `task` pushes to an engine on a SQLite file (the approval
//! server's default store), where every commit waits for fsync. `pg-task` sends them to an
//! engine on PostgreSQL, and `pg-task-3-replicas` to three engines (three servers, each with
//! its own connection pool, as three replicas) on one PostgreSQL database, the generator's
//! connections spread over them; PostgreSQL is the one at `SASE_TEST_POSTGRES` (default
//! `postgres://root@127.0.0.1:5432/postgres`), a database made for each run and dropped after
//! it, and without it those endpoints print a SKIPPED line. PostgreSQL runs on this machine's
//! cores too, so each run also reports the CPU time per push of the server's threads and of
//! the PostgreSQL processes (from `/proc`), from which the rate on separate hosts follows.
//!
//! Two topologies are measured, each in the same run for both endpoints:
//! - `pinned` (the target's): the server on one core (a one-worker runtime pinned to core 0)
//!   and the load generator on the other, as with a separate load host; the generator never
//!   preempts the server, so tail latency is the server's own;
//! - `shared`: server and generator both free to use every core (each on a two-worker
//!   runtime), so they compete and the tail includes scheduler preemption.
//!
//! The load comes from an in-process generator (a minimal HTTP/1.1 client on its own runtime,
//! see [`load`]) and, when `wrk` is installed (`apt-get install wrk`), from wrk as a separate
//! process (pinned with `taskset`, `--latency` percentiles). Both are light enough that the
//! server saturates first, but on the pinned topology wrk keeps its own core about fully busy
//! (`time` shows ~1 s of CPU a 1 s run, most of it the kernel's loopback path, which runs the
//! receiving socket's stack on the sender's core), so its p99 includes its own queueing and
//! swings from run to run (hello's too); the in-process generator's p99 is the steadier one.
//! Every endpoint is measured in [`ROUNDS`] rounds, each on a fresh engine and right after a
//! hello run it is compared with (the VM's speed drifts within seconds), and reported as the
//! median and range. The process runs on mimalloc, the approval server's allocator.
//!
//! Run: `benches/callback_load.sh` (installs wrk if missing, then runs this) or `cargo bench
//! --bench callback_load` (a summary line per endpoint, generator and topology;
//! `CALLBACK_LOAD_TOPOLOGY=pinned` or `shared` measures one).

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark's set-up fails loudly on the first unexpected value"
)]

mod support;

// The approval server's allocator (examples/approval-server), so the endpoints run as they
// would there; hello runs on it too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use sase_dingtalk::approval::store::{ApprovalStore, MemoryStore, PostgresStore, SqliteStore};
use sase_dingtalk::dingtalk::crypto::EventCrypto;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 64;
/// Unique pushes per connection in each in-process run (wrk replays get more if the
/// in-process rate says they need them); every push has its own request, and each run its
/// own engine.
const PER_CONNECTION: usize = 2_000;
/// The same for the SQLite and PostgreSQL stores, which take a few thousand pushes a second.
const DURABLE_PER_CONNECTION: usize = 60;

/// Rounds of each measurement; the summary gives their median and range, so one run slowed
/// by the machine (a shared VM) neither passes nor fails a target on its own.
const ROUNDS: usize = 3;

/// A server on the server runtime, stopped (its engine freed) when dropped.
struct Server {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(app: axum::Router) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { url, task }
}

/// Sends every request of `work` (one `(path, body)` list per connection, each on its own
/// kept-alive connection to `url`) and returns requests/s, p99 and max latency.
///
/// A minimal HTTP/1.1 client: write the request built up front, read until the response's
/// head and `content-length` body are in. It costs the generator core less than the server
/// work it measures, as wrk does; a full client (reqwest) capped hello at ≈ 85,000 req/s,
/// which hid the server's real capacity.
async fn load(urls: &[String], work: Vec<Vec<(String, String)>>) -> Run {
    let mut connections = Vec::with_capacity(work.len());
    for (i, requests) in work.into_iter().enumerate() {
        // Connections spread over the servers (replicas) in turn.
        let addr = urls[i % urls.len()].trim_start_matches("http://").to_owned();
        let stream = TcpStream::connect(&addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let raw: Vec<Vec<u8>> = requests
            .iter()
            .map(|(path, body)| {
                format!(
                    "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            })
            .collect();
        connections.push((stream, raw));
    }
    let started = Instant::now();
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|(mut stream, requests)| {
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(requests.len());
                let mut buf = Vec::with_capacity(4096);
                for request in requests {
                    let t = Instant::now();
                    stream.write_all(&request).await.unwrap();
                    buf.clear();
                    while !response_complete(&buf) {
                        assert!(stream.read_buf(&mut buf).await.unwrap() > 0, "server closed");
                    }
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Run {
        rps: all.len() as f64 / elapsed.as_secs_f64(),
        p99: pct(0.99),
        max: Some(pct(1.0)),
        cpu: None,
    }
}

/// Whether `buf` holds one whole response; panics on anything but a 200.
fn response_complete(buf: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = response.parse(buf).unwrap() else {
        return false;
    };
    assert_eq!(response.code, Some(200), "{}", String::from_utf8_lossy(buf));
    let length: usize = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
        .expect("content-length");
    buf.len() >= head + length
}

/// Where the server and the load generator run.
struct Topology {
    name: &'static str,
    /// Worker threads of each runtime.
    workers: usize,
    /// (server core, generator core), or both unpinned.
    cores: Option<(usize, usize)>,
}

/// A runtime of `workers` threads (pinned to `core`, if given); its threads' `/proc` stat
/// files are added to `threads`, for their CPU time.
fn runtime(workers: usize, core: Option<usize>, threads: Threads) -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(workers).enable_all();
    builder.on_thread_start(move || {
        if let Some(id) = core {
            core_affinity::set_for_current(core_affinity::CoreId { id });
        }
        if let Ok(me) = std::fs::read_link("/proc/thread-self") {
            threads
                .lock()
                .unwrap()
                .push(Path::new("/proc").join(me).join("stat"));
        }
    });
    builder.build().unwrap()
}

/// `/proc/<pid>/task/<tid>/stat` of a runtime's threads.
type Threads = Arc<std::sync::Mutex<Vec<PathBuf>>>;

/// User + system CPU time in the `/proc/…/stat` files `stats`, in seconds (0 for a file that
/// is gone). Linux reports it in USER_HZ ticks, 100 a second on every architecture it runs on.
fn cpu_seconds(stats: impl IntoIterator<Item = PathBuf>) -> f64 {
    let ticks: u64 = stats
        .into_iter()
        .filter_map(|stat| std::fs::read_to_string(stat).ok())
        .filter_map(|text| {
            // Fields after the command name (which may hold spaces) in parentheses: utime
            // and stime are the 12th and 13th (the 14th and 15th of the line).
            let (_, rest) = text.rsplit_once(')')?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    ticks as f64 / 100.0
}

/// The stat files of this machine's PostgreSQL processes (the server and its backends).
fn postgres_processes() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|p| std::fs::read_to_string(p.join("comm")).is_ok_and(|c| c.trim() == "postgres"))
        .map(|p| p.join("stat"))
        .collect()
}

/// CPU seconds used so far by the server's threads and by PostgreSQL.
fn cpu_now(server: &Threads) -> (f64, f64) {
    let threads = server.lock().unwrap().clone();
    (cpu_seconds(threads), cpu_seconds(postgres_processes()))
}

/// Where the engine keeps its requests.
#[derive(Clone, Copy, PartialEq)]
enum Store {
    Memory,
    /// A SQLite file (the approval server's default): every commit waits for fsync.
    Sqlite,
    /// A PostgreSQL database made for the run (synchronous commit, as by default).
    Postgres,
}

/// The callback endpoints of one run: its servers (one per replica), the instance ids of its
/// pending requests, the crypto to seal pushes with, and the database to drop after it.
struct Served {
    servers: Vec<Server>,
    externals: Vec<String>,
    crypto: EventCrypto,
    database: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl Served {
    fn urls(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.url.clone()).collect()
    }
}

/// The callback endpoints, served on `rt` by `replicas` engines on one store with `requests`
/// pending requests; `None` for PostgreSQL when it is not reachable. A SQLite store is a new
/// file in `dir`, a PostgreSQL store a new database.
fn start_callback_server(
    rt: &tokio::runtime::Runtime,
    store: Store,
    replicas: usize,
    dir: &Path,
    requests: usize,
) -> Option<Served> {
    rt.block_on(async {
        let mut database = None;
        let mut stores: Vec<Arc<dyn ApprovalStore>> = Vec::with_capacity(replicas);
        match store {
            Store::Memory => stores.push(Arc::new(MemoryStore::new())),
            Store::Sqlite => {
                let file = dir.join(format!("{}.sqlite", rand::random::<u64>()));
                stores.push(Arc::new(SqliteStore::open(file).await.unwrap()));
            }
            Store::Postgres => {
                let (url, drop_it) = support::postgres_database("callback_load on PostgreSQL").await?;
                for _ in 0..replicas {
                    stores.push(Arc::new(PostgresStore::connect(&url).await.unwrap()));
                }
                database = Some(drop_it);
            }
        }
        assert_eq!(stores.len(), replicas, "replicas need a shared store");
        // The engines, one per replica; the first files one pending request per push.
        let engines: Vec<_> = stores.into_iter().map(support::engine).collect();
        let mut externals = Vec::with_capacity(requests);
        for n in 0..requests {
            externals.push(support::submit(&engines[0], n as u64).await.external_id.unwrap());
        }
        let mut servers = Vec::with_capacity(replicas);
        for engine in &engines {
            let route = support::route(engine);
            servers.push(
                serve(
                    axum::Router::new()
                        .route("/cb", route)
                        .route("/sdk", support::sdk_only_route()),
                )
                .await,
            );
        }
        Some(Served {
            servers,
            externals,
            crypto: support::crypto(),
            database,
        })
    })
}

/// What each push asks of the engine.
#[derive(Clone, Copy)]
enum Kind {
    /// `bpms_task_change`, an approver's task started: recorded in the request's history
    /// (a write: optimistic update, subscribers notified).
    Task,
    /// `bpms_instance_change` `start` for a request already pending: the state machine
    /// plans it unchanged, nothing is written beyond the de-duplication record.
    Start,
}

/// A measured callback endpoint.
struct Endpoint {
    name: &'static str,
    route: &'static str,
    kind: Kind,
    store: Store,
    /// Servers (replicas) on the store, the load spread over them.
    replicas: usize,
}

const fn endpoint(
    name: &'static str,
    route: &'static str,
    kind: Kind,
    store: Store,
    replicas: usize,
) -> Endpoint {
    Endpoint {
        name,
        route,
        kind,
        store,
        replicas,
    }
}

const ENDPOINTS: [Endpoint; 6] = [
    endpoint("task", "/cb", Kind::Task, Store::Memory, 1),
    endpoint("start", "/cb", Kind::Start, Store::Memory, 1),
    endpoint("sdk-only", "/sdk", Kind::Task, Store::Memory, 1),
    endpoint("sqlite-task", "/cb", Kind::Task, Store::Sqlite, 1),
    endpoint("pg-task", "/cb", Kind::Task, Store::Postgres, 1),
    endpoint("pg-task-3-replicas", "/cb", Kind::Task, Store::Postgres, 3),
];

/// A unique, pre-encrypted push (what DingTalk would send) about `external`:
/// (path and query, body).
fn push(
    crypto: &EventCrypto,
    now: &str,
    route: &str,
    kind: Kind,
    external: &str,
    id: &str,
) -> (String, String) {
    let event = match kind {
        Kind::Task => format!(
            r#"{{"EventType":"bpms_task_change","EventTime":{now},"CorpId":"dingcorp","eventId":"{id}","processInstanceId":"{external}","processCode":"PROC-BENCH","taskId":1,"type":"start","title":"张三提交的安全客户端卸载申请","staffId":"manager4321","createTime":{now}}}"#
        ),
        Kind::Start => format!(
            r#"{{"EventType":"bpms_instance_change","EventTime":{now},"CorpId":"dingcorp","eventId":"{id}","processInstanceId":"{external}","processCode":"PROC-BENCH","type":"start","title":"张三提交的安全客户端卸载申请","staffId":"u1","createTime":{now}}}"#
        ),
    };
    let sealed = crypto.encrypt_reply(&event, now, id).unwrap();
    (
        format!(
            "{route}?signature={}&timestamp={}&nonce={}",
            sealed.msg_signature, sealed.time_stamp, sealed.nonce
        ),
        format!(r#"{{"encrypt":"{}"}}"#, sealed.encrypt),
    )
}

/// One measured run.
#[derive(Clone, Copy)]
struct Run {
    rps: f64,
    p99: Duration,
    max: Option<Duration>,
    /// CPU µs per push of the server's threads and of PostgreSQL.
    cpu: Option<(f64, f64)>,
}

/// Runs of one endpoint across the rounds, with each round's hello.
#[derive(Default)]
struct Runs(Vec<(Run, f64)>);

impl Runs {
    /// `median [min–max]` of `f` over the runs.
    fn spread<T: PartialOrd + Copy>(
        &self,
        f: impl Fn(&(Run, f64)) -> T,
        show: impl Fn(T) -> String,
    ) -> String {
        let mut v: Vec<T> = self.0.iter().map(f).collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        match v.as_slice() {
            [] => "-".into(),
            [only] => show(*only),
            [first, .., last] => format!("{} [{}–{}]", show(v[v.len() / 2]), show(*first), show(*last)),
        }
    }

    fn print(&self, label: &str, compare: bool) {
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
        let mut line = format!(
            "{label:<42} {:>26} req/s  p99 {}",
            self.spread(|(r, _)| r.rps, |v| format!("{v:.0}")),
            self.spread(|(r, _)| r.p99, ms),
        );
        if self.0.iter().any(|(r, _)| r.max.is_some()) {
            line += &format!("  max {}", self.spread(|(r, _)| r.max.unwrap_or_default(), ms));
        }
        if compare {
            line += &format!(
                "  = {} hello (target >= 0.5x, p99 <= 2 ms)",
                self.spread(|(r, hello)| r.rps / hello, |v| format!("{v:.2}x"))
            );
        }
        if self.0.iter().any(|(r, _)| r.cpu.is_some()) {
            let us = |v: f64| format!("{v:.0} µs");
            line += &format!(
                "  cpu/push: server {}, postgres {}",
                self.spread(|(r, _)| r.cpu.unwrap_or_default().0, us),
                self.spread(|(r, _)| r.cpu.unwrap_or_default().1, us)
            );
        }
        println!("{line}");
    }
}

/// wrk's requests/s and p99 from its `--latency` report.
fn wrk_run(out: &str) -> Run {
    let field = |prefix: &str, n: usize| {
        out.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(n).map(str::to_owned))
            .unwrap_or_else(|| panic!("no `{prefix}` in wrk's report:\n{out}"))
    };
    let p99 = field("99%", 1);
    let (number, unit) = p99.split_at(p99.find(|c: char| c.is_ascii_alphabetic()).unwrap());
    let scale = match unit {
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        other => panic!("wrk latency unit {other}"),
    };
    for warning in ["Non-2xx", "Socket errors"] {
        assert!(!out.contains(warning), "wrk: {out}");
    }
    Run {
        rps: field("Requests/sec:", 1).parse().unwrap(),
        p99: Duration::from_secs_f64(number.parse::<f64>().unwrap() * scale),
        max: None,
        cpu: None,
    }
}

fn measure(topology: &Topology) {
    let (server_core, load_core) = topology.cores.unzip();
    let server_threads = Threads::default();
    let server_rt = runtime(topology.workers, server_core, Arc::clone(&server_threads));
    let load_rt = runtime(topology.workers, load_core, Threads::default());
    let wrk = std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok();
    let dir = std::env::temp_dir().join(format!("callback-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Each run gets a fresh engine holding exactly its own requests (at least `at_least`),
    // freed after the run.
    let fresh = |endpoint: &Endpoint, at_least: usize| {
        let per_connection = match endpoint.store {
            Store::Memory => PER_CONNECTION,
            Store::Sqlite | Store::Postgres => DURABLE_PER_CONNECTION,
        };
        let requests = (CONNECTIONS * per_connection).max(at_least.next_multiple_of(CONNECTIONS));
        start_callback_server(&server_rt, endpoint.store, endpoint.replicas, &dir, requests)
    };
    let done = |served: Served| {
        drop(served.servers);
        if let Some(drop_it) = served.database {
            server_rt.block_on(drop_it);
        }
    };
    let hello_url = |hello: &Server| vec![hello.url.clone()];
    let hello = server_rt.block_on(serve(
        axum::Router::new().route("/hello", axum::routing::post(|| async { "hello" })),
    ));
    // Pushes are sealed just before their run: the callback refuses a timestamp more than
    // five minutes old, and a whole measurement takes longer.
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
            .to_string()
    };
    let name = topology.name;
    let hellos: Vec<Vec<(String, String)>> = (0..CONNECTIONS)
        .map(|_| {
            (0..PER_CONNECTION)
                .map(|_| ("/hello".to_owned(), String::new()))
                .collect()
        })
        .collect();
    // Warm-up.
    load_rt.block_on(load(
        &hello_url(&hello),
        hellos.iter().map(|l| l[..20].to_vec()).collect(),
    ));

    let mut hello_runs = Runs::default();
    let mut runs: Vec<Runs> = ENDPOINTS.iter().map(|_| Runs::default()).collect();
    for _ in 0..ROUNDS {
        for (endpoint, runs) in ENDPOINTS.iter().zip(&mut runs) {
            let Some(served) = fresh(endpoint, 0) else {
                continue;
            };
            let now = now();
            let pushes: Vec<Vec<(String, String)>> = served
                .externals
                .chunks(served.externals.len().div_ceil(CONNECTIONS))
                .map(|chunk| {
                    chunk
                        .iter()
                        .map(|external| {
                            let id = format!("ev-{external}");
                            push(&served.crypto, &now, endpoint.route, endpoint.kind, external, &id)
                        })
                        .collect()
                })
                .collect();
            let count = served.externals.len() as f64;
            // Hello right before the endpoint it is compared with.
            let hello_run = load_rt.block_on(load(&hello_url(&hello), hellos.clone()));
            hello_runs.0.push((hello_run, hello_run.rps));
            let before = cpu_now(&server_threads);
            let mut run = load_rt.block_on(load(&served.urls(), pushes));
            let after = cpu_now(&server_threads);
            run.cpu = Some((
                (after.0 - before.0) * 1e6 / count,
                (after.1 - before.1) * 1e6 / count,
            ));
            runs.0.push((run, hello_run.rps));
            done(served);
        }
    }
    println!("callback_load/{name}: in-process generator, median [range] of {ROUNDS} rounds");
    hello_runs.print(&format!("callback_load/{name}/hello"), false);
    for (endpoint, runs) in ENDPOINTS.iter().zip(&runs) {
        if !runs.0.is_empty() {
            runs.print(&format!("callback_load/{name}/callback/{}", endpoint.name), true);
        }
    }

    if wrk {
        let script = dir.join("replay.lua");
        std::fs::write(&script, WRK_SCRIPT).unwrap();
        let hello_script = dir.join("hello.lua");
        std::fs::write(&hello_script, "wrk.method = \"POST\"\n").unwrap();
        // One generator thread per generator core. Each run lasts 1 s, less than its unique
        // pushes last (one that sends more fails the run below).
        let threads = if load_core.is_some() { 1 } else { topology.workers };
        let run = |url: &str, script: &Path, requests: Option<(&Path, usize)>| {
            let mut cmd = match load_core {
                Some(core) => {
                    let mut cmd = std::process::Command::new("taskset");
                    cmd.args(["-c", &core.to_string(), "wrk"]);
                    cmd
                }
                None => std::process::Command::new("wrk"),
            };
            cmd.args([&format!("-t{threads}"), "-c64", "-d1s", "--latency", "-s"])
                .arg(script)
                .arg(url);
            if let Some((requests, _)) = requests {
                cmd.arg("--").arg(requests).arg(threads.to_string());
            }
            let out = String::from_utf8_lossy(&cmd.output().unwrap().stdout).into_owned();
            if let Some((_, unique)) = requests {
                let sent: usize = line(&out, |l| l.contains("requests in"))
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                assert!(
                    sent <= unique,
                    "wrk sent {sent} pushes, more than the {unique} unique ones"
                );
            }
            wrk_run(&out)
        };
        let mut hello_runs = Runs::default();
        let mut wrk_runs: Vec<Runs> = ENDPOINTS.iter().map(|_| Runs::default()).collect();
        for _ in 0..ROUNDS {
            for ((endpoint, runs), in_process) in ENDPOINTS.iter().zip(&mut wrk_runs).zip(&runs) {
                // One wrk drives one URL: the replicas are measured by the in-process
                // generator only.
                if endpoint.replicas > 1 || in_process.0.is_empty() {
                    continue;
                }
                // wrk runs for 1 s, so a replay needs more unique pushes than a second's worth:
                // half again the best in-process rate (on a faster machine than this one, too).
                let best = in_process.0.iter().map(|(r, _)| r.rps).fold(0.0, f64::max);
                let Some(served) = fresh(endpoint, (best * 1.5) as usize) else {
                    continue;
                };
                let now = now();
                let mut lines = String::new();
                for external in &served.externals {
                    let id = format!("wrk-{external}");
                    let (path, body) =
                        push(&served.crypto, &now, endpoint.route, endpoint.kind, external, &id);
                    lines.push_str(&format!("{path}\t{body}\n"));
                }
                let requests = dir.join("requests.tsv");
                std::fs::write(&requests, lines).unwrap();
                // The SDK-only handler ignores events, so repeats cost it the same as fresh pushes.
                let unique = if endpoint.route == "/cb" {
                    served.externals.len()
                } else {
                    usize::MAX
                };
                let hello_run = run(&format!("{}/hello", hello.url), &hello_script, None);
                hello_runs.0.push((hello_run, hello_run.rps));
                let pushes = run(&served.servers[0].url, &script, Some((&requests, unique)));
                runs.0.push((pushes, hello_run.rps));
                done(served);
            }
        }
        println!("callback_load/{name}: wrk (pinned with taskset when the topology is), median [range] of {ROUNDS} rounds");
        hello_runs.print(&format!("callback_load/{name}/wrk/hello"), false);
        for (endpoint, runs) in ENDPOINTS.iter().zip(&wrk_runs) {
            if !runs.0.is_empty() {
                runs.print(
                    &format!("callback_load/{name}/wrk/callback/{}", endpoint.name),
                    true,
                );
            }
        }
    }
    drop(hello);
    // The servers' tasks end with their runtime.
    drop(server_rt);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The first line of `out` that `matches`, trimmed.
fn line(out: &str, matches: impl Fn(&str) -> bool) -> String {
    out.lines().find(|l| matches(l)).unwrap_or("").trim().to_owned()
}

fn main() {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut topologies = Vec::new();
    if let [server, load, ..] = cores.as_slice() {
        topologies.push(Topology {
            name: "pinned",
            workers: 1,
            cores: Some((server.id, load.id)),
        });
    } else {
        println!("callback_load: fewer than two cores visible; the pinned topology is skipped");
    }
    topologies.push(Topology {
        name: "shared",
        workers: 2,
        cores: None,
    });
    // `CALLBACK_LOAD_TOPOLOGY=pinned` (or `shared`) measures one only.
    let only = std::env::var("CALLBACK_LOAD_TOPOLOGY").ok();
    for topology in topologies
        .iter()
        .filter(|t| only.as_deref().is_none_or(|o| o == t.name))
    {
        measure(topology);
    }
}

/// Sends the `path<TAB>body` lines of the file given as the first script argument in turn,
/// split between the threads (the second argument); past the end they repeat.
const WRK_SCRIPT: &str = r#"
local next_id = 0
setup = function(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end
local requests = {}
local i = 0
init = function(args)
  local threads = tonumber(args[2])
  local n = 0
  for line in io.lines(args[1]) do
    if n % threads == id then
      local path, body = line:match("([^\t]*)\t(.*)")
      table.insert(requests, wrk.format("POST", path, {["Content-Type"] = "application/json"}, body))
    end
    n = n + 1
  end
end
request = function()
  i = i + 1
  if i > #requests then i = 1 end
  return requests[i]
end
"#;
