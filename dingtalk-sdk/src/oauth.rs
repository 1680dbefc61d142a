//! Sign-in with DingTalk (OAuth 2.0 authorization code, "DingTalk login for third-party sites";
//! `docs/dingtalk-directory.md` a): the authorize URL ([`AuthorizeUrl`]), the redirect back
//! ([`Redirect`]), and (feature `client`, [`DingTalkClient::oauth`](crate::client::DingTalkClient::oauth))
//! the exchange of the code for the user's token and the signed-in user's profile.
//!
//! The user's tokens are secrets: their `Debug` is redacted, and the state check is in
//! constant time.
//!
//! ```
//! use dingtalk_sdk::oauth::{AuthorizeUrl, Redirect, Scope};
//!
//! let url = AuthorizeUrl::new("dingappkey", "https://sase.example.com/login/dingtalk")
//!     .state("n0nc3")
//!     .scope(Scope::OpenidCorpid)
//!     .corp_id("dingcorp123")
//!     .to_string();
//! assert!(url.starts_with("https://login.dingtalk.com/oauth2/auth?redirect_uri=https%3A%2F%2Fsase.example.com"));
//! assert!(url.contains("&scope=openid+corpid&") && url.contains("&prompt=consent"));
//!
//! // DingTalk sends the browser back to the redirect URI with the code:
//! let back = Redirect::parse("authCode=c0de&state=n0nc3")?;
//! let code = back.verify_state("n0nc3")?;
//! assert_eq!(code.secret(), "c0de");
//! # Ok::<(), dingtalk_sdk::oauth::RedirectError>(())
//! ```

use crate::ids::{CorpId, UnionId};
use serde::{Deserialize, Serialize};
use std::fmt;

#[cfg(feature = "client")]
mod api;
#[cfg(feature = "client")]
pub use api::OAuth;

/// The production host of the sign-in page.
pub const DEFAULT_LOGIN_BASE: &str = "https://login.dingtalk.com";

/// What the sign-in asks for (`scope`); DingTalk accepts only these two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Scope {
    /// `openid`: the user's identity.
    #[default]
    Openid,
    /// `openid corpid`: also the organisation chosen while signing in (the token exchange
    /// answers its `corpId`).
    OpenidCorpid,
}

impl Scope {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Openid => "openid",
            Scope::OpenidCorpid => "openid corpid",
        }
    }
}

/// The sign-in page's URL, `GET {login base}/oauth2/auth?…` with `redirect_uri`,
/// `response_type=code`, `client_id`, `scope`, `state`, `prompt=consent` and the optional
/// organisation parameters, URL-encoded. Build it with the setters, then `to_string()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeUrl {
    login_base: String,
    client_id: String,
    redirect_uri: String,
    scope: Scope,
    state: Option<String>,
    org_type: Option<String>,
    corp_id: Option<String>,
    exclusive_corp_id: Option<String>,
}

impl AuthorizeUrl {
    /// The URL for the app `client_id` (AppKey) sending the user back to `redirect_uri`
    /// (which must match the app's registered redirect URL).
    pub fn new(client_id: impl Into<String>, redirect_uri: impl Into<String>) -> Self {
        Self {
            login_base: DEFAULT_LOGIN_BASE.to_owned(),
            client_id: client_id.into(),
            redirect_uri: redirect_uri.into(),
            scope: Scope::default(),
            state: None,
            org_type: None,
            corp_id: None,
            exclusive_corp_id: None,
        }
    }

    /// The sign-in host (default `https://login.dingtalk.com`); a mock's base URL in tests.
    pub fn login_base(mut self, base: impl Into<String>) -> Self {
        self.login_base = base.into().trim_end_matches('/').to_owned();
        self
    }

    /// The scope (default [`Scope::Openid`]).
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// The `state` DingTalk returns unchanged: an unguessable value tied to the browser's
    /// session, checked with [`Redirect::verify_state`].
    pub fn state(mut self, state: impl Into<String>) -> Self {
        self.state = Some(state.into());
        self
    }

    /// `org_type` (e.g. `management`: only organisations the user administers); meaningful
    /// with [`Scope::OpenidCorpid`].
    pub fn org_type(mut self, org_type: impl Into<String>) -> Self {
        self.org_type = Some(org_type.into());
        self
    }

    /// `corpId`: the organisation to sign in to.
    pub fn corp_id(mut self, corp_id: impl Into<String>) -> Self {
        self.corp_id = Some(corp_id.into());
        self
    }

