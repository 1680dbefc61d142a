//! Contact-change events: the documented wire shapes decoded (HTTP push current and historical,
//! Stream), and the mock's directory changes delivered to our callback route (HTTP push) and
//! our Stream client, through the control API's Rust methods and its HTTP routes; a change made
//! without its event delivers nothing.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected values")]

pub mod support;

use dingtalk_sdk::event::{DeptChangeType, Event, StreamEventHeaders, UserChangeType};
use dingtalk_sdk::mock::{MockApp, MockDepartment, MockDingTalk, MockUser, Notify, DEFAULT_CORP_ID};
use dingtalk_sdk::{DeptId, Error};
use serde_json::json;

use support::receivers::{receiver, stream_receiver, Events};
use support::{AES_KEY, APP_KEY as APP, APP_SECRET as SECRET, TOKEN, WAIT};

// ---- the documented shapes -----------------------------------------------------------------

#[test]
fn user_changes_decode_from_every_documented_shape() {
    // Current HTTP push: open.dingtalk.com "企业增加员工事件" (development/enterprise-increases-employee-events).
    let current = Event::from_json(
        r#"{"EventType":"user_add_org","EventTime":1663143335567,"CorpId":"ding9f50b15bxxxx16741",
            "BizId":"1663**35567","eventId":"c7c7120f2c07419**ebdba0318c8","timeStamp":"1685501863357",
            "userId":["015xxxx227"]}"#,
    )
    .unwrap();
    // Historical HTTP push: ddtalk/dingTalkDoc source/includes/_server.md (numeric TimeStamp).
    let historical = Event::from_json(
        r#"{"EventType":"user_modify_org","TimeStamp":43535463645,"UserId":["efefef","111111"],"CorpId":"corpid"}"#,
    )
    .unwrap();
    // Stream: the same page's Stream example, headers apart from data.
    let mut headers = StreamEventHeaders::new("user_active_org");
    headers.event_id = Some("c7c7120f2c07419**ebdba0318c8".into());
    let stream = Event::from_stream(
        &headers,
        r#"{"timeStamp":"1685501863357","userId":["015xxxx227"]}"#,
    )
    .unwrap();
    // A third-party app's single id (open.dingtalk.com "企业删除员工", ISV Stream).
    let isv = Event::from_stream(
        &StreamEventHeaders::new("user_leave_org"),
        r#"{"unionid":"zvLdpxxxxxiEiE","dingId":"$:LWCP_v1:$G5YX0l5yOKZ2oxxxx","userId":"ding12345"}"#,
    )
    .unwrap();

    let decoded: Vec<_> = [&current, &historical, &stream, &isv]
        .into_iter()
        .map(|e| match e {
            Event::UserChange(c) => (
                c.change,
                c.user_ids.iter().map(|u| u.to_string()).collect::<Vec<_>>(),
                c.time_stamp,
            ),
            other => panic!("not a user change: {other:?}"),
        })
        .collect();
    assert_eq!(
        decoded,
        [
            (
                UserChangeType::Add,
                vec!["015xxxx227".to_owned()],
                Some(1_685_501_863_357)
            ),
            (
                UserChangeType::Modify,
                vec!["efefef".to_owned(), "111111".to_owned()],
                Some(43_535_463_645)
            ),
            (
                UserChangeType::Active,
                vec!["015xxxx227".to_owned()],
                Some(1_685_501_863_357)
            ),
            (UserChangeType::Leave, vec!["ding12345".to_owned()], None),
        ]
    );
    assert_eq!(current.idempotency_key(), "c7c7120f2c07419**ebdba0318c8");
    assert_eq!(
        historical.idempotency_key(),
        "user_modify_org:efefef,111111:43535463645"
    );
    let Event::UserChange(isv) = isv else { panic!() };
    assert_eq!(isv.extra["unionid"], "zvLdpxxxxxiEiE", "unmodelled keys are kept");
}

#[test]
fn department_changes_decode_from_every_documented_shape() {
    // Historical HTTP push with string ids: a public DingDingEventTypeEnum's doc comment.
    let historical = Event::from_json(
        r#"{"CorpId":"dinge8a5xxxx","EventType":"org_dept_remove","DeptId":["432825033"],"TimeStamp":"1608021552827"}"#,
    )
    .unwrap();
    // Stream: open.dingtalk.com "通讯录企业部门创建" (development/create-department-event).
    let stream = Event::from_stream(
        &StreamEventHeaders::new("org_dept_modify"),
        r#"{"deptId":[432825033]}"#,
    )
    .unwrap();
    for (event, change, time) in [
        (&historical, DeptChangeType::Remove, Some(1_608_021_552_827)),
        (&stream, DeptChangeType::Modify, None),
    ] {
        let Event::DeptChange(c) = event else {
            panic!("{event:?}")
        };
        assert_eq!(
            (c.change, c.dept_ids.as_slice(), c.time_stamp),
            (change, &[DeptId::new(432_825_033)][..], time)
        );
    }
    assert_eq!(
        historical.idempotency_key(),
        "org_dept_remove:432825033:1608021552827"
    );
}

