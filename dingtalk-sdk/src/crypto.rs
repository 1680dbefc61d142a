//! Event-subscription crypto: verify, decrypt and encrypt DingTalk HTTP-push payloads.
//!
//! DingTalk signs every pushed event with `SHA1(sort(token, timestamp, nonce, encrypt))` and
//! encrypts it with AES-256-CBC (key = base64 of `aes_key`, IV = first 16 key bytes) over the
//! frame `random(16) | u32-be byte length | message | receiver id | PKCS#7 pad to 32`.
//!
//! [`EventCrypto`] verifies the signature in constant time *before* touching the ciphertext
//! (there is no MAC over the plaintext: CBC is malleable, so the signature is the only integrity
//! check), then decrypts and validates the frame strictly. It never panics, whatever the input.
//!
//! ```
//! use dingtalk_sdk::crypto::EventCrypto;
//!
//! let crypto = EventCrypto::new("sase1token2cb", "kYd8sJ2pQ7wE4rT9uV1xZ3cB6nM0aL5gH8jK2fD4sAx", "dingq5z1ybtkwcvhx7ab")?;
//! let sealed = crypto.encrypt_reply(r#"{"EventType":"check_url"}"#, "1741699800123", "nX6slGXV")?;
//! let plaintext = crypto.verify_and_decrypt(&sealed.msg_signature, &sealed.time_stamp, &sealed.nonce, &sealed.encrypt)?;
//! assert_eq!(plaintext, r#"{"EventType":"check_url"}"#);
//! # Ok::<(), dingtalk_sdk::Error>(())
//! ```

use crate::error::{Error, Result};
use aes::cipher::block_padding::NoPadding;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyInit};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use sha1::{Digest as _, Sha1};
use std::fmt;
use subtle::ConstantTimeEq as _;

/// Length of the `aes_key` (EncodingAESKey) in characters.
pub const AES_KEY_LEN: usize = 43;
/// PKCS#7 block size DingTalk pads to (not the AES block size).
const PAD_BLOCK: usize = 32;
const PREFIX_LEN: usize = 16;
const HEADER_LEN: usize = PREFIX_LEN + 4;

/// Decodes `aes_key`: 43 base64 characters whose last one usually carries non-zero trailing
/// bits (43 chars = 258 bits), which a strict decoder rejects.
const LENIENT_KEY_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A signed, encrypted message: the body of a callback reply, or (with `encrypt` in the body and
/// the rest in the query) a pushed event.
///
/// Serializes to exactly the reply DingTalk expects:
/// `{"msg_signature":…,"timeStamp":…,"nonce":…,"encrypt":…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedMessage {
    /// Lower-case hex SHA-1 signature over token, `time_stamp`, `nonce` and `encrypt`.
    pub msg_signature: String,
    /// The timestamp the signature covers (camel-case `timeStamp` on the wire).
    #[serde(rename = "timeStamp")]
    pub time_stamp: String,
    /// The nonce the signature covers.
    pub nonce: String,
    /// Base64 of the AES-256-CBC ciphertext, on one line.
    pub encrypt: String,
}

/// Verifies, decrypts and encrypts DingTalk event-subscription payloads for one app.
///
/// Built once per subscription: the AES key schedule is expanded at construction and each
/// message gets a fresh CBC state (sharing CBC state across messages garbles them).
#[derive(Clone)]
pub struct EventCrypto {
    token: String,
    iv: [u8; 16],
    enc: aes::Aes256Enc,
    dec: aes::Aes256Dec,
    receiver_id: String,
}

impl fmt::Debug for EventCrypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventCrypto")
            .field("token", &"<redacted>")
            .field("aes_key", &"<redacted>")
            .field("receiver_id", &self.receiver_id)
            .finish()
    }
}

impl EventCrypto {
    /// Builds the crypto for one event subscription.
    ///
    /// - `token`: the signature token from the developer console.
    /// - `aes_key`: the 43-character EncodingAESKey.
    /// - `receiver_id`: whom frames are addressed to. For an internal app whose event
    ///   subscription is configured in the developer console this is the **AppKey** (Client ID);
    ///   for callbacks registered with the old `register_call_back` API it is the corpId; for
    ///   third-party apps the suiteKey. It is compared byte for byte, never guessed.
    ///
    /// # Errors
    /// [`Error::BadAesKey`] if `aes_key` is not 43 base64 characters.
    pub fn new(token: impl Into<String>, aes_key: &str, receiver_id: impl Into<String>) -> Result<Self> {
        if aes_key.len() != AES_KEY_LEN {
            return Err(Error::BadAesKey {
                reason: "must be exactly 43 characters",
            });
        }
        let mut key = [0u8; 32];
        match LENIENT_KEY_ENGINE.decode_slice(aes_key, &mut key) {
            Ok(32) => {}
            _ => {
                return Err(Error::BadAesKey {
                    reason: "must be base64 (A-Z, a-z, 0-9, +, /)",
                })
            }
        }
        // The IV is fixed: the first 16 key bytes (the random prefix lives inside the frame).
        let mut iv = [0u8; 16];
        for (dst, src) in iv.iter_mut().zip(key.iter()) {
            *dst = *src;
        }
        let key = GenericArray::from_slice(&key);
        Ok(Self {
            token: token.into(),
            iv,
            enc: aes::Aes256Enc::new(key),
            dec: aes::Aes256Dec::new(key),
            receiver_id: receiver_id.into(),
        })
    }

