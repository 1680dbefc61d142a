//! Named admins of the console, kept in the store every replica shares: each has a role, an
//! Argon2id password hash, personal API tokens and login sessions. Tokens and session values are
//! stored as their SHA-256 only (in the document's lookup), as device tokens are
//! (src/devices.rs). The role is read from the admin on every request, so a role change or a
//! deletion applies at once, on every replica.
//!
//! Each token and session records which incarnation of its admin it belongs to (a random value,
//! new each time the name is created), and each session also records the admin's password
//! generation. A session therefore ends with a password change, and a token or session ends
//! with a deletion, in the same write that changes the admin. The sweeps that delete their
//! documents afterwards are only housekeeping: one that is cut short, or a login racing a
//! password change, leaves nothing usable behind.

use crate::devices::{body, decode, hash, secret};
use argon2::password_hash::{self, PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::Argon2;
use rand::rngs::OsRng;
use sase_approval::clock::Clock;
use sase_approval::store::{ApprovalStore, Document};
use sase_approval::Error as StoreError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use zeroize::Zeroizing;

const ADMIN: &str = "admin";
const API_TOKEN: &str = "api_token";
const SESSION: &str = "session";

/// How long a login session lasts: a working day. After that the console asks for the password
/// again.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// Every API token starts with this, so that secret scanners and people reading logs recognise
/// a leaked one.
const TOKEN_PREFIX: &str = "sase_";

const NAME_MAX: usize = 64;
const PASSWORD_MIN: usize = 12;
/// The upper bound keeps a huge "password" from making the server hash megabytes.
const PASSWORD_MAX: usize = 1024;
const LABEL_MAX: usize = 64;

/// What an admin may do. Each role may also do everything the roles below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Role {
    /// Reads the console; changes nothing.
    Viewer,
    /// Also decides approval requests.
    Approver,
    /// Also manages admins, devices, workflows and policies.
    Admin,
}

impl Role {
    /// Whether this role may do something that needs `needed`. The roles are ordered, so one
    /// comparison answers it.
    pub(crate) fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

/// Who is acting: an admin and their current role. This is what authorization and the audit
/// trail look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) name: String,
    pub(crate) role: Role,
}

/// An admin as the console shows it. The password hash is kept out of this type (it lives only
/// in the stored document), so serializing an `Admin` can never leak it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Admin {
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) created_at_ms: i64,
    /// The admin who created this one, or `bootstrap`.
    pub(crate) created_by: String,
    /// The stored version (not in the body). Updates and deletions name it.
    #[serde(skip)]
    pub(crate) version: u64,
}

/// A personal API token as the console lists it. The token itself is shown only once, when it
/// is created, and is stored only as a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct ApiToken {
    pub(crate) id: String,
    /// The admin it acts as.
    pub(crate) admin: String,
    pub(crate) label: String,
    pub(crate) created_at_ms: i64,
}

/// A new login session. The session value is shown once (it becomes the cookie) and is stored
/// only as a hash.
pub(crate) struct Login {
    /// The cookie value.
    pub(crate) session: String,
    /// The token that state-changing requests of this session must echo in a header.
    pub(crate) csrf: String,
    pub(crate) identity: Identity,
    pub(crate) expires_at_ms: i64,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("session", &"<redacted>")
            .field("csrf", &"<redacted>")
            .field("identity", &self.identity)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// Why an admin operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    /// A name, password or label the rules refuse. The message never contains the password.
    #[error("invalid {field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// The store failed. A stale version is [`Conflict`](StoreError::Conflict), where `actual` 0
    /// means there is no such admin. A stored password hash that does not parse, or a hashing
    /// task that failed, is a [`StoreError::Store`] as well, naming what happened: the server
    /// answers both the same way.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, message: String) -> AdminError {
    AdminError::Invalid { field, message }
}

/// An admin as stored: what the console shows, plus what it must never show.
#[derive(Serialize, Deserialize)]
struct StoredAdmin {
    #[serde(flatten)]
    admin: Admin,
    /// The PHC string (`$argon2id$…`).
    password_hash: String,
    /// Random, new each time the name is created. A token or session of a deleted admin
    /// never applies to a later admin of the same name.
    incarnation: String,
    /// Incremented by each password change; sessions of an older generation are ended.
    password_generation: u64,
}

impl StoredAdmin {
    fn identity(&self) -> Identity {
        Identity {
            name: self.admin.name.clone(),
            role: self.admin.role,
        }
    }
}

/// An API token as stored; the token value is only in the document's lookup, as a hash.
#[derive(Serialize, Deserialize)]
struct StoredToken {
    #[serde(flatten)]
    token: ApiToken,
    incarnation: String,
}

/// A session as stored; the session value is only in the document's lookup, as a hash.
#[derive(Serialize, Deserialize)]
struct StoredSession {
    admin: String,
    incarnation: String,
    password_generation: u64,
    csrf: String,
    expires_at_ms: i64,
}

