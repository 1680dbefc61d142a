//! Newtypes for DingTalk identifiers, so a user id is never passed where a process code belongs.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String))]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a raw identifier.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Unwraps the identifier.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

string_id!(
    /// An approval template's process code, e.g. `PROC-9F2C1A7E-…`.
    ProcessCode
);
string_id!(
    /// An approval instance id (`processInstanceId`).
    ProcessInstanceId
);
string_id!(
    /// A DingTalk user id (`userId`, `staffId`), stable across name changes.
    UserId
);
string_id!(
    /// A DingTalk organisation id (`corpId`).
    CorpId
);
string_id!(
    /// A user's `unionId`: the same for every app of one developer account, unlike the
    /// organisation's [`UserId`]. Sign-in (`users/me`) yields it; map it with
    /// [`Contacts::user_id_by_union_id`](crate::contacts::Contacts::user_id_by_union_id).
    UnionId
);

/// A department id (`dept_id`). The root department of every organisation is
/// [`DeptId::ROOT`] (1). Serialized as a number; read from a number or a digit string (the
/// historical contact events send strings).
///
/// ```
/// use dingtalk_sdk::DeptId;
///
/// let ids: Vec<DeptId> = serde_json::from_str(r#"[1, "432825033"]"#)?;
/// assert_eq!(ids, [DeptId::ROOT, DeptId::new(432_825_033)]);
/// assert_eq!(serde_json::to_string(&ids)?, "[1,432825033]");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = i64))]
#[serde(transparent)]
pub struct DeptId(i64);

impl DeptId {
    /// The root department (the organisation itself).
    pub const ROOT: DeptId = DeptId(1);

    /// Wraps a raw id.
    pub const fn new(id: i64) -> Self {
        Self(id)
    }

    /// The id as a number.
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Debug for DeptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for DeptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<i64> for DeptId {
    fn from(id: i64) -> Self {
        Self(id)
    }
}

impl<'de> Deserialize<'de> for DeptId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Number(i64),
            Text(String),
        }
        match Wire::deserialize(d)? {
            Wire::Number(n) => Ok(DeptId(n)),
            Wire::Text(s) => s
                .parse()
                .map(DeptId)
                .map_err(|_| serde::de::Error::custom(format_args!("expected a department id, got `{s}`"))),
        }
    }
}
