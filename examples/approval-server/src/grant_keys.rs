//! The grant signing keys: a file of hex Ed25519 seeds, one a line. The first line signs new
//! grants; the lines after it (the keys before a rotation) no longer sign, but their public keys
//! are still published, so grants they signed verify until they expire. Created with mode
//! 0600 and atomically (written aside, then renamed); a file that does not parse stops the
//! start, because replacing it would void every outstanding grant.
//!
//! Rotation ([`rotate`], `approval-server --rotate-grant-key`): a new seed goes first; once
//! every grant signed by an old key has expired (the grant TTL), its line can be deleted.
//!
//! Replicas (a shared PostgreSQL database) must sign with one key: they read it from one file
//! every replica mounts, or from the `SASE_GRANT_KEYS` variable (the same seeds, separated by
//! commas or whitespace), and never create one of their own.

use rand::RngCore as _;
use sase_policy::{GrantSigner, GrantVerifier};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Why the key file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("grant key file {path}: {reason}")]
pub struct GrantKeyError {
    path: PathBuf,
    reason: String,
}

impl GrantKeyError {
    fn new(path: &Path, reason: impl std::fmt::Display) -> Self {
        Self {
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// The keys of a key file: the signing one, and the public keys agents accept (its own
/// first).
#[derive(Debug)]
pub(crate) struct GrantKeys {
    pub(crate) signer: GrantSigner,
    pub(crate) verifiers: Vec<GrantVerifier>,
}

/// The keys in `SASE_GRANT_KEYS`: hex seeds separated by commas or whitespace, the signing
/// one first.
pub(crate) fn from_env(text: &str) -> Result<GrantKeys, GrantKeyError> {
    parse(
        Path::new("$SASE_GRANT_KEYS"),
        &text.replace(',', "\n").replace(char::is_whitespace, "\n"),
    )
}

/// Reads the key file at `path`; a missing file is an error (replicas must share one key:
/// it is created once, with [`rotate`], and mounted by all).
pub(crate) fn load(path: &Path) -> Result<GrantKeys, GrantKeyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            warn_if_readable_by_others(path, "the grant key file");
            parse(path, &text)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(GrantKeyError::new(
            path,
            "missing: replicas share one key, so none creates it; create it once with \
             `approval-server --rotate-grant-key` and give every replica that file (or SASE_GRANT_KEYS)",
        )),
        Err(e) => Err(GrantKeyError::new(path, e)),
    }
}

/// Reads the key file at `path`, creating it with one new key if there is none.
pub(crate) fn load_or_create(path: &Path) -> Result<GrantKeys, GrantKeyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            warn_if_readable_by_others(path, "the grant key file");
            parse(path, &text)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed = new_seed();
            if !create_atomically(path, &hex::encode(seed)).map_err(|e| GrantKeyError::new(path, e))? {
                // Another process starting at once made it first: its key is the one.
                return load(path);
            }
            tracing::info!(path = %path.display(), "created a grant signing key");
            Ok(keys(&seed, &[]))
        }
        Err(e) => Err(GrantKeyError::new(path, e)),
    }
}

/// Puts a new signing key first in the file at `path` (created if missing), keeping the
/// others for verification; returns the new public key.
///
/// # Errors
/// If the file exists but does not parse, or cannot be written.
pub fn rotate(path: &Path) -> Result<GrantVerifier, GrantKeyError> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => {
            parse(path, &text)?;
            text
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(GrantKeyError::new(path, e)),
    };
    let seed = new_seed();
    write_atomically(path, &format!("{}\n{}", hex::encode(seed), existing.trim()))
        .map_err(|e| GrantKeyError::new(path, e))?;
    Ok(GrantSigner::from_bytes(&seed).verifier())
}

fn new_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    seed
}

/// The keys: `signing` signs, and it and `older` verify.
fn keys(signing: &[u8; 32], older: &[[u8; 32]]) -> GrantKeys {
    let signer = GrantSigner::from_bytes(signing);
    let verifiers = std::iter::once(signer.verifier())
        .chain(older.iter().map(|seed| GrantSigner::from_bytes(seed).verifier()))
        .collect();
    GrantKeys { signer, verifiers }
}

