//! Every case of `vectors/callback-crypto.json` (produced by running seven third-party
//! implementations) must behave as its `expect` says.

#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on unexpected values"
)]

pub mod support;

use support::{AES_KEY, APP_KEY, TOKEN};

use dingtalk_sdk::crypto::EventCrypto;
use dingtalk_sdk::event::Event;
use dingtalk_sdk::Error;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Vectors {
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    id: String,
    negative: bool,
    token: String,
    aes_key: String,
    receiver_id: String,
    timestamp: String,
    nonce: String,
    msg_signature: String,
    encrypt: String,
    #[serde(default)]
    plaintext: Option<String>,
    #[serde(default)]
    random_prefix: Option<String>,
    #[serde(default)]
    expect: Option<String>,
    #[serde(default)]
    reply_json: Option<serde_json::Value>,
}

fn load() -> Vec<Case> {
    let vectors: Vectors =
        serde_json::from_value(support::vectors("callback-crypto.json")).expect("parse callback-crypto.json");
    assert_eq!(
        vectors.cases.len(),
        35,
        "the vector file changed; review this test"
    );
    vectors.cases
}

fn crypto(case: &Case) -> EventCrypto {
    EventCrypto::new(&case.token, &case.aes_key, &case.receiver_id)
        .unwrap_or_else(|e| panic!("{}: key rejected: {e}", case.id))
}

#[test]
fn positive_cases_verify_and_decrypt_to_the_plaintext() {
    let mut checked = 0;
    for case in load().iter().filter(|c| !c.negative) {
        let plaintext = crypto(case)
            .verify_and_decrypt(&case.msg_signature, &case.timestamp, &case.nonce, &case.encrypt)
            .unwrap_or_else(|e| panic!("{}: {e}", case.id));
        assert_eq!(Some(&plaintext), case.plaintext.as_ref(), "{}", case.id);
        checked += 1;
    }
    assert_eq!(checked, 22);
}

#[test]
fn encryption_with_the_pinned_prefix_reproduces_the_vectors_byte_for_byte() {
    let mut checked = 0;
    for case in load().iter().filter(|c| !c.negative) {
        let (Some(prefix), Some(plaintext)) = (&case.random_prefix, &case.plaintext) else {
            continue;
        };
        let prefix: [u8; 16] = prefix.as_bytes().try_into().expect("16-byte prefix");
        let crypto = crypto(case);
        let encrypt = crypto.encrypt_with_prefix(plaintext, &prefix).expect("encrypt");
        assert_eq!(encrypt, case.encrypt, "{}: ciphertext", case.id);
        assert_eq!(
            crypto.sign(&case.timestamp, &case.nonce, &encrypt),
            case.msg_signature,
            "{}: signature",
            case.id
        );
        checked += 1;
    }
    assert_eq!(checked, 18, "every produced case has a pinned prefix");
}

#[test]
fn the_success_reply_matches_the_vector_reply_body() {
    let case = load()
        .into_iter()
        .find(|c| c.id == "reply_success")
        .expect("reply_success case");
    let crypto = crypto(&case);
    // A random-prefix reply decrypts to `success` and is signed over the echoed values.
    let reply = crypto.success_reply(&case.timestamp, &case.nonce);
    assert_eq!(reply.time_stamp, case.timestamp);
    assert_eq!(reply.nonce, case.nonce);
    assert_eq!(
        crypto
            .verify_and_decrypt(
                &reply.msg_signature,
                &reply.time_stamp,
                &reply.nonce,
                &reply.encrypt
            )
            .expect("own reply verifies"),
        "success"
    );
    // With the vector's prefix, the serialized reply equals `reply_json` exactly.
    let prefix: [u8; 16] = case
        .random_prefix
        .as_deref()
        .expect("prefix")
        .as_bytes()
        .try_into()
        .expect("16");
    let encrypt = crypto.encrypt_with_prefix("success", &prefix).expect("encrypt");
    let pinned = dingtalk_sdk::crypto::EncryptedMessage {
        msg_signature: crypto.sign(&case.timestamp, &case.nonce, &encrypt),
        time_stamp: case.timestamp.clone(),
        nonce: case.nonce.clone(),
        encrypt,
    };
    assert_eq!(
        serde_json::to_value(&pinned).expect("json"),
        case.reply_json.expect("reply_json")
    );
}

