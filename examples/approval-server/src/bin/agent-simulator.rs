//! Plays the SASE App against a running approval server: tries to uninstall, shows the
//! policy's prompt in the chosen language, files for approval with a reason, waits for the
//! decision, verifies the grant offline with the server's public key, and says whether the
//! uninstall may proceed.
//!
//! Run (with the server's printed device token):
//! `cargo run --example agent-simulator -- --server http://127.0.0.1:8080 --token <device token> --locale en-US --reason "reinstalling the OS"`

// `Value[key]` yields Null for a missing key: it never panics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use sase_policy::ids::{DeviceId, UserId};
use sase_policy::{Action, GrantVerifier, SignedGrant};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

struct Args {
    server: String,
    token: String,
    locale: String,
    reason: String,
    wait: Duration,
}

fn args() -> Result<Args, String> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| {
        raw.iter()
            .position(|a| a == name)
            .and_then(|i| raw.get(i + 1))
            .cloned()
    };
    Ok(Args {
        server: get("--server").unwrap_or_else(|| "http://127.0.0.1:8080".into()),
        token: get("--token").ok_or("--token <device token> is required (the server prints one)")?,
        locale: get("--locale").unwrap_or_else(|| "zh-CN".into()),
        reason: get("--reason").unwrap_or_else(|| "reinstalling the operating system".into()),
        wait: Duration::from_secs(get("--wait-secs").and_then(|s| s.parse().ok()).unwrap_or(300)),
    })
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
    let a = args()?;
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
    let deadline = tokio::time::Instant::now() + a.wait;
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
