//! Encryption at rest of the secrets an admin stores for a DingTalk workflow (client secret,
//! `aes_key`, token). The workflow documents live in the database (SQLite or PostgreSQL); their
//! secrets are sealed under a key the database does not hold, so a copy of the database (a
//! backup, a dump) does not give the DingTalk app away.
//!
//! A sealed value is `v1:` + base64(nonce ‖ ciphertext ‖ tag): XChaCha20-Poly1305 with a random
//! 24-byte nonce per seal. Random nonces that long do not collide in practice, so replicas
//! sealing with one key keep no counter between them. The field a value belongs to
//! (`workflow/wf-it/client_secret`) is bound as associated data, so a value copied into another
//! field or workflow does not open. The prefix names the scheme: a later one gets its own, and
//! values sealed with this one still open.
//!
//! The key is 32 bytes written as 64 hex digits, in `SASE_SECRETS_KEY` or in a key file.
//! Replicas (a shared PostgreSQL database) must use one key: they read it ([`SecretsKey::load`])
//! and never create one. A single server may create its own ([`SecretsKey::load_or_create`]):
//! mode 0600, written aside and renamed, as the grant key file (src/grant_keys.rs). Without the
//! key the stored secrets cannot be read (they must be entered again), so it is backed up apart
//! from the database.

use crate::grant_keys::{create_atomically, warn_if_readable_by_others};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead as _, Payload};
use chacha20poly1305::{KeyInit as _, XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use std::fmt;
use std::path::Path;
use zeroize::Zeroizing;

/// The variable that holds the key, as messages name it.
const ENV_VAR: &str = "$SASE_SECRETS_KEY";
/// The prefix of a value sealed with this scheme.
const V1: &str = "v1:";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why there is no key, or why a stored value does not open. Messages name the key file, the
/// variable or the field (the context); never a key, a sealed value or a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// The key file or `$SASE_SECRETS_KEY` gives no usable key.
    #[error("secrets key {origin}: {reason}")]
    Key {
        /// `file <path>` or `$SASE_SECRETS_KEY`.
        origin: String,
        /// What is wrong with it (its length at most).
        reason: String,
    },
    /// The stored value is not one this scheme sealed: no `v1:` prefix (stored in the clear,
    /// or by a newer server), not base64, or too short for a nonce and a tag.
    #[error("sealed value for {context}: {reason}")]
    Malformed {
        /// The field it belongs to (`workflow/wf-it/client_secret`).
        context: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The value is too long for the cipher to seal.
    #[error("the value for {context} is too long to seal")]
    TooLong {
        /// The field it belongs to.
        context: String,
    },
    /// The value is well formed but fails authentication: another key, another context, or
    /// altered. One error for all three, as the cipher cannot tell them apart.
    #[error("sealed value does not open with this key for {context}: wrong key, or altered")]
    DoesNotOpen {
        /// The field it belongs to.
        context: String,
    },
}

impl SecretsError {
    fn file(path: &Path, reason: impl fmt::Display) -> Self {
        Self::Key {
            origin: format!("file {}", path.display()),
            reason: reason.to_string(),
        }
    }
}

/// The key that seals and opens the stored secrets. It is held only inside the cipher, which
/// wipes it on drop; `Debug` prints none of it.
pub(crate) struct SecretsKey {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretsKey(<redacted>)")
    }
}

impl SecretsKey {
    /// The key in `SASE_SECRETS_KEY`: 64 hex digits, surrounding whitespace ignored.
    pub(crate) fn from_env(text: &str) -> Result<Self, SecretsError> {
        parse(text).map_err(|reason| SecretsError::Key {
            origin: ENV_VAR.to_owned(),
            reason,
        })
    }

    /// Reads the key file at `path`; a missing file is an error, because replicas must share
    /// one key: it is created once and given to all.
    pub(crate) fn load(path: &Path) -> Result<Self, SecretsError> {
        read(path)?.ok_or_else(|| {
            SecretsError::file(
                path,
                format_args!(
                    "missing: replicas share one key, so none creates it; create it once (64 hex \
                     characters, e.g. `(umask 077; openssl rand -hex 32 > {})`, mode 0600) and give \
                     every replica that file, or set SASE_SECRETS_KEY",
                    path.display()
                ),
            )
        })
    }

