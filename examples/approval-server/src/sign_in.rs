//! Enrollment by signing in with DingTalk: the agent starts an attempt and shows the sign-in
//! URL (a QR code on the phone, or the browser); DingTalk sends the browser back to our
//! redirect URI with a code; we exchange it once, learn who signed in (`users/me`, then the
//! organisation's user id and departments), check they belong to the configured
//! organisation, and ask them to confirm the device by its name; then the waiting agent
//! collects its device token.
//!
//! The confirmation is what keeps a sign-in link from enrolling someone else's device: anyone
//! can start an attempt and send its link to an employee; signed in, the employee sees which
//! device would become theirs and enrolls it only if they started it (the device
//! authorization grant's remote-phishing advice, RFC 8628 section 5.4).
//!
//! An attempt is one document (kind `sign_in`) whose id is the hash of the agent's secret and
//! whose lookup is the hash of the `state` given to DingTalk, then of the confirmation's
//! secret: each is single-use (taken off before it is acted on) and expires with the attempt;
//! the device token is made only when the agent collects it, so nothing secret is stored.

use crate::devices::{self, Device, Devices, Owner};
use crate::directory::Directory;
use dingtalk_sdk::client::DingTalkClient;
use dingtalk_sdk::oauth::{AuthorizeUrl, Redirect, RedirectError, Scope};
use dingtalk_sdk::ErrorKind;
use sase_approval::clock::Clock;
use sase_approval::store::{ApprovalStore, Document};
use sase_approval::Error as StoreError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const KIND: &str = "sign_in";
/// How long an attempt waits for its sign-in and its agent.
pub(crate) const ATTEMPT_TTL_MS: i64 = 10 * 60 * 1000;
/// The redirect URI's path, on the server's public URL.
pub(crate) const REDIRECT_PATH: &str = "/dingtalk/sign-in";

/// What came of an attempt's sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum Outcome {
    /// Signed in; the employee has not confirmed the device yet.
    Confirming {
        user_id: String,
        name: String,
        departments: Vec<String>,
    },
    /// Signed in and the device confirmed.
    SignedIn {
        user_id: String,
        name: String,
        departments: Vec<String>,
    },
    Refused {
        reason: String,
    },
}

/// An attempt, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Attempt {
    device_id: String,
    created_at_ms: i64,
    expires_at_ms: i64,
    #[serde(default)]
    outcome: Option<Outcome>,
}

/// A started attempt: what the agent keeps and shows.
#[derive(Debug)]
pub(crate) struct Started {
    /// The agent's secret for collecting the outcome.
    pub(crate) attempt: String,
    /// The DingTalk sign-in page.
    pub(crate) url: String,
    pub(crate) expires_at_ms: i64,
}

/// Signed in: who, and the device to confirm with the secret of the confirmation form.
#[derive(Debug)]
pub(crate) struct ToConfirm {
    pub(crate) user_id: String,
    pub(crate) name: String,
    pub(crate) device_id: String,
    /// The confirmation's secret, single-use, carried by the confirmation form.
    pub(crate) confirm: String,
}

/// A device enrolled as its employee's once the agent collects it.
#[derive(Debug)]
pub(crate) struct Confirmed {
    pub(crate) user_id: String,
    pub(crate) name: String,
    pub(crate) device_id: String,
}