/// What a strict, DingTalk-compatible decoder must say, keyed by the vector's `expect` text.
fn expected(expect: &str, err: &Error) -> bool {
    match expect {
        "reject: signature mismatch"
        | "reject in every peer (they compare lower-case hex strings exactly)" => {
            matches!(err, Error::BadSignature)
        }
        "reject: padding/length/receiver-id check fails" => matches!(
            err,
            Error::BadPadding { .. } | Error::BadLength { .. } | Error::ReceiverIdMismatch { .. }
        ),
        "reject: length field out of range or receiver-id mismatch" => {
            matches!(err, Error::BadLength { .. } | Error::ReceiverIdMismatch { .. })
        }
        "reject: receiver id mismatch" => matches!(err, Error::ReceiverIdMismatch { .. }),
        "reject: garbage frame (padding/length/receiver-id/UTF-8)" => matches!(
            err,
            Error::BadPadding { .. }
                | Error::BadLength { .. }
                | Error::ReceiverIdMismatch { .. }
                | Error::BadUtf8
        ),
        "reject (strict decoder)" => matches!(err, Error::BadPadding { .. }),
        "reject: ciphertext length not a multiple of the AES block" => {
            matches!(err, Error::BadCiphertextLength { .. })
        }
        other => panic!("unknown expectation {other:?}: extend this test"),
    }
}

#[test]
fn negative_cases_yield_the_error_their_expect_names() {
    let mut checked = 0;
    for case in load().iter().filter(|c| c.negative) {
        let expect = case.expect.as_deref().expect("negative cases say what to expect");
        let result =
            crypto(case).verify_and_decrypt(&case.msg_signature, &case.timestamp, &case.nonce, &case.encrypt);
        if expect.starts_with("crypto layer accepts") {
            // No MAC: a re-signed mid-block flip can pass the crypto layer. Then the message
            // must not survive as the original event: UTF-8 or JSON parsing fails, or it differs.
            match result {
                Err(err) => assert!(matches!(err, Error::BadUtf8), "{}: {err}", case.id),
                Ok(text) => assert!(
                    Event::from_json(&text).is_err() || !text.contains("\"result\":\"agree\""),
                    "{}",
                    case.id
                ),
            }
        } else {
            let err = result.expect_err(&case.id);
            assert!(
                expected(expect, &err),
                "{}: expected {expect:?}, got {err:?}",
                case.id
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 13);
}

#[test]
fn a_sixteen_byte_block_padding_is_accepted() {
    let case = load()
        .into_iter()
        .find(|c| c.id == "neg_pad_16byte_block")
        .expect("case");
    let text = crypto(&case)
        .verify_and_decrypt(&case.msg_signature, &case.timestamp, &case.nonce, &case.encrypt)
        .expect("pad values 1..=32 are accepted whatever block size the sender used");
    assert_eq!(Some(text), case.plaintext);
}

#[test]
fn every_positive_plaintext_parses_as_its_event_type() {
    for case in load().iter().filter(|c| !c.negative) {
        let Some(plaintext) = case.plaintext.as_deref().filter(|p| p.contains("EventType")) else {
            continue;
        };
        let event = Event::from_json(plaintext).unwrap_or_else(|e| panic!("{}: {e}", case.id));
        let raw: serde_json::Value = serde_json::from_str(plaintext).expect("json");
        assert_eq!(
            event.event_type(),
            raw["EventType"].as_str().expect("EventType"),
            "{}",
            case.id
        );
        match (&event, raw["EventType"].as_str()) {
            (Event::CheckUrl(_), Some("check_url"))
            | (Event::InstanceChange(_), Some("bpms_instance_change"))
            | (Event::TaskChange(_), Some("bpms_task_change")) => {}
            (Event::Unknown(u), _) => assert_eq!(u.raw, plaintext),
            other => panic!("{}: unexpected {other:?}", case.id),
        }
    }
}

#[test]
fn bad_keys_are_typed_errors() {
    for key in [
        "",
        "short",
        "kYd8sJ2pQ7wE4rT9uV1xZ3cB6nM0aL5gH8jK2fD4sAxx",
        "kYd8sJ2pQ7wE4rT9uV1xZ3cB6nM0aL5gH8jK2fD4sA!",
    ] {
        assert!(
            matches!(EventCrypto::new("t", key, "r"), Err(Error::BadAesKey { .. })),
            "{key:?}"
        );
    }
}

#[test]
fn debug_output_redacts_secrets() {
    let debug = format!("{:?}", support::crypto());
    assert!(!debug.contains(TOKEN) && !debug.contains(AES_KEY), "{debug}");
    assert!(debug.contains(APP_KEY));
}
