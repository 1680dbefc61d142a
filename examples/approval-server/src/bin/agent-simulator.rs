//! Plays the SASE App against a running approval server: tries to uninstall, shows the
//! policy's prompt in the chosen language, files for approval with a reason, waits for the
//! decision, and checks the grant as an agent must (`sase_agent::AgentVerifier`): with the
//! key pinned in its own configuration, against its own user and device, consumed online
//! (offline only within a short window), recorded as used in a file. Then it says whether
//! the uninstall may proceed.
//!
//! Run (with the device token, user, device and grant key the server prints):
//! `cargo run -p sase-approval-server --bin agent-simulator -- --server http://127.0.0.1:8080 --token <device token> --user <user> --device <device> --grant-key <hex> --locale en-US --reason "reinstalling the OS"`
//!
//! Or enroll first with a code an admin made (`POST /api/console/enrollment-codes`): the
//! device token, user and grant keys then come from the enrollment:
//! `… --bin agent-simulator -- --enroll-code <code> --device <device>`
//!
//! Or enroll by signing in with DingTalk (a server with `[directory] corp_id`): it prints the
//! sign-in URL to open, then waits for the sign-in:
//! `… --bin agent-simulator -- --sign-in --device <device>`

#![expect(
    clippy::indexing_slicing,
    reason = "serde_json's `Value[key]` yields Null for a missing key or a non-object: it never panics"
)]

use clap::Parser as _;
use sase_agent::{
    Action, AgentConfig, AgentError, AgentVerifier, Authorization, DeviceId, GrantVerifier, HttpConsume,
    SignedGrant, UserId,
};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Plays the SASE App against a running approval server: uninstall check, the policy's
/// prompt, filing with a reason, waiting for the decision, and the grant checked as an agent
/// must: pinned key, own user and device, consumed online, single use recorded in a file.
#[derive(Debug, clap::Parser)]
#[command(name = "agent-simulator", version)]
struct Args {
    /// The approval server's base URL.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The device's bearer token (the approval server prints the demo device's).
    #[arg(
        long,
        value_name = "TOKEN",
        required_unless_present_any = ["enroll_code", "sign_in"],
        conflicts_with_all = ["enroll_code", "sign_in"]
    )]
    token: Option<String>,
    /// Enroll this device first with a single-use code an admin made: the device token, the
    /// user and (unless --grant-key is given) the grant keys come from the enrollment.
    #[arg(long = "enroll-code", value_name = "CODE", conflicts_with = "sign_in")]
    enroll_code: Option<String>,
    /// Enroll this device first by signing in with DingTalk: prints the sign-in URL, waits
    /// (up to --wait-secs) for the sign-in, then the token, user and grant keys come from it.
    #[arg(long = "sign-in")]
    sign_in: bool,
    /// The server's grant verifying key (Ed25519 public key, hex), pinned from enrollment /
    /// the agent's own configuration: never fetched from the server when a grant is checked.
    /// Repeat it to pin the old and the new key across a rotation.
    #[arg(long = "grant-key", value_name = "HEX", required_unless_present_any = ["enroll_code", "sign_in"], value_parser = parse_grant_key)]
    grant_keys: Vec<GrantVerifier>,
    /// This agent's user id (from enrollment); a grant for anyone else is refused.
    #[arg(long, value_name = "USER", required_unless_present_any = ["enroll_code", "sign_in"])]
    user: Option<String>,
    /// This agent's device id (from enrollment); a grant for another device is refused.
    #[arg(long, value_name = "DEVICE")]
    device: String,
    /// The file recording used grants, so none is used twice, across restarts too.
    #[arg(
        long = "used-grants",
        value_name = "FILE",
        default_value = "sase-agent-used-grants.json"
    )]
    used_grants: PathBuf,
    /// How long after issue a grant is accepted when the server cannot be reached, in seconds.
    #[arg(long = "offline-window-secs", value_name = "SECS", default_value_t = 300)]
    offline_window_secs: u64,
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
    /// Once approved, wait for Enter on standard input before using the grant, as a user who
    /// uninstalls later (the grant may be revoked meanwhile).
    #[arg(long)]
    confirm: bool,
}

