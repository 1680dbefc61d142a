//! The HTTP plumbing shared by the OpenAPI client and the Stream client: base URLs, the
//! built-in reqwest client, sending a call and decoding its answer into typed errors, and
//! the jittered exponential backoff both retry loops use.

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::time::Duration;

/// The production host of the v1.0 API (which also serves the Stream gateway's
/// `connections/open`).
pub const DEFAULT_API_BASE: &str = "https://api.dingtalk.com";

/// The production host of the old API (`topapi/…`, `gettoken`): the directory calls.
#[cfg(feature = "client")]
pub const DEFAULT_OAPI_BASE: &str = "https://oapi.dingtalk.com";

/// `User-Agent` of the built-in HTTP clients (and the Stream client's `ua`).
pub(crate) const USER_AGENT: &str = concat!("dingtalk-sdk-rust/", env!("CARGO_PKG_VERSION"));

/// A base URL without its trailing `/`, so paths can be appended.
pub(crate) fn trim_base(url: &str) -> String {
    url.trim_end_matches('/').to_owned()
}

/// Checks that a base URL (already trimmed) is http(s).
pub(crate) fn check_base(base: &str) -> Result<()> {
    if base.starts_with("https://") || base.starts_with("http://") {
        Ok(())
    } else {
        Err(Error::Config {
            reason: format!("base URL `{base}` must start with http:// or https://"),
        })
    }
}

/// Builds the default reqwest client.
pub(crate) fn http_client(connect_timeout: Duration, user_agent: &str) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .user_agent(user_agent)
        .build()
        .map_err(|e| Error::Config {
            reason: format!("HTTP client: {e}"),
        })
}

/// Sends one request and reads the whole answer: the body of a 2xx, [`Error::Api`] for any
/// other status, [`Error::Transport`] when the exchange fails (timeouts included).
pub(crate) async fn execute(operation: &'static str, request: reqwest::RequestBuilder) -> Result<Vec<u8>> {
    let response = request
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| transport_error(operation, e))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| transport_error(operation, e))?;
    if status.is_success() {
        Ok(body.into())
    } else {
        Err(api_error(operation, status.as_u16(), &body))
    }
}

/// A v1.0 error body. The gateway uses `code`/`message`/`requestid`; the official client also
/// accepts the capitalised forms.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(alias = "Code")]
    code: Option<String>,
    #[serde(alias = "Message")]
    message: Option<String>,
    #[serde(alias = "RequestId", alias = "requestId")]
    requestid: Option<String>,
}

/// [`Error::Api`] from an error answer; a body that is not DingTalk's error JSON becomes the
/// message (truncated), with `HTTP<status>` as the code.
fn api_error(operation: &'static str, status: u16, body: &[u8]) -> Error {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    Error::Api {
        operation,
        status,
        code: parsed.code.unwrap_or_else(|| format!("HTTP{status}")),
        message: parsed
            .message
            .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect()),
        request_id: parsed.requestid,
    }
}

fn transport_error(operation: &'static str, e: reqwest::Error) -> Error {
    Error::Transport {
        operation,
        // A connection that never opened cannot have reached DingTalk.
        sent: !e.is_connect(),
        // Without the URL: the old API carries the access token in its query.
        source: Box::new(e.without_url()),
    }
}

/// The status part of an old-API (`oapi.dingtalk.com`) answer: HTTP 200 with `errcode` 0 on
/// success; for `errcode` 88 the meaningful code is `sub_code` (PROTOCOL e.2).
#[cfg(feature = "client")]
#[derive(Deserialize)]
struct OapiStatus {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: Option<String>,
    #[serde(default)]
    sub_code: Option<serde_json::Value>,
    #[serde(default)]
    sub_msg: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
}