fn admin_of(document: &Document) -> Result<StoredAdmin, StoreError> {
    let mut stored: StoredAdmin = decode(document)?;
    stored.admin.version = document.version;
    Ok(stored)
}

/// A random document id, `prefix-` and 16 lowercase letters and digits (≈ 82 bits). The id is
/// not a secret; it only has to be unique.
fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        secret().to_lowercase().get(..16).unwrap_or_default()
    )
}

/// The Argon2id hasher, with the crate's default parameters (19 MiB, 2 passes, 1 lane: the
/// OWASP minimum), in tests too: the module's tests take about 8 s in a debug build with them,
/// so there is no need for weaker test-only parameters. Verifying a hash uses the parameters
/// stored in that hash, so hashes made before a change of parameters still verify.
fn hasher() -> Argon2<'static> {
    Argon2::default()
}

/// A failure of Argon2 itself, as a store error that says what happened.
fn hashing_failed(what: impl fmt::Display) -> AdminError {
    AdminError::Store(StoreError::Store {
        reason: format!("password hashing failed: {what}"),
    })
}

/// The PHC string of `password`, with a fresh random salt from the operating system.
fn hash_password(password: &str) -> Result<String, AdminError> {
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(hashing_failed)
}

/// Whether `password` matches the PHC string `phc`. A mismatch is `false`; a hash that does not
/// parse is an error.
fn verify_password(password: &str, phc: &str) -> Result<bool, AdminError> {
    let parsed = PasswordHash::new(phc).map_err(hashing_failed)?;
    match hasher().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(password_hash::Error::Password) => Ok(false),
        Err(e) => Err(hashing_failed(e)),
    }
}

/// A hash that no admin's password matches. A login for an unknown name verifies against it, so
/// that it costs the same as a login with a wrong password and its timing does not reveal which
/// names exist. It is made once per process.
fn dummy_hash() -> Result<&'static str, AdminError> {
    static DUMMY: OnceLock<Result<String, String>> = OnceLock::new();
    DUMMY
        .get_or_init(|| hash_password("no admin has this password").map_err(|e| e.to_string()))
        .as_deref()
        .map_err(hashing_failed)
}

/// Runs Argon2 work on tokio's blocking pool. Each hash takes tens of milliseconds of CPU, which
/// must not stall the request handlers that share the runtime's worker threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AdminError> + Send + 'static,
) -> Result<T, AdminError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| hashing_failed(format_args!("the hashing task failed: {e}")))?
}

async fn hash_blocking(password: &str) -> Result<String, AdminError> {
    let password = Zeroizing::new(password.to_owned());
    blocking(move || hash_password(&password)).await
}

