//! The sign-in calls, on [`DingTalkClient::oauth`](crate::client::DingTalkClient::oauth).

use super::{AuthCode, RefreshToken, UserAccessToken, UserProfile, UserToken, UserTokenRequest};
use crate::budget::Metering;
use crate::client::{Bearer, DingTalkClient, Host, Op};
use crate::error::Result;
use reqwest::Method;

const NO_BODY: Option<&()> = None;

/// The sign-in API of one client. Its calls are exempt from the org's monthly quota (token and
/// auth APIs) but paced by QPS.
///
/// ```no_run
/// use dingtalk_sdk::client::DingTalkClient;
/// use dingtalk_sdk::oauth::Redirect;
/// use dingtalk_sdk::token::Credentials;
///
/// # async fn run(query: &str, issued_state: &str) -> Result<(), Box<dyn std::error::Error>> {
/// let client = DingTalkClient::builder(Credentials::new("dingappkey", "app-secret")).build()?;
/// let code = Redirect::parse(query)?.verify_state(issued_state)?;
/// let token = client.oauth().exchange_code(&code).await?;
/// let me = client.oauth().me(&token.access_token).await?;
/// let user = client.contacts().user_id_by_union_id(&me.union_id).await?;
/// println!("{} signed in as {}", me.nick.unwrap_or_default(), user.user_id);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct OAuth<'a> {
    client: &'a DingTalkClient,
}

impl<'a> OAuth<'a> {
    pub(crate) fn new(client: &'a DingTalkClient) -> Self {
        Self { client }
    }

    /// Exchanges the redirect's `authCode` for the user's tokens (GetUserToken,
    /// `grantType: authorization_code`) with the client's credentials. A code works once: the
    /// call is not retried after an ambiguous failure
    /// ([`Error::OutcomeUnknown`](crate::Error::OutcomeUnknown): sign in again).
    ///
    /// # Errors
    /// [`Error::Api`](crate::Error::Api) (a `Client` kind) for a code that is unknown, used or
    /// expired, or bad credentials; transport and decode errors.
    pub async fn exchange_code(&self, code: &AuthCode) -> Result<UserToken> {
        self.token(UserTokenRequest {
            client_id: self.client.credentials().client_id().to_owned(),
            client_secret: self.client.credentials().client_secret().to_owned(),
            code: Some(code.secret().to_owned()),
            refresh_token: None,
            grant_type: "authorization_code".to_owned(),
        })
        .await
    }

    /// A fresh access token from a refresh token (`grantType: refresh_token`).
    ///
    /// # Errors
    /// As [`exchange_code`](Self::exchange_code).
    pub async fn refresh(&self, refresh_token: &RefreshToken) -> Result<UserToken> {
        self.token(UserTokenRequest {
            client_id: self.client.credentials().client_id().to_owned(),
            client_secret: self.client.credentials().client_secret().to_owned(),
            code: None,
            refresh_token: Some(refresh_token.secret().to_owned()),
            grant_type: "refresh_token".to_owned(),
        })
        .await
    }

    async fn token(&self, request: UserTokenRequest) -> Result<UserToken> {
        let op = Op {
            name: "GetUserToken",
            method: Method::POST,
            host: Host::Api,
            path: "/v1.0/oauth2/userAccessToken",
            // A code is single-use: a second attempt after an unknown outcome would fail.
            idempotent: false,
            metering: Metering::QpsOnly,
        };
        self.client.send_as(op, Bearer::Nobody, &[], Some(&request)).await
    }

    /// The signed-in user's profile (GetUser `me`) with the user's access token.
    ///
    /// # Errors
    /// [`Error::Api`](crate::Error::Api) `InvalidAuthentication` for an invalid or expired
    /// user token (not refreshed here: use [`refresh`](Self::refresh) or sign in again);
    /// transport and decode errors.
    pub async fn me(&self, token: &UserAccessToken) -> Result<UserProfile> {
        let op = Op {
            name: "GetUserMe",
            method: Method::GET,
            host: Host::Api,
            path: "/v1.0/contact/users/me",
            idempotent: true,
            metering: Metering::QpsOnly,
        };
        self.client.send_as(op, Bearer::User(token), &[], NO_BODY).await
    }
}
