//! The SASE approval server: policy checks for agents, approval requests through DingTalk,
//! a console API for admins, and grants (the `sase_approval_server` library).
//!
//! Run: `cargo run -p sase-approval-server` (`-- --help` for the flags). In a `demo` build
//! (the default), with no DingTalk credentials configured it starts the mock DingTalk
//! in-process and stores requests in `sase-approval.sqlite`.

use clap::Parser as _;
use sase_approval_server::config::{Args, Config, LogFormat};

// Every callback allocates and frees a few dozen small buffers (request, event, history
// entry, reply); with mimalloc's thread-local free lists a push costs 1-2 µs less than
// with glibc's malloc (the root's `benches/callback_load.rs`, run with each). `MIMALLOC_PURGE_DELAY=-1`
// in the environment keeps freed memory instead of returning it to the OS: a tighter latency
// tail under load, at the cost of the memory (benches/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    // Exits with the usage (status 2) on a bad command line, or prints --help.
    let args = Args::parse();
    // The configuration says how to log, so it is read first; it logs nothing itself, and
    // its errors go to stderr as plain text.
    let config = match Config::load(&args, |k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    init_logs(config.log_format);
    if args.rotate_grant_key {
        if config.grant_keys.is_some() {
            eprintln!(
                "the grant keys come from SASE_GRANT_KEYS: put a new seed first there (`openssl rand -hex 32`), \
                 keep the older ones after it, and restart every replica"
            );
            std::process::exit(2);
        }
        let path = config.grant_key_path();
        match sase_approval_server::grant_keys::rotate(&path) {
            Ok(key) => {
                println!(
                    "New grant signing key {} first in {}; restart the server (every replica) to sign with it. \
                     Delete the older lines once grants they signed have expired.",
                    key.to_hex(),
                    path.display()
                );
                return;
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
    }
    if args.verify_audit {
        match sase_approval_server::verify_audit(&config).await {
            Ok(Ok(entries)) => println!("The audit chain is intact: {entries} entries."),
            Ok(Err(broken)) => {
                println!("The audit chain is broken: {broken}");
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        }
        return;
    }
    if let Some(name) = &args.create_admin {
        let password = match std::env::var("SASE_ADMIN_PASSWORD") {
            Ok(password) => password,
            Err(_) => {
                let mut line = String::new();
                if let Err(e) = std::io::stdin().read_line(&mut line) {
                    eprintln!("cannot read the password from standard input: {e}");
                    std::process::exit(2);
                }
                line.trim_end_matches(['\r', '\n']).to_owned()
            }
        };
        match sase_approval_server::create_first_admin(&config, name, &password).await {
            Ok(true) => println!("Admin `{name}` created (role admin): log in to the console with it."),
            Ok(false) => {
                eprintln!("an admin exists already: create more in the console (POST /api/console/admins)");
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
        return;
    }
    // Tokens are printed only on the mock DingTalk (demo), never with real credentials.
    #[cfg(feature = "demo")]
    let print_tokens = config.mock_only();
    // Before the banner: a supervisor may stop the server as soon as it has printed it.
    let signals = match sase_approval_server::StopSignals::install() {
        Ok(signals) => signals,
        Err(e) => {
            tracing::error!(error = %e, "server failed to start");
            std::process::exit(1);
        }
    };
    let server = match sase_approval_server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "server failed to start");
            std::process::exit(1);
        }
    };
    let workflows: String = server
        .endpoints
        .iter()
        .map(|e| {
            format!(
                "Workflow {} ({}, app {}): {}\n",
                e.workflow,
                e.process_code,
                e.client_id,
                e.request_url.as_ref().map_or_else(
                    || "events over Stream mode".to_owned(),
                    |u| format!("Request URL {u}")
                )
            )
        })
        .collect();
    println!(
        "\nSASE approval server on {}://{}\n{workflows}",
        server.scheme(),
        server.addr
    );
    #[cfg(feature = "demo")]
    if print_tokens {
        print_walk(&server);
    }

    if let Err(e) = server.run_until(signals).await {
        tracing::error!(error = %e, "server failed");
        std::process::exit(1);
    }
}

/// Log lines on stdout, filtered by `RUST_LOG` (default `info`): text, coloured only when
/// stdout is a terminal, or one JSON object a line (the event's fields at the top level).
fn init_logs(format: LogFormat) {
    use std::io::IsTerminal as _;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        // Logs go to stderr, apart from what the server prints for its operator (address,
        // Request URLs, demo walk-through) on stdout: JSON lines stay JSON.
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if format == LogFormat::Json {
        logs.json().flatten_event(true).init();
    } else {
        logs.init();
    }
}

/// The demo's tokens and how to walk the flow with them (a production build prints no
/// secrets).
#[cfg(feature = "demo")]
fn print_walk(server: &sase_approval_server::Server) {
    let (local, admin_token) = (server.addr, &server.admin_token);
    let grant_key = server.engine.verifier().to_hex();
    if let Some((name, password)) = &server.console_login {
        println!("Web console:  http://{local}/console/  (log in as {name}, password {password})");
    }
    let Some(device) = server.devices.first() else {
        println!("Admin token:  {admin_token}\n(no device enrolled)");
        return;
    };
    println!(
        "Admin token:  {admin_token}\n\
         Device token: {} (device {}, user {})\n\
         Grant key:    {grant_key} (pin it in the agent's configuration at enrollment)\n\n\
         Walk the flow with the agent simulator (then approve on the mock, below):\n\
         cargo run -p sase-approval-server --bin agent-simulator -- --server http://{local} --token {} --user {} --device {} --grant-key {grant_key} --locale en-US --reason 'reinstalling the OS'\n\n\
         or enroll another device by signing in with DingTalk (open the URL it prints: the mock's sign-in page):\n\
         cargo run -p sase-approval-server --bin agent-simulator -- --server http://{local} --sign-in --device LAPTOP-2 --locale en-US --reason 'reinstalling the OS'\n\n\
         or by hand:\n\
         curl -s -X POST http://{local}/api/agent/uninstall-check -H 'authorization: Bearer {}' -H 'content-type: application/json' -d '{{\"locale\":\"en-US\"}}'\n\
         curl -s -X POST http://{local}/api/agent/requests -H 'authorization: Bearer {}' -H 'content-type: application/json' -d '{{\"reason\":\"reinstalling the OS\"}}'\n\
         curl -s http://{local}/api/console/requests -H 'authorization: Bearer {admin_token}'\n{}\
         curl -s http://{local}/api/agent/requests/<id> -H 'authorization: Bearer {}'   # state and, once approved, the grant\n",
        device.token,
        device.device_id,
        device.user_id,
        device.token,
        device.user_id,
        device.device_id,
        device.token,
        device.token,
        server.mock
            .as_ref()
            .map(|m| format!("curl -s -X POST {}/__mock/instances/<instanceId>/approve   # act as the DingTalk approver\n", m.base_url()))
            .unwrap_or_default(),
        device.token
    );
}
