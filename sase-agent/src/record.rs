//! The persistent record of used grants: a small JSON file, read once on construction and
//! rewritten atomically (write aside, sync, rename) on every change.

use crate::error::AgentError;
use sase_policy::ids::GrantId;
use sase_policy::UsedGrants;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

/// The file format's version.
const VERSION: u32 = 1;

/// How long past its expiry an entry is kept. An expired grant is refused by its expiry
/// anyway; the margin keeps it refused when the device's clock is set back a little.
const KEEP_PAST_EXPIRY_MS: i64 = 24 * 60 * 60 * 1000;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File1 {
    version: u32,
    used: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: GrantId,
    expires_at_ms: i64,
}

/// Used grant ids and their expiry, mirrored in a file.
#[derive(Debug)]
pub(crate) struct UsedRecord {
    path: PathBuf,
    used: BTreeMap<GrantId, i64>,
}

impl UsedGrants for UsedRecord {
    fn is_used(&self, id: &GrantId) -> bool {
        self.used.contains_key(id)
    }
}

impl UsedRecord {
    /// Reads the record at `path`; a missing file is an empty record (the first start). A
    /// file that cannot be read or parsed is an error, never an empty record.
    pub(crate) fn open(path: PathBuf) -> Result<Self, AgentError> {
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(Self {
                    path,
                    used: BTreeMap::new(),
                })
            }
            Err(e) => return Err(record_error(&path, "cannot read", &e)),
        };
        let file: File1 = serde_json::from_str(&text)
            .map_err(|e| record_error(&path, "corrupt (refusing to reset it)", &e))?;
        if file.version != VERSION {
            return Err(AgentError::Record {
                path,
                reason: format!("unsupported version {} (expected {VERSION})", file.version),
            });
        }
        let used = file.used.into_iter().map(|e| (e.id, e.expires_at_ms)).collect();
        Ok(Self { path, used })
    }

    /// How many grant ids are recorded.
    pub(crate) fn len(&self) -> usize {
        self.used.len()
    }

    /// The record file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Records `id` as used and persists the record; entries long expired at `now_ms` are
    /// dropped. The id stays recorded in memory even when persisting fails.
    pub(crate) fn insert(&mut self, id: GrantId, expires_at_ms: i64, now_ms: i64) -> Result<(), AgentError> {
        self.used.insert(id, expires_at_ms);
        let keep_after = now_ms.saturating_sub(KEEP_PAST_EXPIRY_MS);
        self.used.retain(|_, expires| *expires > keep_after);
        self.persist()
    }

    fn persist(&self) -> Result<(), AgentError> {
        let file = File1 {
            version: VERSION,
            used: self
                .used
                .iter()
                .map(|(id, expires)| Entry {
                    id: id.clone(),
                    expires_at_ms: *expires,
                })
                .collect(),
        };
        let text =
            serde_json::to_vec_pretty(&file).map_err(|e| record_error(&self.path, "cannot encode", &e))?;
        let dir = parent(&self.path);
        // tempfile creates it owner-only (0600 on unix) beside the record, and removes it if
        // the rename does not happen.
        let written = tempfile::NamedTempFile::new_in(dir).and_then(|mut aside| {
            aside.write_all(&text)?;
            aside.as_file().sync_all()?;
            aside.persist(&self.path).map(drop).map_err(|e| e.error)
        });
        written.map_err(|e| record_error(&self.path, "cannot write", &e))?;
        sync_dir(&self.path).map_err(|e| record_error(&self.path, "cannot sync its directory", &e))
    }
}

/// The directory holding `path` (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Syncs the directory holding `path`, so the rename survives a power loss.
#[cfg(unix)]
fn sync_dir(path: &Path) -> std::io::Result<()> {
    File::open(parent(path))?.sync_all()
}

/// Directories cannot be opened for syncing here; the file itself was synced.
#[cfg(not(unix))]
fn sync_dir(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

fn record_error(path: &Path, what: &str, e: &dyn std::fmt::Display) -> AgentError {
    AgentError::Record {
        path: path.to_owned(),
        reason: format!("{what}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_long_expired_are_dropped_and_the_rest_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("used.json");
        let mut record = UsedRecord::open(path.clone()).unwrap();
        let now = 10 * KEEP_PAST_EXPIRY_MS;
        record
            .insert(
                GrantId::new("old"),
                now - 2 * KEEP_PAST_EXPIRY_MS,
                now - 3 * KEEP_PAST_EXPIRY_MS,
            )
            .unwrap();
        record.insert(GrantId::new("recent"), now - 1, now - 2).unwrap();
        record.insert(GrantId::new("new"), now + 1, now).unwrap();
        let reopened = UsedRecord::open(path).unwrap();
        assert!(
            !reopened.is_used(&GrantId::new("old")),
            "dropped a day past its expiry"
        );
        assert!(
            reopened.is_used(&GrantId::new("recent")),
            "kept within a day of its expiry"
        );
        assert!(reopened.is_used(&GrantId::new("new")));
        assert_eq!(reopened.len(), 2);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["used.json"], "no aside file is left behind");
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("used.json");
        let mut record = UsedRecord::open(path.clone()).unwrap();
        record.insert(GrantId::new("g"), 10, 0).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn an_unknown_version_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("used.json");
        fs::write(&path, r#"{"version":2,"used":[]}"#).unwrap();
        assert!(matches!(UsedRecord::open(path), Err(AgentError::Record { .. })));
    }

    #[test]
    fn a_path_without_a_file_name_cannot_be_written() {
        let mut record = UsedRecord::open(PathBuf::from("/")).unwrap_or_else(|_| UsedRecord {
            path: PathBuf::from("/"),
            used: BTreeMap::new(),
        });
        assert!(matches!(
            record.insert(GrantId::new("g"), 10, 0),
            Err(AgentError::Record { .. })
        ));
        assert!(record.is_used(&GrantId::new("g")), "still refused in memory");
    }
}
