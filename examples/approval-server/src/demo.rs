//! Demo mode (feature `demo`): workflows without credentials on the mock DingTalk
//! in-process, and a made-up admin token, console login, device and policy when none is
//! configured.

use crate::admins::{AdminError, Admins, Role};
use crate::config::{Config, DeviceConfig, DirectoryConfig, WorkflowConfig, WorkflowType};
use crate::workflows::definition;
use crate::Error;
use dingtalk_sdk::mock::{MockApp, MockDingTalk, MockFormField, MockProcess};
use rand::distributions::{Alphanumeric, DistString as _};
use sase_approval::definition::{DingTalkSettings, Workflow};
use sase_policy::PolicyDocument;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The mock's uninstall form when a mock workflow maps no fields: system field → label.
const MOCK_FIELDS: [(&str, &str); 4] = [
    ("device", "设备名称"),
    ("reason", "卸载原因"),
    ("requester", "申请人"),
    ("app_version", "客户端版本"),
];

/// A random token or secret of `n` letters and digits.
pub(crate) fn random(n: usize) -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), n)
}

/// The demo's console admin, `demo`, with a password made up at each start (created, or its
/// password replaced): the web console is usable at once, as the made-up admin token is.
pub(crate) async fn console_login(admins: &Admins) -> Result<(String, String), AdminError> {
    const NAME: &str = "demo";
    let password = random(20);
    match admins.get(NAME).await? {
        Some(admin) => {
            admins.update(NAME, admin.version, None, Some(&password)).await?;
        }
        None => {
            admins.create(NAME, Role::Admin, &password, "demo").await?;
        }
    }
    Ok((NAME.to_owned(), password))
}

/// Starts the mock DingTalk if a workflow has no credentials, saying so loudly.
pub(crate) async fn start_mock(config: &Config) -> Result<Option<Arc<MockDingTalk>>, Error> {
    let on_mock: Vec<&str> = config
        .workflows
        .iter()
        .filter(|w| w.kind == WorkflowType::DingTalk && w.dingtalk.is_none())
        .map(|w| w.id.as_str())
        .collect();
    if on_mock.is_empty() {
        return Ok(None);
    }
    let mock = MockDingTalk::builder().start().await.map_err(Error::Mock)?;
    tracing::warn!(
        mock = %mock.base_url(),
        "NO DINGTALK CREDENTIALS CONFIGURED for {}: using the built-in MOCK DingTalk. Approve requests with \
         POST {}/__mock/instances/<instanceId>/approve",
        on_mock.join(", "),
        mock.base_url()
    );
    Ok(Some(Arc::new(mock)))
}

/// The demo's directory and sign-in: the mock's organisation (its default directory), read
/// through an app of its own on `mock`.
pub(crate) async fn directory(mock: &MockDingTalk) -> DirectoryConfig {
    let (client_id, secret) = ("dingmock-directory".to_owned(), random(24));
    mock.register_app(MockApp::new(&client_id, &secret)).await;
    let mut directory = DirectoryConfig::new(client_id, secret);
    directory.api_base = Some(mock.base_url());
    directory.oapi_base = Some(mock.base_url());
    directory.login_base = Some(mock.base_url());
    directory.corp_id = Some(dingtalk_sdk::mock::DEFAULT_CORP_ID.to_owned());
    directory
}

/// A workflow on the mock DingTalk, and its app there.
pub(crate) struct OnMock {
    pub(crate) workflow: Workflow,
    /// Registered with the mock, with its Request URL once it is served.
    pub(crate) app: MockApp,
}

/// A workflow without credentials: its own app and form (`PROC-<ID>`) on `mock`.
pub(crate) fn on_mock(mock: &MockDingTalk, w: &WorkflowConfig, callback_id: String) -> OnMock {
    let (client_id, secret, token, aes_key) =
        (format!("dingmock-{}", w.id), random(24), random(16), random(43));
    let process_code = w
        .process_code
        .clone()
        .unwrap_or_else(|| format!("PROC-{}", w.id.to_uppercase()));
    let fields: BTreeMap<String, String> = if w.fields.is_empty() {
        MOCK_FIELDS
            .iter()
            .map(|(f, l)| ((*f).to_owned(), (*l).to_owned()))
            .collect()
    } else {
        w.fields.clone()
    };
    // A form of text fields, one per mapped system field (the reason required), for each
    // template the workflow maps.
    let name = w.name.as_deref().unwrap_or(&w.id);
    let forms = std::iter::once((process_code.as_str(), &fields))
        .chain(w.mappings.iter().map(|m| (m.process_code.as_str(), &m.fields)));
    for (code, fields) in forms {
        mock.register_process(MockProcess::new(
            code,
            name,
            fields
                .iter()
                .map(|(field, label)| MockFormField::new(label, "TextField", field == "reason"))
                .collect(),
            vec!["approver1".into()],
        ));
    }
    let app = MockApp::new(&client_id, &secret).events(&token, &aes_key);
    let settings = DingTalkSettings {
        client_id: client_id.clone(),
        client_secret: secret,
        token,
        aes_key,
        receiver_id: client_id,
        delivery: w.delivery,
        dept_id: -1,
    };
    OnMock {
        workflow: definition(w, callback_id, settings, process_code, fields),
        app,
    }
}

/// The demo device: `alice` (an employee) on `LAPTOP-DEMO`, with a random token.
pub(crate) fn device() -> DeviceConfig {
    DeviceConfig {
        token: random(32),
        device_id: "LAPTOP-DEMO".into(),
        user_id: "alice".into(),
        groups: vec!["employees".into()],
        departments: vec![],
        tags: vec![],
    }
}

/// The demo policy: employees (the group, and everyone in the mock organisation's root
/// department and under it) need approval (via `workflow`) to uninstall; `it-admin` is exempt.
pub(crate) fn policies(workflow: &str) -> Result<PolicyDocument, Error> {
    toml::from_str(&format!(
        r#"
        [[policies]]
        id = "anti-uninstall-employees"
        name = "Employees need approval to uninstall"
        priority = 10
        switches = {{ anti_uninstall = true, auto_start = true }}
        scope = {{ groups = ["employees"], departments = ["1"] }}
        whitelist = ["it-admin"]
        approval = {{ allow_filing = true, workflow = "{workflow}" }}
        [policies.prompt.zh-CN]
        title = "禁止卸载安全客户端"
        content = "卸载需要审批。请填写原因并提交审批。"
        primary_button = "提交审批"
        secondary_button = "取消"
        [policies.prompt.en-US]
        title = "Uninstalling the SASE App needs approval"
        content = "Give a reason and file a request; you can uninstall once it is approved."
        primary_button = "File for Approval"
        secondary_button = "Cancel"
        "#
    ))
    .map_err(Error::DemoPolicy)
}
