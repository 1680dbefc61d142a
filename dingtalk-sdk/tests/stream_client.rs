//! The Stream client against the mock gateway over real WebSockets on 127.0.0.1: events
//! delivered and ACKed, ping answered, forced disconnect with no event lost, handler failure
//! → LATER → redelivery → one state change, a silent connection replaced, clean shutdown, and
//! the frames we send matching the protocol-conformant SDK field for field.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected values")]

pub mod support;

use dingtalk_sdk::event::Event;
use dingtalk_sdk::mock::gateway::MockGateway;
use dingtalk_sdk::stream::client::{Backoff, ConnState, StreamClient};
use dingtalk_sdk::stream::frame::EventAckStatus;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

use support::{APP_KEY as APP, WAIT};

/// The secret the recorded Node SDK frames (`stream-frames.json`) were made with.
const SECRET: &str = "client-secret-not-real";
const DATA: &str = r#"{"processInstanceId":"pi-1","type":"finish","result":"agree","staffId":"manager4321"}"#;

/// Events the handler saw, by event id, and how often; optionally failing the first N calls.
#[derive(Clone, Default)]
struct Seen {
    events: Arc<Mutex<Vec<Event>>>,
    fail_first: Arc<Mutex<u32>>,
}

impl Seen {
    fn count(&self, event_id: &str) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.meta().event_id.as_deref() == Some(event_id))
            .count()
    }

    /// Distinct state changes: what an idempotent consumer would apply.
    fn distinct(&self) -> usize {
        let events = self.events.lock().unwrap();
        let keys: std::collections::HashSet<String> = events.iter().map(Event::idempotency_key).collect();
        keys.len()
    }
}

struct Running {
    gateway: MockGateway,
    seen: Seen,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    state: tokio::sync::watch::Receiver<ConnState>,
}

async fn start(configure: impl FnOnce(&MockGateway), fail_first: u32, idle: Option<Duration>) -> Running {
    let gateway = MockGateway::start().await.unwrap();
    gateway.register_app(APP, SECRET);
    configure(&gateway);
    let mut builder = StreamClient::builder(APP, SECRET)
        .api_base(gateway.base_url())
        .local_ip("127.0.0.1")
        .backoff(Backoff::new(
            Duration::from_millis(20),
            Duration::from_millis(200),
        ));
    if let Some(idle) = idle {
        builder = builder.keepalive(idle / 3).idle_timeout(idle);
    }
    let client = builder.build().unwrap();
    let state = client.state();
    let seen = Seen::default();
    *seen.fail_first.lock().unwrap() = fail_first;
    let (stop, stopped) = oneshot::channel::<()>();
    let handler_seen = seen.clone();
    let task = tokio::spawn(async move {
        client
            .run(
                move |event: Event| {
                    let seen = handler_seen.clone();
                    async move {
                        seen.events.lock().unwrap().push(event);
                        let mut fail = seen.fail_first.lock().unwrap();
                        if *fail > 0 {
                            *fail -= 1;
                            return Err("database unavailable");
                        }
                        Ok(())
                    }
                },
                async move {
                    let _ = stopped.await;
                },
            )
            .await;
    });
    assert!(
        gateway.wait_for(WAIT, |g| g.connection_count() == 1).await,
        "client connected"
    );
    Running {
        gateway,
        seen,
        stop: Some(stop),
        task,
        state,
    }
}

#[tokio::test]
async fn events_are_delivered_typed_and_acked_success() {
    let r = start(|_| {}, 0, None).await;
    let message_id = r.gateway.push_event(APP, "bpms_instance_change", "ev-1", DATA);
    assert!(
        r.gateway.wait_for(WAIT, |g| g.pending_count() == 0).await,
        "acked"
    );
    assert_eq!(r.seen.count("ev-1"), 1);
    let Event::InstanceChange(change) = r.seen.events.lock().unwrap()[0].clone() else {
        panic!()
    };
    assert!(change.is_approved());
    let ack = r
        .gateway
        .replies()
        .into_iter()
        .find_map(|rep| rep.ack.filter(|a| a.headers.message_id == message_id));
    assert_eq!(ack.unwrap().event_status(), Some(EventAckStatus::Success));
    assert!(matches!(
        *r.state.borrow(),
        ConnState::Connected { generation: 1 }
    ));
}

