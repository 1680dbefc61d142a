//! The mock DingTalk as a standalone server, for test authors in any language.
//!
//! ```text
//! cargo run -p dingtalk-sdk --features mock --bin dingtalk-mock -- --port 9400 --config mock.toml
//! ```
//!
//! `--config` takes a JSON or TOML file (by extension) with `apps`, `processes`,
//! `token_ttl_secs`, `terminate_grace_secs`, `[quotas]` (`qps_per_app_and_api`,
//! `calls_per_month`; off unless set), `[stream]` (`redelivery_ms`, default
//! `[10000, 30000, 60000, 120000]`) and `[directory]` (`[[directory.departments]]` with `id`,
//! `name`, `parent`, `corp_id`; `[[directory.users]]` with `user_id`, `name`, `dept_ids`,
//! `corp_id`, `union_id`; default: a small company and another corp); see
//! `dingtalk_sdk::mock::MockConfig`.

use dingtalk_sdk::mock::{MockConfig, MockDingTalk};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

const USAGE: &str = "usage: dingtalk-mock [--host 127.0.0.1] [--port 9400] [--config FILE.json|FILE.toml]";

fn parse_args() -> Result<(SocketAddr, MockConfig), String> {
    let mut host = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut port: u16 = 9400;
    let mut config = MockConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--host" => host = value()?.parse().map_err(|e| format!("--host: {e}"))?,
            "--port" => port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--config" => {
                let path = value()?;
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
                config = if path.ends_with(".toml") {
                    toml::from_str(&text).map_err(|e| format!("{path}: {e}"))?
                } else {
                    serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?
                };
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok((SocketAddr::new(host, port), config))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (addr, config) = match parse_args() {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let (apps, processes) = (config.apps.len(), config.processes.len());
    let mock = match MockDingTalk::builder().config(config).bind(addr).start().await {
        Ok(mock) => mock,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "mock DingTalk listening on {} ({apps} apps, {processes} processes)",
        mock.base_url()
    );
    println!(
        "OpenAPI under /v1.0/…, Stream gateway at /v1.0/gateway/connections/open, control API under /__mock/"
    );
    let _ = tokio::signal::ctrl_c().await;
}
