//! Enrolled devices, kept in the store every replica shares: those `server.toml` declares
//! (written at start) and those enrolled with a single-use, expiring code an admin made. A
//! device's token is stored as its SHA-256 only; revoking a device clears it, so the token is
//! refused at once, on every replica. Enrollment codes are stored the same way.

use crate::config::DeviceConfig;
use crate::directory::Snapshot;
use rand::distributions::{Alphanumeric, DistString as _};
use sase_approval::clock::Clock;
use sase_approval::store::{ApprovalStore, Document};
use sase_approval::Error as StoreError;
use sase_policy::ids::{DeptId, DeviceId, DeviceTag, GroupId, UserId};
use sase_policy::Subject;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::sync::Arc;

const DEVICE: &str = "device";
const CODE: &str = "enrollment_code";

/// How long an enrollment code lasts by default, and at most.
pub(crate) const CODE_TTL_SECS: u64 = 24 * 3600;
pub(crate) const CODE_TTL_MAX_SECS: u64 = 30 * 24 * 3600;

/// Who a device (or the device an enrollment code makes) belongs to, and its tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Owner {
    /// The user's id (1 to 128 characters, no control characters; so are groups,
    /// departments and tags).
    #[schema(min_length = 1, max_length = 128)]
    pub(crate) user_id: String,
    #[serde(default)]
    pub(crate) groups: Vec<String>,
    #[serde(default)]
    pub(crate) departments: Vec<String>,
    #[serde(default)]
    pub(crate) tags: Vec<String>,
}

/// An enrolled device, as stored (its token only as a hash, in the document's lookup).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Device {
    pub(crate) device_id: String,
    #[serde(flatten)]
    pub(crate) owner: Owner,
    pub(crate) enrolled_at_ms: i64,
    /// Where it came from: `config`, an enrollment code's id, or `dingtalk_sign_in`.
    pub(crate) enrolled_by: String,
    /// Set once revoked: its token is refused from then on.
    #[serde(default)]
    pub(crate) revoked_at_ms: Option<i64>,
    /// The stored version (not in the body).
    #[serde(skip)]
    pub(crate) version: u64,
}

/// A device's policy subject, owned (a [`Subject`] borrows it).
pub(crate) struct Enrolled {
    pub(crate) user: UserId,
    pub(crate) device: DeviceId,
    groups: Vec<GroupId>,
    departments: Vec<DeptId>,
    tags: Vec<DeviceTag>,
}

impl Enrolled {
    /// `d`'s subject: its user's departments (with those above them) as `directory` has
    /// them, or, for a user it does not know, those the device was enrolled with.
    pub(crate) fn new(d: &Device, directory: &Snapshot) -> Self {
        let departments = directory
            .departments_of(&d.owner.user_id)
            .unwrap_or_else(|| d.owner.departments.clone());
        Self {
            user: UserId::new(&d.owner.user_id),
            device: DeviceId::new(&d.device_id),
            groups: d.owner.groups.iter().map(GroupId::new).collect(),
            departments: departments.iter().map(DeptId::new).collect(),
            tags: d.owner.tags.iter().map(DeviceTag::new).collect(),
        }
    }

    pub(crate) fn subject(&self) -> Subject<'_> {
        Subject {
            user: &self.user,
            groups: &self.groups,
            departments: &self.departments,
            device: &self.device,
            tags: &self.tags,
        }
    }
}

/// An enrollment code, as stored (the code itself only as a hash).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Code {
    pub(crate) id: String,
    #[serde(flatten)]
    pub(crate) owner: Owner,
    pub(crate) created_at_ms: i64,
    pub(crate) expires_at_ms: i64,
}

/// Why an enrollment failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EnrollError {
    /// No such code, or it was used.
    #[error("the enrollment code is unknown or was already used")]
    Unknown,
    /// The code expired.
    #[error("the enrollment code expired")]
    Expired,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A fresh secret: 32 letters and digits (≈ 190 bits).
pub(crate) fn secret() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), 32)
}

/// What a token or code is found by: its SHA-256, hex. A lookup by hash leaks nothing about the
/// secret, so no constant-time comparison is needed.
pub(crate) fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub(crate) fn body<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Store {
        reason: format!("cannot encode a document: {e}"),
    })
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(document: &Document) -> Result<T, StoreError> {
    serde_json::from_str(&document.body).map_err(|e| StoreError::Store {
        reason: format!("stored {} `{}` does not decode: {e}", document.kind, document.id),
    })
}

fn device_of(document: &Document) -> Result<Device, StoreError> {
    let mut device: Device = decode(document)?;
    device.version = document.version;
    Ok(device)
}

/// The devices and enrollment codes in the store.
#[derive(Clone)]
pub(crate) struct Devices {
    store: Arc<dyn ApprovalStore>,
    clock: Arc<dyn Clock>,
}

