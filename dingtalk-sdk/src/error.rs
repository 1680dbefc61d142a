//! The crate's one error type.

use std::fmt;

/// Everything that can go wrong in `dingtalk-sdk`.
///
/// Variants carry the context needed to act on them; secrets (tokens, keys, plaintexts) are
/// never included. Callback-crypto variants mirror the official helpers' error codes
/// (900004–900010) so logs line up with DingTalk's documentation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The `aes_key` (EncodingAESKey) is not 43 base64 characters (900004).
    #[error("invalid aes_key: {reason}")]
    BadAesKey {
        /// What was wrong with it.
        reason: &'static str,
    },
    /// The signature did not match `SHA1(sort(token, timestamp, nonce, encrypt))` (900005).
    #[error("signature mismatch: the request was not signed with the configured token")]
    BadSignature,
    /// The `encrypt` value is not valid standard base64.
    #[error("`encrypt` is not valid base64")]
    BadBase64,
    /// The ciphertext is empty or not a whole number of AES blocks.
    #[error("ciphertext length {len} is not a non-zero multiple of 16")]
    BadCiphertextLength {
        /// The decoded ciphertext length in bytes.
        len: usize,
    },
    /// The PKCS#7 padding is out of range (1..=32) or not uniform.
    #[error("invalid PKCS#7 padding (last byte {pad})")]
    BadPadding {
        /// The last byte of the decrypted frame.
        pad: u8,
    },
    /// The frame's length field points outside the frame (900009).
    #[error("frame length field {declared} exceeds the {available} bytes available")]
    BadLength {
        /// The message length the frame declares.
        declared: u64,
        /// The bytes actually available after the header.
        available: usize,
    },
    /// The frame was encrypted for another receiver (AppKey / corpId / suiteKey) (900010).
    #[error("receiver id mismatch: expected `{expected}`, found `{found}`")]
    ReceiverIdMismatch {
        /// The configured receiver id.
        expected: String,
        /// The receiver id in the frame (lossily decoded).
        found: String,
    },
    /// The decrypted message is not valid UTF-8.
    #[error("decrypted message is not valid UTF-8")]
    BadUtf8,
    /// A message is too large to frame (over 4 GiB).
    #[error("message of {len} bytes is too large to encrypt")]
    MessageTooLarge {
        /// The message length in bytes.
        len: usize,
    },
    /// A decrypted event is not the JSON DingTalk sends.
    #[error("malformed event JSON: {reason}")]
    BadEvent {
        /// The parser's explanation, including the position.
        reason: String,
    },
    /// DingTalk answered a call with an error status and body.
    ///
    /// Displayed as `TerminateProcessInstance: DingTalk answered HTTP 400: 审批发起15秒内不能撤销审批流程
    /// (code terminateTooEarly, request id 5F2A…)`: DingTalk's message as it sent it, then its
    /// code and, when it gave one, the request id.
    #[error("{operation}: DingTalk answered HTTP {status}: {message} ({})", ApiDetail::new(.code, .request_id))]
    Api {
        /// The API operation, e.g. `StartProcessInstance`.
        operation: &'static str,
        /// HTTP status.
        status: u16,
        /// DingTalk's error code, e.g. `InvalidAuthentication`, `Forbidden.AccessDenied.QpsLimitForAppkeyAndApi`.
        code: String,
        /// DingTalk's message.
        message: String,
        /// `requestid`, for DingTalk support.
        request_id: Option<String>,
    },
    /// The HTTP exchange failed before a response arrived.
    #[error("{operation}: HTTP transport failed: {source}")]
    Transport {
        /// The API operation.
        operation: &'static str,
        /// Whether the request may have reached DingTalk (false for connection failures).
        sent: bool,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A non-idempotent call (creating an instance) failed in a way that leaves unknown whether
    /// it took effect. It is not retried: reconcile first (e.g. list instances by originator).
    #[error("{operation}: outcome unknown ({source}); reconcile before retrying")]
    OutcomeUnknown {
        /// The API operation.
        operation: &'static str,
        /// The failure that left the outcome unknown: a transport error after the request
        /// was sent, or a 5xx answer.
        #[source]
        source: Box<Error>,
    },
    /// A response body is not the JSON the API documents.
    #[error("{operation}: unexpected response at `{path}`: {reason}")]
    Decode {
        /// The API operation.
        operation: &'static str,
        /// The JSON path that failed, e.g. `result.tasks[0].taskId`.
        path: String,
        /// The parser's explanation.
        reason: String,
    },
    /// The app's call budget ([`CallBudget`](crate::budget::CallBudget)) refused the call: it
    /// was **not sent**. Either this month's calls reached the limit for the call's priority
    /// (background calls stop at their share), or DingTalk answered 403
    /// `Forbidden.AccessDenied.ApiCountLimitForOrg` this month, after which every call fails
    /// until the month ends.
    ///
    /// [`ErrorKind::QuotaExhausted`]: not retryable now. Calls go again in the next calendar
    /// month (UTC), or with a larger budget; foreground calls may still go when only the
    /// background share is used up. Displayed as `GetProcessInstance: not sent: 10 of the
    /// app's 10 DingTalk calls for 2026-12 are used (foreground)`.
    #[error("{operation}: not sent: {}", BudgetDetail::new(.month, .used, .limit, .priority, .reported_by_dingtalk))]
    BudgetExhausted {
        /// The API operation that was not sent.
        operation: &'static str,
        /// The calendar month (UTC), `YYYY-MM`.
        month: String,
        /// Calls made this month.
        used: u64,
        /// The limit that applies to the call: the monthly limit for a foreground call, the
        /// background share of it for a background one (`None` for an unlimited budget, which
        /// only DingTalk's answer stops).
        limit: Option<u64>,
        /// The call's priority.
        priority: crate::budget::Priority,
        /// DingTalk answered `ApiCountLimitForOrg` this month.
        reported_by_dingtalk: bool,
    },
    /// The client was configured with an invalid value.
    #[error("invalid client configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
}