#[test]
fn malformed_contact_events_are_typed_errors() {
    for bad in [
        r#"{"EventType":"user_add_org","userId":[{"id":1}]}"#,
        r#"{"EventType":"org_dept_create","deptId":["HR"]}"#,
        r#"{"EventType":"org_dept_create","deptId":[1],"TimeStamp":"yesterday"}"#,
        r#"{"EventType":"user_leave_org","OptStaffId":7}"#,
    ] {
        assert!(
            matches!(Event::from_json(bad), Err(Error::BadEvent { .. })),
            "{bad}"
        );
    }
    assert!(matches!(
        Event::from_stream(&StreamEventHeaders::new("org_dept_create"), "[1]"),
        Err(Error::BadEvent { .. })
    ));
}

// ---- the mock delivers them ----------------------------------------------------------------

/// The contact changes among `events`: (type, ids).
fn changes(events: &Events) -> Vec<(String, Vec<String>)> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::UserChange(c) => Some((
                c.meta.event_type.clone(),
                c.user_ids.iter().map(|u| u.to_string()).collect(),
            )),
            Event::DeptChange(c) => Some((
                c.meta.event_type.clone(),
                c.dept_ids.iter().map(|d| d.to_string()).collect(),
            )),
            _ => None,
        })
        .collect()
}

async fn wait_for(events: &Events, count: usize) -> Vec<(String, Vec<String>)> {
    let waited = support_wait(|| changes(events).len() >= count).await;
    assert!(waited, "only {:?}", changes(events));
    changes(events)
}

async fn support_wait(condition: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    condition()
}

fn pair(event_type: &str, id: &str) -> (String, Vec<String>) {
    (event_type.to_owned(), vec![id.to_owned()])
}

#[tokio::test]
async fn directory_changes_reach_the_callback_and_the_stream_client() {
    let (url, pushed) = receiver().await;
    let mock = MockDingTalk::builder()
        .app(
            MockApp::new(APP, SECRET)
                .events(TOKEN, AES_KEY)
                .request_url(url)
                .stream(true),
        )
        .start()
        .await
        .unwrap();
    let (streamed, task) = stream_receiver(&mock).await;

    mock.add_user(MockUser::new("carol", "Carol", vec![2]), Notify::Deliver)
        .unwrap();
    mock.move_user(DEFAULT_CORP_ID, "carol", &[3, 4], Notify::Deliver)
        .unwrap();
    mock.add_department(MockDepartment::new(5, "Research", Some(2)), Notify::Deliver)
        .unwrap();
    mock.rename_department(DEFAULT_CORP_ID, 5, "R&D", Notify::Deliver)
        .unwrap();
    // Through the control API's HTTP routes.
    let http = reqwest::Client::new();
    let base = mock.base_url();
    let left = http
        .delete(format!("{base}/__mock/directory/users/carol"))
        .send()
        .await
        .unwrap();
    assert_eq!(left.status(), 200);
    let removed = http
        .delete(format!("{base}/__mock/directory/departments/5"))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 200);

    let expected = vec![
        pair("user_add_org", "carol"),
        pair("user_modify_org", "carol"),
        pair("org_dept_create", "5"),
        pair("org_dept_modify", "5"),
        pair("user_leave_org", "carol"),
        pair("org_dept_remove", "5"),
    ];
    assert_eq!(wait_for(&pushed, 6).await, expected);
    assert_eq!(wait_for(&streamed, 6).await, expected);
    // The directory changed accordingly, and the mock's corp is in every event.
    assert!(mock.directory().users.iter().all(|u| u.user_id != "carol"));
    let corp = pushed.lock().unwrap().last().map(|e| e.meta().corp_id.clone());
    assert_eq!(corp.flatten().as_ref().map(|c| c.as_str()), Some(DEFAULT_CORP_ID));
    task.abort();
}

#[tokio::test]
async fn a_change_without_its_event_delivers_nothing() {
    let (url, pushed) = receiver().await;
    let mock = MockDingTalk::builder()
        .app(MockApp::new(APP, SECRET).events(TOKEN, AES_KEY).request_url(url))
        .start()
        .await
        .unwrap();
    let before = mock.deliveries().len();
    mock.move_user(DEFAULT_CORP_ID, "alice", &[3], Notify::Skip)
        .unwrap();
    let skipped = reqwest::Client::new()
        .post(format!(
            "{}/__mock/directory/users?deliver=false",
            mock.base_url()
        ))
        .json(&json!({"user_id": "dave", "name": "Dave", "dept_ids": [2]}))
        .send()
        .await
        .unwrap();
    assert_eq!(skipped.status(), 200);
    // Events go out in order: once a later one arrived, the skipped ones never will.
    mock.rename_department(DEFAULT_CORP_ID, 3, "SecOps", Notify::Deliver)
        .unwrap();
    assert_eq!(wait_for(&pushed, 1).await, [pair("org_dept_modify", "3")]);
    assert_eq!(mock.deliveries().len(), before + 1);
    // The directory did change: a scheduled sync would find it.
    let directory = mock.directory();
    assert!(directory.users.iter().any(|u| u.user_id == "dave"));
    assert_eq!(
        directory
            .users
            .iter()
            .find(|u| u.user_id == "alice")
            .unwrap()
            .dept_ids,
        [3]
    );
    // Refused changes change nothing and answer the reason.
    let refused = mock
        .remove_department(DEFAULT_CORP_ID, 3, Notify::Deliver)
        .unwrap_err();
    assert_eq!(refused.0, "invalidParameter");
    assert_eq!(mock.directory(), directory);
}
