//! `AgentVerifier::authorize` against an in-process server fake: pinned keys, the agent's own
//! identity, the online step, the offline window, and the used record across restarts.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected value"
)]

use sase_agent::{
    Action, AgentConfig, AgentError, AgentVerifier, Authorization, Consume, ConsumeOutcome, DeviceId,
    GrantVerifier, SignedGrant, UserId,
};
use sase_policy::ids::GrantId;
use sase_policy::{Grant, GrantSigner};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

const NOW: i64 = 1_700_000_000_000;
const MINUTE: i64 = 60_000;

fn server_key() -> GrantSigner {
    GrantSigner::from_bytes(&[11; 32])
}

fn forged_key() -> GrantSigner {
    GrantSigner::from_bytes(&[66; 32])
}

fn grant_for(signer: &GrantSigner, id: &str, user: &str, device: &str, issued_at_ms: i64) -> SignedGrant {
    signer.sign(Grant {
        id: GrantId::new(id),
        user: UserId::new(user),
        device: DeviceId::new(device),
        action: Action::Uninstall,
        issued_at_ms,
        expires_at_ms: issued_at_ms + 15 * MINUTE,
        request_id: Some("req-1".into()),
    })
}

/// Our own grant, issued now by the real server key.
fn own_grant(id: &str) -> SignedGrant {
    grant_for(&server_key(), id, "alice", "laptop-1", NOW)
}

fn config(path: &Path, keys: Vec<GrantVerifier>) -> AgentConfig {
    AgentConfig::new(keys, UserId::new("alice"), DeviceId::new("laptop-1"), path)
}

fn agent(path: &Path) -> AgentVerifier {
    AgentVerifier::new(config(path, vec![server_key().verifier()])).unwrap()
}

/// A server fake: answers one outcome and counts the calls it got.
struct Fake {
    answer: ConsumeOutcome,
    calls: RefCell<Vec<GrantId>>,
}

impl Fake {
    fn new(answer: ConsumeOutcome) -> Self {
        Self {
            answer,
            calls: RefCell::new(Vec::new()),
        }
    }
    fn calls(&self) -> usize {
        self.calls.borrow().len()
    }
}

impl Consume for Fake {
    fn consume(&self, grant: &SignedGrant) -> ConsumeOutcome {
        self.calls.borrow_mut().push(grant.grant.id.clone());
        self.answer.clone()
    }
}

fn online() -> Fake {
    Fake::new(ConsumeOutcome::Consumed)
}

fn down() -> Fake {
    Fake::new(ConsumeOutcome::Unreachable("connection refused".into()))
}

fn record(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("used-grants.json")
}

#[test]
fn a_genuine_grant_for_this_device_is_consumed_online() {
    let dir = tempfile::tempdir().unwrap();
    let server = online();
    let mut agent = agent(&record(&dir));
    assert_eq!(
        agent.authorize(&own_grant("g-1"), Action::Uninstall, NOW + MINUTE, &server),
        Ok(Authorization::Online)
    );
    assert_eq!(server.calls(), 1);
    assert_eq!(agent.used_count(), 1);
}

#[test]
fn a_grant_signed_by_a_forged_key_is_refused_even_with_that_key_offered() {
    let dir = tempfile::tempdir().unwrap();
    let server = online();
    let mut agent = agent(&record(&dir));
    // The man in the middle serves its own key and a grant signed with it; the agent's
    // pinned key is the real one, so what the "server" offers does not matter.
    let forged = grant_for(&forged_key(), "g-forged", "alice", "laptop-1", NOW);
    let offered_key = GrantVerifier::from_hex(&forged_key().verifier().to_hex()).unwrap();
    assert_ne!(offered_key, server_key().verifier());
    assert_eq!(
        agent.authorize(&forged, Action::Uninstall, NOW, &server),
        Err(AgentError::BadSignature)
    );
    assert_eq!(server.calls(), 0, "a forged grant never reaches the online step");

    // A genuine grant whose fields were altered does not verify either.
    let mut altered = own_grant("g-2");
    altered.grant.expires_at_ms += 60 * MINUTE;
    assert_eq!(
        agent.authorize(&altered, Action::Uninstall, NOW, &server),
        Err(AgentError::BadSignature)
    );
    // Nor does garbage in the signature.
    let mut garbage = own_grant("g-3");
    garbage.signature = "zz".into();
    assert_eq!(
        agent.authorize(&garbage, Action::Uninstall, NOW, &server),
        Err(AgentError::BadSignature)
    );
}