fn parse_grant_key(hex: &str) -> Result<GrantVerifier, String> {
    GrantVerifier::from_hex(hex).map_err(|e| e.to_string())
}

/// Who this agent is: its device token, user and pinned grant keys.
struct Identity {
    token: String,
    user: String,
    grant_keys: Vec<GrantVerifier>,
}

async fn call(
    http: &reqwest::Client,
    a: &Args,
    token: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let mut req = http.request(method, format!("{}{path}", a.server));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
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

/// The identity the command line gives, or the one an enrollment answers (with its code, or
/// by signing in with DingTalk).
async fn identity(http: &reqwest::Client, a: &Args) -> Result<Identity, String> {
    let enrolled = if a.sign_in {
        signed_in(http, a).await?
    } else if let Some(code) = &a.enroll_code {
        call(
            http,
            a,
            None,
            reqwest::Method::POST,
            "/api/agent/enroll",
            Some(json!({"code": code, "device_id": a.device})),
        )
        .await?
    } else {
        return Ok(Identity {
            token: a.token.clone().unwrap_or_default(),
            user: a.user.clone().unwrap_or_default(),
            grant_keys: a.grant_keys.clone(),
        });
    };
    let grant_keys = if a.grant_keys.is_empty() {
        enrolled["grant_keys"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| parse_grant_key(k.as_str().unwrap_or_default()))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        a.grant_keys.clone()
    };
    let identity = Identity {
        token: enrolled["device_token"].as_str().unwrap_or_default().to_owned(),
        user: enrolled["user_id"].as_str().unwrap_or_default().to_owned(),
        grant_keys,
    };
    println!(
        "Enrolled device {} of user {}; its token (keep it, the enrollment is used): {}",
        a.device, identity.user, identity.token
    );
    Ok(identity)
}

/// Signs in with DingTalk: starts an attempt, prints its sign-in URL, and waits for the
/// enrollment (the server's 202 until someone has signed in and confirmed the device).
async fn signed_in(http: &reqwest::Client, a: &Args) -> Result<Value, String> {
    let started = call(
        http,
        a,
        None,
        reqwest::Method::POST,
        "/api/agent/sign-in",
        Some(json!({"device_id": a.device})),
    )
    .await?;
    let attempt = started["attempt"].as_str().unwrap_or_default().to_owned();
    println!(
        "Sign in with DingTalk to enroll this device: {}",
        started["sign_in_url"].as_str().unwrap_or_default()
    );
    println!("Then enroll the device {} on the page that follows.", a.device);
    let deadline = std::time::Instant::now() + Duration::from_secs(a.wait_secs);
    loop {
        let answer = call(
            http,
            a,
            None,
            reqwest::Method::GET,
            &format!("/api/agent/sign-in/{attempt}"),
            None,
        )
        .await?;
        if answer["device_token"].is_string() {
            return Ok(answer);
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("nobody signed in within {} s", a.wait_secs));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn run() -> Result<(), String> {
    let a = Args::parse();
    let http = reqwest::Client::new();
    let me = identity(&http, &a).await?;
    let token = Some(me.token.as_str());
    println!("Trying to uninstall the SASE App…");
    let check = call(
        &http,
        &a,
        token,
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
        token,
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
            token,
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
    let grant: SignedGrant =
        serde_json::from_value(request["grant"].clone()).map_err(|e| format!("grant: {e}"))?;
    if a.confirm {
        println!(
            "Approved: grant {}. Press Enter to uninstall now.",
            grant.grant.id
        );
        let mut line = String::new();
        tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("standard input: {e}"))?;
    }
    // Check the grant as the agent on the laptop must: the pinned keys and its own identity
    // come from its configuration, the used record from its file; the server is asked only
    // to consume the grant.
    let config = AgentConfig::new(
        me.grant_keys.clone(),
        UserId::new(&me.user),
        DeviceId::new(&a.device),
        a.used_grants.clone(),
    )
    .offline_window(Duration::from_secs(a.offline_window_secs));
    let mut agent = AgentVerifier::new(config).map_err(|e| e.to_string())?;
    let consume = HttpConsume::new(&a.server, &me.token).map_err(|e| e.to_string())?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
    // `authorize` blocks on the consume call: off the async runtime's threads.
    let checked = tokio::task::spawn_blocking(move || {
        agent
            .authorize(&grant, Action::Uninstall, now, &consume)
            .map(|how| (how, grant))
    })
    .await
    .map_err(|e| e.to_string())?;
    match checked {
        Ok((Authorization::Online, grant)) => println!(
            "Approved: grant {} verified with the pinned key and consumed online; uninstall may proceed.",
            grant.grant.id
        ),
        Ok((Authorization::Offline { unreachable }, grant)) => println!(
            "Approved: grant {} verified with the pinned key, but the server could not be reached ({unreachable}): \
             revocation was NOT checked (accepted within the offline window); uninstall may proceed.",
            grant.grant.id
        ),
        Ok((how, grant)) => println!("Approved: grant {} accepted ({how:?}); uninstall may proceed.", grant.grant.id),
        Err(e @ AgentError::Record { .. }) => return Err(e.to_string()),
        Err(e) => println!("Approved, but the grant is refused ({e}): uninstall may not proceed."),
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
        let key = sase_policy::GrantSigner::from_bytes(&[5; 32]).verifier().to_hex();
        let other = sase_policy::GrantSigner::from_bytes(&[6; 32]).verifier().to_hex();
        let identity = ["--user", "u-1", "--device", "d-1"];
        let with = |extra: &[&str]| {
            let mut flags = vec!["--token", "t", "--grant-key", key.as_str()];
            flags.extend(identity);
            flags.extend(extra);
            parse(&flags)
        };
        assert!(
            parse(&["--device", "d-1"]).is_err(),
            "--token (or --enroll-code) is required"
        );
        assert!(parse(&["--token"]).is_err(), "a flag needs its value");
        let mut no_key = vec!["--token", "t"];
        no_key.extend(identity);
        assert!(parse(&no_key).is_err(), "--grant-key is required");
        assert!(
            parse(&["--token", "t", "--grant-key", key.as_str(), "--device", "d-1"]).is_err(),
            "--user is required"
        );
        assert!(
            parse(&["--token", "t", "--grant-key", key.as_str(), "--user", "u-1"]).is_err(),
            "--device is required"
        );
        assert!(with(&["--grant-key", "not-hex"]).is_err(), "a bad key is refused");
        assert!(with(&["--colour", "red"]).is_err(), "unknown flags are refused");
        let a = with(&["--wait-secs", "5"]).unwrap();
        assert_eq!(
            (a.token.as_deref(), a.wait_secs, a.locale.as_str()),
            (Some("t"), 5, "zh-CN")
        );
        assert_eq!((a.user.as_deref(), a.device.as_str()), (Some("u-1"), "d-1"));
        let enrolling = parse(&["--enroll-code", "c", "--device", "d-1"]).unwrap();
        assert_eq!(
            (enrolling.enroll_code.as_deref(), enrolling.token),
            (Some("c"), None)
        );
        assert!(
            enrolling.grant_keys.is_empty(),
            "the keys come from the enrollment"
        );
        assert!(
            parse(&["--enroll-code", "c", "--token", "t", "--device", "d-1"]).is_err(),
            "a token or a code, not both"
        );
        assert_eq!(a.used_grants, std::path::Path::new("sase-agent-used-grants.json"));
        assert_eq!(a.offline_window_secs, 300);
        assert_eq!(a.grant_keys.len(), 1);
        let a = with(&["--grant-key", other.as_str(), "--used-grants", "/tmp/used.json"]).unwrap();
        assert_eq!(
            a.grant_keys
                .iter()
                .map(sase_policy::GrantVerifier::to_hex)
                .collect::<Vec<_>>(),
            [key.clone(), other],
            "--grant-key repeats, in order"
        );
        assert_eq!(a.used_grants, std::path::Path::new("/tmp/used.json"));
        let help = Args::command().render_help().to_string();
        for flag in [
            "--server",
            "--token",
            "--enroll-code",
            "--grant-key",
            "--user",
            "--device",
            "--used-grants",
            "--locale",
            "--reason",
            "--wait-secs",
        ] {
            assert!(help.contains(flag), "--help mentions {flag}: {help}");
        }
        assert!(
            help.contains("enrollment") && help.contains("never fetched from the server"),
            "--help says where the key comes from: {help}"
        );
    }
}