/// Why a sign-in is refused, in words the person at the browser (and the agent) can act on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SignInError {
    /// Not DingTalk's redirect, or the user declined.
    #[error("the sign-in did not complete: {0}")]
    Redirect(#[from] RedirectError),
    /// The state is not one we issued, or was used already (a replayed or forged redirect).
    #[error("this sign-in link is not valid or was used already: start again from the SASE App")]
    UnknownState,
    /// The attempt expired before the sign-in.
    #[error("this sign-in expired: start again from the SASE App")]
    Expired,
    /// DingTalk refused the code (used already, or expired).
    #[error("DingTalk refused the sign-in code (used already or expired): start again from the SASE App")]
    CodeRefused,
    /// The account belongs to another organisation.
    #[error(
        "you signed in with an account of another organisation ({corp}): sign in with your work account"
    )]
    ForeignCorp { corp: String },
    /// The organisation's directory has no such user.
    #[error("your DingTalk account is not in the organisation's directory")]
    NotInDirectory,
    /// The employee signed in but did not enroll the device.
    #[error("the device was not enrolled: the employee who signed in did not confirm it")]
    NotConfirmed,
    /// DingTalk failed.
    #[error("DingTalk could not be asked: {0}")]
    DingTalk(dingtalk_sdk::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What collecting an attempt answers.
#[derive(Debug)]
pub(crate) enum Collected {
    /// Not signed in, or the device not confirmed, yet.
    Waiting,
    /// Enrolled: the device token (shown this once) and the device.
    Enrolled(String, Device),
    /// The sign-in was refused.
    Refused(String),
    /// No such attempt (or expired, or collected already).
    Unknown,
}

/// Sign-in enrollment with the directory's DingTalk app.
#[derive(Clone)]
pub(crate) struct SignIn(Arc<Inner>);

struct Inner {
    client_id: String,
    client: DingTalkClient,
    corp_id: String,
    login_base: Option<String>,
    redirect_uri: String,
    max_waiting: usize,
    store: Arc<dyn ApprovalStore>,
    clock: Arc<dyn Clock>,
    devices: Devices,
    directory: Directory,
}

/// What sign-in needs.
pub(crate) struct Parts {
    pub(crate) client_id: String,
    pub(crate) client: DingTalkClient,
    pub(crate) corp_id: String,
    pub(crate) login_base: Option<String>,
    /// The server's public URL: the redirect URI is on it.
    pub(crate) public_url: String,
    /// How many attempts may wait at once.
    pub(crate) max_waiting: usize,
    pub(crate) store: Arc<dyn ApprovalStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) devices: Devices,
    pub(crate) directory: Directory,
}

impl SignIn {
    pub(crate) fn new(parts: Parts) -> Self {
        Self(Arc::new(Inner {
            client_id: parts.client_id,
            client: parts.client,
            corp_id: parts.corp_id,
            login_base: parts.login_base,
            redirect_uri: format!("{}{REDIRECT_PATH}", parts.public_url.trim_end_matches('/')),
            max_waiting: parts.max_waiting,
            store: parts.store,
            clock: parts.clock,
            devices: parts.devices,
            directory: parts.directory,
        }))
    }

    /// The redirect URI to register with the DingTalk app.
    pub(crate) fn redirect_uri(&self) -> &str {
        &self.0.redirect_uri
    }

    /// Starts an attempt for `device_id`: its secret and the sign-in URL; `None` while
    /// [`max_waiting`](Parts::max_waiting) attempts wait already (anyone may start one: this
    /// bounds what a flood of starts stores).
    pub(crate) async fn start(&self, device_id: &str) -> Result<Option<Started>, StoreError> {
        let now = self.0.clock.now_ms();
        if self.prune(now).await? >= self.0.max_waiting {
            return Ok(None);
        }
        let (attempt, state) = (devices::secret(), devices::secret());
        let record = Attempt {
            device_id: device_id.to_owned(),
            created_at_ms: now,
            expires_at_ms: now.saturating_add(ATTEMPT_TTL_MS),
            outcome: None,
        };
        let document = Document::new(KIND, devices::hash(&attempt), 0, devices::body(&record)?)
            .lookup(devices::hash(&state))
            .at(now);
        self.0.store.put_document(&document).await?;
        let mut url = AuthorizeUrl::new(&self.0.client_id, &self.0.redirect_uri)
            .scope(Scope::OpenidCorpid)
            .corp_id(&self.0.corp_id)
            .state(state);
        if let Some(base) = &self.0.login_base {
            url = url.login_base(base);
        }
        Ok(Some(Started {
            attempt,
            url: url.to_string(),
            expires_at_ms: record.expires_at_ms,
        }))
    }

