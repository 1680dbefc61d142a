//! Newtypes for the identifiers a policy talks about. Backed by `Arc<str>`, so compiling a
//! policy set shares them instead of copying strings.

use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        // A plain string, as `transparent` writes it (utoipa reads no `transparent`, nor the
        // `Arc<str>` inside without its `rc_schema` feature).
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String))]
        pub struct $name(Arc<str>);

        impl $name {
            /// Wraps a raw identifier.
            pub fn new(id: impl AsRef<str>) -> Self {
                Self(Arc::from(id.as_ref()))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self::new(id)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(Arc::from(id))
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id!(
    /// A policy's id, unique within a set.
    PolicyId
);
id!(
    /// A stable user id (never a display name: names change and collide).
    UserId
);
id!(
    /// A user group.
    GroupId
);
id!(
    /// A department.
    DeptId
);
id!(
    /// A device (endpoint) id.
    DeviceId
);
id!(
    /// A device tag.
    DeviceTag
);
id!(
    /// An approval workflow's id.
    WorkflowId
);
id!(
    /// A grant's single-use id.
    GrantId
);