/// The parenthesis after an API error's message: `code C, request id R`, or `code C` when
/// DingTalk sent no request id.
struct ApiDetail<'a> {
    code: &'a str,
    request_id: Option<&'a str>,
}

impl<'a> ApiDetail<'a> {
    fn new(code: &'a str, request_id: &'a Option<String>) -> Self {
        Self {
            code,
            request_id: request_id.as_deref(),
        }
    }
}

impl fmt::Display for ApiDetail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "code {}", self.code)?;
        match self.request_id {
            Some(id) => write!(f, ", request id {id}"),
            None => Ok(()),
        }
    }
}

/// The explanation of [`Error::BudgetExhausted`].
struct BudgetDetail<'a> {
    month: &'a str,
    used: u64,
    limit: Option<u64>,
    priority: crate::budget::Priority,
    reported_by_dingtalk: bool,
}

impl<'a> BudgetDetail<'a> {
    fn new(
        month: &'a str,
        used: &u64,
        limit: &Option<u64>,
        priority: &crate::budget::Priority,
        reported_by_dingtalk: &bool,
    ) -> Self {
        Self {
            month,
            used: *used,
            limit: *limit,
            priority: *priority,
            reported_by_dingtalk: *reported_by_dingtalk,
        }
    }
}

impl fmt::Display for BudgetDetail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (month, used, priority) = (self.month, self.used, self.priority);
        match self.limit {
            _ if self.reported_by_dingtalk => write!(
                f,
                "DingTalk answered ApiCountLimitForOrg: the org's call quota for {month} is spent \
                 ({used} calls by this app); no call is sent until the month ends ({priority})"
            ),
            Some(limit) if priority == crate::budget::Priority::Background => write!(
                f,
                "background calls may use {limit} of the app's DingTalk calls for {month}, and {used} \
                 are used; foreground calls still go"
            ),
            Some(limit) => write!(
                f,
                "{used} of the app's {limit} DingTalk calls for {month} are used ({priority})"
            ),
            None => write!(f, "the app's DingTalk calls for {month} are used up ({priority})"),
        }
    }
}

