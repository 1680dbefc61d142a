//! The HTTP-push pipeline end to end on loopback, with no DingTalk account needed.
//!
//! Starts the `dingtalk-sdk` axum callback route on 127.0.0.1, then plays DingTalk: it
//! encrypts and signs a `check_url` and a `bpms_instance_change` (approved) event exactly as
//! DingTalk does, POSTs them to the Request URL, and checks the encrypted `success` replies.
//!
//! Run: `cargo run --example callback_demo`

use dingtalk_sdk::callback::{axum::callback_route, CallbackHandler};
use dingtalk_sdk::crypto::{EncryptedMessage, EventCrypto};
use dingtalk_sdk::event::Event;
use std::time::{SystemTime, UNIX_EPOCH};

// Demo credentials in DingTalk's formats (token, 43-char aes_key, AppKey as receiver id).
const TOKEN: &str = "sase1token2cb";
const AES_KEY: &str = "kYd8sJ2pQ7wE4rT9uV1xZ3cB6nM0aL5gH8jK2fD4sAx";
const APP_KEY: &str = "dingq5z1ybtkwcvhx7ab";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let crypto = EventCrypto::new(TOKEN, AES_KEY, APP_KEY)?;
    let (tx, mut events) = tokio::sync::mpsc::channel::<Event>(64);
    let route = callback_route(CallbackHandler::builder(crypto.clone()).build(), move |event| {
        let tx = tx.clone();
        async move { tx.send(event).await.map_err(|e| e.to_string()) }
    });
    let app = axum::Router::new().route("/dingtalk/events", route);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/dingtalk/events", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("Request URL listening at {url}");

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)?
        .as_millis()
        .to_string();
    let approved = format!(
        r#"{{"EventType":"bpms_instance_change","EventTime":{now},"CorpId":"dingcorp","eventId":"demo-1","processInstanceId":"pi-demo","processCode":"PROC-DEMO","type":"finish","result":"agree","title":"张三提交的安全客户端卸载申请","staffId":"manager4321"}}"#
    );
    let client = reqwest::Client::new();
    for (nonce, plaintext) in [
        ("nonce001", r#"{"EventType":"check_url"}"#),
        ("nonce002", approved.as_str()),
    ] {
        let res = push(&client, &url, &crypto.encrypt_reply(plaintext, &now, nonce)?).await?;
        let status = res.status();
        let reply: EncryptedMessage = res.json().await?;
        let answer = crypto.verify_and_decrypt(
            &reply.msg_signature,
            &reply.time_stamp,
            &reply.nonce,
            &reply.encrypt,
        )?;
        let event = events.recv().await.ok_or("no event delivered")?;
        println!("push {nonce}: HTTP {status}, reply decrypts to {answer:?}");
        println!("  typed event: {event:?}");
    }

    // A forged push (wrong token) is refused before decryption.
    let forged =
        EventCrypto::new("not-the-token", AES_KEY, APP_KEY)?.encrypt_reply("{}", &now, "nonce003")?;
    let res = push(&client, &url, &forged).await?;
    println!("forged push: HTTP {} {}", res.status(), res.text().await?);
    Ok(())
}

/// What DingTalk does: POST `{"encrypt": …}` with signature, timestamp and nonce in the query.
async fn push(
    client: &reqwest::Client,
    url: &str,
    sealed: &EncryptedMessage,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(url)
        .query(&[
            ("signature", &sealed.msg_signature),
            ("timestamp", &sealed.time_stamp),
            ("nonce", &sealed.nonce),
        ])
        .json(&serde_json::json!({ "encrypt": sealed.encrypt }))
        .send()
        .await
}