    /// `exclusiveLogin=true&exclusiveCorpId=…`: only accounts of this exclusive (专属)
    /// organisation may sign in.
    pub fn exclusive_corp_id(mut self, corp_id: impl Into<String>) -> Self {
        self.exclusive_corp_id = Some(corp_id.into());
        self
    }
}

impl fmt::Display for AuthorizeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("scope", self.scope.as_str());
        if let Some(state) = &self.state {
            query.append_pair("state", state);
        }
        query.append_pair("prompt", "consent");
        if let Some(org_type) = &self.org_type {
            query.append_pair("org_type", org_type);
        }
        if let Some(corp_id) = &self.corp_id {
            query.append_pair("corpId", corp_id);
        }
        if let Some(corp_id) = &self.exclusive_corp_id {
            query
                .append_pair("exclusiveLogin", "true")
                .append_pair("exclusiveCorpId", corp_id);
        }
        write!(f, "{}/oauth2/auth?{}", self.login_base, query.finish())
    }
}

macro_rules! secret {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a raw value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The value, to send to DingTalk.
            pub fn secret(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

secret!(
    /// The single-use `authCode` of the redirect back. `Debug` is redacted.
    AuthCode
);
secret!(
    /// A signed-in user's access token (`users/me`). `Debug` is redacted.
    UserAccessToken
);
secret!(
    /// A signed-in user's refresh token. `Debug` is redacted.
    RefreshToken
);

/// Why a redirect back from the sign-in page is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedirectError {
    /// No `authCode`: the user refused, or the request was not DingTalk's redirect.
    #[error("the redirect carries no authCode{}", .error.as_deref().map(|e| format!(" (DingTalk error `{e}`)")).unwrap_or_default())]
    MissingCode {
        /// DingTalk's `error` parameter, if any.
        error: Option<String>,
    },
    /// The `state` is absent or not the one issued with the authorize URL (a forged or
    /// replayed redirect).
    #[error("the redirect's state does not match the one issued")]
    StateMismatch,
}

/// The redirect back from the sign-in page: `?authCode=…&state=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Redirect {
    /// The code to exchange, once.
    pub auth_code: AuthCode,
    /// The `state` given to the authorize URL.
    pub state: Option<String>,
}

impl Redirect {
    /// Reads the redirect's query string (without the `?`). `code` is accepted as well as
    /// `authCode`.
    ///
    /// # Errors
    /// [`RedirectError::MissingCode`] when there is no non-empty code.
    pub fn parse(query: &str) -> Result<Self, RedirectError> {
        let (mut code, mut state, mut error) = (None, None, None);
        for (key, value) in form_urlencoded::parse(query.trim_start_matches('?').as_bytes()) {
            match key.as_ref() {
                "authCode" => code = Some(value.into_owned()),
                "code" if code.is_none() => code = Some(value.into_owned()),
                "state" => state = Some(value.into_owned()),
                "error" => error = Some(value.into_owned()),
                _ => {}
            }
        }
        match code.filter(|c| !c.is_empty()) {
            Some(code) => Ok(Self {
                auth_code: AuthCode(code),
                state,
            }),
            None => Err(RedirectError::MissingCode { error }),
        }
    }

    /// The code, if `state` equals `expected` (compared in constant time).
    ///
    /// # Errors
    /// [`RedirectError::StateMismatch`].
    pub fn verify_state(self, expected: &str) -> Result<AuthCode, RedirectError> {
        use subtle::ConstantTimeEq as _;
        let state = self.state.as_deref().unwrap_or_default();
        if bool::from(state.as_bytes().ct_eq(expected.as_bytes())) && !expected.is_empty() {
            Ok(self.auth_code)
        } else {
            Err(RedirectError::StateMismatch)
        }
    }
}

/// Body of `POST /v1.0/oauth2/userAccessToken` (ALI-PY `GetUserTokenRequest`). `Debug` is
/// redacted.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UserTokenRequest {
    /// The app's Client ID.
    pub client_id: String,
    /// The app's Client secret.
    pub client_secret: String,
    /// The `authCode`, for `authorization_code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The refresh token, for `refresh_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// `authorization_code` or `refresh_token`.
    pub grant_type: String,
}

impl fmt::Debug for UserTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserTokenRequest")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("code", &self.code.as_ref().map(|_| "<redacted>"))
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("grant_type", &self.grant_type)
            .finish()
    }
}

/// A signed-in user's tokens (`userAccessToken`'s answer, ALI-PY `GetUserTokenResponseBody`).
/// `Debug` is redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UserToken {
    /// The user's access token, for `users/me` (`OAuth::me`, feature `client`).
    pub access_token: UserAccessToken,
    /// The refresh token.
    #[serde(default)]
    pub refresh_token: Option<RefreshToken>,
    /// Lifetime of the access token, in seconds (7,200).
    #[serde(default)]
    pub expire_in: Option<u64>,
    /// The organisation the user chose, with [`Scope::OpenidCorpid`].
    #[serde(default)]
    pub corp_id: Option<CorpId>,
}