impl Devices {
    pub(crate) fn new(store: Arc<dyn ApprovalStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Writes the devices `server.toml` declares, each with its token: the file wins over a
    /// stored device of the same id (its token, owner and tags are the file's, and a revoked
    /// one is enrolled again); devices enrolled with codes are kept.
    pub(crate) async fn seed(&self, declared: &[DeviceConfig]) -> Result<(), StoreError> {
        for d in declared {
            let device = Device {
                device_id: d.device_id.clone(),
                owner: Owner {
                    user_id: d.user_id.clone(),
                    groups: d.groups.clone(),
                    departments: d.departments.clone(),
                    tags: d.tags.clone(),
                },
                enrolled_at_ms: self.clock.now_ms(),
                enrolled_by: "config".to_owned(),
                revoked_at_ms: None,
                version: 0,
            };
            self.put_device(&device, &d.token).await?;
        }
        Ok(())
    }

    /// Writes `device` with `token` over whatever is stored under its id (another replica
    /// writing at once: read again and write over it).
    async fn put_device(&self, device: &Device, token: &str) -> Result<(), StoreError> {
        loop {
            let stored = self.store.get_document(DEVICE, &device.device_id).await?;
            if let Some(stored) = &stored {
                let same = device_of(stored)?;
                if stored.lookup.as_deref() == Some(hash(token).as_str())
                    && same.owner == device.owner
                    && same.revoked_at_ms.is_none()
                {
                    return Ok(());
                }
            }
            let version = stored.map_or(0, |d| d.version);
            let document = Document::new(DEVICE, &device.device_id, version, body(device)?)
                .lookup(hash(token))
                .at(self.clock.now_ms());
            match self.store.put_document(&document).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The device whose token is `token`, unless revoked.
    pub(crate) async fn authenticate(&self, token: &str) -> Result<Option<Device>, StoreError> {
        match self.store.find_document(DEVICE, &hash(token)).await? {
            Some(document) => Ok(Some(device_of(&document)?).filter(|d| d.revoked_at_ms.is_none())),
            None => Ok(None),
        }
    }

    /// A new enrollment code for `owner`, valid `ttl_secs`: (the code, shown once; its record).
    pub(crate) async fn create_code(
        &self,
        owner: Owner,
        ttl_secs: u64,
    ) -> Result<(String, Code), StoreError> {
        let now = self.clock.now_ms();
        let code = Code {
            id: format!("enr-{}", secret().to_lowercase().get(..12).unwrap_or_default()),
            owner,
            created_at_ms: now,
            expires_at_ms: now
                .saturating_add(i64::try_from(ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX)),
        };
        let value = secret();
        let document = Document::new(CODE, &code.id, 0, body(&code)?)
            .lookup(hash(&value))
            .at(now);
        self.store.put_document(&document).await?;
        Ok((value, code))
    }

    /// The enrollment codes not used yet (expired ones included, until used or pruned).
    pub(crate) async fn codes(&self) -> Result<Vec<Code>, StoreError> {
        self.store
            .list_documents(CODE)
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    /// Exchanges `code` for a device token of `device_id`: the code is deleted (single use:
    /// of two exchanges at once, one wins), the device written with a fresh token (a device
    /// enrolled again gets a new token; its old one is refused).
    pub(crate) async fn enroll(&self, value: &str, device_id: &str) -> Result<(String, Device), EnrollError> {
        let Some(document) = self.store.find_document(CODE, &hash(value)).await? else {
            return Err(EnrollError::Unknown);
        };
        let code: Code = decode(&document)?;
        if self.clock.now_ms() >= code.expires_at_ms {
            return Err(EnrollError::Expired);
        }
        match self.store.delete_document(CODE, &code.id, document.version).await {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => return Err(EnrollError::Unknown),
            Err(e) => return Err(e.into()),
        }
        Ok(self.enroll_as(device_id, code.owner, &code.id).await?)
    }

    /// Enrolls `device_id` for `owner` with a fresh token (a device enrolled again gets a new
    /// token; its old one is refused); `by` says how (an enrollment code's id, or a sign-in).
    pub(crate) async fn enroll_as(
        &self,
        device_id: &str,
        owner: Owner,
        by: &str,
    ) -> Result<(String, Device), StoreError> {
        let token = secret();
        let device = Device {
            device_id: device_id.to_owned(),
            owner,
            enrolled_at_ms: self.clock.now_ms(),
            enrolled_by: by.to_owned(),
            revoked_at_ms: None,
            version: 0,
        };
        self.put_device(&device, &token).await?;
        Ok((token, device))
    }

    /// Every device, by id.
    pub(crate) async fn list(&self) -> Result<Vec<Device>, StoreError> {
        self.store
            .list_documents(DEVICE)
            .await?
            .iter()
            .map(device_of)
            .collect()
    }

    /// The device `id`.
    pub(crate) async fn get(&self, id: &str) -> Result<Option<Device>, StoreError> {
        self.store
            .get_document(DEVICE, id)
            .await?
            .as_ref()
            .map(device_of)
            .transpose()
    }

    /// Changes device `id` as `change` says if it is at `version`: the device as written.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when it is not (`actual` 0: no such device).
    pub(crate) async fn update(
        &self,
        id: &str,
        version: u64,
        change: impl FnOnce(&mut Device, &mut Option<String>),
    ) -> Result<Device, StoreError> {
        let stored = self.store.get_document(DEVICE, id).await?;
        let actual = stored.as_ref().map_or(0, |d| d.version);
        let Some(stored) = stored.filter(|_| actual == version) else {
            return Err(StoreError::Conflict {
                id: format!("{DEVICE}/{id}"),
                expected: version,
                actual,
            });
        };
        let mut device = device_of(&stored)?;
        let mut lookup = stored.lookup.clone();
        change(&mut device, &mut lookup);
        let mut document = Document::new(DEVICE, id, version, body(&device)?).at(self.clock.now_ms());
        if let Some(lookup) = lookup {
            document = document.lookup(lookup);
        }
        device.version = self.store.put_document(&document).await?;
        Ok(device)
    }

    /// Revokes device `id` (at `version`): its token is refused from now on.
    pub(crate) async fn revoke(&self, id: &str, version: u64) -> Result<Device, StoreError> {
        let now = self.clock.now_ms();
        self.update(id, version, |device, lookup| {
            device.revoked_at_ms.get_or_insert(now);
            *lookup = None;
        })
        .await
    }
}