/// Decodes an old-API answer: [`Error::Api`] (status 200, `code` the errcode, or the
/// `sub_code` of an `88`) when `errcode` is not 0, else the body as `T`, naming the JSON path
/// that failed.
#[cfg(feature = "client")]
pub(crate) fn decode_oapi<T: DeserializeOwned>(operation: &'static str, bytes: &[u8]) -> Result<T> {
    let status: OapiStatus = decode(operation, bytes)?;
    if status.errcode == 0 {
        return decode(operation, bytes);
    }
    let sub_code = match status.sub_code {
        Some(serde_json::Value::String(code)) if !code.is_empty() => Some(code),
        Some(serde_json::Value::Number(code)) => Some(code.to_string()),
        _ => None,
    };
    let (code, message) = match sub_code {
        Some(code) if status.errcode == 88 => (code, status.sub_msg.or(status.errmsg)),
        _ => (status.errcode.to_string(), status.errmsg),
    };
    Err(Error::Api {
        operation,
        status: 200,
        code,
        message: message.unwrap_or_default(),
        request_id: status.request_id,
    })
}

/// Decodes a JSON body, naming the JSON path that failed.
pub(crate) fn decode<T: DeserializeOwned>(operation: &'static str, bytes: &[u8]) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| Error::Decode {
        operation,
        path: e.path().to_string(),
        reason: e.into_inner().to_string(),
    })
}

/// `base · 2^(attempt-1)` (attempt is 1-based), capped at `max`, then scaled by a factor in
/// `[0.5, 1.0]` chosen by `jitter` in `[0, 1]`, so concurrent callers do not retry in lockstep.
pub(crate) fn backoff(base: Duration, max: Duration, attempt: u32, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    exp.min(max).mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters_into_the_upper_half() {
        let ms = Duration::from_millis;
        assert_eq!(backoff(ms(100), ms(1000), 1, 1.0), ms(100));
        assert_eq!(backoff(ms(100), ms(1000), 3, 1.0), ms(400));
        assert_eq!(backoff(ms(100), ms(1000), 3, 0.0), ms(200));
        assert_eq!(backoff(ms(100), ms(1000), 30, 1.0), ms(1000));
        assert_eq!(backoff(ms(100), ms(1000), 0, 1.0), ms(100));
        // Out-of-range jitter is clamped rather than stretching the delay.
        assert_eq!(backoff(ms(100), ms(1000), 1, 7.0), ms(100));
    }

    #[test]
    fn api_error_reads_either_spelling_and_falls_back_to_the_status() {
        let e = api_error(
            "Op",
            403,
            br#"{"Code":"Forbidden.AccessDenied.QpsLimitForAppkeyAndApi","Message":"m","RequestId":"r"}"#,
        );
        assert_eq!(e.code(), Some("Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"));
        assert_eq!(e.request_id(), Some("r"));
        let e = api_error("Op", 502, b"<html>bad gateway</html>");
        assert_eq!((e.code(), e.http_status()), (Some("HTTP502"), Some(502)));
    }

    #[test]
    fn oapi_errors_carry_the_errcode_or_the_sub_code_of_an_88() {
        #[derive(Deserialize, Debug)]
        struct Token {
            access_token: String,
        }
        let ok: Token = decode_oapi("Op", br#"{"errcode":0,"errmsg":"ok","access_token":"t"}"#).unwrap();
        assert_eq!(ok.access_token, "t");
        // PROTOCOL e.2 (PROBE P8): an invalid token.
        let e = decode_oapi::<Token>(
            "Op",
            r#"{"errcode":88,"sub_code":"40014","sub_msg":"不合法的access_token","errmsg":"ding talk error[subcode=40014]","request_id":"r1"}"#.as_bytes(),
        )
        .unwrap_err();
        assert_eq!((e.code(), e.request_id()), (Some("40014"), Some("r1")));
        assert_eq!(e.kind(), crate::ErrorKind::Auth);
        let e =
            decode_oapi::<Token>("Op", r#"{"errcode":60003,"errmsg":"部门不存在"}"#.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            "Op: DingTalk answered HTTP 200: 部门不存在 (code 60003)"
        );
    }

    #[test]
    fn base_urls_are_trimmed_and_must_be_http() {
        assert_eq!(trim_base("http://127.0.0.1:1//"), "http://127.0.0.1:1");
        assert!(check_base("http://127.0.0.1:1").is_ok());
        assert!(matches!(check_base("ftp://x"), Err(Error::Config { .. })));
    }
}
