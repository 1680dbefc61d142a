//! Property tests: valid messages round-trip; arbitrary input is rejected with a specific error
//! (never a panic): at the signature when unsigned, as a payload error when signed; any
//! tampering with a legitimately signed payload is rejected at the signature, so it never
//! decrypts to a wrong plaintext.

pub mod support;

use base64::Engine as _;
use dingtalk_sdk::crypto::EventCrypto;
use dingtalk_sdk::Error;
use proptest::prelude::*;

use support::{crypto, AES_KEY};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn round_trips_any_message_and_receiver(msg in ".{0,600}", receiver in "[a-zA-Z0-9]{0,40}") {
        let c = EventCrypto::new("tok", AES_KEY, receiver).unwrap();
        let sealed = c.encrypt_reply(&msg, "1741699800123", "nonce").unwrap();
        prop_assert!(!sealed.encrypt.contains('\n'));
        let back = c.verify_and_decrypt(&sealed.msg_signature, &sealed.time_stamp, &sealed.nonce, &sealed.encrypt).unwrap();
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn arbitrary_strings_fail_the_signature_and_signed_fail_as_payload(
        sig in ".{0,60}", ts in ".{0,20}", nonce in ".{0,20}", enc in ".{0,400}",
    ) {
        let c = crypto();
        let real = c.sign(&ts, &nonce, &enc);
        prop_assume!(sig != real);
        let r = c.verify_and_decrypt(&sig, &ts, &nonce, &enc);
        prop_assert!(matches!(r, Err(Error::BadSignature)), "{:?}", r);
        // Signed with our token, the same text passes the signature and fails as a payload:
        // arbitrary text is never a frame encrypted for us.
        let r = c.verify_and_decrypt(&real, &ts, &nonce, &enc);
        prop_assert!(is_payload_error(&r), "{:?}", r);
    }

    #[test]
    fn arbitrary_ciphertexts_signed_correctly_are_payload_errors(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600),
            // Whole blocks, so decryption and the frame checks are reached too.
            (1usize..38).prop_flat_map(|blocks| proptest::collection::vec(any::<u8>(), blocks * 16)),
        ],
    ) {
        let c = crypto();
        let enc = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let sig = c.sign("1", "n", &enc);
        let r = c.verify_and_decrypt(&sig, "1", "n", &enc);
        if bytes.is_empty() || bytes.len() % 16 != 0 {
            prop_assert!(
                matches!(r, Err(Error::BadCiphertextLength { len }) if len == bytes.len()),
                "{:?}", r
            );
        } else {
            // Random blocks essentially never decrypt to a frame ending in our receiver id.
            prop_assert!(
                matches!(
                    r,
                    Err(Error::BadPadding { .. } | Error::BadLength { .. } | Error::ReceiverIdMismatch { .. })
                ),
                "{:?}", r
            );
        }
    }

    #[test]
    fn any_bit_flip_or_truncation_under_the_original_signature_is_rejected(
        msg in "[ -~一-龥]{1,200}", pos in any::<prop::sample::Index>(), bit in 0u8..=7, cut in 1usize..40,
    ) {
        let c = crypto();
        let sealed = c.encrypt_reply(&msg, "1741699800123", "q9W8e7R6").unwrap();
        let mut flipped = sealed.encrypt.clone().into_bytes();
        let i = pos.index(flipped.len());
        flipped[i] ^= 1 << bit;
        let flipped = String::from_utf8_lossy(&flipped).into_owned();
        let truncated = sealed.encrypt.get(..sealed.encrypt.len().saturating_sub(cut)).unwrap();
        for enc in [flipped.as_str(), truncated] {
            let r = c.verify_and_decrypt(&sealed.msg_signature, &sealed.time_stamp, &sealed.nonce, enc);
            prop_assert!(matches!(r, Err(Error::BadSignature)), "{:?}", r);
        }
        // Tampering with the signed timestamp or nonce is rejected too.
        let r = c.verify_and_decrypt(&sealed.msg_signature, "1741699800124", &sealed.nonce, &sealed.encrypt);
        prop_assert!(matches!(r, Err(Error::BadSignature)));
    }

    #[test]
    fn re_signed_tampering_is_a_payload_error_unless_it_only_touched_the_prefix_block(
        pos in any::<prop::sample::Index>(), byte in any::<u8>(),
    ) {
        let c = crypto();
        let message = "{\"EventType\":\"check_url\"}";
        let enc = c.encrypt(message).unwrap();
        let mut raw = base64::engine::general_purpose::STANDARD.decode(&enc).unwrap();
        let i = pos.index(raw.len());
        raw[i] ^= byte.max(1);
        let tampered = base64::engine::general_purpose::STANDARD.encode(&raw);
        let sig = c.sign("1", "n", &tampered);
        match c.verify_and_decrypt(&sig, "1", "n", &tampered) {
            // In CBC, changing ciphertext block k garbles plaintext block k and flips the same
            // bits of block k + 1. Only block 0 (the opaque random prefix) can be garbled with
            // the length field, receiver id and padding intact; the message keeps its length
            // but not its content.
            Ok(text) => {
                prop_assert!(i < 16, "tampering at byte {} decrypted to {:?}", i, text);
                prop_assert_eq!(text.len(), message.len());
                prop_assert_ne!(text, message);
            }
            r => prop_assert!(is_payload_error(&r), "{:?}", r),
        }
    }
}

/// A failure after the signature: the payload itself is wrong.
fn is_payload_error<T>(r: &Result<T, Error>) -> bool {
    matches!(
        r,
        Err(Error::BadBase64
            | Error::BadCiphertextLength { .. }
            | Error::BadPadding { .. }
            | Error::BadLength { .. }
            | Error::ReceiverIdMismatch { .. }
            | Error::BadUtf8)
    )
}