    /// Reads the key file at `path`, creating it with a new random key if there is none. A file
    /// that does not parse is an error and is left alone: replacing it would lose every
    /// secret sealed with it.
    pub(crate) fn load_or_create(path: &Path) -> Result<Self, SecretsError> {
        if let Some(key) = read(path)? {
            return Ok(key);
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rand::rngs::OsRng.fill_bytes(&mut *key);
        if !create_atomically(path, &Zeroizing::new(hex::encode(key.as_slice())))
            .map_err(|e| SecretsError::file(path, e))?
        {
            // Another process starting at once made it first: its key is the one.
            return Self::load(path);
        }
        tracing::info!(path = %path.display(),
            "created a secrets key: back it up apart from the database, the stored DingTalk secrets cannot be read without it");
        Ok(Self::from_bytes(&key))
    }

    /// Seals `plaintext` for the field `context` (e.g. `workflow/wf-it/client_secret`):
    /// `v1:` + base64(nonce ‖ ciphertext ‖ tag), with a fresh random nonce, so sealing one
    /// value twice gives two different strings.
    pub(crate) fn seal(&self, plaintext: &str, context: &str) -> Result<String, SecretsError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: context.as_bytes(),
        };
        // The cipher refuses only messages over 256 GiB (request bodies are capped far below).
        let ciphertext =
            self.cipher
                .encrypt(&XNonce::from(nonce), payload)
                .map_err(|_| SecretsError::TooLong {
                    context: context.to_owned(),
                })?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(format!("{V1}{}", BASE64.encode(sealed)))
    }

    /// Opens a value [`seal`](Self::seal)ed with this key for the same `context`.
    pub(crate) fn open(&self, sealed: &str, context: &str) -> Result<String, SecretsError> {
        let malformed = |reason| SecretsError::Malformed {
            context: context.to_owned(),
            reason,
        };
        let encoded = sealed.strip_prefix(V1).ok_or_else(|| {
            malformed("not sealed (no `v1:` prefix): stored in the clear, or by a newer server")
        })?;
        let bytes = BASE64
            .decode(encoded)
            .map_err(|_| malformed("not base64 after `v1:`"))?;
        let Some((nonce, ciphertext)) = bytes.split_first_chunk::<NONCE_LEN>() else {
            return Err(malformed("too short to hold a nonce and a tag"));
        };
        if ciphertext.len() < TAG_LEN {
            return Err(malformed("too short to hold a nonce and a tag"));
        }
        let payload = Payload {
            msg: ciphertext,
            aad: context.as_bytes(),
        };
        let plaintext =
            self.cipher
                .decrypt(&XNonce::from(*nonce), payload)
                .map_err(|_| SecretsError::DoesNotOpen {
                    context: context.to_owned(),
                })?;
        String::from_utf8(plaintext).map_err(|_| malformed("opens, but is not UTF-8 text"))
    }

    fn from_bytes(key: &[u8; KEY_LEN]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }
}

/// The key in the file at `path`, or `None` if there is no such file.
fn read(path: &Path) -> Result<Option<SecretsKey>, SecretsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            warn_if_readable_by_others(path, "the secrets key file");
            parse(&text)
                .map(Some)
                .map_err(|reason| SecretsError::file(path, reason))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SecretsError::file(path, e)),
    }
}

