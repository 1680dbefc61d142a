//! Typed events from all three shapes: HTTP push (current and historical) and Stream frames.

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly on unexpected values"
)]

pub mod support;

use dingtalk_sdk::event::{
    Event, InstanceChangeType, InstanceResult, StreamEventHeaders, TaskChangeType, TaskResult,
};
use serde_json::Value;

use support::vectors;

fn crypto_plaintext(id: &str) -> String {
    let v = vectors("callback-crypto.json");
    let case = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap();
    case["plaintext"].as_str().unwrap().to_owned()
}

#[test]
fn http_push_instance_events_map_type_and_result() {
    let cases = [
        ("bpms_instance_start", Some(InstanceChangeType::Start), None),
        (
            "bpms_instance_finish_agree",
            Some(InstanceChangeType::Finish),
            Some(InstanceResult::Agree),
        ),
        (
            "bpms_instance_finish_refuse",
            Some(InstanceChangeType::Finish),
            Some(InstanceResult::Refuse),
        ),
        (
            "bpms_instance_terminate",
            Some(InstanceChangeType::Terminate),
            None,
        ),
    ];
    for (id, change, result) in cases {
        let plaintext = crypto_plaintext(id);
        let raw: Value = serde_json::from_str(&plaintext).unwrap();
        let Event::InstanceChange(e) = Event::from_json(&plaintext).unwrap() else {
            panic!("{id}")
        };
        assert_eq!(e.change, change, "{id}");
        assert_eq!(e.result, result, "{id}");
        assert_eq!(
            e.process_instance_id.as_ref().unwrap(),
            raw["processInstanceId"].as_str().unwrap()
        );
        assert_eq!(e.meta.event_id.as_deref(), raw["eventId"].as_str());
        assert_eq!(e.meta.event_time, raw["EventTime"].as_i64());
        assert_eq!(
            e.meta.corp_id.as_ref().map(|c| c.as_str()),
            raw["CorpId"].as_str()
        );
        assert_eq!(e.meta.biz_id.as_deref(), raw["BizId"].as_str());
        assert_eq!(e.create_time, raw["createTime"].as_i64());
        assert_eq!(e.finish_time, raw["finishTime"].as_i64());
        assert_eq!(e.staff_id.as_ref().map(|s| s.as_str()), raw["staffId"].as_str());
        assert_eq!(e.title.as_deref(), raw["title"].as_str());
        assert_eq!(e.is_approved(), id.ends_with("agree"), "{id}");
        assert_eq!(e.is_refused(), id.ends_with("refuse"), "{id}");
    }
}

#[test]
fn http_push_task_events_use_i64_task_ids_and_upper_case_results() {
    let Event::TaskChange(start) = Event::from_json(&crypto_plaintext("bpms_task_start")).unwrap() else {
        panic!()
    };
    assert_eq!(start.change, Some(TaskChangeType::Start));
    assert_eq!(start.task_id, Some(87_412_365_091));
    assert_eq!(start.result, None);
    let Event::TaskChange(done) = Event::from_json(&crypto_plaintext("bpms_task_finish_agree")).unwrap()
    else {
        panic!()
    };
    assert_eq!(done.change, Some(TaskChangeType::Finish));
    assert_eq!(done.result, Some(TaskResult::Agree));
    assert_eq!(serde_json::to_value(&done.result).unwrap(), "AGREE");
    assert_eq!(TaskResult::parse("redirect"), TaskResult::Redirected);
    assert_eq!(TaskResult::parse("REDIRECTED"), TaskResult::Redirected);
    assert_eq!(InstanceResult::parse("AGREE").as_str(), "agree");
}

#[test]
fn historical_format_without_event_id_uses_lower_case_corp_id() {
    // DOC-BPMS-OLD / LOG2017 shape: no EventTime/CorpId/BizId/eventId, lower-case corpId.
    let text = r#"{"EventType":"bpms_instance_change","processInstanceId":"ad253df6-e175-4b2e","corpId":"ding123",
        "createTime":1499309012000,"finishTime":1499309117000,"title":"张三的请假","type":"finish","result":"refuse",
        "staffId":"er5875","url":"https://aflow.dingtalk.com/x","processCode":"PROC-FF6Y4BE1N2-3","futureKey":[1,2]}"#;
    let event = Event::from_json(text).unwrap();
    let Event::InstanceChange(e) = &event else {
        panic!()
    };
    assert!(e.is_refused());
    assert_eq!(e.meta.corp_id.as_ref().unwrap().as_str(), "ding123");
    assert_eq!(e.meta.event_id, None);
    assert_eq!(
        e.extra["futureKey"],
        serde_json::json!([1, 2]),
        "unknown keys are kept"
    );
    assert_eq!(
        event.idempotency_key(),
        "bpms_instance_change:ad253df6-e175-4b2e:finish:refuse"
    );
}