    /// The receiver id frames are checked against and encrypted for.
    pub fn receiver_id(&self) -> &str {
        &self.receiver_id
    }

    /// Computes the lower-case hex signature over the token and the three given values.
    pub fn sign(&self, timestamp: &str, nonce: &str, encrypt: &str) -> String {
        let hex = self.signature_hex(timestamp, nonce, encrypt);
        hex.iter().map(|&b| char::from(b)).collect()
    }

    fn signature_hex(&self, timestamp: &str, nonce: &str, encrypt: &str) -> [u8; 40] {
        let mut parts = [
            self.token.as_bytes(),
            timestamp.as_bytes(),
            nonce.as_bytes(),
            encrypt.as_bytes(),
        ];
        parts.sort_unstable();
        let mut hasher = Sha1::new();
        for part in parts {
            hasher.update(part);
        }
        let digest = hasher.finalize();
        let mut hex = [0u8; 40];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(digest.iter()) {
            pair.copy_from_slice(&[hex_digit(byte >> 4), hex_digit(byte & 0x0f)]);
        }
        hex
    }

    /// Checks `signature` against the token, `timestamp`, `nonce` and `encrypt`, in constant
    /// time. The comparison is exact: DingTalk and every peer use lower-case hex.
    ///
    /// # Errors
    /// [`Error::BadSignature`] on mismatch.
    pub fn verify(&self, signature: &str, timestamp: &str, nonce: &str, encrypt: &str) -> Result<()> {
        let expected = self.signature_hex(timestamp, nonce, encrypt);
        if bool::from(expected.as_slice().ct_eq(signature.as_bytes())) {
            Ok(())
        } else {
            Err(Error::BadSignature)
        }
    }

    /// Verifies the signature, then decrypts `encrypt` and returns the message.
    ///
    /// # Errors
    /// [`Error::BadSignature`] first; then, for a correctly signed but malformed payload,
    /// [`Error::BadBase64`], [`Error::BadCiphertextLength`], [`Error::BadPadding`],
    /// [`Error::BadLength`], [`Error::ReceiverIdMismatch`] or [`Error::BadUtf8`].
    pub fn verify_and_decrypt(
        &self,
        signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypt: &str,
    ) -> Result<String> {
        self.verify(signature, timestamp, nonce, encrypt)?;
        self.decrypt_unverified(encrypt)
    }

    /// Decrypts without checking a signature. Only for channels that are authenticated some
    /// other way; for HTTP push use [`verify_and_decrypt`](Self::verify_and_decrypt).
    ///
    /// # Errors
    /// As [`verify_and_decrypt`](Self::verify_and_decrypt), less [`Error::BadSignature`].
    pub fn decrypt_unverified(&self, encrypt: &str) -> Result<String> {
        // SIMD base64: on a typical event this is a third of the cost with the scalar decoder.
        let mut buf = base64_simd::STANDARD
            .decode_to_vec(encrypt.as_bytes())
            .map_err(|_| Error::BadBase64)?;
        let len = buf.len();
        if len == 0 || len % 16 != 0 {
            return Err(Error::BadCiphertextLength { len });
        }
        cbc::Decryptor::<aes::Aes256Dec>::inner_iv_init(self.dec.clone(), GenericArray::from_slice(&self.iv))
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .map_err(|_| Error::BadCiphertextLength { len })?;

        let body_len = unpad(&buf)?;
        let body = buf.get(..body_len).unwrap_or_default();
        let declared = body
            .get(PREFIX_LEN..HEADER_LEN)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or(Error::BadLength {
                declared: 0,
                available: body_len.saturating_sub(HEADER_LEN),
            })?;
        let msg_end = usize::try_from(declared)
            .ok()
            .and_then(|n| n.checked_add(HEADER_LEN))
            .filter(|&end| end <= body_len)
            .ok_or(Error::BadLength {
                declared: u64::from(declared),
                available: body_len.saturating_sub(HEADER_LEN),
            })?;
        let found = body.get(msg_end..).unwrap_or_default();
        if found != self.receiver_id.as_bytes() {
            return Err(Error::ReceiverIdMismatch {
                expected: self.receiver_id.clone(),
                found: String::from_utf8_lossy(found).into_owned(),
            });
        }
        // Reuse the buffer for the message instead of allocating a second one.
        buf.copy_within(HEADER_LEN..msg_end, 0);
        buf.truncate(msg_end - HEADER_LEN);
        String::from_utf8(buf).map_err(|_| Error::BadUtf8)
    }

