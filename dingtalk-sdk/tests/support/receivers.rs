//! What receives the mock's events in the tests: our own callback route (the integrator's
//! Request URL) and our Stream client, each collecting the events it is given.

use super::{crypto, APP_KEY, APP_SECRET, WAIT};
use dingtalk_sdk::callback::{axum::callback_route, CallbackHandler};
use dingtalk_sdk::event::Event;
use dingtalk_sdk::mock::MockDingTalk;
use dingtalk_sdk::stream::client::StreamClient;
use std::sync::{Arc, Mutex};

/// The events a receiver was given, in order.
pub type Events = Arc<Mutex<Vec<Event>>>;

/// Our own callback route, playing the integrator's Request URL: its URL, and the events.
pub async fn receiver() -> (String, Events) {
    let events: Events = Arc::default();
    let sink = Arc::clone(&events);
    let route = callback_route(CallbackHandler::builder(crypto()).build(), move |event| {
        let sink = Arc::clone(&sink);
        async move {
            sink.lock().unwrap().push(event);
            Ok::<(), String>(())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/dingtalk/events", listener.local_addr().unwrap());
    tokio::spawn(
        async move { axum::serve(listener, axum::Router::new().route("/dingtalk/events", route)).await },
    );
    (url, events)
}

/// Our Stream client connected to the mock, collecting events; abort the task to stop it.
pub async fn stream_receiver(mock: &MockDingTalk) -> (Events, tokio::task::JoinHandle<()>) {
    let seen: Events = Arc::default();
    let sink = Arc::clone(&seen);
    let client = StreamClient::builder(APP_KEY, APP_SECRET)
        .api_base(mock.base_url())
        .build()
        .unwrap();
    let task = tokio::spawn(async move {
        client
            .run(
                move |event: Event| {
                    let sink = Arc::clone(&sink);
                    async move {
                        sink.lock().unwrap().push(event);
                        Ok::<(), String>(())
                    }
                },
                std::future::pending(),
            )
            .await
    });
    assert!(mock.gateway().wait_for(WAIT, |g| g.connection_count() == 1).await);
    (seen, task)
}
