//! Grants: the proof an approved request hands the agent. A grant is bound to one user, one
//! device and one action, expires, carries a single-use id, and is signed with the server's
//! Ed25519 key, so an agent verifies it offline with the server's public key.

use crate::decision::{Action, GrantRejection};
use crate::error::Error;
use crate::ids::{DeviceId, GrantId, UserId};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::hash::BuildHasher;

/// Which grant ids were already used (the caller keeps this set).
pub trait UsedGrants {
    /// Whether `id` was already used.
    fn is_used(&self, id: &GrantId) -> bool;
}

impl<S: BuildHasher> UsedGrants for HashSet<GrantId, S> {
    fn is_used(&self, id: &GrantId) -> bool {
        self.contains(id)
    }
}

impl UsedGrants for BTreeSet<GrantId> {
    fn is_used(&self, id: &GrantId) -> bool {
        self.contains(id)
    }
}

/// What an approval allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Grant {
    /// Single-use id.
    pub id: GrantId,
    /// The user it was approved for.
    pub user: UserId,
    /// The device it was approved for.
    pub device: DeviceId,
    /// The action it allows.
    pub action: Action,
    /// Issued, Unix ms.
    pub issued_at_ms: i64,
    /// Expires, Unix ms.
    pub expires_at_ms: i64,
    /// The approval request it came from, for audit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Grant {
    /// The signed bytes: a domain tag, then each field length-prefixed, so no two grants share
    /// an encoding whatever their strings contain (and no JSON key order is involved).
    fn signing_bytes(&self) -> Vec<u8> {
        let issued = self.issued_at_ms.to_be_bytes();
        let expires = self.expires_at_ms.to_be_bytes();
        let fields: [&[u8]; 7] = [
            self.id.as_str().as_bytes(),
            self.user.as_str().as_bytes(),
            self.device.as_str().as_bytes(),
            self.action.as_str().as_bytes(),
            &issued,
            &expires,
            self.request_id.as_deref().unwrap_or("").as_bytes(),
        ];
        let mut out = b"sase-grant/v1".to_vec();
        for field in fields {
            out.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(field);
        }
        out
    }
}

/// A grant and the server's signature over it (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedGrant {
    /// The grant.
    pub grant: Grant,
    /// Ed25519 signature, 128 hex characters.
    pub signature: String,
}

/// The server's signing key. `Debug` never shows it.
pub struct GrantSigner {
    key: SigningKey,
}

impl fmt::Debug for GrantSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantSigner")
            .field("public_key", &hex::encode(self.key.verifying_key().as_bytes()))
            .finish_non_exhaustive()
    }
}

impl GrantSigner {
    /// A signer from a 32-byte Ed25519 seed (generate it with a CSPRNG and keep it secret).
    pub fn from_bytes(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The matching verifier, for agents.
    pub fn verifier(&self) -> GrantVerifier {
        GrantVerifier {
            key: self.key.verifying_key(),
        }
    }

    /// Signs a grant.
    pub fn sign(&self, grant: Grant) -> SignedGrant {
        let signature = self.key.sign(&grant.signing_bytes());
        SignedGrant {
            grant,
            signature: hex::encode(signature.to_bytes()),
        }
    }
}

/// The server's public key, held by agents to check grants offline.
#[derive(Clone, PartialEq, Eq)]
pub struct GrantVerifier {
    key: VerifyingKey,
}

impl fmt::Debug for GrantVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("GrantVerifier").field(&self.to_hex()).finish()
    }
}

impl GrantVerifier {
    /// A verifier from the 32-byte public key.
    ///
    /// # Errors
    /// [`Error::BadGrantEncoding`] if the bytes are not a valid Ed25519 point.
    pub fn from_bytes(public: &[u8; 32]) -> Result<Self, Error> {
        VerifyingKey::from_bytes(public)
            .map(|key| Self { key })
            .map_err(|e| Error::BadGrantEncoding {
                reason: e.to_string(),
            })
    }

    /// A verifier from the public key in hex (64 characters).
    ///
    /// # Errors
    /// [`Error::BadGrantEncoding`] for bad hex or an invalid key.
    pub fn from_hex(public: &str) -> Result<Self, Error> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(public, &mut bytes).map_err(|e| Error::BadGrantEncoding {
            reason: e.to_string(),
        })?;
        Self::from_bytes(&bytes)
    }

    /// The public key in hex, to distribute to agents.
    pub fn to_hex(&self) -> String {
        hex::encode(self.key.as_bytes())
    }

    /// Checks a grant for this user, device and action at `now_ms`: signature, binding,
    /// expiry, then reuse.
    ///
    /// # Errors
    /// [`Error::GrantBadSignature`], [`Error::GrantForeign`], [`Error::GrantExpired`] or
    /// [`Error::GrantUsed`].
    pub fn verify<'g>(
        &self,
        signed: &'g SignedGrant,
        user: &UserId,
        device: &DeviceId,
        action: Action,
        now_ms: i64,
        used: &dyn UsedGrants,
    ) -> Result<&'g Grant, Error> {
        let mut signature = [0u8; 64];
        hex::decode_to_slice(&signed.signature, &mut signature).map_err(|_| Error::GrantBadSignature)?;
        let g = &signed.grant;
        self.key
            .verify_strict(&g.signing_bytes(), &Signature::from_bytes(&signature))
            .map_err(|_| Error::GrantBadSignature)?;
        for (field, same) in [
            ("user", g.user == *user),
            ("device", g.device == *device),
            ("action", g.action == action),
        ] {
            if !same {
                return Err(Error::GrantForeign { field });
            }
        }
        if now_ms >= g.expires_at_ms {
            return Err(Error::GrantExpired {
                expires_at: g.expires_at_ms,
                now: now_ms,
            });
        }
        if used.is_used(&g.id) {
            return Err(Error::GrantUsed { id: g.id.to_string() });
        }
        Ok(g)
    }
}

impl Error {
    /// The grant rejection this error stands for, if it is one.
    pub(crate) fn grant_rejection(&self) -> Option<GrantRejection> {
        Some(match self {
            Error::GrantBadSignature | Error::BadGrantEncoding { .. } => GrantRejection::BadSignature,
            Error::GrantExpired { .. } => GrantRejection::Expired,
            Error::GrantUsed { .. } => GrantRejection::Used,
            Error::GrantForeign { .. } => GrantRejection::Foreign,
            Error::Validation { .. } => return None,
        })
    }
}
