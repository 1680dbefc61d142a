//! Plays the SASE App against a running approval server: tries to uninstall, shows the
//! policy's prompt in the chosen language, files for approval with a reason, waits for the
//! decision, verifies the grant offline with the server's public key, and says whether the
//! uninstall may proceed.
//!
//! Run (with the server's printed device token):
//! `cargo run -p sase-approval-server --bin agent-simulator -- --server http://127.0.0.1:8080 --token <device token> --locale en-US --reason "reinstalling the OS"`

#![expect(
    clippy::indexing_slicing,
    reason = "serde_json's `Value[key]` yields Null for a missing key or a non-object: it never panics"
)]

use clap::Parser as _;
use sase_policy::ids::{DeviceId, UserId};
use sase_policy::{Action, GrantVerifier, SignedGrant};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Plays the SASE App against a running approval server: uninstall check, the policy's
/// prompt, filing with a reason, waiting for the decision, and the grant verified offline.
#[derive(Debug, clap::Parser)]
#[command(name = "agent-simulator", version)]
struct Args {
    /// The approval server's base URL.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The device's bearer token (the approval server prints the demo device's).
    #[arg(long, value_name = "TOKEN")]
    token: String,
    /// The prompt's language, e.g. zh-CN or en-US.
    #[arg(long, value_name = "LOCALE", default_value = "zh-CN")]
    locale: String,
    /// The reason filed with the request.
    #[arg(
        long,
        value_name = "TEXT",
        default_value = "reinstalling the operating system"
    )]
    reason: String,
    /// How long to wait for the approver, in seconds.
    #[arg(long = "wait-secs", value_name = "SECS", default_value_t = 300)]
    wait_secs: u64,
}

async fn call(
    http: &reqwest::Client,
    a: &Args,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let mut req = http
        .request(method, format!("{}{path}", a.server))
        .bearer_auth(&a.token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.map_err(|e| format!("{path}: {e}"))?;
    let status = res.status();
    let body: Value = res.json().await.map_err(|e| format!("{path}: {e}"))?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{path}: HTTP {status}: {body}"))
    }
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let a = Args::parse();
    let http = reqwest::Client::new();
    println!("Trying to uninstall the SASE App…");
    let check = call(
        &http,
        &a,
        reqwest::Method::POST,
        "/api/agent/uninstall-check",
        Some(json!({"locale": a.locale})),
    )
    .await?;
    match check["effect"].as_str() {
        Some("allow") => {
            println!("Allowed ({}): uninstall may proceed.", check["reason"]);
            return Ok(());
        }
        Some("deny") => {
            print_prompt(&check["prompt"]);
            println!(
                "Denied ({}): uninstall may not proceed, and filing is not allowed.",
                check["reason"]
            );
            return Ok(());
        }
        _ => print_prompt(&check["prompt"]),
    }
    println!(
        "> [{}] reason: {}",
        check["prompt"]["primary_button"].as_str().unwrap_or("File"),
        a.reason
    );
    let filed = call(
        &http,
        &a,
        reqwest::Method::POST,
        "/api/agent/requests",
        Some(json!({"reason": a.reason})),
    )
    .await?;
    let id = filed["id"]
        .as_str()
        .ok_or("the server returned no request id")?
        .to_owned();
    println!(
        "Filed request {id}; waiting for the approver (state: {})…",
        filed["state"]
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(a.wait_secs);
    let request = loop {
        let r = call(
            &http,
            &a,
            reqwest::Method::GET,
            &format!("/api/agent/requests/{id}"),
            None,
        )
        .await?;
        if !matches!(r["state"].as_str(), Some("submitted" | "pending"))
            || tokio::time::Instant::now() > deadline
        {
            break r;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let state = request["state"].as_str().unwrap_or("unknown");
    if state != "approved" {
        println!("Request {state}: uninstall may not proceed.");
        return Ok(());
    }
    // Check the grant offline, as the agent on the laptop would.
    let key = call(&http, &a, reqwest::Method::GET, "/api/agent/grant-key", None).await?;
    let verifier =
        GrantVerifier::from_hex(key["public_key"].as_str().unwrap_or_default()).map_err(|e| e.to_string())?;
    let grant: SignedGrant =
        serde_json::from_value(request["grant"].clone()).map_err(|e| format!("grant: {e}"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
    let g = &grant.grant;
    match verifier.verify(&grant, &UserId::new(g.user.as_str()), &DeviceId::new(g.device.as_str()), Action::Uninstall, now, &HashSet::new()) {
        Ok(g) => println!(
            "Approved: grant {} for user {} on device {} verified offline; uninstall may proceed (valid until {} ms).",
            g.id, g.user, g.device, g.expires_at_ms
        ),
        Err(e) => println!("Approved, but the grant does not verify ({e}): uninstall may not proceed."),
    }
    Ok(())
}

fn print_prompt(prompt: &Value) {
    println!("┌ {}", prompt["title"].as_str().unwrap_or_default());
    println!("│ {}", prompt["content"].as_str().unwrap_or_default());
    println!(
        "└ [{}]  [{}]",
        prompt["primary_button"].as_str().unwrap_or_default(),
        prompt["secondary_button"].as_str().unwrap_or_default()
    );
}

#[cfg(test)]
mod tests {
    use super::Args;
    use clap::{CommandFactory as _, Parser as _};

    #[test]
    fn the_command_line() {
        let parse = |flags: &[&str]| {
            Args::try_parse_from(std::iter::once("agent-simulator").chain(flags.iter().copied()))
        };
        assert!(parse(&[]).is_err(), "--token is required");
        assert!(parse(&["--token"]).is_err(), "a flag needs its value");
        assert!(
            parse(&["--token", "t", "--colour", "red"]).is_err(),
            "unknown flags are refused"
        );
        let a = parse(&["--token", "t", "--wait-secs", "5"]).unwrap();
        assert_eq!(
            (a.token.as_str(), a.wait_secs, a.locale.as_str()),
            ("t", 5, "zh-CN")
        );
        let help = Args::command().render_help().to_string();
        for flag in ["--server", "--token", "--locale", "--reason", "--wait-secs"] {
            assert!(help.contains(flag), "--help mentions {flag}: {help}");
        }
    }
}