    /// Encrypts `plaintext` with a random 16-character alphanumeric prefix, as DingTalk does.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] for messages over 4 GiB.
    pub fn encrypt(&self, plaintext: &str) -> Result<String> {
        let mut rng = rand::thread_rng();
        let mut prefix = [0u8; PREFIX_LEN];
        for b in &mut prefix {
            *b = rng.sample(rand::distributions::Alphanumeric);
        }
        self.encrypt_with_prefix(plaintext, &prefix)
    }

    /// Encrypts with a pinned prefix, so tests can reproduce published vectors byte for byte.
    /// Production code should call [`encrypt`](Self::encrypt).
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] for messages over 4 GiB.
    pub fn encrypt_with_prefix(&self, plaintext: &str, prefix: &[u8; 16]) -> Result<String> {
        let msg = plaintext.as_bytes();
        let msg_len = u32::try_from(msg.len()).map_err(|_| Error::MessageTooLarge { len: msg.len() })?;
        let body_len = HEADER_LEN + msg.len() + self.receiver_id.len();
        let pad = PAD_BLOCK - body_len % PAD_BLOCK;
        let mut frame = Vec::with_capacity(body_len + pad);
        frame.extend_from_slice(prefix);
        frame.extend_from_slice(&msg_len.to_be_bytes());
        frame.extend_from_slice(msg);
        frame.extend_from_slice(self.receiver_id.as_bytes());
        // `pad` is in 1..=32, so it fits in a byte.
        frame.resize(body_len + pad, pad as u8);
        let len = frame.len();
        let ciphertext = cbc::Encryptor::<aes::Aes256Enc>::inner_iv_init(
            self.enc.clone(),
            GenericArray::from_slice(&self.iv),
        )
        .encrypt_padded_mut::<NoPadding>(&mut frame, len)
        .map_err(|_| Error::MessageTooLarge { len: msg.len() })?;
        Ok(base64_simd::STANDARD.encode_to_string(ciphertext))
    }

    /// Encrypts and signs `plaintext` for the given timestamp and nonce: a complete callback
    /// reply (or, for a mock DingTalk, a complete event to push).
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] for messages over 4 GiB.
    pub fn encrypt_reply(&self, plaintext: &str, timestamp: &str, nonce: &str) -> Result<EncryptedMessage> {
        let encrypt = self.encrypt(plaintext)?;
        Ok(self.seal(encrypt, timestamp, nonce))
    }

    /// The reply DingTalk requires after every event: the encrypted literal `success`, signed
    /// over the request's own `timestamp` and `nonce` (echoing them is what the official
    /// samples do and is accepted in production).
    pub fn success_reply(&self, timestamp: &str, nonce: &str) -> EncryptedMessage {
        // "success" is 7 bytes: it cannot exceed the framing limit.
        let encrypt = self.encrypt("success").unwrap_or_default();
        self.seal(encrypt, timestamp, nonce)
    }

    fn seal(&self, encrypt: String, timestamp: &str, nonce: &str) -> EncryptedMessage {
        EncryptedMessage {
            msg_signature: self.sign(timestamp, nonce, &encrypt),
            time_stamp: timestamp.to_owned(),
            nonce: nonce.to_owned(),
            encrypt,
        }
    }
}

/// Validates PKCS#7 padding to DingTalk's 32-byte block (any value 1..=32 is accepted, since
/// some senders pad to 16) and returns the unpadded length.
fn unpad(frame: &[u8]) -> Result<usize> {
    let pad = frame.last().copied().unwrap_or(0);
    let n = usize::from(pad);
    if !(1..=PAD_BLOCK).contains(&n) || n > frame.len() {
        return Err(Error::BadPadding { pad });
    }
    let body_len = frame.len() - n;
    let uniform = frame
        .get(body_len..)
        .is_some_and(|tail| tail.iter().all(|&b| b == pad));
    if uniform {
        Ok(body_len)
    } else {
        Err(Error::BadPadding { pad })
    }
}

fn hex_digit(nibble: u8) -> u8 {
    if nibble < 10 {
        b'0' + nibble
    } else {
        b'a' + nibble - 10
    }
}