/// How an error should be handled, whatever its variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A network failure or timeout: retry idempotent calls.
    Transient,
    /// A rate limit (DingTalk sends QPS limits as HTTP 403): back off, then retry.
    Throttling,
    /// A server-side failure (5xx): retry idempotent calls.
    Server,
    /// The request is wrong (4xx, bad input, bad signature): retrying will not help.
    Client,
    /// The access token is invalid or expired: refresh it and retry once.
    Auth,
    /// The app's monthly call budget is used up ([`Error::BudgetExhausted`]): not retryable
    /// now; calls go again next month (UTC) or with a larger budget.
    QuotaExhausted,
    /// The user or department asked for does not exist (the old API's `60121` user not found,
    /// `60003` department not found, `33012` invalid userid): a client error that retrying
    /// will not fix, told apart so a directory sync can treat it as "gone".
    NotFound,
}

/// The old API's (`oapi.dingtalk.com`, HTTP 200 with an `errcode`) codes, by kind
/// (`docs/dingtalk-directory.md` b.6; PROTOCOL e.2).
const OAPI_THROTTLING: [&str; 2] = ["90018", "90002"];
const OAPI_AUTH: [&str; 6] = ["40014", "42001", "40001", "33001", "40000", "88"];
const OAPI_NOT_FOUND: [&str; 3] = ["60121", "60003", "33012"];

impl Error {
    /// Classifies the error from its HTTP status and DingTalk code (never from message text).
    pub fn kind(&self) -> ErrorKind {
        match self {
            // The old API answers HTTP 200 with its errcode (`Error::Api` keeps it as `code`).
            Error::Api {
                status: 200, code, ..
            } => {
                let code = code.as_str();
                if OAPI_THROTTLING.contains(&code) {
                    ErrorKind::Throttling
                } else if OAPI_AUTH.contains(&code) {
                    ErrorKind::Auth
                } else if OAPI_NOT_FOUND.contains(&code) {
                    ErrorKind::NotFound
                } else if code == "-1" {
                    ErrorKind::Server
                } else {
                    ErrorKind::Client
                }
            }
            Error::Api { status, code, .. } => {
                if code.starts_with("Forbidden.AccessDenied.Qps") {
                    ErrorKind::Throttling
                } else if *status == 401 || code == "InvalidAuthentication" {
                    ErrorKind::Auth
                } else if *status >= 500 {
                    ErrorKind::Server
                } else {
                    ErrorKind::Client
                }
            }
            Error::Transport { .. } | Error::OutcomeUnknown { .. } => ErrorKind::Transient,
            Error::BudgetExhausted { .. } => ErrorKind::QuotaExhausted,
            _ => ErrorKind::Client,
        }
    }

    /// Whether retrying the same operation may succeed. Crypto and callback failures are
    /// properties of the input and never are; an [`Error::OutcomeUnknown`] must be reconciled
    /// rather than retried; an [`Error::BudgetExhausted`] waits for the next month.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Error::OutcomeUnknown { .. })
            && matches!(
                self.kind(),
                ErrorKind::Transient | ErrorKind::Throttling | ErrorKind::Server
            )
    }

    /// DingTalk's error code, for API errors.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// DingTalk's request id, for API errors.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Error::Api { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// The HTTP status, for API errors.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn bad_event(err: impl fmt::Display) -> Self {
        Error::BadEvent {
            reason: err.to_string(),
        }
    }
}

/// Shorthand for `Result<T, dingtalk_sdk::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::Error;

    fn api(request_id: Option<&str>) -> Error {
        Error::Api {
            operation: "TerminateProcessInstance",
            status: 400,
            code: "terminateTooEarly".into(),
            message: "审批发起15秒内不能撤销审批流程".into(),
            request_id: request_id.map(str::to_owned),
        }
    }

    #[test]
    fn an_api_error_reads_as_dingtalk_wrote_it_without_debug_formatting() {
        assert_eq!(
            api(Some("5F2A0C")).to_string(),
            "TerminateProcessInstance: DingTalk answered HTTP 400: 审批发起15秒内不能撤销审批流程 \
             (code terminateTooEarly, request id 5F2A0C)"
        );
        assert_eq!(
            api(None).to_string(),
            "TerminateProcessInstance: DingTalk answered HTTP 400: 审批发起15秒内不能撤销审批流程 \
             (code terminateTooEarly)"
        );
    }
}
