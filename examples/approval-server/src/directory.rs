//! The organisation as DingTalk has it: departments (with their parents) and users (with
//! their departments), read from DingTalk's contacts API on a schedule and kept in step by
//! its contact-change events. A user's departments, with every department above them, are
//! their policy subject's departments (so a policy on a department covers its
//! sub-departments); a user who leaves loses their devices, their open requests and their
//! unused grants.
//!
//! The directory is one document in the store (kind `directory`): every replica reads it on
//! its reload tick; one replica at a time (a lease) reads DingTalk on the schedule.

use crate::devices::Devices;
use dingtalk_sdk::client::DingTalkClient;
use dingtalk_sdk::contacts::ListUsersRequest;
use dingtalk_sdk::event::{DeptChange, DeptChangeType, Event, UserChange, UserChangeType};
use dingtalk_sdk::{DeptId, ErrorKind};
use futures_util::TryStreamExt as _;
use sase_approval::clock::Clock;
use sase_approval::engine::Engine;
use sase_approval::state::RequestState;
use sase_approval::store::{ApprovalStore, Document, ListFilter};
use sase_approval::Error as StoreError;
use sase_policy::ids::UserId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const KIND: &str = "directory";
const ID: &str = "dingtalk";
/// Who revokes a leaver's requests, in their history.
pub(crate) const ACTOR: &str = "directory";

/// A department: its name and the department above it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Dept {
    pub(crate) name: String,
    pub(crate) parent: Option<i64>,
    /// When an event last changed it, Unix ms (0: as a full read found it).
    #[serde(default)]
    changed_at_ms: i64,
}

/// A user: their name and the departments they are in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) departments: Vec<i64>,
    /// When an event last changed them, Unix ms (0: as a full read found them).
    #[serde(default)]
    changed_at_ms: i64,
}

/// The directory as last read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub(crate) departments: BTreeMap<i64, Dept>,
    pub(crate) users: BTreeMap<String, Member>,
    /// The last full read of DingTalk, Unix ms (0: never).
    pub(crate) synced_at_ms: i64,
    /// Users an event removed, and when: a full read that began before does not bring them
    /// back (pruned by the next read that begins after).
    #[serde(default)]
    removed: BTreeMap<String, i64>,
    /// Departments an event removed, and when, likewise.
    #[serde(default)]
    removed_departments: BTreeMap<i64, i64>,
    /// The stored version (not in the body).
    #[serde(skip)]
    version: u64,
}

impl Snapshot {
    /// `user`'s departments and every department above them, as policies name them (the
    /// decimal id), or `None` for a user the directory does not know.
    pub(crate) fn departments_of(&self, user: &str) -> Option<Vec<String>> {
        let member = self.users.get(user)?;
        let mut seen = BTreeSet::new();
        for &dept in &member.departments {
            let mut at = Some(dept);
            // A parent chain visits each department once: a cycle in bad data ends here.
            while let Some(id) = at.filter(|id| seen.insert(*id)) {
                at = self.departments.get(&id).and_then(|d| d.parent);
            }
        }
        Some(seen.into_iter().map(|id| id.to_string()).collect())
    }

    /// `user`'s name, if the directory knows them.
    pub(crate) fn name_of(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(|m| m.name.as_str())
    }

    /// The name of the department policies name `id`.
    pub(crate) fn department_name(&self, id: &str) -> Option<&str> {
        let id: i64 = id.parse().ok()?;
        self.departments.get(&id).map(|d| d.name.as_str())
    }
}

/// What went wrong reading DingTalk or keeping the directory.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DirectoryError {
    /// DingTalk refused or could not be reached.
    #[error("reading DingTalk's directory: {0}")]
    DingTalk(#[from] dingtalk_sdk::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A full read would remove most users at once: more likely the wrong app or
    /// organisation than an exodus, so nothing is applied.
    #[error("a read of DingTalk's directory would remove {removed} of {known} users: not applied")]
    Implausible { removed: usize, known: usize },
}

/// The directory: its snapshot, and (with a DingTalk app) what keeps it in step.
#[derive(Clone)]
pub(crate) struct Directory(Arc<Inner>);

