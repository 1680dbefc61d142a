//! `wire_enum!`: string enums that parse case-insensitively, keep unknown values in `Other`
//! and serialize to their canonical wire spelling, so new DingTalk values never break parsing.

macro_rules! wire_enum {
    ($ty:ident { $($variant:ident => $wire:literal $(| $alias:literal)*),+ $(,)? }) => {
        impl $ty {
            /// Parses a wire value, case-insensitively; unknown values become `Other`.
            pub fn parse(value: &str) -> Self {
                $(
                    if value.eq_ignore_ascii_case($wire) $(|| value.eq_ignore_ascii_case($alias))* {
                        return $ty::$variant;
                    }
                )+
                $ty::Other(value.to_owned())
            }

            /// The canonical wire spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $($ty::$variant => $wire,)+
                    $ty::Other(other) => other,
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                let value = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                Ok($ty::parse(&value))
            }
        }
    };
}