#[test]
fn any_pinned_key_verifies_after_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let new_key = GrantSigner::from_bytes(&[12; 32]);
    let mut agent = AgentVerifier::new(config(
        &record(&dir),
        vec![new_key.verifier(), server_key().verifier()],
    ))
    .unwrap();
    let by_old = own_grant("g-old");
    let by_new = grant_for(&new_key, "g-new", "alice", "laptop-1", NOW);
    assert_eq!(
        agent.authorize(&by_old, Action::Uninstall, NOW, &online()),
        Ok(Authorization::Online)
    );
    assert_eq!(
        agent.authorize(&by_new, Action::Uninstall, NOW, &online()),
        Ok(Authorization::Online)
    );
}

#[test]
fn another_devices_or_users_genuine_grant_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = online();
    let mut agent = agent(&record(&dir));
    let other_device = grant_for(&server_key(), "g-d", "alice", "laptop-2", NOW);
    let other_user = grant_for(&server_key(), "g-u", "bob", "laptop-1", NOW);
    assert_eq!(
        agent.authorize(&other_device, Action::Uninstall, NOW, &server),
        Err(AgentError::Foreign { field: "device" })
    );
    // Twice: a foreign grant is not half-accepted the second time either.
    assert_eq!(
        agent.authorize(&other_device, Action::Uninstall, NOW, &server),
        Err(AgentError::Foreign { field: "device" })
    );
    assert_eq!(
        agent.authorize(&other_user, Action::Uninstall, NOW, &server),
        Err(AgentError::Foreign { field: "user" })
    );
    // Our own grant, for another action.
    assert_eq!(
        agent.authorize(&own_grant("g-a"), Action::Logoff, NOW, &server),
        Err(AgentError::Foreign { field: "action" })
    );
    assert_eq!(server.calls(), 0);
}

#[test]
fn an_expired_grant_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = online();
    let mut agent = agent(&record(&dir));
    let g = own_grant("g-1");
    assert_eq!(
        agent.authorize(&g, Action::Uninstall, g.grant.expires_at_ms, &server),
        Err(AgentError::Expired {
            expires_at_ms: g.grant.expires_at_ms,
            now_ms: g.grant.expires_at_ms
        })
    );
    assert_eq!(server.calls(), 0);
}

#[test]
fn a_used_grant_is_refused_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = record(&dir);
    let server = online();
    let g = own_grant("g-1");
    {
        let mut agent = agent(&path);
        assert_eq!(
            agent.authorize(&g, Action::Uninstall, NOW, &server),
            Ok(Authorization::Online)
        );
        assert_eq!(
            agent.authorize(&g, Action::Uninstall, NOW, &server),
            Err(AgentError::Used {
                id: GrantId::new("g-1")
            })
        );
    }
    // The agent restarts: a new verifier from the same record file.
    let mut restarted = agent(&path);
    assert_eq!(restarted.used_count(), 1);
    assert_eq!(
        restarted.authorize(&g, Action::Uninstall, NOW + 1, &server),
        Err(AgentError::Used {
            id: GrantId::new("g-1")
        })
    );
    // Also when the server cannot be reached (the offline path checks the record too).
    assert_eq!(
        restarted.authorize(&g, Action::Uninstall, NOW + 1, &down()),
        Err(AgentError::Used {
            id: GrantId::new("g-1")
        })
    );
    assert_eq!(
        server.calls(),
        1,
        "a used grant is refused before the online step"
    );
    // Another grant still passes.
    assert_eq!(
        restarted.authorize(&own_grant("g-2"), Action::Uninstall, NOW + 1, &server),
        Ok(Authorization::Online)
    );
}

#[test]
fn a_revoked_grant_is_refused_and_cannot_pass_offline_later() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = agent(&record(&dir));
    let g = own_grant("g-1");
    let revoked = Fake::new(ConsumeOutcome::Refused("grant_revoked".into()));
    assert_eq!(
        agent.authorize(&g, Action::Uninstall, NOW, &revoked),
        Err(AgentError::Refused {
            reason: "grant_revoked".into()
        })
    );
    // The network is then cut, within the offline window: still refused.
    assert_eq!(
        agent.authorize(&g, Action::Uninstall, NOW + 1, &down()),
        Err(AgentError::Used {
            id: GrantId::new("g-1")
        })
    );
}

#[test]
fn a_grant_the_server_says_is_used_is_recorded_as_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = record(&dir);
    let g = own_grant("g-1");
    let used = Fake::new(ConsumeOutcome::Refused("grant_used".into()));
    assert_eq!(
        agent(&path).authorize(&g, Action::Uninstall, NOW, &used),
        Err(AgentError::Refused {
            reason: "grant_used".into()
        })
    );
    assert_eq!(
        agent(&path).authorize(&g, Action::Uninstall, NOW, &down()),
        Err(AgentError::Used {
            id: GrantId::new("g-1")
        })
    );
}

