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
//! server's default store), where every commit waits for fsync.
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

use sase_dingtalk::approval::store::{ApprovalStore, MemoryStore, SqliteStore};
use sase_dingtalk::dingtalk::crypto::EventCrypto;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 64;
/// Unique pushes per connection in each in-process run (wrk replays get more if the
/// in-process rate says they need them); every push has its own request, and each run its
/// own engine.
const PER_CONNECTION: usize = 2_000;
/// The same for the SQLite store, which takes a few thousand pushes a second.
const SQLITE_PER_CONNECTION: usize = 60;

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
async fn load(url: &str, work: Vec<Vec<(String, String)>>) -> Run {
    let addr = url.trim_start_matches("http://").to_owned();
    let mut connections = Vec::with_capacity(work.len());
    for requests in work {
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

fn runtime(workers: usize, core: Option<usize>) -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(workers).enable_all();
    if let Some(id) = core {
        builder.on_thread_start(move || {
            core_affinity::set_for_current(core_affinity::CoreId { id });
        });
    }
    builder.build().unwrap()
}

/// Where the engine keeps its requests.
#[derive(Clone, Copy)]
enum Store {
    Memory,
    /// A SQLite file (the approval server's default): every commit waits for fsync.
    Sqlite,
}

/// The callback endpoints, served on `rt` by an engine with `requests` pending requests:
/// (server, their instance ids, crypto to seal pushes with). A SQLite store is a new file in
/// `dir`.
fn start_callback_server(
    rt: &tokio::runtime::Runtime,
    store: Store,
    dir: &Path,
    requests: usize,
) -> (Server, Vec<String>, EventCrypto) {
    rt.block_on(async {
        let store: Arc<dyn ApprovalStore> = match store {
            Store::Memory => Arc::new(MemoryStore::new()),
            Store::Sqlite => {
                let file = dir.join(format!("{}.sqlite", rand::random::<u64>()));
                Arc::new(SqliteStore::open(file).await.unwrap())
            }
        };
        // The engine with one pending request per push.
        let engine = support::engine(store);
        let mut externals = Vec::with_capacity(requests);
        for n in 0..requests {
            externals.push(support::submit(&engine, n as u64).await.external_id.unwrap());
        }
        let (crypto, route) = (support::crypto(), support::route(&engine));
        let server = serve(
            axum::Router::new()
                .route("/cb", route)
                .route("/sdk", support::sdk_only_route()),
        )
        .await;
        (server, externals, crypto)
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

/// The measured callback endpoints: (name, route, pushes it takes).
const ENDPOINTS: [(&str, &str, Kind, Store); 4] = [
    ("task", "/cb", Kind::Task, Store::Memory),
    ("start", "/cb", Kind::Start, Store::Memory),
    ("sdk-only", "/sdk", Kind::Task, Store::Memory),
    ("sqlite-task", "/cb", Kind::Task, Store::Sqlite),
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
    }
}

fn measure(topology: &Topology) {
    let (server_core, load_core) = topology.cores.unzip();
    let server_rt = runtime(topology.workers, server_core);
    let load_rt = runtime(topology.workers, load_core);
    let wrk = std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok();
    let dir = std::env::temp_dir().join(format!("callback-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Each run gets a fresh engine holding exactly its own requests (at least `at_least`),
    // freed after the run.
    let fresh = |store, at_least: usize| {
        let per_connection = match store {
            Store::Memory => PER_CONNECTION,
            Store::Sqlite => SQLITE_PER_CONNECTION,
        };
        let requests = (CONNECTIONS * per_connection).max(at_least.next_multiple_of(CONNECTIONS));
        start_callback_server(&server_rt, store, &dir, requests)
    };
    let hello = server_rt.block_on(serve(
        axum::Router::new().route("/hello", axum::routing::post(|| async { "hello" })),
    ));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
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
        &hello.url,
        hellos.iter().map(|l| l[..20].to_vec()).collect(),
    ));

    let mut hello_runs = Runs::default();
    let mut runs: Vec<Runs> = ENDPOINTS.iter().map(|_| Runs::default()).collect();
    for _ in 0..ROUNDS {
        for ((_, route, kind, store), runs) in ENDPOINTS.iter().zip(&mut runs) {
            let (server, externals, crypto) = fresh(*store, 0);
            let pushes: Vec<Vec<(String, String)>> = externals
                .chunks(externals.len().div_ceil(CONNECTIONS))
                .map(|chunk| {
                    chunk
                        .iter()
                        .map(|external| {
                            push(&crypto, &now, route, *kind, external, &format!("ev-{external}"))
                        })
                        .collect()
                })
                .collect();
            // Hello right before the endpoint it is compared with.
            let hello_run = load_rt.block_on(load(&hello.url, hellos.clone()));
            hello_runs.0.push((hello_run, hello_run.rps));
            runs.0
                .push((load_rt.block_on(load(&server.url, pushes)), hello_run.rps));
        }
    }
    println!("callback_load/{name}: in-process generator, median [range] of {ROUNDS} rounds");
    hello_runs.print(&format!("callback_load/{name}/hello"), false);
    for ((label, ..), runs) in ENDPOINTS.iter().zip(&runs) {
        runs.print(&format!("callback_load/{name}/callback/{label}"), true);
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
            for (((_, route, kind, store), runs), in_process) in
                ENDPOINTS.iter().zip(&mut wrk_runs).zip(&runs)
            {
                // wrk runs for 1 s, so a replay needs more unique pushes than a second's worth:
                // half again the best in-process rate (on a faster machine than this one, too).
                let best = in_process.0.iter().map(|(r, _)| r.rps).fold(0.0, f64::max);
                let (server, externals, crypto) = fresh(*store, (best * 1.5) as usize);
                let mut lines = String::new();
                for external in &externals {
                    let (path, body) =
                        push(&crypto, &now, route, *kind, external, &format!("wrk-{external}"));
                    lines.push_str(&format!("{path}\t{body}\n"));
                }
                let requests = dir.join("requests.tsv");
                std::fs::write(&requests, lines).unwrap();
                // The SDK-only handler ignores events, so repeats cost it the same as fresh pushes.
                let unique = if *route == "/cb" {
                    externals.len()
                } else {
                    usize::MAX
                };
                let hello_run = run(&format!("{}/hello", hello.url), &hello_script, None);
                hello_runs.0.push((hello_run, hello_run.rps));
                let pushes = run(&server.url, &script, Some((&requests, unique)));
                runs.0.push((pushes, hello_run.rps));
            }
        }
        println!("callback_load/{name}: wrk (pinned with taskset when the topology is), median [range] of {ROUNDS} rounds");
        hello_runs.print(&format!("callback_load/{name}/wrk/hello"), false);
        for ((label, ..), runs) in ENDPOINTS.iter().zip(&wrk_runs) {
            runs.print(&format!("callback_load/{name}/wrk/callback/{label}"), true);
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