#[test]
fn every_field_but_the_event_type_is_optional() {
    let Event::TaskChange(e) =
        Event::from_json(r#"{"EventType":"bpms_task_change","type":"comment","taskId":1}"#).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (e.process_instance_id, e.change, e.task_id),
        (None, Some(TaskChangeType::Comment), Some(1))
    );
}

#[test]
fn unknown_events_are_kept_raw_and_malformed_ones_are_typed_errors() {
    let text = r#"{"EventType":"label_user_change","TimeStamp":"1685501863357","UserId":["015"],"type":{"odd":true}}"#;
    let Event::Unknown(u) = Event::from_json(text).unwrap() else {
        panic!()
    };
    assert_eq!(
        (u.meta.event_type.as_str(), u.raw.as_str()),
        ("label_user_change", text)
    );

    for bad in [
        "",
        "[]",
        "{}",
        r#"{"EventType":7}"#,
        r#"{"EventType":"bpms_instance_change","processInstanceId":"p","type":{"x":1}}"#,
        r#"{"EventType":"bpms_task_change","processInstanceId":"p","type":"start","taskId":"x12"}"#,
        r#"{"EventType":"bpms_instance_change","processInstanceId":"p","createTime":true}"#,
    ] {
        assert!(
            matches!(Event::from_json(bad), Err(dingtalk_sdk::Error::BadEvent { .. })),
            "{bad}"
        );
    }
}

#[test]
fn stream_frames_normalise_to_the_same_events_as_http_push() {
    let frames = vectors("stream-frames.json");
    let sdk = &frames["python_sdk"];
    let saw = sdk["handler_saw"].as_array().unwrap();
    let mut checked = 0;
    for frame in sdk["server_frames"].as_array().unwrap() {
        let frame = &frame["frame"];
        if frame["type"] != "EVENT" {
            continue;
        }
        let headers: StreamEventHeaders = serde_json::from_value(frame["headers"].clone()).unwrap();
        let data = frame["data"].as_str().unwrap();
        let event = Event::from_stream(&headers, data).unwrap();
        let seen = saw
            .iter()
            .find(|s| s["message_id"] == frame["headers"]["messageId"])
            .unwrap();
        let meta = event.meta();
        assert_eq!(meta.event_type, seen["event_type"].as_str().unwrap());
        assert_eq!(meta.event_id.as_deref(), seen["event_id"].as_str());
        assert_eq!(
            meta.event_time,
            seen["event_born_time"].as_i64(),
            "string header parsed as ms"
        );
        assert_eq!(
            meta.corp_id.as_ref().map(|c| c.as_str()),
            seen["event_corp_id"].as_str()
        );
        assert_eq!(
            meta.unified_app_id.as_deref(),
            seen["event_unified_app_id"].as_str()
        );
        match &event {
            Event::InstanceChange(e) => {
                assert!(e.is_approved());
                assert_eq!(
                    e.process_instance_id.as_ref().unwrap(),
                    seen["data"]["processInstanceId"].as_str().unwrap()
                );
                // The same approval pushed over HTTP carries the same business fields.
                let Event::InstanceChange(http) =
                    Event::from_json(&crypto_plaintext("bpms_instance_finish_agree")).unwrap()
                else {
                    panic!()
                };
                assert_eq!(
                    (
                        &http.process_instance_id,
                        &http.change,
                        &http.result,
                        &http.staff_id,
                        &http.process_code
                    ),
                    (
                        &e.process_instance_id,
                        &e.change,
                        &e.result,
                        &e.staff_id,
                        &e.process_code
                    )
                );
                assert_eq!(http.meta.event_id, e.meta.event_id);
            }
            Event::TaskChange(e) => {
                assert_eq!(e.task_id, seen["data"]["taskId"].as_i64());
                assert_eq!(e.result, Some(TaskResult::Refuse));
                assert_eq!(e.remark.as_deref(), seen["data"]["remark"].as_str());
            }
            // A contact change (recorded from the official Python SDK): typed now.
            Event::UserChange(e) => {
                let data: serde_json::Value = serde_json::from_str(data).unwrap();
                assert_eq!(e.change, dingtalk_sdk::event::UserChangeType::Add);
                assert_eq!(e.user_ids, [data["userId"][0].as_str().unwrap()]);
                assert_eq!(e.time_stamp, Some(1_685_501_863_357));
            }
            other => panic!("unexpected {other:?}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 3);
}

#[test]
fn stream_headers_accept_numeric_times() {
    let headers: StreamEventHeaders = serde_json::from_str(
        r#"{"eventType":"bpms_instance_change","eventId":"e","eventBornTime":1741703477120,"topic":"*"}"#,
    )
    .unwrap();
    assert_eq!(headers.event_born_time, Some(1_741_703_477_120));
    let data = r#"{"processInstanceId":"p","type":"terminate"}"#;
    let Event::InstanceChange(e) = Event::from_stream(&headers, data).unwrap() else {
        panic!()
    };
    assert_eq!((e.change, e.result), (Some(InstanceChangeType::Terminate), None));
    assert!(Event::from_stream(&headers, "not json").is_err());
}