#[test]
fn an_unauthorized_device_token_does_not_burn_the_grant() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = agent(&record(&dir));
    let g = own_grant("g-1");
    let unauthorized = Fake::new(ConsumeOutcome::Refused("unauthorized".into()));
    assert_eq!(
        agent.authorize(&g, Action::Uninstall, NOW, &unauthorized),
        Err(AgentError::Refused {
            reason: "unauthorized".into()
        })
    );
    assert_eq!(agent.used_count(), 0);
    // Once the token is fixed, the grant is consumed.
    assert_eq!(
        agent.authorize(&g, Action::Uninstall, NOW, &online()),
        Ok(Authorization::Online)
    );
}

#[test]
fn offline_fallback_within_the_window_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = record(&dir);
    let mut agent = AgentVerifier::new(
        config(&path, vec![server_key().verifier()]).offline_window(Duration::from_secs(5 * 60)),
    )
    .unwrap();
    // Exactly at the edge of the window: allowed, and recorded before returning.
    let g = own_grant("g-1");
    assert_eq!(
        agent.authorize(&g, Action::Uninstall, NOW + 5 * MINUTE, &down()),
        Ok(Authorization::Offline {
            unreachable: "connection refused".into()
        })
    );
    assert!(std::fs::read_to_string(&path).unwrap().contains("g-1"));
    assert_eq!(
        agent.authorize(&g, Action::Uninstall, NOW + 5 * MINUTE, &down()),
        Err(AgentError::Used {
            id: GrantId::new("g-1")
        })
    );
    // One millisecond past it: refused, and not recorded (it may still be consumed online).
    let g2 = own_grant("g-2");
    assert_eq!(
        agent.authorize(&g2, Action::Uninstall, NOW + 5 * MINUTE + 1, &down()),
        Err(AgentError::OfflineTooOld {
            unreachable: "connection refused".into(),
            age_ms: 5 * MINUTE + 1,
            window: Duration::from_secs(5 * 60),
        })
    );
    assert_eq!(
        agent.authorize(&g2, Action::Uninstall, NOW + 5 * MINUTE + 1, &online()),
        Ok(Authorization::Online)
    );
}

#[test]
fn the_default_offline_window_is_five_minutes_and_zero_disables_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut default = agent(&record(&dir));
    assert!(matches!(
        default.authorize(&own_grant("g-1"), Action::Uninstall, NOW + 6 * MINUTE, &down()),
        Err(AgentError::OfflineTooOld { .. })
    ));
    assert!(default
        .authorize(&own_grant("g-2"), Action::Uninstall, NOW + 4 * MINUTE, &down())
        .unwrap()
        .is_offline());
    let dir = tempfile::tempdir().unwrap();
    let mut strict = AgentVerifier::new(
        config(&record(&dir), vec![server_key().verifier()]).offline_window(Duration::ZERO),
    )
    .unwrap();
    assert!(matches!(
        strict.authorize(&own_grant("g-3"), Action::Uninstall, NOW + 1, &down()),
        Err(AgentError::OfflineTooOld { .. })
    ));
}

#[test]
fn a_corrupt_record_file_is_an_error_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = record(&dir);
    for corrupt in [
        "",
        "{",
        "[]",
        r#"{"version":1,"used":[{"id":"g"}]}"#,
        "not json at all",
    ] {
        std::fs::write(&path, corrupt).unwrap();
        let err = AgentVerifier::new(config(&path, vec![server_key().verifier()])).unwrap_err();
        assert!(
            matches!(&err, AgentError::Record { path: p, .. } if *p == path),
            "{corrupt:?}: {err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), corrupt, "never reset");
    }
}

#[test]
fn an_unwritable_record_refuses_even_a_consumed_grant() {
    let dir = tempfile::tempdir().unwrap();
    // The record's directory does not exist, so the record cannot be written.
    let path = dir.path().join("missing-dir").join("used.json");
    let mut agent = agent(&path);
    let g = own_grant("g-1");
    assert!(matches!(
        agent.authorize(&g, Action::Uninstall, NOW, &online()),
        Err(AgentError::Record { .. })
    ));
    // In memory it is used all the same.
    assert_eq!(
        agent.authorize(&g, Action::Uninstall, NOW, &online()),
        Err(AgentError::Used {
            id: GrantId::new("g-1")
        })
    );
}

#[test]
fn at_least_one_pinned_key_is_required() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        AgentVerifier::new(config(&record(&dir), Vec::new())),
        Err(AgentError::Config { .. })
    ));
}