fn parse(path: &Path, text: &str) -> Result<GrantKeys, GrantKeyError> {
    let mut seeds = Vec::new();
    for (i, line) in text.lines().map(str::trim).enumerate() {
        if line.is_empty() {
            continue;
        }
        let mut seed = [0u8; 32];
        hex::decode_to_slice(line, &mut seed)
            .map_err(|e| GrantKeyError::new(path, format!("line {}: not a 64-digit hex key ({e})", i + 1)))?;
        seeds.push(seed);
    }
    let Some((signing, older)) = seeds.split_first() else {
        return Err(GrantKeyError::new(
            path,
            "holds no key (an empty file is not replaced: outstanding grants would stop verifying)",
        ));
    };
    Ok(keys(signing, older))
}

/// Writes `text` beside `path`, owner-only (tempfile creates it 0600 on unix), flushes it to
/// disk, then renames it over `path`, so a crash leaves the old file or the new one, never half
/// of one; the aside file is removed if anything fails.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    written_aside(path, text)?
        .persist(path)
        .map(drop)
        .map_err(|e| e.error)
}

/// Writes `text` to `path` as [`write_atomically`] does unless a file is there already
/// (another process created it meanwhile): `false` then, and that file is left as it is.
/// Also creates the secrets key file (src/secrets.rs).
pub(crate) fn create_atomically(path: &Path, text: &str) -> std::io::Result<bool> {
    match written_aside(path, text)?.persist_noclobber(path) {
        Ok(_) => Ok(true),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e.error),
    }
}

/// `text` and a newline in an owner-only file beside `path`, on disk (removed if dropped).
fn written_aside(path: &Path, text: &str) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut aside = tempfile::NamedTempFile::new_in(dir)?;
    aside.write_all(text.as_bytes())?;
    aside.write_all(b"\n")?;
    aside.as_file().sync_all()?;
    Ok(aside)
}

/// Warns that the key file at `path` (`what` in the message) can be read by its group or
/// others. Also for the secrets key file (src/secrets.rs).
pub(crate) fn warn_if_readable_by_others(path: &Path, what: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777),
                    "{what} is readable by others: chmod 600 it");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_read_back_and_rotated_with_the_old_key_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grant-key");
        let first = load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let again = load_or_create(&path).unwrap();
        assert_eq!(
            again.signer.verifier(),
            first.signer.verifier(),
            "the same key after a restart"
        );

        let new = rotate(&path).unwrap();
        let rotated = load_or_create(&path).unwrap();
        assert_eq!(rotated.signer.verifier(), new, "the new key signs");
        assert_eq!(
            rotated.verifiers,
            vec![new, first.signer.verifier()],
            "the old one still verifies"
        );
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "nothing left aside");
    }

    #[test]
    fn replicas_read_one_key_and_never_create_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grant-key");
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("missing") && e.contains("--rotate-grant-key"), "{e}");
        assert!(!path.exists(), "not created");
        let signing = rotate(&path).unwrap();
        let older = rotate(&path).unwrap();
        let file = load(&path).unwrap();
        assert_eq!(file.verifiers, vec![older, signing]);
        // The same seeds from the environment, on one line.
        let seeds = std::fs::read_to_string(&path).unwrap().trim().replace('\n', ",");
        let env = from_env(&seeds).unwrap();
        assert_eq!(env.signer.verifier(), file.signer.verifier());
        assert_eq!(env.verifiers, file.verifiers);
        let e = from_env("not-hex").unwrap_err().to_string();
        assert!(e.contains("$SASE_GRANT_KEYS") && !e.contains("not-hex"), "{e}");
    }

    #[test]
    fn a_corrupt_or_empty_file_is_an_error_naming_it_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grant-key");
        for text in ["0123abc", "", "zz".repeat(32).as_str()] {
            std::fs::write(&path, text).unwrap();
            let e = load_or_create(&path).unwrap_err();
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "not replaced");
            assert!(rotate(&path).is_err(), "nor rotated over");
        }
    }
}