/// The signed-in user (`GET /v1.0/contact/users/me`, ALI-PY `GetUserResponseBody`). Its
/// `union_id` identifies the user across the developer's apps; map it to the organisation's
/// user id with [`Contacts::user_id_by_union_id`](crate::contacts::Contacts::user_id_by_union_id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UserProfile {
    /// `unionId`.
    pub union_id: UnionId,
    /// The user's DingTalk nickname.
    #[serde(default)]
    pub nick: Option<String>,
    /// `openId` (per app).
    #[serde(default)]
    pub open_id: Option<String>,
    /// Mobile number (needs the mobile permission).
    #[serde(default)]
    pub mobile: Option<String>,
    /// The mobile number's country code, e.g. `86`.
    #[serde(default)]
    pub state_code: Option<String>,
    /// E-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// Login e-mail.
    #[serde(default)]
    pub login_email: Option<String>,
    /// Avatar URL.
    #[serde(default)]
    pub avatar_url: Option<String>,
    /// Whether the user is a visitor.
    #[serde(default)]
    pub visitor: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_encodes_every_value_and_only_sets_what_was_given() {
        let url = AuthorizeUrl::new("ding k", "http://127.0.0.1:1/cb?x=1&y=2")
            .login_base("http://127.0.0.1:9/")
            .to_string();
        assert_eq!(
            url,
            "http://127.0.0.1:9/oauth2/auth?redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2Fcb%3Fx%3D1%26y%3D2\
             &response_type=code&client_id=ding+k&scope=openid&prompt=consent"
        );
        let url = AuthorizeUrl::new("k", "https://a/b")
            .state("s&t")
            .org_type("management")
            .exclusive_corp_id("dingx")
            .to_string();
        assert!(url.ends_with(
            "&state=s%26t&prompt=consent&org_type=management&exclusiveLogin=true&exclusiveCorpId=dingx"
        ));
    }

    #[test]
    fn a_redirect_needs_its_code_and_the_issued_state() {
        assert_eq!(
            Redirect::parse("?error=access_denied&state=s"),
            Err(RedirectError::MissingCode {
                error: Some("access_denied".into())
            })
        );
        assert!(matches!(
            Redirect::parse("authCode=&state=s"),
            Err(RedirectError::MissingCode { error: None })
        ));
        let back = Redirect::parse("code=c&state=s%20t").unwrap();
        assert_eq!(back.state.as_deref(), Some("s t"));
        assert_eq!(back.clone().verify_state("s t").unwrap(), AuthCode::new("c"));
        assert_eq!(back.verify_state("s"), Err(RedirectError::StateMismatch));
        let no_state = Redirect::parse("authCode=c").unwrap();
        assert_eq!(no_state.verify_state(""), Err(RedirectError::StateMismatch));
    }

    #[test]
    fn secrets_are_redacted_and_the_wire_shapes_read() {
        // ALI-PY GetUserTokenResponseBody field names.
        let token: UserToken = serde_json::from_str(
            r#"{"accessToken":"u-tok","refreshToken":"r-tok","expireIn":7200,"corpId":"dingcorp"}"#,
        )
        .unwrap();
        let shown = format!("{token:?}");
        assert!(!shown.contains("u-tok") && !shown.contains("r-tok"), "{shown}");
        assert_eq!(token.access_token.secret(), "u-tok");
        let request = UserTokenRequest {
            client_id: "k".into(),
            client_secret: "s3cr3t".into(),
            code: Some("c0de".into()),
            refresh_token: None,
            grant_type: "authorization_code".into(),
        };
        assert!(!format!("{request:?}").contains("s3cr3t") && !format!("{request:?}").contains("c0de"));
        // ALI-PY GetUserResponseBody field names; DOC-ME sample values.
        let me: UserProfile = serde_json::from_str(
            r#"{"nick":"zhangsan","avatarUrl":"https://x/a.png","mobile":"150xxxx9144","openId":"123",
                "unionId":"z21HjQliSzpw0Yxxxx","email":"zhangsan@alibaba-inc.com","stateCode":"86","visitor":false}"#,
        )
        .unwrap();
        assert_eq!(
            (me.union_id.as_str(), me.state_code.as_deref()),
            ("z21HjQliSzpw0Yxxxx", Some("86"))
        );
    }
}