#[tokio::test]
async fn ping_is_answered_with_its_opaque() {
    let r = start(|_| {}, 0, None).await;
    let sent = r.gateway.ping();
    assert_eq!(sent.len(), 1);
    let (message_id, opaque) = sent[0].clone();
    assert!(
        r.gateway
            .wait_for(WAIT, |g| g.replies().iter().any(|rep| rep
                .ack
                .as_ref()
                .is_some_and(|a| a.headers.message_id == message_id)))
            .await
    );
    let reply = r
        .gateway
        .replies()
        .into_iter()
        .find_map(|rep| rep.ack.filter(|a| a.headers.message_id == message_id))
        .unwrap();
    assert_eq!(reply.code, 200);
    let data: Value = serde_json::from_str(&reply.data).unwrap();
    assert_eq!(data["opaque"], opaque.as_str());
}

#[tokio::test]
async fn a_forced_disconnect_reconnects_first_and_loses_no_event() {
    let r = start(|g| g.set_disconnect_grace(Duration::from_millis(300)), 0, None).await;
    r.gateway.push_event(APP, "bpms_instance_change", "before", DATA);
    assert!(r.gateway.wait_for(WAIT, |g| g.pending_count() == 0).await);
    r.gateway.disconnect_all();
    // The client opens the new connection while the old one is still up.
    assert!(
        r.gateway.wait_for(WAIT, |g| g.connects().len() == 2).await,
        "reconnected"
    );
    for i in 0..5 {
        r.gateway
            .push_event(APP, "bpms_instance_change", &format!("during-{i}"), DATA);
    }
    assert!(
        r.gateway
            .wait_for(WAIT, |g| g.pending_count() == 0 && g.connection_count() == 1)
            .await
    );
    for id in [
        "before", "during-0", "during-1", "during-2", "during-3", "during-4",
    ] {
        assert!(r.seen.count(id) >= 1, "{id} delivered");
    }
    assert_eq!(r.seen.distinct(), 6);
    assert!(matches!(
        *r.state.borrow(),
        ConnState::Connected { generation: 2 }
    ));
    // Each connection got its own single-use, URL-encoded ticket.
    let connects = r.gateway.connects();
    assert_ne!(connects[0], connects[1]);
    assert!(
        connects
            .iter()
            .all(|q| q.starts_with("ticket=") && q.ends_with("%2B%2F%3D")),
        "{connects:?}"
    );
}

#[tokio::test]
async fn handler_failure_acks_later_and_the_redelivery_makes_one_state_change() {
    let r = start(|g| g.set_redelivery_delay(Duration::from_millis(100)), 1, None).await;
    let message_id = r
        .gateway
        .push_event(APP, "bpms_instance_change", "ev-retry", DATA);
    assert!(
        r.gateway.wait_for(WAIT, |g| g.pending_count() == 0).await,
        "eventually acked"
    );
    let statuses: Vec<EventAckStatus> = r
        .gateway
        .replies()
        .into_iter()
        .filter_map(|rep| rep.ack.filter(|a| a.headers.message_id == message_id))
        .filter_map(|a| a.event_status())
        .collect();
    assert_eq!(statuses.first(), Some(&EventAckStatus::Later));
    assert_eq!(statuses.last(), Some(&EventAckStatus::Success));
    assert!(r.seen.count("ev-retry") >= 2, "delivered again after LATER");
    assert_eq!(
        r.seen.distinct(),
        1,
        "one state change for an idempotent consumer"
    );
}

#[tokio::test]
async fn a_silent_connection_is_detected_and_replaced() {
    // The silent connection stays in the gateway's pool, so a push may land on it: fast and
    // many re-pushes (rather than DingTalk's 10 s, 30 s, …) reach the new one.
    let r = start(
        |g| g.set_redelivery_schedule(vec![Duration::from_millis(100); 30]),
        0,
        Some(Duration::from_millis(300)),
    )
    .await;
    r.gateway.silence_connections();
    assert!(
        r.gateway.wait_for(WAIT, |g| g.connects().len() >= 2).await,
        "reconnected after idle timeout"
    );
    r.gateway
        .push_event(APP, "bpms_instance_change", "after-silence", DATA);
    assert!(
        r.gateway
            .wait_for(WAIT, |_| r.seen.count("after-silence") >= 1)
            .await
    );
}