    /// Expired attempts are deleted (each start looks), so abandoned ones do not pile up; the
    /// attempts still waiting.
    async fn prune(&self, now: i64) -> Result<usize, StoreError> {
        let mut waiting = 0;
        for document in self.0.store.list_documents(KIND).await? {
            let attempt: Attempt = devices::decode(&document)?;
            if attempt.expires_at_ms > now {
                waiting += 1;
            } else {
                match self
                    .0
                    .store
                    .delete_document(KIND, &document.id, document.version)
                    .await
                {
                    Ok(()) | Err(StoreError::Conflict { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(waiting)
    }

    /// DingTalk sent the browser back with `query` (`authCode`, `state`): the attempt's state
    /// is taken off (single use), the code exchanged, the user found in the organisation; the
    /// attempt records who signed in (to be confirmed, [`confirmed`](Self::confirmed)), or
    /// why not.
    pub(crate) async fn redirected(&self, query: &str) -> Result<ToConfirm, SignInError> {
        // The attempt first, by its state: a redirect without a code (the employee declined)
        // still tells its waiting agent at once.
        let state = form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
            .find(|(key, _)| key == "state")
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default();
        let document = match self.0.store.find_document(KIND, &devices::hash(&state)).await? {
            Some(d) => d,
            None => return Err(SignInError::UnknownState),
        };
        let mut attempt: Attempt = devices::decode(&document)?;
        // The state is used now, whatever follows: a replayed redirect finds nothing.
        let taken = Document::new(KIND, &document.id, document.version, devices::body(&attempt)?)
            .at(self.0.clock.now_ms());
        let version = match self.0.store.put_document(&taken).await {
            Ok(version) => version,
            Err(StoreError::Conflict { .. }) => return Err(SignInError::UnknownState),
            Err(e) => return Err(e.into()),
        };
        // The state matched by its hash already: the code is what is left to read.
        let code = Redirect::parse(query).map(|redirect| redirect.auth_code);
        let outcome = match code {
            Err(e) => Err(SignInError::Redirect(e)),
            Ok(_) if self.0.clock.now_ms() >= attempt.expires_at_ms => Err(SignInError::Expired),
            Ok(code) => self.who(&code).await,
        };
        let confirm = devices::secret();
        attempt.outcome = Some(match &outcome {
            Ok((user_id, name, departments)) => Outcome::Confirming {
                user_id: user_id.clone(),
                name: name.clone(),
                departments: departments.clone(),
            },
            Err(e) => Outcome::Refused {
                reason: e.to_string(),
            },
        });
        let mut recorded =
            Document::new(KIND, &document.id, version, devices::body(&attempt)?).at(self.0.clock.now_ms());
        if outcome.is_ok() {
            recorded = recorded.lookup(devices::hash(&confirm));
        }
        self.0.store.put_document(&recorded).await?;
        match outcome {
            Ok((user_id, name, _)) => {
                tracing::info!(user = %user_id, device = %attempt.device_id, "signed in with DingTalk");
                Ok(ToConfirm {
                    user_id,
                    name,
                    device_id: attempt.device_id,
                    confirm,
                })
            }
            Err(e) => {
                tracing::warn!(device = %attempt.device_id, reason = %e, "DingTalk sign-in refused");
                Err(e)
            }
        }
    }

    /// The employee who signed in answered the confirmation form (secret `confirm`): `enroll`
    /// the device as theirs, or not. Single-use; the agent then collects its token, or learns
    /// it was refused.
    pub(crate) async fn confirmed(&self, confirm: &str, enroll: bool) -> Result<Confirmed, SignInError> {
        let Some(document) = self.0.store.find_document(KIND, &devices::hash(confirm)).await? else {
            return Err(SignInError::UnknownState);
        };
        let mut attempt: Attempt = devices::decode(&document)?;
        let Some(Outcome::Confirming {
            user_id,
            name,
            departments,
        }) = attempt.outcome.take()
        else {
            return Err(SignInError::UnknownState);
        };
        let outcome = if !enroll {
            Err(SignInError::NotConfirmed)
        } else if self.0.clock.now_ms() >= attempt.expires_at_ms {
            Err(SignInError::Expired)
        } else {
            Ok(())
        };
        attempt.outcome = Some(match &outcome {
            Ok(()) => Outcome::SignedIn {
                user_id: user_id.clone(),
                name: name.clone(),
                departments,
            },
            Err(e) => Outcome::Refused {
                reason: e.to_string(),
            },
        });
        // Without the lookup: the form cannot be sent twice.
        let recorded = Document::new(KIND, &document.id, document.version, devices::body(&attempt)?)
            .at(self.0.clock.now_ms());
        match self.0.store.put_document(&recorded).await {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => return Err(SignInError::UnknownState),
            Err(e) => return Err(e.into()),
        }
        match outcome {
            Ok(()) => {
                tracing::info!(user = %user_id, device = %attempt.device_id, "device confirmed after DingTalk sign-in");
                Ok(Confirmed {
                    user_id,
                    name,
                    device_id: attempt.device_id,
                })
            }
            Err(e) => {
                tracing::warn!(device = %attempt.device_id, reason = %e, "DingTalk sign-in not confirmed");
                Err(e)
            }
        }
    }

    /// Who signed in with `code`: their user id, name and departments (as the directory has
    /// them, else as DingTalk answers), if they are of the configured organisation.
    async fn who(
        &self,
        code: &dingtalk_sdk::oauth::AuthCode,
    ) -> Result<(String, String, Vec<String>), SignInError> {
        let oauth = self.0.client.oauth();
        let token = match oauth.exchange_code(code).await {
            Ok(token) => token,
            Err(e) if matches!(e.kind(), ErrorKind::Client | ErrorKind::NotFound) => {
                return Err(SignInError::CodeRefused)
            }
            Err(e) => return Err(SignInError::DingTalk(e)),
        };
        let corp = token
            .corp_id
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default();
        if corp != self.0.corp_id {
            return Err(SignInError::ForeignCorp { corp });
        }
        let me = oauth
            .me(&token.access_token)
            .await
            .map_err(SignInError::DingTalk)?;
        let contacts = self.0.client.contacts();
        let user_id = match contacts.user_id_by_union_id(&me.union_id).await {
            Ok(found) => found.user_id,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(SignInError::NotInDirectory),
            Err(e) => return Err(SignInError::DingTalk(e)),
        };
        let directory = self.0.directory.snapshot();
        if let (Some(name), Some(departments)) = (
            directory.name_of(user_id.as_str()),
            directory.departments_of(user_id.as_str()),
        ) {
            return Ok((user_id.as_str().to_owned(), name.to_owned(), departments));
        }
        let user = match contacts.user(&user_id).await {
            Ok(user) => user,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(SignInError::NotInDirectory),
            Err(e) => return Err(SignInError::DingTalk(e)),
        };
        let departments = user.dept_id_list.iter().map(|d| d.get().to_string()).collect();
        Ok((user_id.as_str().to_owned(), user.name, departments))
    }

    /// The agent collects attempt `attempt`: once signed in, its device is enrolled with a
    /// fresh token and the attempt deleted (of two collections at once, one wins).
    pub(crate) async fn collect(&self, attempt: &str) -> Result<Collected, StoreError> {
        let Some(document) = self.0.store.get_document(KIND, &devices::hash(attempt)).await? else {
            return Ok(Collected::Unknown);
        };
        let record: Attempt = devices::decode(&document)?;
        match record.outcome {
            None | Some(Outcome::Confirming { .. }) if self.0.clock.now_ms() >= record.expires_at_ms => {
                Ok(Collected::Unknown)
            }
            None | Some(Outcome::Confirming { .. }) => Ok(Collected::Waiting),
            Some(Outcome::Refused { reason }) => Ok(Collected::Refused(reason)),
            Some(Outcome::SignedIn {
                user_id, departments, ..
            }) => {
                match self
                    .0
                    .store
                    .delete_document(KIND, &document.id, document.version)
                    .await
                {
                    Ok(()) => {}
                    Err(StoreError::Conflict { .. }) => return Ok(Collected::Unknown),
                    Err(e) => return Err(e),
                }
                let owner = Owner {
                    user_id,
                    groups: Vec::new(),
                    departments,
                    tags: Vec::new(),
                };
                let (token, device) = self
                    .0
                    .devices
                    .enroll_as(&record.device_id, owner, "dingtalk_sign_in")
                    .await?;
                Ok(Collected::Enrolled(token, device))
            }
        }
    }
}
