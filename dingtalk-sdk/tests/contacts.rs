//! The directory calls against the mock over real HTTP on 127.0.0.1: departments, users,
//! paging, the old API's own token (fetched once, refreshed once when revoked, never logged),
//! its errors, and its budget: paced by QPS, exempt from the monthly quota.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected values")]

pub mod support;

use dingtalk_sdk::budget::CallBudget;
use dingtalk_sdk::client::DingTalkClient;
use dingtalk_sdk::contacts::ListUsersRequest;
use dingtalk_sdk::mock::{MockApp, MockDingTalk, MockQuotas};
use dingtalk_sdk::retry::RetryPolicy;
use dingtalk_sdk::token::Credentials;
use dingtalk_sdk::{DeptId, ErrorKind, UserId};
use futures_util::TryStreamExt as _;
use std::sync::Arc;

use support::{APP_KEY as APP, APP_SECRET as SECRET};

async fn env(budget: CallBudget) -> (MockDingTalk, DingTalkClient) {
    let mock = MockDingTalk::builder()
        .app(MockApp::new(APP, SECRET))
        // A fixed clock: every call falls in one second of the mock's QPS window.
        .clock(Arc::new(|| 1_797_328_800_000))
        .start()
        .await
        .unwrap();
    let client = DingTalkClient::builder(Credentials::new(APP, SECRET))
        .api_base(mock.base_url())
        .oapi_base(mock.base_url())
        .retry(RetryPolicy::none())
        .budget(budget)
        .build()
        .unwrap();
    (mock, client)
}

#[tokio::test]
async fn departments_and_their_members_page_by_page() {
    let (mock, client) = env(CallBudget::default()).await;
    let contacts = client.contacts();
    let subs = contacts.sub_departments(DeptId::ROOT).await.unwrap();
    let names: Vec<_> = subs
        .iter()
        .map(|d| (d.dept_id.get(), d.name.as_str(), d.parent_id))
        .collect();
    assert_eq!(
        names,
        [
            (2, "Engineering", Some(DeptId::ROOT)),
            (3, "Security", Some(DeptId::ROOT))
        ]
    );
    let root = contacts.department(DeptId::ROOT).await.unwrap();
    assert_eq!((root.name.as_str(), root.parent_id), ("Company", None));

    let users: Vec<_> = contacts
        .users(ListUsersRequest::new(DeptId::new(3)).size(3))
        .try_collect()
        .await
        .unwrap();
    let ids: Vec<_> = users.iter().map(|u| u.user_id.as_str()).collect();
    assert_eq!(ids, ["approver1", "approver2", "approver0001", "security-lead"]);
    // Two pages: cursors 0 and 3, as the client sent them.
    let cursors: Vec<_> = mock
        .journal()
        .iter()
        .filter(|e| e.path == "/topapi/v2/user/list")
        .map(|e| e.body.as_ref().unwrap()["cursor"].as_i64().unwrap())
        .collect();
    assert_eq!(cursors, [0, 3]);
    let page = contacts
        .users_page(&ListUsersRequest::new(DeptId::new(3)).size(3).cursor(3))
        .await
        .unwrap();
    assert_eq!((page.has_more, page.list.len()), (false, 1));
}

#[tokio::test]
async fn unknown_users_and_departments_are_not_found() {
    let (_mock, client) = env(CallBudget::default()).await;
    let contacts = client.contacts();
    let cases = [
        contacts.user(&UserId::new("ghost")).await.unwrap_err(),
        contacts.department(DeptId::new(404)).await.unwrap_err(),
        contacts.sub_departments(DeptId::new(404)).await.unwrap_err(),
        contacts.department_parents(DeptId::new(404)).await.unwrap_err(),
        contacts
            .users_page(&ListUsersRequest::new(DeptId::new(404)))
            .await
            .unwrap_err(),
        contacts
            .user_parent_departments(&UserId::new("ghost"))
            .await
            .unwrap_err(),
    ];
    let codes: Vec<_> = cases.iter().map(|e| (e.code().unwrap(), e.kind())).collect();
    assert_eq!(
        codes,
        [
            ("60121", ErrorKind::NotFound),
            ("60003", ErrorKind::NotFound),
            ("60003", ErrorKind::NotFound),
            ("60003", ErrorKind::NotFound),
            ("60003", ErrorKind::NotFound),
            ("33012", ErrorKind::NotFound),
        ]
    );
    assert!(cases.iter().all(|e| !e.is_retryable()));
}

#[tokio::test]
async fn the_old_api_token_is_fetched_once_refreshed_once_and_never_journalled() {
    let (mock, client) = env(CallBudget::default()).await;
    let contacts = client.contacts();
    for _ in 0..3 {
        contacts.department(DeptId::ROOT).await.unwrap();
    }
    let gettoken = |mock: &MockDingTalk| mock.journal().iter().filter(|e| e.path == "/gettoken").count();
    assert_eq!(gettoken(&mock), 1);
    mock.revoke_tokens();
    contacts.department(DeptId::ROOT).await.unwrap();
    assert_eq!(gettoken(&mock), 2, "refreshed once after 88/40014");
    let journal = mock.journal();
    assert!(
        journal.iter().all(|e| e.path != "/v1.0/oauth2/accessToken"),
        "the v1.0 token is not used"
    );
    for entry in journal
        .iter()
        .filter(|e| e.path.starts_with("/topapi/") || e.path == "/gettoken")
    {
        let query = entry.query.as_deref().unwrap();
        assert!(query.contains("<redacted>") && !query.contains(SECRET), "{query}");
    }
    assert!(journal
        .iter()
        .filter(|e| e.path.starts_with("/topapi/"))
        .all(|e| e.token_present));

    // A client with wrong credentials gets the old API's error, as an API error.
    let wrong = DingTalkClient::builder(Credentials::new(APP, "wrong"))
        .oapi_base(mock.base_url())
        .build()
        .unwrap();
    let refused = wrong.contacts().department(DeptId::ROOT).await.unwrap_err();
    assert_eq!(
        (refused.code(), refused.kind()),
        (Some("40096"), ErrorKind::Client)
    );
}

#[tokio::test]
async fn contacts_are_paced_by_qps_but_exempt_from_the_month() {
    // A month already spent on the client's side and on the mock's: contacts still go.
    let (mock, client) = env(CallBudget::unlimited().calls_per_month(Some(0))).await;
    mock.set_quotas(MockQuotas {
        calls_per_month: Some(0),
        ..MockQuotas::default()
    });
    client.contacts().department(DeptId::ROOT).await.unwrap();
    client.contacts().sub_departments(DeptId::ROOT).await.unwrap();
    assert_eq!(client.usage().calls, 0, "not counted toward the month");
    let app = &mock.usage().apps[APP];
    assert_eq!(app.quota_used, 0);
    assert_eq!(app.by_api["POST /topapi/v2/department/get"].calls, 1);

    // Over the mock's QPS the old API answers 90018: throttling.
    mock.set_quotas(MockQuotas {
        qps_per_app_and_api: Some(1),
        ..MockQuotas::default()
    });
    let throttled = client.contacts().department(DeptId::ROOT).await.unwrap_err();
    assert_eq!(
        (throttled.code(), throttled.kind()),
        (Some("90018"), ErrorKind::Throttling)
    );
    assert_eq!(
        mock.usage().apps[APP].by_api["POST /topapi/v2/department/get"].refused_qps,
        1
    );
}