/// Refuses names the console and the audit trail cannot show or quote unambiguously. Letters are
/// ASCII only, so that no two names differ only by look-alike Unicode characters.
fn check_name(name: &str) -> Result<(), AdminError> {
    let count = name.chars().count();
    if count == 0 || count > NAME_MAX {
        return Err(invalid(
            "name",
            format!("must be 1 to {NAME_MAX} characters, not {count}"),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@')))
    {
        return Err(invalid(
            "name",
            format!("may contain only letters, digits, '.', '-', '_' and '@', not {c:?}"),
        ));
    }
    Ok(())
}

/// Length only, counted in characters. The message does not state the length, so that a logged
/// error reveals nothing about the password.
fn check_password(password: &str) -> Result<(), AdminError> {
    let count = password.chars().count();
    if count < PASSWORD_MIN {
        return Err(invalid(
            "password",
            format!("must be at least {PASSWORD_MIN} characters"),
        ));
    }
    if count > PASSWORD_MAX {
        return Err(invalid(
            "password",
            format!("must be at most {PASSWORD_MAX} characters"),
        ));
    }
    Ok(())
}

fn check_label(label: &str) -> Result<(), AdminError> {
    let count = label.chars().count();
    if count == 0 || count > LABEL_MAX {
        return Err(invalid(
            "label",
            format!("must be 1 to {LABEL_MAX} characters, not {count}"),
        ));
    }
    if label.chars().any(char::is_control) {
        return Err(invalid("label", "may not contain control characters".to_owned()));
    }
    Ok(())
}

/// The admins, their API tokens and their sessions, in the store.
#[derive(Clone)]
pub(crate) struct Admins {
    store: Arc<dyn ApprovalStore>,
    clock: Arc<dyn Clock>,
}

impl Admins {
    pub(crate) fn new(store: Arc<dyn ApprovalStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Creates the admin `name` with `role` and `password`. `created_by` names the admin who
    /// acts.
    ///
    /// name: 1 to 64 characters, each an ASCII letter, a digit, '.', '-', '_' or '@'.
    /// password: 12 to 1024 characters.
    ///
    /// # Errors
    /// [`AdminError::Invalid`] naming the field that was refused;
    /// [`Conflict`](StoreError::Conflict) if the name is taken.
    pub(crate) async fn create(
        &self,
        name: &str,
        role: Role,
        password: &str,
        created_by: &str,
    ) -> Result<Admin, AdminError> {
        check_name(name)?;
        check_password(password)?;
        let password_hash = hash_blocking(password).await?;
        let now = self.clock.now_ms();
        let mut stored = StoredAdmin {
            admin: Admin {
                name: name.to_owned(),
                role,
                created_at_ms: now,
                created_by: created_by.to_owned(),
                version: 0,
            },
            password_hash,
            incarnation: secret(),
            password_generation: 0,
        };
        let document = Document::new(ADMIN, name, 0, body(&stored)?).at(now);
        stored.admin.version = self.store.put_document(&document).await?;
        Ok(stored.admin)
    }

    /// Every admin, by name.
    pub(crate) async fn list(&self) -> Result<Vec<Admin>, AdminError> {
        self.store
            .list_documents(ADMIN)
            .await?
            .iter()
            .map(|document| Ok(admin_of(document)?.admin))
            .collect()
    }

    /// The admin `name`.
    pub(crate) async fn get(&self, name: &str) -> Result<Option<Admin>, AdminError> {
        Ok(self.stored(name).await?.map(|stored| stored.admin))
    }

    async fn stored(&self, name: &str) -> Result<Option<StoredAdmin>, AdminError> {
        match self.store.get_document(ADMIN, name).await? {
            Some(document) => Ok(Some(admin_of(&document)?)),
            None => Ok(None),
        }
    }

    /// The admin `name` if it is stored at `version`.
    ///
    /// # Errors
    /// [`Conflict`](StoreError::Conflict) when it is not (`actual` 0: there is no such admin).
    async fn stored_at(&self, name: &str, version: u64) -> Result<StoredAdmin, AdminError> {
        let stored = self.stored(name).await?;
        let actual = stored.as_ref().map_or(0, |s| s.admin.version);
        match stored {
            Some(stored) if actual == version => Ok(stored),
            _ => Err(StoreError::Conflict {
                id: format!("{ADMIN}/{name}"),
                expected: version,
                actual,
            }
            .into()),
        }
    }

    /// Changes the role and/or the password of `name`, if it is stored at `version`.
    ///
    /// A password change ends all of the admin's sessions in the same write, because the
    /// sessions record the password generation they were opened under; their documents are
    /// then deleted. API tokens are kept: they are revoked one by one.
    ///
    /// # Errors
    /// [`AdminError::Invalid`] for a refused password; [`Conflict`](StoreError::Conflict) for a
    /// stale version (`actual` 0: there is no such admin).
    pub(crate) async fn update(
        &self,
        name: &str,
        version: u64,
        role: Option<Role>,
        password: Option<&str>,
    ) -> Result<Admin, AdminError> {
        let password_hash = match password {
            Some(password) => {
                check_password(password)?;
                Some(hash_blocking(password).await?)
            }
            None => None,
        };
        let mut stored = self.stored_at(name, version).await?;
        if let Some(role) = role {
            stored.admin.role = role;
        }
        let password_changed = password_hash.is_some();
        if let Some(password_hash) = password_hash {
            stored.password_hash = password_hash;
            stored.password_generation = stored.password_generation.saturating_add(1);
        }
        let document = Document::new(ADMIN, name, version, body(&stored)?).at(self.clock.now_ms());
        stored.admin.version = self.store.put_document(&document).await?;
        if password_changed {
            self.sweep(SESSION, |s: &StoredSession| {
                s.admin == name
                    && s.incarnation == stored.incarnation
                    && s.password_generation < stored.password_generation
            })
            .await?;
        }
        Ok(stored.admin)
    }

    /// Deletes the admin `name` if it is stored at `version`, and with it every API token and
    /// session of that admin.
    ///
    /// # Errors
    /// [`Conflict`](StoreError::Conflict) for a stale version (`actual` 0: there is no such admin).
    pub(crate) async fn delete(&self, name: &str, version: u64) -> Result<(), AdminError> {
        let stored = self.stored_at(name, version).await?;
        self.store.delete_document(ADMIN, name, version).await?;
        let incarnation = stored.incarnation.as_str();
        self.sweep(API_TOKEN, |t: &StoredToken| {
            t.token.admin == name && t.incarnation == incarnation
        })
        .await?;
        self.sweep(SESSION, |s: &StoredSession| {
            s.admin == name && s.incarnation == incarnation
        })
        .await
    }

    /// Deletes each document of `kind` that `doomed` picks.
    async fn sweep<T: DeserializeOwned>(
        &self,
        kind: &str,
        doomed: impl Fn(&T) -> bool,
    ) -> Result<(), AdminError> {
        for document in self.store.list_documents(kind).await? {
            if doomed(&decode(&document)?) {
                self.forget(&document).await?;
            }
        }
        Ok(())
    }

    /// Deletes `document` as read. If it has already changed or been deleted, someone else got
    /// there first, and that is fine.
    async fn forget(&self, document: &Document) -> Result<(), AdminError> {
        match self
            .store
            .delete_document(&document.kind, &document.id, document.version)
            .await
        {
            Ok(()) | Err(StoreError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the sessions that expired without being presented again (a presented one is
    /// deleted then): the number deleted.
    ///
    /// # Errors
    /// The store's.
    pub(crate) async fn prune_sessions(&self) -> Result<u64, AdminError> {
        let now = self.clock.now_ms();
        let mut pruned = 0;
        for document in self.store.list_documents(SESSION).await? {
            let record: StoredSession = decode(&document)?;
            if now >= record.expires_at_ms {
                self.forget(&document).await?;
                pruned += 1;
            }
        }
        Ok(pruned)
    }

    /// Opens a session for `name` with `password`, or returns `None`. An unknown name and a wrong
    /// password get the same answer after the same work: a name that does not exist is checked
    /// against a dummy hash, so the timing does not reveal whether the name exists.
    pub(crate) async fn login(&self, name: &str, password: &str) -> Result<Option<Login>, AdminError> {
        let stored = self.stored(name).await?;
        let phc = stored.as_ref().map(|s| s.password_hash.clone());
        let password = Zeroizing::new(password.to_owned());
        let matches = blocking(move || {
            let phc = match phc {
                Some(phc) => phc,
                None => dummy_hash()?.to_owned(),
            };
            verify_password(&password, &phc)
        })
        .await?;
        let Some(stored) = stored.filter(|_| matches) else {
            return Ok(None);
        };
        let now = self.clock.now_ms();
        let session = secret();
        let record = StoredSession {
            admin: stored.admin.name.clone(),
            incarnation: stored.incarnation.clone(),
            password_generation: stored.password_generation,
            csrf: secret(),
            expires_at_ms: now.saturating_add(i64::try_from(SESSION_TTL.as_millis()).unwrap_or(i64::MAX)),
        };
        let document = Document::new(SESSION, new_id("ses"), 0, body(&record)?)
            .lookup(hash(&session))
            .at(now);
        self.store.put_document(&document).await?;
        Ok(Some(Login {
            session,
            csrf: record.csrf,
            identity: stored.identity(),
            expires_at_ms: record.expires_at_ms,
        }))
    }

    /// The identity and CSRF token of the live session whose value is `session`. An expired
    /// session is deleted and gives `None`, and so does the session of an admin who was deleted
    /// or has changed password since. The role is the admin's current one: it is read on every
    /// call, so a role change or a deletion applies at once.
    pub(crate) async fn session(&self, session: &str) -> Result<Option<(Identity, String)>, AdminError> {
        let Some(document) = self.store.find_document(SESSION, &hash(session)).await? else {
            return Ok(None);
        };
        let record: StoredSession = decode(&document)?;
        let admin = if self.clock.now_ms() >= record.expires_at_ms {
            None
        } else {
            self.stored(&record.admin).await?.filter(|a| {
                a.incarnation == record.incarnation && a.password_generation == record.password_generation
            })
        };
        match admin {
            Some(admin) => Ok(Some((admin.identity(), record.csrf))),
            None => {
                self.forget(&document).await?;
                Ok(None)
            }
        }
    }

    /// Ends the session whose value is `session`. An unknown or already-ended session is not an
    /// error: logging out twice is harmless.
    pub(crate) async fn logout(&self, session: &str) -> Result<(), AdminError> {
        match self.store.find_document(SESSION, &hash(session)).await? {
            Some(document) => self.forget(&document).await,
            None => Ok(()),
        }
    }

    /// Creates a personal API token for `admin`, labelled `label` (1 to 64 characters). Returns
    /// the token, which is shown once (it starts with `sase_` and is stored only as a hash),
    /// and its record.
    ///
    /// # Errors
    /// [`AdminError::Invalid`] for a refused label, or (field `admin`) an admin that does not
    /// exist.
    pub(crate) async fn create_token(
        &self,
        admin: &str,
        label: &str,
    ) -> Result<(String, ApiToken), AdminError> {
        check_label(label)?;
        let Some(stored) = self.stored(admin).await? else {
            return Err(invalid("admin", format!("no admin is named {admin:?}")));
        };
        let now = self.clock.now_ms();
        let value = format!("{TOKEN_PREFIX}{}", secret());
        let record = StoredToken {
            token: ApiToken {
                id: new_id("tok"),
                admin: stored.admin.name,
                label: label.to_owned(),
                created_at_ms: now,
            },
            incarnation: stored.incarnation,
        };
        let document = Document::new(API_TOKEN, &record.token.id, 0, body(&record)?)
            .lookup(hash(&value))
            .at(now);
        self.store.put_document(&document).await?;
        Ok((value, record.token))
    }

    /// The API tokens of `admin`, or of every admin, by id. The token values are not included;
    /// they are not stored.
    pub(crate) async fn tokens(&self, admin: Option<&str>) -> Result<Vec<ApiToken>, AdminError> {
        let mut tokens = Vec::new();
        for document in self.store.list_documents(API_TOKEN).await? {
            let record: StoredToken = decode(&document)?;
            if admin.is_none_or(|admin| record.token.admin == admin) {
                tokens.push(record.token);
            }
        }
        Ok(tokens)
    }

    /// Revokes the API token `id`. It is refused at once, on every replica. Returns `false` if
    /// there is no such token.
    pub(crate) async fn revoke_token(&self, id: &str) -> Result<bool, AdminError> {
        // A token is never updated, so a conflict means that someone else deleted it: the next
        // read finds nothing.
        loop {
            let Some(document) = self.store.get_document(API_TOKEN, id).await? else {
                return Ok(false);
            };
            match self.store.delete_document(API_TOKEN, id, document.version).await {
                Ok(()) => return Ok(true),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The identity of the admin that the API token `token` belongs to, with the admin's current
    /// role, or `None` for an unknown token. A token left behind by a deleted admin is also
    /// `None`, and is deleted.
    pub(crate) async fn authenticate_token(&self, token: &str) -> Result<Option<Identity>, AdminError> {
        let Some(document) = self.store.find_document(API_TOKEN, &hash(token)).await? else {
            return Ok(None);
        };
        let record: StoredToken = decode(&document)?;
        match self
            .stored(&record.token.admin)
            .await?
            .filter(|a| a.incarnation == record.incarnation)
        {
            Some(admin) => Ok(Some(admin.identity())),
            None => {
                self.forget(&document).await?;
                Ok(None)
            }
        }
    }

    /// The bootstrap. If no admin exists yet, creates `name` with the Admin role and returns
    /// `true`. If some admin exists, returns `false` and changes nothing, so the configured
    /// bootstrap password stops mattering once the console is in use. The name and password are
    /// checked either way, so a bad configuration is reported on every start. Replicas that
    /// start at once with the same configuration create the admin once: the others see the
    /// name taken and return `false`.
    pub(crate) async fn bootstrap(&self, name: &str, password: &str) -> Result<bool, AdminError> {
        check_name(name)?;
        check_password(password)?;
        if !self.store.list_documents(ADMIN).await?.is_empty() {
            return Ok(false);
        }
        match self.create(name, Role::Admin, password, "bootstrap").await {
            Ok(_) => Ok(true),
            Err(AdminError::Store(StoreError::Conflict { .. })) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sase_approval::clock::ManualClock;
    use sase_approval::store::MemoryStore;

    const PASSWORD: &str = "correct horse battery";

    fn admins() -> (Admins, Arc<MemoryStore>, ManualClock) {
        let store = Arc::new(MemoryStore::new());
        let clock = ManualClock::new(1_700_000_000_000);
        let admins = Admins::new(store.clone(), Arc::new(clock.clone()));
        (admins, store, clock)
    }

    fn conflict_actual(e: &AdminError) -> Option<u64> {
        match e {
            AdminError::Store(StoreError::Conflict { actual, .. }) => Some(*actual),
            _ => None,
        }
    }

    fn invalid_field(e: &AdminError) -> Option<&'static str> {
        match e {
            AdminError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Admin.allows(Role::Approver));
        assert!(Role::Approver.allows(Role::Approver));
        assert!(Role::Approver.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Approver));
        assert!(!Role::Approver.allows(Role::Admin));
        assert_eq!(serde_json::to_string(&Role::Approver).unwrap(), "\"approver\"");
    }

    #[tokio::test]
    async fn create_get_and_list() {
        let (admins, _, clock) = admins();
        let bob = admins
            .create("bob", Role::Viewer, PASSWORD, "root")
            .await
            .unwrap();
        let alice = admins
            .create("alice@example.com", Role::Admin, PASSWORD, "root")
            .await
            .unwrap();
        assert_eq!(alice.version, 1);
        assert_eq!(alice.created_at_ms, clock.now_ms());
        assert_eq!(alice.created_by, "root");
        assert_eq!(admins.get("bob").await.unwrap(), Some(bob.clone()));
        assert_eq!(admins.get("carol").await.unwrap(), None);
        assert_eq!(admins.list().await.unwrap(), vec![alice, bob], "by name");
    }

    #[tokio::test]
    async fn a_taken_name_is_a_conflict() {
        let (admins, _, _) = admins();
        admins
            .create("bob", Role::Viewer, PASSWORD, "root")
            .await
            .unwrap();
        let e = admins
            .create("bob", Role::Admin, "another password", "root")
            .await
            .unwrap_err();
        assert_eq!(conflict_actual(&e), Some(1), "{e:?}");
        assert_eq!(admins.get("bob").await.unwrap().unwrap().role, Role::Viewer);
    }

    #[tokio::test]
    async fn bad_names_passwords_and_labels_are_refused_by_field() {
        let (admins, _, _) = admins();
        for name in ["", "a b", "a/b", "émile", &"a".repeat(65)] {
            let e = admins
                .create(name, Role::Viewer, PASSWORD, "root")
                .await
                .unwrap_err();
            assert_eq!(invalid_field(&e), Some("name"), "{name:?}: {e:?}");
        }
        for password in ["", "short", "ééééééééééé", &"p".repeat(1025)] {
            let e = admins
                .create("bob", Role::Viewer, password, "root")
                .await
                .unwrap_err();
            assert_eq!(invalid_field(&e), Some("password"), "{e:?}");
            assert!(
                password.is_empty() || !e.to_string().contains(password),
                "the password is not echoed"
            );
        }
        assert!(admins.list().await.unwrap().is_empty());
        // Counted in characters: 12 two-byte characters are enough, 64 characters are a name.
        admins
            .create("bob", Role::Viewer, "éééééééééééé", "root")
            .await
            .unwrap();
        admins
            .create(&"a".repeat(64), Role::Viewer, PASSWORD, "root")
            .await
            .unwrap();
        for label in ["", "a\nb", &"l".repeat(65)] {
            let e = admins.create_token("bob", label).await.unwrap_err();
            assert_eq!(invalid_field(&e), Some("label"), "{e:?}");
        }
        let e = admins.create_token("nobody", "ci").await.unwrap_err();
        assert_eq!(invalid_field(&e), Some("admin"), "{e:?}");
        assert!(admins.tokens(None).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn login_needs_the_right_password() {
        let (admins, _, clock) = admins();
        admins
            .create("bob", Role::Approver, PASSWORD, "root")
            .await
            .unwrap();
        let login = admins.login("bob", PASSWORD).await.unwrap().unwrap();
        assert_eq!(
            login.identity,
            Identity {
                name: "bob".to_owned(),
                role: Role::Approver
            }
        );
        assert_eq!(login.expires_at_ms, clock.now_ms() + 8 * 3600 * 1000);
        assert!(login.session.len() >= 32 && login.session.chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(login.csrf.len() >= 32 && login.csrf != login.session);
        assert!(admins
            .login("bob", "correct horse battery!")
            .await
            .unwrap()
            .is_none());
        assert!(admins.login("bob", "").await.unwrap().is_none());
        assert!(admins.login("nobody", PASSWORD).await.unwrap().is_none());
        assert!(
            admins
                .login("nobody", "no admin has this password")
                .await
                .unwrap()
                .is_none(),
            "the dummy hash's password opens nothing"
        );
    }

    #[tokio::test]
    async fn the_store_holds_an_argon2id_hash_and_no_secret() {
        let (admins, store, _) = admins();
        admins
            .create("bob", Role::Viewer, PASSWORD, "root")
            .await
            .unwrap();
        let login = admins.login("bob", PASSWORD).await.unwrap().unwrap();
        let (token, _) = admins.create_token("bob", "ci").await.unwrap();

        let document = store.get_document(ADMIN, "bob").await.unwrap().unwrap();
        assert!(!document.body.contains(PASSWORD), "{}", document.body);
        let body: serde_json::Value = serde_json::from_str(&document.body).unwrap();
        let phc = body["password_hash"].as_str().unwrap();
        assert!(
            phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "default parameters: {phc}"
        );
        assert_eq!(document.lookup, None);

        let sessions = store.list_documents(SESSION).await.unwrap();
        assert_eq!(sessions.len(), 1);
        assert!(!sessions[0].body.contains(&login.session));
        assert_eq!(sessions[0].lookup.as_deref(), Some(hash(&login.session).as_str()));
        let tokens = store.list_documents(API_TOKEN).await.unwrap();
        assert_eq!(tokens.len(), 1);
        assert!(!tokens[0].body.contains(&token));
        assert_eq!(tokens[0].lookup.as_deref(), Some(hash(&token).as_str()));

        // What the console shows carries no hash.
        let shown = serde_json::to_string(&admins.get("bob").await.unwrap().unwrap()).unwrap();
        assert!(
            !shown.contains("argon2") && !shown.contains("incarnation"),
            "{shown}"
        );
        assert!(format!("{login:?}").contains("<redacted>"));
        assert!(!format!("{login:?}").contains(&login.session));
        assert!(!format!("{login:?}").contains(&login.csrf));
    }

    #[tokio::test]
    async fn a_session_lasts_its_ttl_and_ends_with_logout() {
        let (admins, store, clock) = admins();
        admins
            .create("bob", Role::Viewer, PASSWORD, "root")
            .await
            .unwrap();
        let login = admins.login("bob", PASSWORD).await.unwrap().unwrap();
        let (identity, csrf) = admins.session(&login.session).await.unwrap().unwrap();
        assert_eq!(identity, login.identity);
        assert_eq!(csrf, login.csrf);
        assert_eq!(admins.session("not a session").await.unwrap(), None);
        assert_eq!(
            admins.session(&login.csrf).await.unwrap(),
            None,
            "the CSRF token is no session"
        );

        clock.advance(SESSION_TTL - Duration::from_millis(1));
        assert!(admins.session(&login.session).await.unwrap().is_some());
        clock.advance(Duration::from_millis(1));
        assert_eq!(admins.session(&login.session).await.unwrap(), None);
        assert!(
            store.list_documents(SESSION).await.unwrap().is_empty(),
            "expired: deleted"
        );

        // A session nobody presents again is pruned once expired; a live one stays.
        admins.login("bob", PASSWORD).await.unwrap().unwrap();
        clock.advance(SESSION_TTL / 2);
        let live = admins.login("bob", PASSWORD).await.unwrap().unwrap();
        assert_eq!(admins.prune_sessions().await.unwrap(), 0);
        clock.advance(SESSION_TTL / 2);
        assert_eq!(admins.prune_sessions().await.unwrap(), 1);
        assert!(admins.session(&live.session).await.unwrap().is_some());
        admins.logout(&live.session).await.unwrap();

        let login = admins.login("bob", PASSWORD).await.unwrap().unwrap();
        let other = admins.login("bob", PASSWORD).await.unwrap().unwrap();
        admins.logout(&login.session).await.unwrap();
        assert_eq!(admins.session(&login.session).await.unwrap(), None);
        assert!(
            admins.session(&other.session).await.unwrap().is_some(),
            "only that one"
        );
        admins.logout(&login.session).await.unwrap();
    }

    #[tokio::test]
    async fn a_role_change_applies_to_live_sessions_and_tokens() {
        let (admins, _, _) = admins();
        let bob = admins
            .create("bob", Role::Viewer, PASSWORD, "root")
            .await
            .unwrap();
        let login = admins.login("bob", PASSWORD).await.unwrap().unwrap();
        let (token, _) = admins.create_token("bob", "ci").await.unwrap();
        let bob = admins
            .update("bob", bob.version, Some(Role::Admin), None)
            .await
            .unwrap();
        assert_eq!(bob.role, Role::Admin);
        assert_eq!(bob.version, 2);
        let (identity, _) = admins.session(&login.session).await.unwrap().unwrap();
        assert_eq!(identity.role, Role::Admin);
        assert_eq!(
            admins.authenticate_token(&token).await.unwrap().unwrap().role,
            Role::Admin
        );
    }

    #[tokio::test]
    async fn a_password_change_ends_sessions_but_not_tokens() {
        let (admins, store, _) = admins();
        let bob = admins
            .create("bob", Role::Approver, PASSWORD, "root")
            .await
            .unwrap();
        admins
            .create("carol", Role::Viewer, PASSWORD, "root")
            .await
            .unwrap();
        let login = admins.login("bob", PASSWORD).await.unwrap().unwrap();
        let carol = admins.login("carol", PASSWORD).await.unwrap().unwrap();
        let (token, _) = admins.create_token("bob", "ci").await.unwrap();

        let e = admins
            .update("bob", bob.version, None, Some("short"))
            .await
            .unwrap_err();
        assert_eq!(invalid_field(&e), Some("password"));
        assert!(admins.session(&login.session).await.unwrap().is_some());

        let bob = admins
            .update("bob", bob.version, None, Some("a new password, long"))
            .await
            .unwrap();
        assert_eq!(bob.role, Role::Approver, "the role is kept");
        assert_eq!(admins.session(&login.session).await.unwrap(), None);
        assert!(
            admins.session(&carol.session).await.unwrap().is_some(),
            "others' are kept"
        );
        assert_eq!(
            store.list_documents(SESSION).await.unwrap().len(),
            1,
            "bob's deleted"
        );
        assert!(admins.authenticate_token(&token).await.unwrap().is_some());
        assert!(admins.login("bob", PASSWORD).await.unwrap().is_none());
        let login = admins
            .login("bob", "a new password, long")
            .await
            .unwrap()
            .unwrap();
        assert!(admins.session(&login.session).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_stale_version_is_a_conflict() {
        let (admins, _, _) = admins();
        let bob = admins
            .create("bob", Role::Viewer, PASSWORD, "root")
            .await
            .unwrap();
        admins
            .update("bob", bob.version, Some(Role::Approver), None)
            .await
            .unwrap();
        let e = admins
            .update("bob", bob.version, Some(Role::Admin), None)
            .await
            .unwrap_err();
        assert_eq!(conflict_actual(&e), Some(2), "{e:?}");
        let e = admins.delete("bob", bob.version).await.unwrap_err();
        assert_eq!(conflict_actual(&e), Some(2), "{e:?}");
        assert_eq!(admins.get("bob").await.unwrap().unwrap().role, Role::Approver);
        let e = admins
            .update("nobody", 1, Some(Role::Admin), None)
            .await
            .unwrap_err();
        assert_eq!(conflict_actual(&e), Some(0), "no such admin: {e:?}");
        let e = admins.delete("nobody", 1).await.unwrap_err();
        assert_eq!(conflict_actual(&e), Some(0), "{e:?}");
    }

    #[tokio::test]
    async fn delete_removes_the_admins_tokens_and_sessions() {
        let (admins, store, _) = admins();
        let bob = admins.create("bob", Role::Admin, PASSWORD, "root").await.unwrap();
        admins
            .create("carol", Role::Viewer, PASSWORD, "root")
            .await
            .unwrap();
        let login = admins.login("bob", PASSWORD).await.unwrap().unwrap();
        let (token, _) = admins.create_token("bob", "ci").await.unwrap();
        let (carols, _) = admins.create_token("carol", "ci").await.unwrap();

        admins.delete("bob", bob.version).await.unwrap();
        assert_eq!(admins.get("bob").await.unwrap(), None);
        assert_eq!(admins.session(&login.session).await.unwrap(), None);
        assert_eq!(admins.authenticate_token(&token).await.unwrap(), None);
        assert!(admins.tokens(Some("bob")).await.unwrap().is_empty());
        assert!(store.list_documents(SESSION).await.unwrap().is_empty());
        assert!(
            admins.authenticate_token(&carols).await.unwrap().is_some(),
            "others' are kept"
        );

        // A new admin of the same name does not inherit anything of the old one.
        admins.create("bob", Role::Admin, PASSWORD, "root").await.unwrap();
        assert_eq!(admins.authenticate_token(&token).await.unwrap(), None);
        assert_eq!(admins.session(&login.session).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_leftover_token_of_a_deleted_admin_is_refused() {
        // What a sweep cut short would leave: the token's admin is gone, then recreated.
        let (admins, store, _) = admins();
        let bob = admins.create("bob", Role::Admin, PASSWORD, "root").await.unwrap();
        let (token, _) = admins.create_token("bob", "ci").await.unwrap();
        store.delete_document(ADMIN, "bob", bob.version).await.unwrap();
        admins.create("bob", Role::Admin, PASSWORD, "root").await.unwrap();
        assert_eq!(admins.authenticate_token(&token).await.unwrap(), None);
        assert!(
            store.list_documents(API_TOKEN).await.unwrap().is_empty(),
            "and deleted"
        );
    }

    #[tokio::test]
    async fn tokens_are_created_authenticated_listed_and_revoked() {
        let (admins, _, clock) = admins();
        admins
            .create("bob", Role::Approver, PASSWORD, "root")
            .await
            .unwrap();
        admins
            .create("carol", Role::Viewer, PASSWORD, "root")
            .await
            .unwrap();
        let (token, record) = admins.create_token("bob", "laptop").await.unwrap();
        let (carols, _) = admins.create_token("carol", "ci").await.unwrap();
        assert!(token.starts_with("sase_"), "{token}");
        assert!(token.len() >= 5 + 32);
        assert!(record.id.starts_with("tok-"));
        assert_eq!(record.admin, "bob");
        assert_eq!(record.label, "laptop");
        assert_eq!(record.created_at_ms, clock.now_ms());

        assert_eq!(
            admins.authenticate_token(&token).await.unwrap(),
            Some(Identity {
                name: "bob".to_owned(),
                role: Role::Approver
            })
        );
        assert_eq!(admins.authenticate_token("sase_unknown").await.unwrap(), None);
        assert_eq!(
            admins.authenticate_token(&record.id).await.unwrap(),
            None,
            "the id is no token"
        );

        assert_eq!(admins.tokens(Some("bob")).await.unwrap(), vec![record.clone()]);
        assert_eq!(admins.tokens(None).await.unwrap().len(), 2);
        let listed = serde_json::to_string(&admins.tokens(None).await.unwrap()).unwrap();
        assert!(!listed.contains(&token) && !listed.contains(&carols), "{listed}");

        assert!(admins.revoke_token(&record.id).await.unwrap());
        assert!(!admins.revoke_token(&record.id).await.unwrap(), "already revoked");
        assert_eq!(admins.authenticate_token(&token).await.unwrap(), None);
        assert!(admins.tokens(Some("bob")).await.unwrap().is_empty());
        assert!(admins.authenticate_token(&carols).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn bootstrap_creates_the_first_admin_only() {
        let (admins, _, _) = admins();
        let e = admins.bootstrap("root", "short").await.unwrap_err();
        assert_eq!(invalid_field(&e), Some("password"));
        assert!(admins.bootstrap("root", PASSWORD).await.unwrap());
        let root = admins.get("root").await.unwrap().unwrap();
        assert_eq!(root.role, Role::Admin);
        assert_eq!(root.created_by, "bootstrap");
        assert!(!admins.bootstrap("root", PASSWORD).await.unwrap());
        assert!(!admins.bootstrap("other", PASSWORD).await.unwrap());
        assert_eq!(admins.list().await.unwrap().len(), 1);
        assert!(admins.login("root", PASSWORD).await.unwrap().is_some());
    }
}
