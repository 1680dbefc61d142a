//! Sign-in end to end against the mock over real HTTP on 127.0.0.1: the authorize URL, the
//! mock's sign-in page (read as a browser would), the redirect back, the code exchange,
//! `users/me`, and on to the directory; and the errors: a replayed code, an expired one (the
//! mock's clock moved), a user of another organisation, bad tokens, bad sign-in requests.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected values")]

pub mod support;

use dingtalk_sdk::client::DingTalkClient;
use dingtalk_sdk::mock::{MockApp, MockDingTalk, MockSignIn, CODE_TTL_MS, DEFAULT_CORP_ID, OTHER_CORP_ID};
use dingtalk_sdk::oauth::{AuthCode, AuthorizeUrl, Redirect, Scope, UserAccessToken};
use dingtalk_sdk::retry::RetryPolicy;
use dingtalk_sdk::token::Credentials;
use dingtalk_sdk::{DeptId, Error, ErrorKind, UnionId};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use support::{APP_KEY as APP, APP_SECRET as SECRET};

const REDIRECT: &str = "http://127.0.0.1:9/login/dingtalk";

struct Env {
    mock: MockDingTalk,
    client: DingTalkClient,
    clock: Arc<AtomicI64>,
}

async fn env() -> Env {
    let clock = Arc::new(AtomicI64::new(1_797_328_800_000));
    let now = Arc::clone(&clock);
    let mock = MockDingTalk::builder()
        .app(MockApp::new(APP, SECRET).redirect_uri(REDIRECT))
        .clock(Arc::new(move || now.load(Ordering::SeqCst)))
        .start()
        .await
        .unwrap();
    let client = DingTalkClient::builder(Credentials::new(APP, SECRET))
        .api_base(mock.base_url())
        .oapi_base(mock.base_url())
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    Env { mock, client, clock }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `<li>` of the page holding `button_id`, as a browser would find the button: its form's
/// action and fields.
fn form_of(page: &str, button_id: &str) -> (String, Vec<(String, String)>) {
    let item = page
        .split("<li>")
        .find(|item| item.contains(&format!("id=\"{button_id}\"")))
        .unwrap();
    let form = item.split_once("<form").unwrap().1;
    let attr = |tag: &str, name: &str| {
        let value = tag.split_once(&format!("{name}=\"")).unwrap().1;
        let value = value.split_once('"').unwrap().0;
        value.replace("&quot;", "\"").replace("&amp;", "&")
    };
    let action = attr(form, "action");
    let fields = form
        .split("<input")
        .skip(1)
        .map(|input| (attr(input, "name"), attr(input, "value")))
        .collect();
    (action, fields)
}

fn api_code(error: &Error) -> Option<&str> {
    error.code()
}

#[tokio::test]
async fn a_user_signs_in_through_the_page_and_is_found_in_the_directory() {
    let env = env().await;
    let url = AuthorizeUrl::new(APP, REDIRECT)
        .login_base(env.mock.base_url())
        .state("st4te")
        .scope(Scope::OpenidCorpid)
        .to_string();
    let browser = no_redirects();
    let page = browser.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("Sign in as Alice (alice, dingmockcorp0000000000)"),
        "{page}"
    );
    assert!(
        page.contains("mallory"),
        "users of another organisation are listed too"
    );

    let (action, fields) = form_of(&page, "user-alice");
    let chosen = browser
        .post(format!("{}{action}", env.mock.base_url()))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(chosen.status(), 303);
    let location = chosen.headers()["location"].to_str().unwrap().to_owned();
    let (back_to, query) = location.split_once('?').unwrap();
    assert_eq!(back_to, REDIRECT);

    let code = Redirect::parse(query).unwrap().verify_state("st4te").unwrap();
    let token = env.client.oauth().exchange_code(&code).await.unwrap();
    assert_eq!(token.corp_id.as_ref().map(|c| c.as_str()), Some(DEFAULT_CORP_ID));
    assert!(!format!("{token:?}").contains(token.access_token.secret()));

    let me = env.client.oauth().me(&token.access_token).await.unwrap();
    assert_eq!(
        (me.union_id.as_str(), me.nick.as_deref()),
        ("union-alice", Some("Alice"))
    );
    let found = env
        .client
        .contacts()
        .user_id_by_union_id(&me.union_id)
        .await
        .unwrap();
    assert_eq!((found.user_id.as_str(), found.contact_type), ("alice", Some(0)));
    let user = env.client.contacts().user(&found.user_id).await.unwrap();
    assert_eq!(user.dept_id_list, [DeptId::new(4)]);
    assert_eq!(
        env.client
            .contacts()
            .department_parents(DeptId::new(4))
            .await
            .unwrap(),
        [DeptId::new(4), DeptId::new(2), DeptId::ROOT]
    );
    assert_eq!(
        env.client
            .contacts()
            .user_parent_departments(&found.user_id)
            .await
            .unwrap(),
        [vec![DeptId::new(4), DeptId::new(2), DeptId::ROOT]]
    );

    // The exchange went with the credentials in its body, no token; users/me with the user's.
    let journal = env.mock.journal();
    let exchange = journal
        .iter()
        .find(|e| e.path == "/v1.0/oauth2/userAccessToken")
        .unwrap();
    assert!(!exchange.token_present);
    assert_eq!(exchange.body.as_ref().unwrap()["grantType"], "authorization_code");
    assert!(
        journal.iter().all(|e| e.path != "/v1.0/oauth2/accessToken"),
        "no app token needed"
    );

    // A refreshed token works too.
    let refreshed = env
        .client
        .oauth()
        .refresh(token.refresh_token.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(
        env.client
            .oauth()
            .me(&refreshed.access_token)
            .await
            .unwrap()
            .union_id,
        me.union_id
    );
}

#[tokio::test]
async fn a_code_works_once_and_not_after_it_expires() {
    let env = env().await;
    let issued = env
        .mock
        .sign_in_code(MockSignIn::new(APP, "bob", REDIRECT).state("s"))
        .unwrap();
    assert!(issued.location.starts_with(&format!("{REDIRECT}?authCode=")));
    let code = AuthCode::new(issued.auth_code);
    env.client.oauth().exchange_code(&code).await.unwrap();
    let replayed = env.client.oauth().exchange_code(&code).await.unwrap_err();
    assert_eq!(
        (api_code(&replayed), replayed.http_status()),
        (Some("invalidAuthCode"), Some(400))
    );
    assert_eq!(replayed.kind(), ErrorKind::Client);
    assert!(!replayed.is_retryable());

    // Through the control route, then past its lifetime on the mock's clock.
    let issued: Value = reqwest::Client::new()
        .post(format!("{}/__mock/oauth/code", env.mock.base_url()))
        .json(&json!({"userId": "bob", "redirectUri": REDIRECT}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    env.clock.fetch_add(CODE_TTL_MS, Ordering::SeqCst);
    let code = AuthCode::new(issued["authCode"].as_str().unwrap());
    let expired = env.client.oauth().exchange_code(&code).await.unwrap_err();
    assert_eq!(api_code(&expired), Some("invalidAuthCode"));
    // Unknown codes likewise; wrong app credentials are told apart.
    let unknown = env
        .client
        .oauth()
        .exchange_code(&AuthCode::new("nope"))
        .await
        .unwrap_err();
    assert_eq!(api_code(&unknown), Some("invalidAuthCode"));
    let other_app = DingTalkClient::builder(Credentials::new(APP, "wrong"))
        .api_base(env.mock.base_url())
        .build()
        .unwrap();
    let issued = env
        .mock
        .sign_in_code(MockSignIn::new(APP, "bob", REDIRECT))
        .unwrap();
    let refused = other_app
        .oauth()
        .exchange_code(&AuthCode::new(issued.auth_code))
        .await
        .unwrap_err();
    assert_eq!(api_code(&refused), Some("invalidClientIdOrSecret"));
}

#[tokio::test]
async fn a_user_of_another_organisation_signs_in_but_is_not_in_the_directory() {
    let env = env().await;
    let issued = env
        .mock
        .sign_in_code(MockSignIn::new(APP, "mallory", REDIRECT).corp_id(OTHER_CORP_ID))
        .unwrap();
    let token = env
        .client
        .oauth()
        .exchange_code(&AuthCode::new(issued.auth_code))
        .await
        .unwrap();
    assert_eq!(token.corp_id.as_ref().map(|c| c.as_str()), Some(OTHER_CORP_ID));
    let me = env.client.oauth().me(&token.access_token).await.unwrap();
    let missing = env
        .client
        .contacts()
        .user_id_by_union_id(&me.union_id)
        .await
        .unwrap_err();
    assert_eq!(
        (api_code(&missing), missing.kind()),
        (Some("60121"), ErrorKind::NotFound)
    );
    assert_eq!(
        missing.http_status(),
        Some(200),
        "the old API answers errors with HTTP 200"
    );
    // An unknown union id is the same.
    let missing = env
        .client
        .contacts()
        .user_id_by_union_id(&UnionId::new("union-nobody"))
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn users_me_takes_only_a_valid_user_token() {
    let env = env().await;
    let bad = env
        .client
        .oauth()
        .me(&UserAccessToken::new("forged"))
        .await
        .unwrap_err();
    assert_eq!(
        (api_code(&bad), bad.kind()),
        (Some("InvalidAuthentication"), ErrorKind::Auth)
    );
    // The app's own token is not a user's.
    let app_token: Value = reqwest::Client::new()
        .post(format!("{}/v1.0/oauth2/accessToken", env.mock.base_url()))
        .json(&json!({"appKey": APP, "appSecret": SECRET}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let app_token = UserAccessToken::new(app_token["accessToken"].as_str().unwrap());
    assert_eq!(
        api_code(&env.client.oauth().me(&app_token).await.unwrap_err()),
        Some("InvalidAuthentication")
    );
    // A user token stops working once revoked; the client does not refresh a user's token.
    let issued = env
        .mock
        .sign_in_code(MockSignIn::new(APP, "alice", REDIRECT))
        .unwrap();
    let token = env
        .client
        .oauth()
        .exchange_code(&AuthCode::new(issued.auth_code))
        .await
        .unwrap();
    env.mock.revoke_tokens();
    let revoked = env.client.oauth().me(&token.access_token).await.unwrap_err();
    assert_eq!(revoked.kind(), ErrorKind::Auth);
    let me_calls = env
        .mock
        .journal()
        .iter()
        .filter(|e| e.path == "/v1.0/contact/users/me")
        .count();
    assert_eq!(me_calls, 3);
}

#[tokio::test]
async fn the_sign_in_page_refuses_what_dingtalk_refuses() {
    let env = env().await;
    let browser = no_redirects();
    let get = |query: HashMap<&str, &str>| {
        let url = format!("{}/oauth2/auth", env.mock.base_url());
        browser.get(url).query(&query).send()
    };
    let good = HashMap::from([
        ("client_id", APP),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", "openid"),
        ("prompt", "consent"),
    ]);
    assert_eq!(get(good.clone()).await.unwrap().status(), 200);
    for (key, value) in [
        ("response_type", "token"),
        ("scope", "snsapi_login"),
        ("client_id", "dingunknown"),
        ("redirect_uri", "http://evil.example/cb"),
    ] {
        let mut bad = good.clone();
        bad.insert(key, value);
        let answer = get(bad).await.unwrap();
        assert_eq!(answer.status(), 400, "{key}={value}");
        assert!(answer.text().await.unwrap().contains("id=\"error\""));
    }
    // corpId narrows the page to that organisation.
    let mut one_corp = good.clone();
    one_corp.insert("corpId", OTHER_CORP_ID);
    let page = get(one_corp).await.unwrap().text().await.unwrap();
    assert!(page.contains("user-mallory") && !page.contains("user-alice"));
    // A scripted sign-in for an unknown user, or an unregistered redirect, is refused.
    assert!(env
        .mock
        .sign_in_code(MockSignIn::new(APP, "nobody", REDIRECT))
        .is_err());
    assert!(env
        .mock
        .sign_in_code(MockSignIn::new(APP, "alice", "http://evil.example/"))
        .is_err());
}