struct Inner {
    /// The app whose contacts are read and whose contact events are applied; `None`: no
    /// directory (devices keep the departments they were enrolled with).
    app: Option<(String, DingTalkClient)>,
    store: Arc<dyn ApprovalStore>,
    clock: Arc<dyn Clock>,
    engine: Arc<Engine>,
    devices: Devices,
    snapshot: RwLock<Arc<Snapshot>>,
}

/// What the directory needs.
pub(crate) struct Parts {
    /// The DingTalk app (Client ID and its client), if the directory follows DingTalk.
    pub(crate) app: Option<(String, DingTalkClient)>,
    pub(crate) store: Arc<dyn ApprovalStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) engine: Arc<Engine>,
    pub(crate) devices: Devices,
}

impl Directory {
    /// The directory, as stored (empty until first read).
    pub(crate) async fn open(parts: Parts) -> Result<Self, StoreError> {
        let directory = Self(Arc::new(Inner {
            app: parts.app,
            store: parts.store,
            clock: parts.clock,
            engine: parts.engine,
            devices: parts.devices,
            snapshot: RwLock::default(),
        }));
        directory.reload().await?;
        Ok(directory)
    }

    /// The directory as last read.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.0.snapshot.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The Client ID of the app the directory follows.
    pub(crate) fn app(&self) -> Option<&str> {
        self.0.app.as_ref().map(|(id, _)| id.as_str())
    }

    fn client(&self) -> Option<&DingTalkClient> {
        self.0.app.as_ref().map(|(_, client)| client)
    }

    fn set(&self, snapshot: Snapshot) {
        *self.0.snapshot.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(snapshot);
    }

    /// Reads the stored directory if it changed (another replica wrote it): its version
    /// first, the whole document (hundreds of KB for a large organisation) only when that moved.
    pub(crate) async fn reload(&self) -> Result<(), StoreError> {
        if self.0.store.document_version(KIND, ID).await? == Some(self.snapshot().version) {
            return Ok(());
        }
        let Some(document) = self.0.store.get_document(KIND, ID).await? else {
            return Ok(());
        };
        if document.version == self.snapshot().version {
            return Ok(());
        }
        let mut snapshot: Snapshot = crate::devices::decode(&document)?;
        snapshot.version = document.version;
        self.set(snapshot);
        Ok(())
    }

