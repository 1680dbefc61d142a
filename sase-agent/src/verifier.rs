//! The agent-side verifier: pinned keys, the agent's own identity, the persistent used
//! record, the online step and the bounded offline fallback.

use crate::consume::{Consume, ConsumeOutcome};
use crate::error::AgentError;
use crate::record::UsedRecord;
use sase_policy::ids::{DeviceId, UserId};
use sase_policy::{Action, Error as PolicyError, Grant, GrantVerifier, SignedGrant};
use std::path::PathBuf;
use std::time::Duration;

/// How long after issue a grant may be accepted without the server's word: 5 minutes.
pub const DEFAULT_OFFLINE_WINDOW: Duration = Duration::from_secs(5 * 60);

/// What an [`AgentVerifier`] is built from: all of it comes from the agent's own
/// configuration (enrollment), none from the server at verification time.
///
/// ```
/// use sase_agent::{AgentConfig, DeviceId, GrantVerifier, UserId};
/// use std::time::Duration;
///
/// let key = GrantVerifier::from_hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")?;
/// let config = AgentConfig::new(vec![key], UserId::new("u-1"), DeviceId::new("d-1"), "used-grants.json")
///     .offline_window(Duration::from_secs(120));
/// assert_eq!(config.offline_window, Duration::from_secs(120));
/// # Ok::<(), sase_policy::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AgentConfig {
    /// The server's verifying keys, pinned at enrollment (after a key rotation, the old and
    /// the new one). At least one.
    pub keys: Vec<GrantVerifier>,
    /// This agent's user.
    pub user: UserId,
    /// This agent's device.
    pub device: DeviceId,
    /// The persistent record of used grants (created on first use).
    pub used_grants: PathBuf,
    /// How long after issue a grant may be accepted when the server cannot be reached
    /// ([`DEFAULT_OFFLINE_WINDOW`] unless set).
    pub offline_window: Duration,
}

impl AgentConfig {
    /// A configuration with the default offline window.
    ///
    /// ```
    /// use sase_agent::{AgentConfig, DeviceId, UserId, DEFAULT_OFFLINE_WINDOW};
    ///
    /// let config = AgentConfig::new(Vec::new(), UserId::new("u-1"), DeviceId::new("d-1"), "used.json");
    /// assert_eq!(config.offline_window, DEFAULT_OFFLINE_WINDOW);
    /// ```
    pub fn new(
        keys: Vec<GrantVerifier>,
        user: UserId,
        device: DeviceId,
        used_grants: impl Into<PathBuf>,
    ) -> Self {
        Self {
            keys,
            user,
            device,
            used_grants: used_grants.into(),
            offline_window: DEFAULT_OFFLINE_WINDOW,
        }
    }

    /// Sets the offline window.
    ///
    /// ```
    /// use sase_agent::{AgentConfig, DeviceId, UserId};
    /// use std::time::Duration;
    ///
    /// // No offline fallback at all: every grant needs the server.
    /// let config = AgentConfig::new(Vec::new(), UserId::new("u"), DeviceId::new("d"), "used.json")
    ///     .offline_window(Duration::ZERO);
    /// assert_eq!(config.offline_window, Duration::ZERO);
    /// ```
    #[must_use]
    pub fn offline_window(mut self, window: Duration) -> Self {
        self.offline_window = window;
        self
    }
}

/// How a grant was authorized.
///
/// ```
/// use sase_agent::Authorization;
///
/// let a = Authorization::Offline { unreachable: "connection refused".into() };
/// assert!(a.is_offline());
/// assert!(!Authorization::Online.is_offline());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Authorization {
    /// The server consumed the grant: it was not revoked, and is now used.
    Online,
    /// The server could not be reached and the grant is within the offline window. Its
    /// revocation could not be checked: log it.
    Offline {
        /// Why the server could not be reached.
        unreachable: String,
    },
}

impl Authorization {
    /// Whether revocation could not be checked.
    ///
    /// ```
    /// assert!(!sase_agent::Authorization::Online.is_offline());
    /// ```
    pub fn is_offline(&self) -> bool {
        matches!(self, Authorization::Offline { .. })
    }
}

