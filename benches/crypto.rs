//! Callback hot paths on a 571-byte `bpms_instance_change` event:
//! verify + decrypt, verify + decrypt + typed parse, the encrypted `success` reply, and the
//! whole framework-agnostic callback (body parse, window, verify, decrypt, parse, reply).
//!
//! Run: `cargo bench --bench crypto`

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "a benchmark's set-up fails loudly on the first unexpected value"
)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use sase_dingtalk::dingtalk::callback::{CallbackHandler, CallbackQuery};
use sase_dingtalk::dingtalk::crypto::EventCrypto;
use sase_dingtalk::dingtalk::event::Event;

const TOKEN: &str = "sase1token2cb";
const AES_KEY: &str = "kYd8sJ2pQ7wE4rT9uV1xZ3cB6nM0aL5gH8jK2fD4sAx";
const APP_KEY: &str = "dingq5z1ybtkwcvhx7ab";

/// A realistic `bpms_instance_change` finish/agree push, padded to exactly 571 bytes of UTF-8.
fn event_571() -> String {
    let head = r#"{"EventType":"bpms_instance_change","EventTime":1741703477120,"CorpId":"dingc7c5220402493357f2c783f7214b6d69","BizId":"5b0e3a5c0d9a4e57","eventId":"5b0e3a5c0d9a4e57a1f4f0d2e7c6b911","result":"agree","processInstanceId":"Rz3l5WmWQy2Kq0e8oX1bYA01741699876","finishTime":1741703477000,"createTime":1741699876000,"processCode":"PROC-9F2C1A7E-3B4D-4E5F-8A6B-1C2D3E4F5A6B","businessId":"202503111531000123456","type":"finish","title":"张三提交的安全客户端卸载申请","staffId":"manager4321","url":"https://aflow.dingtalk.com/dingtalk/mobile/homepage.htm?id="#;
    let mut event = head.to_owned();
    while event.len() < 571 - 2 {
        event.push('x');
    }
    event.push_str("\"}");
    assert_eq!(event.len(), 571);
    Event::from_json(&event).expect("bench event parses");
    event
}

fn bench(c: &mut Criterion) {
    let crypto = EventCrypto::new(TOKEN, AES_KEY, APP_KEY).unwrap();
    let (ts, nonce) = ("1741703477235", "q9W8e7R6");
    let encrypt = crypto.encrypt(&event_571()).unwrap();
    let sig = crypto.sign(ts, nonce, &encrypt);

    let mut g = c.benchmark_group("callback_571B");
    g.bench_function("verify_decrypt", |b| {
        b.iter(|| {
            crypto
                .verify_and_decrypt(black_box(&sig), ts, nonce, black_box(&encrypt))
                .unwrap()
        })
    });
    g.bench_function("verify_decrypt_parse", |b| {
        b.iter(|| {
            let text = crypto
                .verify_and_decrypt(black_box(&sig), ts, nonce, black_box(&encrypt))
                .unwrap();
            Event::from_json(&text).unwrap()
        })
    });
    g.bench_function("success_reply", |b| {
        b.iter(|| crypto.success_reply(black_box(ts), black_box(nonce)))
    });

    let handler = CallbackHandler::builder(crypto.clone())
        .replay_window(None)
        .build();
    let query = CallbackQuery::new(sig.clone(), ts, nonce);
    let body = format!(r#"{{"encrypt":"{encrypt}"}}"#);
    g.bench_function("handle_full_callback", |b| {
        b.iter(|| {
            handler
                .handle(black_box(&query), black_box(body.as_bytes()))
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