#[tokio::test]
async fn shutdown_and_abort_both_stop_the_client() {
    let mut r = start(|_| {}, 0, None).await;
    r.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(WAIT, &mut r.task)
        .await
        .expect("run returns on shutdown")
        .unwrap();
    assert_eq!(*r.state.borrow(), ConnState::Stopped);
    assert!(r.gateway.wait_for(WAIT, |g| g.connection_count() == 0).await);

    // A cancelled task must stop too (the official Python SDK swallows cancellation).
    let r = start(|_| {}, 0, None).await;
    r.task.abort();
    assert!(
        r.gateway.wait_for(WAIT, |g| g.connection_count() == 0).await,
        "socket closed on abort"
    );
}

#[tokio::test]
async fn bad_credentials_back_off_and_retry_with_fresh_requests() {
    let gateway = MockGateway::start().await.unwrap();
    gateway.register_app(APP, "the-real-secret");
    let client = StreamClient::builder(APP, SECRET)
        .api_base(gateway.base_url())
        .backoff(Backoff::new(Duration::from_millis(10), Duration::from_millis(40)))
        .build()
        .unwrap();
    let mut state = client.state();
    let task = tokio::spawn(async move {
        client
            .run(|_e: Event| async { Ok::<(), String>(()) }, std::future::pending())
            .await
    });
    let backoff = tokio::time::timeout(
        WAIT,
        state.wait_for(|s| matches!(s, ConnState::Backoff { attempt: 3, .. })),
    )
    .await;
    assert!(backoff.is_ok(), "backs off after repeated failures");
    assert!(gateway.open_requests().len() >= 3);
    assert_eq!(gateway.connection_count(), 0);
    task.abort();
}

#[tokio::test]
async fn frames_we_send_match_the_conformant_sdk_field_for_field() {
    let r = start(|_| {}, 0, None).await;
    let message_id = r
        .gateway
        .push_event(APP, "bpms_instance_change", "ev-shape", DATA);
    assert!(r.gateway.wait_for(WAIT, |g| g.pending_count() == 0).await);
    let vectors = support::vectors("stream-frames.json");
    let node = &vectors["node_sdk"];

    // connections/open: the same fields as the Node SDK (plus our ua and localIp values).
    let ours = &r.gateway.open_requests()[0];
    let theirs = &node["open_connection_requests"][0]["body"];
    for key in ["clientId", "clientSecret", "subscriptions"] {
        assert_eq!(ours[key], theirs[key], "{key}");
    }
    assert!(ours["ua"].as_str().unwrap().starts_with("dingtalk-sdk-rust/"));
    assert_eq!(ours["localIp"], "127.0.0.1");

    // The event ACK, as a JSON object, equals the Node SDK's apart from the message id.
    let raw = r
        .gateway
        .replies()
        .into_iter()
        .find(|rep| {
            rep.ack
                .as_ref()
                .is_some_and(|a| a.headers.message_id == message_id)
        })
        .unwrap()
        .raw;
    let mut ours: Value = serde_json::from_str(&raw).unwrap();
    let theirs: Value = serde_json::from_str(
        node["sdk_replies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["after"] == "event_bpms_instance_change")
            .unwrap()["raw"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    ours["headers"]["messageId"] = theirs["headers"]["messageId"].clone();
    let parse = |v: &Value| serde_json::from_str::<Value>(v["data"].as_str().unwrap()).unwrap();
    assert_eq!(parse(&ours), parse(&theirs));
    ours["data"] = theirs["data"].clone();
    assert_eq!(ours, theirs);
}

#[test]
fn build_rejects_an_api_base_that_is_not_http() {
    let err = StreamClient::builder(APP, SECRET)
        .api_base("wss://api.dingtalk.com")
        .build()
        .unwrap_err();
    assert!(matches!(err, dingtalk_sdk::Error::Config { .. }), "{err:?}");
}