/// A key from its 64 hex digits (surrounding whitespace ignored). The reason it is refused
/// gives the length at most, never a character of it.
fn parse(text: &str) -> Result<SecretsKey, String> {
    let text = text.trim();
    if text.len() != 2 * KEY_LEN {
        return Err(format!(
            "{} characters, not the 64 hex digits of a 32-byte key",
            text.chars().count()
        ));
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    hex::decode_to_slice(text, &mut *key)
        .map_err(|_| "not hex: 64 digits 0-9 and a-f make the 32-byte key".to_owned())?;
    Ok(SecretsKey::from_bytes(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTEXT: &str = "workflow/wf-it/client_secret";
    const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

    fn key(byte: u8) -> SecretsKey {
        SecretsKey::from_env(&hex::encode([byte; KEY_LEN])).unwrap()
    }

    fn is_does_not_open(result: &Result<String, SecretsError>) -> bool {
        matches!(result, Err(SecretsError::DoesNotOpen { .. }))
    }

    #[test]
    fn a_sealed_value_opens_to_its_plaintext() {
        let key = key(1);
        let long = "x".repeat(10_000);
        for plaintext in ["", "s3cr3t", "密钥 with spaces\n", long.as_str()] {
            let sealed = key.seal(plaintext, CONTEXT).unwrap();
            assert!(sealed.starts_with("v1:"), "{sealed}");
            let bytes = BASE64.decode(sealed.strip_prefix("v1:").unwrap()).unwrap();
            assert_eq!(bytes.len(), NONCE_LEN + plaintext.len() + TAG_LEN);
            assert_eq!(key.open(&sealed, CONTEXT).unwrap(), plaintext);
        }
    }

    #[test]
    fn a_value_opens_only_with_its_own_key_and_context() {
        let (one, two) = (key(1), key(2));
        let contexts = [
            "workflow/wf-it/client_secret",
            "workflow/wf-it/aes_key",
            "workflow/wf-other/client_secret",
        ];
        for sealing in contexts {
            let sealed = one.seal("s3cr3t", sealing).unwrap();
            for opening in contexts {
                let opened = one.open(&sealed, opening);
                if opening == sealing {
                    assert_eq!(opened.unwrap(), "s3cr3t");
                } else {
                    assert!(
                        is_does_not_open(&opened),
                        "{sealing} opened as {opening}: {opened:?}"
                    );
                    assert_eq!(
                        opened.unwrap_err().to_string(),
                        format!(
                            "sealed value does not open with this key for {opening}: wrong key, or altered"
                        )
                    );
                }
            }
            let other_key = two.open(&sealed, sealing);
            assert!(is_does_not_open(&other_key), "{other_key:?}");
        }
    }

    #[test]
    fn changing_any_byte_stops_a_value_opening() {
        let key = key(1);
        let sealed = key.seal("s3cr3t", CONTEXT).unwrap();
        let bytes = BASE64.decode(sealed.strip_prefix("v1:").unwrap()).unwrap();
        for i in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[i] ^= 0x01;
            let altered = format!("v1:{}", BASE64.encode(&altered));
            assert!(is_does_not_open(&key.open(&altered, CONTEXT)), "byte {i} altered");
        }
        let cut = format!("v1:{}", BASE64.encode(&bytes[..bytes.len() - 1]));
        assert!(is_does_not_open(&key.open(&cut, CONTEXT)), "last byte cut");
        assert_eq!(
            key.open(&sealed, CONTEXT).unwrap(),
            "s3cr3t",
            "the original still opens"
        );
    }

    #[test]
    fn two_seals_of_one_plaintext_differ() {
        let key = key(1);
        let first = key.seal("s3cr3t", CONTEXT).unwrap();
        let second = key.seal("s3cr3t", CONTEXT).unwrap();
        assert_ne!(first, second);
        let nonce =
            |sealed: &str| BASE64.decode(sealed.strip_prefix("v1:").unwrap()).unwrap()[..NONCE_LEN].to_vec();
        assert_ne!(nonce(&first), nonce(&second), "a fresh nonce each time");
        assert_eq!(key.open(&second, CONTEXT).unwrap(), "s3cr3t");
    }

    #[test]
    fn malformed_values_are_refused_without_echoing_them() {
        let key = key(1);
        let sealed = key.seal("s3cr3t", CONTEXT).unwrap();
        let body = sealed.strip_prefix("v1:").unwrap();
        let short = format!("v1:{}", BASE64.encode([7u8; NONCE_LEN + TAG_LEN - 1]));
        let nonce_only = format!("v1:{}", BASE64.encode([7u8; NONCE_LEN - 1]));
        let cases = [
            ("s3cr3t-in-the-clear".to_owned(), "no `v1:` prefix"),
            (format!("v2:{body}"), "no `v1:` prefix"),
            (format!("V1:{body}"), "no `v1:` prefix"),
            ("v1:not*base64!".to_owned(), "not base64"),
            (short, "too short"),
            (nonce_only, "too short"),
            ("v1:".to_owned(), "too short"),
        ];
        for (value, reason) in cases {
            let e = key.open(&value, CONTEXT).unwrap_err();
            assert!(matches!(e, SecretsError::Malformed { .. }), "{value}: {e:?}");
            let message = e.to_string();
            assert!(message.contains(CONTEXT) && message.contains(reason), "{message}");
            let after_prefix = value.get(3..).unwrap_or_default();
            assert!(
                (after_prefix.is_empty() || !message.contains(after_prefix)) && !message.contains("s3cr3t"),
                "{message}"
            );
        }
    }

    #[test]
    fn from_env_takes_64_hex_digits_and_never_echoes_the_value() {
        let key = SecretsKey::from_env(&format!(" \t{HEX}\n")).unwrap();
        let same = SecretsKey::from_env(&HEX.to_lowercase()).unwrap();
        assert_eq!(
            same.open(&key.seal("s3cr3t", CONTEXT).unwrap(), CONTEXT).unwrap(),
            "s3cr3t"
        );

        let too_long = format!("{HEX}00");
        let not_hex = "QX".repeat(32);
        for bad in [
            HEX.get(..63).unwrap(),
            not_hex.as_str(),
            too_long.as_str(),
            "",
            "  \n",
        ] {
            let e = SecretsKey::from_env(bad).unwrap_err();
            assert!(matches!(e, SecretsError::Key { .. }), "{e:?}");
            let message = e.to_string();
            assert!(
                message.starts_with("secrets key $SASE_SECRETS_KEY: "),
                "{message}"
            );
            assert!(
                !message.contains("00112233") && !message.contains("QX"),
                "{message}"
            );
        }
        let e = SecretsKey::from_env(HEX.get(..63).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("63 characters"), "{e}");
    }

    /// Two servers starting at once on a new database: one key, whichever made it (each
    /// made its own, and the last rename won, so the other sealed with a lost key).
    #[test]
    fn processes_creating_the_key_at_once_end_with_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets-key");
        let start = std::sync::Arc::new(std::sync::Barrier::new(8));
        let keys: Vec<SecretsKey> = (0..8)
            .map(|_| {
                let (path, start) = (path.clone(), std::sync::Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    SecretsKey::load_or_create(&path).unwrap()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        for (i, key) in keys.iter().enumerate() {
            let sealed = key.seal("s", "c").unwrap();
            for other in &keys {
                assert_eq!(other.open(&sealed, "c").unwrap(), "s", "key {i}");
            }
        }
    }

    #[test]
    fn load_or_create_makes_a_private_file_that_later_starts_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets-key");
        let first = SecretsKey::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65, "64 hex digits and a newline");
        assert!(text.trim_end().chars().all(|c| c.is_ascii_hexdigit()), "hex");
        let sealed = first.seal("s3cr3t", CONTEXT).unwrap();

        let again = SecretsKey::load_or_create(&path).unwrap();
        assert_eq!(
            again.open(&sealed, CONTEXT).unwrap(),
            "s3cr3t",
            "the same key after a restart"
        );
        let replica = SecretsKey::load(&path).unwrap();
        assert_eq!(
            replica.open(&sealed, CONTEXT).unwrap(),
            "s3cr3t",
            "load reads the same key"
        );
        let from_env = SecretsKey::from_env(&text).unwrap();
        assert_eq!(
            from_env.open(&sealed, CONTEXT).unwrap(),
            "s3cr3t",
            "the file's text works as the variable"
        );

        assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "not rewritten");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "nothing left aside");
    }

    #[test]
    fn load_of_a_missing_file_names_it_and_creates_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets-key");
        let e = SecretsKey::load(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("secrets key file {}: missing", path.display())),
            "{e}"
        );
        assert!(
            e.contains("replicas share one key")
                && e.contains("openssl rand -hex 32")
                && e.contains("SASE_SECRETS_KEY"),
            "{e}"
        );
        assert!(!path.exists(), "not created");
    }

    #[test]
    fn a_malformed_key_file_is_an_error_naming_it_not_its_contents_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets-key");
        let two_keys = format!("{HEX}\n{HEX}\n");
        let not_hex = "QX".repeat(32);
        let short = format!("{}\n", HEX.get(..63).unwrap());
        for text in [
            "",
            "\n",
            "0123abc",
            not_hex.as_str(),
            short.as_str(),
            two_keys.as_str(),
        ] {
            std::fs::write(&path, text).unwrap();
            for result in [SecretsKey::load(&path), SecretsKey::load_or_create(&path)] {
                let message = result.unwrap_err().to_string();
                let prefix = format!("secrets key file {}: ", path.display());
                // What follows the file's name (a random temporary one, which may contain
                // any of the fragments) must not show its contents.
                let reason = message
                    .strip_prefix(&prefix)
                    .unwrap_or_else(|| panic!("{message}"));
                assert!(
                    !reason.contains("0123abc") && !reason.contains("QX") && !reason.contains("00112233"),
                    "{message}"
                );
            }
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "not replaced");
        }
    }

    #[test]
    fn debug_shows_no_key() {
        let key = SecretsKey::from_env(HEX).unwrap();
        let debug = format!("{key:?}");
        assert_eq!(debug, "SecretsKey(<redacted>)");
        assert!(!debug.to_lowercase().contains("00112233"), "{debug}");
    }
}