    /// Changes the stored directory as `change` says (read again and retried when another
    /// replica wrote it meanwhile); the directory as written.
    async fn update(&self, change: impl Fn(&mut Snapshot)) -> Result<Arc<Snapshot>, StoreError> {
        loop {
            self.reload().await?;
            let mut snapshot = (*self.snapshot()).clone();
            change(&mut snapshot);
            let document = Document::new(KIND, ID, snapshot.version, crate::devices::body(&snapshot)?)
                .at(self.0.clock.now_ms());
            match self.0.store.put_document(&document).await {
                Ok(version) => {
                    snapshot.version = version;
                    self.set(snapshot);
                    return Ok(self.snapshot());
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads the whole directory from DingTalk (departments from the root down, then each
    /// department's users) and applies it: users no longer there are offboarded. Nothing is
    /// applied if a call fails or the read would remove most users.
    pub(crate) async fn sync(&self) -> Result<(), DirectoryError> {
        let Some(client) = self.client() else {
            return Ok(());
        };
        let contacts = client.contacts();
        // What events change while the read runs is newer than the read: it is kept.
        let started = self.0.clock.now_ms();
        let mut departments = BTreeMap::new();
        let root = contacts.department(DeptId::ROOT).await?;
        departments.insert(root.dept_id.get(), dept(root.name, None, 0));
        // A department removed while the read runs answers "not found" when its turn comes:
        // it is left out (its removal event is applied on its own), not the read failed.
        let mut queue = VecDeque::from([DeptId::ROOT]);
        while let Some(at) = queue.pop_front() {
            let subs = match contacts.sub_departments(at).await {
                Ok(subs) => subs,
                Err(e) if e.kind() == ErrorKind::NotFound && at != DeptId::ROOT => {
                    departments.remove(&at.get());
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            for sub in subs {
                if departments.contains_key(&sub.dept_id.get()) {
                    continue;
                }
                queue.push_back(sub.dept_id);
                let parent = sub.parent_id.unwrap_or(at).get();
                departments.insert(sub.dept_id.get(), dept(sub.name, Some(parent), 0));
            }
        }
        let mut users = BTreeMap::new();
        let listed: Vec<i64> = departments.keys().copied().collect();
        for at in listed {
            let members: Vec<_> = match contacts
                .users(ListUsersRequest::new(DeptId::new(at)))
                .try_collect()
                .await
            {
                Ok(members) => members,
                Err(e) if e.kind() == ErrorKind::NotFound && at != DeptId::ROOT.get() => {
                    departments.remove(&at);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            for user in members {
                users.insert(user.user_id.as_str().to_owned(), member(user, 0));
            }
        }
        let read = Read {
            departments,
            users,
            started_at_ms: started,
        };
        // Who the read would take for leavers: known before it began, and not in it.
        let before = self.snapshot();
        let leaving = before
            .users
            .iter()
            .filter(|(user, m)| m.changed_at_ms < started && !read.users.contains_key(*user))
            .count();
        if before.users.len() >= 4 && leaving * 2 > before.users.len() {
            return Err(DirectoryError::Implausible {
                removed: leaving,
                known: before.users.len(),
            });
        }
        let left = std::sync::Mutex::new(Vec::new());
        let written = self
            .update(|s| {
                let next = read.merged(s);
                *left.lock().unwrap_or_else(PoisonError::into_inner) = s
                    .users
                    .keys()
                    .filter(|u| !next.users.contains_key(*u))
                    .cloned()
                    .collect();
                *s = next;
            })
            .await?;
        let left = left.into_inner().unwrap_or_else(PoisonError::into_inner);
        tracing::info!(
            departments = written.departments.len(),
            users = written.users.len(),
            left = left.len(),
            "directory read from DingTalk"
        );
        for user in left {
            self.offboard(&user).await?;
        }
        Ok(())
    }

    /// Applies a contact-change event of the directory's app; other events are not the
    /// directory's (`false`).
    pub(crate) async fn on_event(&self, event: &Event) -> Result<bool, DirectoryError> {
        match event {
            Event::UserChange(change) => match self.client() {
                Some(client) => self.users_changed(client, change).await?,
                None => return Ok(false),
            },
            Event::DeptChange(change) => match self.client() {
                Some(client) => self.departments_changed(client, change).await?,
                None => return Ok(false),
            },
            _ => return Ok(false),
        }
        Ok(true)
    }

    async fn users_changed(
        &self,
        client: &DingTalkClient,
        change: &UserChange,
    ) -> Result<(), DirectoryError> {
        for user in &change.user_ids {
            let read = if change.change == UserChangeType::Leave {
                None
            } else {
                match client.contacts().user(user).await {
                    Ok(read) => Some(read),
                    // Reading a user who left answers "not found".
                    Err(e) if e.kind() == ErrorKind::NotFound => None,
                    Err(e) => return Err(e.into()),
                }
            };
            let id = user.as_str().to_owned();
            let now = self.0.clock.now_ms();
            match read {
                Some(read) => {
                    let read = member(read, now);
                    // A department created just now (its event may come later): read it and
                    // those above it, so the user's scope is whole at once.
                    let unknown = self.unknown_departments(client, &read.departments).await?;
                    self.update(|s| {
                        s.users.insert(id.clone(), read.clone());
                        s.removed.remove(&id);
                        for (dept_id, dept) in &unknown {
                            s.departments.insert(*dept_id, dept.clone());
                        }
                    })
                    .await?;
                    tracing::info!(user = %id, "directory: user changed");
                }
                None => {
                    self.update(|s| {
                        s.users.remove(&id);
                        s.removed.insert(id.clone(), now);
                    })
                    .await?;
                    self.offboard(&id).await?;
                }
            }
        }
        Ok(())
    }

    /// `departments` the directory does not know, and those above them, read from DingTalk.
    async fn unknown_departments(
        &self,
        client: &DingTalkClient,
        departments: &[i64],
    ) -> Result<Vec<(i64, Dept)>, DirectoryError> {
        let known = self.snapshot();
        let mut read: Vec<(i64, Dept)> = Vec::new();
        let mut queue: Vec<i64> = departments.to_vec();
        while let Some(id) = queue.pop() {
            if known.departments.contains_key(&id) || read.iter().any(|(r, _)| *r == id) {
                continue;
            }
            let found = client.contacts().department(DeptId::new(id)).await?;
            let parent = found.parent_id.map(DeptId::get);
            queue.extend(parent);
            read.push((id, dept(found.name, parent, self.0.clock.now_ms())));
        }
        Ok(read)
    }

    async fn departments_changed(
        &self,
        client: &DingTalkClient,
        change: &DeptChange,
    ) -> Result<(), DirectoryError> {
        for &dept in &change.dept_ids {
            let read = if change.change == DeptChangeType::Remove {
                None
            } else {
                match client.contacts().department(dept).await {
                    Ok(read) => Some(read),
                    Err(e) if e.kind() == ErrorKind::NotFound => None,
                    Err(e) => return Err(e.into()),
                }
            };
            let id = dept.get();
            let now = self.0.clock.now_ms();
            let read = read.map(|d| self::dept(d.name, d.parent_id.map(DeptId::get), now));
            self.update(|s| match &read {
                Some(d) => {
                    s.departments.insert(id, d.clone());
                    s.removed_departments.remove(&id);
                }
                None => {
                    s.departments.remove(&id);
                    s.removed_departments.insert(id, now);
                }
            })
            .await?;
            tracing::info!(department = id, "directory: department changed");
        }
        Ok(())
    }

    /// A user left the organisation: their devices are revoked (their tokens refused from
    /// now on) and their open and approved requests revoked (written back to DingTalk; an
    /// approved one's grant is refused at consume).
    async fn offboard(&self, user: &str) -> Result<(), StoreError> {
        for device in self.0.devices.list().await? {
            if device.owner.user_id == user && device.revoked_at_ms.is_none() {
                self.0.devices.revoke(&device.device_id, device.version).await?;
                tracing::warn!(user, device = %device.device_id, "directory: the user left; device revoked");
            }
        }
        let open = ListFilter::default().requester(UserId::new(user)).states(vec![
            RequestState::Submitted,
            RequestState::Pending,
            RequestState::Approved,
        ]);
        for request in self.0.engine.list(&open).await? {
            match self
                .0
                .engine
                .revoke(&request.id, ACTOR, Some("the requester left the organisation"))
                .await
            {
                Ok(_) => {
                    tracing::warn!(user, request = %request.id, "directory: the user left; request revoked")
                }
                // Decided meanwhile: nothing left to revoke.
                Err(StoreError::IllegalTransition { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads DingTalk every `sync_every` (one replica at a time) and the stored directory
    /// every `reload_every`, until `shutdown`.
    pub(crate) fn follow(
        &self,
        reload_every: Duration,
        sync_every: Duration,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let directory = self.clone();
        tokio::spawn(async move {
            let holder = format!("{:032x}", rand::random::<u128>());
            let mut last_sync: Option<tokio::time::Instant> = None;
            loop {
                if directory.client().is_some() && last_sync.is_none_or(|t| t.elapsed() >= sync_every) {
                    last_sync = Some(tokio::time::Instant::now());
                    let now = directory.0.clock.now_ms();
                    let ttl = i64::try_from(sync_every.as_millis()).unwrap_or(i64::MAX);
                    match directory
                        .0
                        .store
                        .try_lease("directory-sync", &holder, now, ttl)
                        .await
                    {
                        Ok(true) => {
                            if let Err(e) = directory.sync().await {
                                tracing::error!(error = %e, "directory not read from DingTalk; tried again at the next sync");
                            }
                        }
                        Ok(false) => {}
                        Err(e) => tracing::error!(error = %e, "directory sync lease"),
                    }
                }
                if let Err(e) = directory.reload().await {
                    tracing::error!(error = %e, "directory not reloaded");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(reload_every) => {}
                }
            }
        })
    }
}

/// What a full read of DingTalk found.
#[derive(Debug)]
struct Read {
    departments: BTreeMap<i64, Dept>,
    users: BTreeMap<String, Member>,
    /// When the read began, Unix ms.
    started_at_ms: i64,
}

impl Read {
    /// The directory this read makes of `stored`: the read's departments and users, but what
    /// an event changed or removed since the read began kept as the event left it (the read
    /// saw it before); the removals older than the read forgotten.
    fn merged(&self, stored: &Snapshot) -> Snapshot {
        let started = self.started_at_ms;
        let mut next = Snapshot {
            departments: self.departments.clone(),
            users: self.users.clone(),
            synced_at_ms: started,
            removed: stored.removed.clone(),
            removed_departments: stored.removed_departments.clone(),
            version: stored.version,
        };
        next.departments.extend(
            stored
                .departments
                .iter()
                .filter(|(_, d)| d.changed_at_ms >= started)
                .map(|(id, d)| (*id, d.clone())),
        );
        next.users.extend(
            stored
                .users
                .iter()
                .filter(|(_, m)| m.changed_at_ms >= started)
                .map(|(id, m)| (id.clone(), m.clone())),
        );
        next.removed.retain(|_, at| *at >= started);
        for user in next.removed.keys() {
            next.users.remove(user);
        }
        next.removed_departments.retain(|_, at| *at >= started);
        for id in next.removed_departments.keys() {
            next.departments.remove(id);
        }
        next
    }
}

fn member(user: dingtalk_sdk::contacts::User, changed_at_ms: i64) -> Member {
    Member {
        name: user.name,
        departments: user.dept_id_list.iter().map(|d| d.get()).collect(),
        changed_at_ms,
    }
}

fn dept(name: String, parent: Option<i64>, changed_at_ms: i64) -> Dept {
    Dept {
        name,
        parent,
        changed_at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dept(name: &str, parent: Option<i64>) -> Dept {
        super::dept(name.to_owned(), parent, 0)
    }

    /// A user's departments include every department above theirs, once; a cycle in bad
    /// data ends the walk.
    #[test]
    fn a_users_departments_include_those_above() {
        let mut s = Snapshot::default();
        s.departments.insert(1, dept("Company", None));
        s.departments.insert(2, dept("R&D", Some(1)));
        s.departments.insert(3, dept("Platform", Some(2)));
        s.departments.insert(7, dept("Loop a", Some(8)));
        s.departments.insert(8, dept("Loop b", Some(7)));
        s.users.insert(
            "u1".into(),
            Member {
                name: "Ada".into(),
                departments: vec![3, 2],
                changed_at_ms: 0,
            },
        );
        s.users.insert(
            "u2".into(),
            Member {
                name: "Bo".into(),
                departments: vec![7],
                changed_at_ms: 0,
            },
        );
        assert_eq!(s.departments_of("u1").unwrap(), ["1", "2", "3"]);
        assert_eq!(s.departments_of("u2").unwrap(), ["7", "8"]);
        assert_eq!(s.departments_of("nobody"), None);
        assert_eq!(s.name_of("u1"), Some("Ada"));
        assert_eq!(s.department_name("2"), Some("R&D"));
        assert_eq!(s.department_name("x"), None);
    }

    /// A full read keeps what events did after it began: a department or user removed stays
    /// removed, a renamed department keeps its new name; removals from before the read are
    /// forgotten (the read is newer).
    #[test]
    fn a_read_does_not_undo_the_events_made_while_it_ran() {
        let started = 1_000;
        let member = |name: &str, at: i64| Member {
            name: name.into(),
            departments: vec![1],
            changed_at_ms: at,
        };
        let read = Read {
            departments: [
                (1, dept("Company", None)),
                (5, dept("Legal", Some(1))),
                (6, dept("Sales", Some(1))),
                (7, dept("Support", Some(1))),
            ]
            .into(),
            users: [
                ("u1".to_owned(), member("Ada", 0)),
                ("u9".to_owned(), member("Nine", 0)),
            ]
            .into(),
            started_at_ms: started,
        };
        let mut stored = Snapshot::default();
        // While the read ran: Legal removed, Sales renamed, u9 left.
        stored.removed_departments.insert(5, started + 10);
        stored
            .departments
            .insert(6, super::dept("Sales & Marketing".into(), Some(1), started + 5));
        stored.removed.insert("u9".into(), started + 10);
        // Before it: Support removed (and back since, as the read found it).
        stored.removed_departments.insert(7, started - 10);

        let next = read.merged(&stored);
        assert_eq!(next.departments.keys().copied().collect::<Vec<_>>(), [1, 6, 7]);
        assert_eq!(next.department_name("6"), Some("Sales & Marketing"));
        assert_eq!(next.users.keys().collect::<Vec<_>>(), ["u1"]);
        assert_eq!(next.removed_departments, [(5, started + 10)].into());
        assert_eq!(next.synced_at_ms, started);
    }
}