/// Decides whether a grant lets this agent take an action; see the [crate] docs for the
/// rules. One verifier owns its record file: do not share the file between processes.
///
/// ```
/// use sase_agent::{AgentConfig, AgentError, AgentVerifier, DeviceId, UserId};
///
/// // At least one pinned key is required.
/// let config = AgentConfig::new(Vec::new(), UserId::new("u-1"), DeviceId::new("d-1"), "never-written.json");
/// assert!(matches!(AgentVerifier::new(config), Err(AgentError::Config { .. })));
/// ```
#[derive(Debug)]
pub struct AgentVerifier {
    keys: Vec<GrantVerifier>,
    user: UserId,
    device: DeviceId,
    offline_window_ms: i64,
    record: UsedRecord,
}

impl AgentVerifier {
    /// A verifier, reading the used record from its file (a missing file is an empty record).
    ///
    /// # Errors
    /// [`AgentError::Config`] without a pinned key; [`AgentError::Record`] when the record
    /// file cannot be read or is corrupt (it is never silently emptied).
    ///
    /// ```no_run
    /// use sase_agent::{AgentConfig, AgentVerifier, DeviceId, GrantVerifier, UserId};
    ///
    /// let key = GrantVerifier::from_hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")?;
    /// let agent = AgentVerifier::new(AgentConfig::new(
    ///     vec![key],
    ///     UserId::new("u-1"),
    ///     DeviceId::new("d-1"),
    ///     "/var/lib/sase-agent/used-grants.json",
    /// ))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(config: AgentConfig) -> Result<Self, AgentError> {
        if config.keys.is_empty() {
            return Err(AgentError::Config {
                reason: "at least one pinned grant key is required".into(),
            });
        }
        Ok(Self {
            keys: config.keys,
            user: config.user,
            device: config.device,
            offline_window_ms: i64::try_from(config.offline_window.as_millis()).unwrap_or(i64::MAX),
            record: UsedRecord::open(config.used_grants)?,
        })
    }

    /// How many grant ids the used record holds.
    ///
    /// ```
    /// # use sase_agent::{AgentConfig, AgentVerifier, DeviceId, GrantVerifier, UserId};
    /// # let key = GrantVerifier::from_hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")?;
    /// let agent = AgentVerifier::new(AgentConfig::new(vec![key], UserId::new("u"), DeviceId::new("d"), "absent.json"))?;
    /// assert_eq!(agent.used_count(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn used_count(&self) -> usize {
        self.record.len()
    }

    /// The used record's file.
    ///
    /// ```
    /// # use sase_agent::{AgentConfig, AgentVerifier, DeviceId, GrantVerifier, UserId};
    /// # let key = GrantVerifier::from_hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")?;
    /// let agent = AgentVerifier::new(AgentConfig::new(vec![key], UserId::new("u"), DeviceId::new("d"), "absent.json"))?;
    /// assert_eq!(agent.used_grants_path(), std::path::Path::new("absent.json"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn used_grants_path(&self) -> &std::path::Path {
        self.record.path()
    }

    /// Whether `grant` lets this agent take `action` at `now_ms` (Unix ms):
    ///
    /// 1. its signature verifies with one of the pinned keys;
    /// 2. it is for this agent's own user and device, and for `action`;
    /// 3. it has not expired;
    /// 4. it is not in the used record;
    /// 5. `server` consumes it: [`Authorization::Online`]. If the server cannot be reached,
    ///    it is accepted only within the offline window after issue:
    ///    [`Authorization::Offline`].
    ///
    /// An accepted grant is recorded as used, in the file, before this returns. A grant the
    /// server refuses as such (a `grant_…` code: revoked, used, expired, …) is recorded too,
    /// so that it cannot pass an offline fallback later.
    ///
    /// # Errors
    /// [`AgentError::BadSignature`], [`AgentError::Foreign`], [`AgentError::Expired`],
    /// [`AgentError::Used`], [`AgentError::Refused`], [`AgentError::OfflineTooOld`], or
    /// [`AgentError::Record`] when the record cannot be written (the action may then not
    /// proceed, even if the server consumed the grant).
    ///
    /// ```
    /// # use sase_agent::{Action, AgentConfig, AgentError, AgentVerifier, Consume, ConsumeOutcome, DeviceId, SignedGrant, UserId};
    /// # use sase_policy::{Grant, GrantSigner, ids::GrantId};
    /// struct Revoked;
    /// impl Consume for Revoked {
    ///     fn consume(&self, _: &SignedGrant) -> ConsumeOutcome {
    ///         ConsumeOutcome::Refused("grant_revoked".into())
    ///     }
    /// }
    /// # let signer = GrantSigner::from_bytes(&[1; 32]);
    /// # let grant = signer.sign(Grant { id: GrantId::new("g"), user: UserId::new("u"), device: DeviceId::new("d"),
    /// #     action: Action::Uninstall, issued_at_ms: 0, expires_at_ms: 60_000, request_id: None });
    /// # let dir = std::env::temp_dir().join(format!("sase-agent-doc-revoked-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// # let path = dir.join("used.json");
    /// # let _ = std::fs::remove_file(&path);
    /// let mut agent = AgentVerifier::new(AgentConfig::new(vec![signer.verifier()], UserId::new("u"), DeviceId::new("d"), &path))?;
    /// assert_eq!(
    ///     agent.authorize(&grant, Action::Uninstall, 1_000, &Revoked),
    ///     Err(AgentError::Refused { reason: "grant_revoked".into() })
    /// );
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn authorize(
        &mut self,
        grant: &SignedGrant,
        action: Action,
        now_ms: i64,
        server: &dyn Consume,
    ) -> Result<Authorization, AgentError> {
        let g = self.verify_offline(grant, action, now_ms)?;
        let outcome = server.consume(grant);
        let grant_refused = outcome.is_grant_refusal();
        match outcome {
            ConsumeOutcome::Consumed => {
                self.record.insert(g.id.clone(), g.expires_at_ms, now_ms)?;
                Ok(Authorization::Online)
            }
            ConsumeOutcome::Refused(reason) => {
                if grant_refused {
                    self.record.insert(g.id.clone(), g.expires_at_ms, now_ms)?;
                }
                Err(AgentError::Refused { reason })
            }
            ConsumeOutcome::Unreachable(unreachable) => {
                let age_ms = now_ms.saturating_sub(g.issued_at_ms);
                if age_ms > self.offline_window_ms {
                    return Err(AgentError::OfflineTooOld {
                        unreachable,
                        age_ms,
                        window: Duration::from_millis(u64::try_from(self.offline_window_ms).unwrap_or(0)),
                    });
                }
                self.record.insert(g.id.clone(), g.expires_at_ms, now_ms)?;
                Ok(Authorization::Offline { unreachable })
            }
        }
    }

    /// Steps 1–4: the first pinned key the signature verifies with decides; a grant no
    /// pinned key verifies is [`AgentError::BadSignature`].
    fn verify_offline<'g>(
        &self,
        grant: &'g SignedGrant,
        action: Action,
        now_ms: i64,
    ) -> Result<&'g Grant, AgentError> {
        for key in &self.keys {
            match key.verify(grant, &self.user, &self.device, action, now_ms, &self.record) {
                Ok(g) => return Ok(g),
                Err(PolicyError::GrantForeign { field }) => return Err(AgentError::Foreign { field }),
                Err(PolicyError::GrantExpired { expires_at, now }) => {
                    return Err(AgentError::Expired {
                        expires_at_ms: expires_at,
                        now_ms: now,
                    })
                }
                Err(PolicyError::GrantUsed { .. }) => {
                    return Err(AgentError::Used {
                        id: grant.grant.id.clone(),
                    })
                }
                // A bad signature (or anything else): not this key; try the next.
                Err(_) => {}
            }
        }
        Err(AgentError::BadSignature)
    }
}
