//! Load benchmark of the HTTP-push callback endpoint on loopback, compared in the same run
//! with a bare axum "hello": 64 concurrent connections, requests/s and p99 latency.
//!
//! The callback path is the real one: axum route → signature check → decrypt → typed event →
//! `Engine::handle_event` → encrypted `success` reply. Two kinds of push are measured, each
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
//! process (pinned with `taskset`, `--latency` percentiles): two generators light enough
//! that the server, not the client, is what saturates.
//!
//! Run: `benches/callback_load.sh` (installs wrk if missing, then runs this) or `cargo bench
//! --bench callback_load` (prints one line per endpoint and topology;
//! `CALLBACK_LOAD_TOPOLOGY=pinned` or `shared` measures one).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
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
/// Unique pushes per connection in each run (more than wrk sends in its 1 s); every push has
/// its own request, and each run its own engine.
const PER_CONNECTION: usize = 1_500;
/// The same for the SQLite store, which takes a few thousand pushes a second.
const SQLITE_PER_CONNECTION: usize = 60;

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Sends every request of `work` (one `(path, body)` list per connection, each on its own
/// kept-alive connection to `url`) and returns (requests/s, p50, p99, max).
///
/// A minimal HTTP/1.1 client: write the request built up front, read until the response's
/// head and `content-length` body are in. It costs the generator core less than the server
/// work it measures, as wrk does; a full client (reqwest) capped hello at ≈ 85,000 req/s,
/// which hid the server's real capacity.
async fn load(url: &str, work: Vec<Vec<(String, String)>>) -> (f64, Duration, Duration, Duration) {
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
    (
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        pct(1.0),
    )
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

/// The endpoints under test, served on `rt`: (callback URL, hello URL, `requests` pending
/// instance ids, crypto to seal pushes with). A SQLite store is a new file in `dir`.
fn start_servers(
    rt: &tokio::runtime::Runtime,
    store: Store,
    dir: &Path,
    requests: usize,
) -> (String, String, Vec<String>, EventCrypto) {
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
        let callback_url = serve(
            axum::Router::new()
                .route("/cb", route)
                .route("/sdk", support::sdk_only_route()),
        )
        .await;
        let hello_url =
            serve(axum::Router::new().route("/hello", axum::routing::post(|| async { "hello" }))).await;
        (callback_url, hello_url, externals, crypto)
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

/// The first line of `out` that `matches`, trimmed.
fn line(out: &str, matches: impl Fn(&str) -> bool) -> String {
    out.lines().find(|l| matches(l)).unwrap_or("").trim().to_owned()
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
    // Each run gets a fresh engine holding exactly its own requests.
    let fresh = |store| {
        let per_connection = match store {
            Store::Memory => PER_CONNECTION,
            Store::Sqlite => SQLITE_PER_CONNECTION,
        };
        start_servers(&server_rt, store, &dir, CONNECTIONS * per_connection)
    };
    let (_, hello_url, _, _) = start_servers(&server_rt, Store::Memory, &dir, 0);
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
    let (hello_rps, hello_p50, hello_p99, hello_max) = load_rt.block_on(async {
        load(&hello_url, hellos.iter().map(|l| l[..20].to_vec()).collect()).await; // warm-up
        load(&hello_url, hellos).await
    });
    println!(
        "callback_load/{name}/hello                 {hello_rps:>9.0} req/s  p50 {hello_p50:?}  p99 {hello_p99:?}  max {hello_max:?}"
    );
    for (label, route, kind, store) in ENDPOINTS {
        let (callback_url, _, externals, crypto) = fresh(store);
        let pushes: Vec<Vec<(String, String)>> = externals
            .chunks(externals.len().div_ceil(CONNECTIONS))
            .map(|chunk| {
                chunk
                    .iter()
                    .map(|external| push(&crypto, &now, route, kind, external, &format!("ev-{external}")))
                    .collect()
            })
            .collect();
        let (rps, p50, p99, max) = load_rt.block_on(load(&callback_url, pushes));
        println!(
            "callback_load/{name}/callback/{label:<11}  {rps:>9.0} req/s  p50 {p50:?}  p99 {p99:?}  max {max:?}  = {:.2}x hello (target >= 0.5), p99 target <= 2 ms",
            rps / hello_rps
        );
    }

    if wrk {
        let script = dir.join("replay.lua");
        std::fs::write(&script, WRK_SCRIPT).unwrap();
        let hello_script = dir.join("hello.lua");
        std::fs::write(&hello_script, "wrk.method = \"POST\"\n").unwrap();
        // One generator thread per generator core. A replay runs 1 s: about the unique pushes
        // it has (a run that sends more is flagged below).
        let threads = if load_core.is_some() { 1 } else { topology.workers };
        let run = |url: &str, script: &std::path::Path, requests: Option<&std::path::Path>| {
            let mut cmd = match load_core {
                Some(core) => {
                    let mut cmd = std::process::Command::new("taskset");
                    cmd.args(["-c", &core.to_string(), "wrk"]);
                    cmd
                }
                None => std::process::Command::new("wrk"),
            };
            let seconds = if requests.is_some() { "-d1s" } else { "-d3s" };
            cmd.args([&format!("-t{threads}"), "-c64", seconds, "--latency", "-s"])
                .arg(script)
                .arg(url);
            if let Some(requests) = requests {
                cmd.arg("--").arg(requests).arg(threads.to_string());
            }
            String::from_utf8_lossy(&cmd.output().unwrap().stdout).into_owned()
        };
        let report = |label: &str, out: &str, unique: Option<usize>| {
            let total = line(out, |l| l.contains("requests in"));
            let sent: usize = total
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let repeats = match unique {
                Some(unique) if sent > unique => " [more than the unique pushes: the rest were duplicates]",
                _ => "",
            };
            println!(
                "callback_load/{name}/wrk/{label:<20} {}  p99 {}  ({total}) {}{repeats}",
                line(out, |l| l.starts_with("Requests/sec")),
                line(out, |l| l.trim_start().starts_with("99%")),
                line(out, |l| l.contains("Non-2xx") || l.contains("Socket errors")),
            );
        };
        report(
            "hello",
            &run(&format!("{hello_url}/hello"), &hello_script, None),
            None,
        );
        for (label, route, kind, store) in ENDPOINTS {
            let (callback_url, _, externals, crypto) = fresh(store);
            let mut lines = String::new();
            for external in &externals {
                let (path, body) = push(&crypto, &now, route, kind, external, &format!("wrk-{external}"));
                lines.push_str(&format!("{path}\t{body}\n"));
            }
            let requests = dir.join("requests.tsv");
            std::fs::write(&requests, lines).unwrap();
            let out = run(&callback_url, &script, Some(&requests));
            // The SDK-only handler ignores events, so repeats cost it the same as fresh pushes.
            let unique = Some(externals.len()).filter(|_| route == "/cb");
            report(&format!("callback/{label}"), &out, unique);
        }
    }
    // The servers' tasks end with their runtime.
    drop(server_rt);
    let _ = std::fs::remove_dir_all(&dir);
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
