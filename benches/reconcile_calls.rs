//! DingTalk calls per day that reconciliation spends on N pending requests no event settles
//! (10, 100, 1,000), counted on the mock DingTalk's journal with simulated time: the design
//! before the recheck schedule (a `GetProcessInstance` per pending request every pass) against
//! the schedule with listing (`ListProcessInstanceIds` for running instances, a GET only for
//! the others). Passes every 30 s, the server's default.
//!
//! Run: `cargo bench --bench reconcile_calls` (a counted run, not a timing: it prints a table).

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a benchmark's set-up fails loudly on the first unexpected value"
)]

use async_trait::async_trait;
use sase_dingtalk::approval::backend::{ApprovalBackend, BackendResult, ExternalStatus};
use sase_dingtalk::approval::clock::{Clock as _, ManualClock};
use sase_dingtalk::approval::definition::{
    new_callback_id, Delivery, DingTalkSettings, Mapping, Workflow, WorkflowKind,
};
use sase_dingtalk::approval::dingtalk::DingTalkBackend;
use sase_dingtalk::approval::engine::{Engine, SubmitRequest};
use sase_dingtalk::approval::recheck::RecheckSchedule;
use sase_dingtalk::approval::state::ApprovalRequest;
use sase_dingtalk::approval::store::MemoryStore;
use sase_dingtalk::dingtalk::budget::CallBudget;
use sase_dingtalk::dingtalk::client::DingTalkClient;
use sase_dingtalk::dingtalk::mock::{MockApp, MockDingTalk, MockFormField, MockProcess};
use sase_dingtalk::dingtalk::token::Credentials;
use sase_dingtalk::dingtalk::ProcessCode;
use sase_dingtalk::policy::ids::{DeviceId, UserId, WorkflowId};
use sase_dingtalk::policy::GrantSigner;
use std::sync::Arc;
use std::time::Duration;

const PASS: Duration = Duration::from_secs(30);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// The design before the recheck schedule: `running_among` left to the trait's default, a
/// `status` (GET) per pending request.
#[derive(Debug)]
struct GetEach(DingTalkBackend);

#[async_trait]
impl ApprovalBackend for GetEach {
    async fn create(&self, request: &ApprovalRequest) -> BackendResult<String> {
        self.0.create(request).await
    }
    async fn find_existing(&self, request: &ApprovalRequest) -> BackendResult<Vec<String>> {
        self.0.find_existing(request).await
    }
    async fn status(&self, external_id: &str) -> BackendResult<ExternalStatus> {
        self.0.status(external_id).await
    }
    async fn approve(&self, id: &str, admin: &str, remark: Option<&str>) -> BackendResult<()> {
        self.0.approve(id, admin, remark).await
    }
    async fn reject(&self, id: &str, admin: &str, remark: Option<&str>) -> BackendResult<()> {
        self.0.reject(id, admin, remark).await
    }
    async fn revoke(&self, id: &str, admin: &str, remark: Option<&str>) -> BackendResult<()> {
        self.0.revoke(id, admin, remark).await
    }
}

fn workflow() -> Workflow {
    Workflow {
        id: WorkflowId::new("wf"),
        name: "count".into(),
        kind: WorkflowKind::DingTalk(DingTalkSettings {
            client_id: "dingcount".into(),
            client_secret: "secret".into(),
            token: "t".into(),
            aes_key: "kYd8sJ2pQ7wE4rT9uV1xZ3cB6nM0aL5gH8jK2fD4sAx".into(),
            receiver_id: "dingcount".into(),
            delivery: Delivery::HttpPush,
            dept_id: -1,
        }),
        mappings: vec![Mapping {
            template: "app_uninstall".into(),
            process_code: ProcessCode::new("PROC-COUNT"),
            fields: [("reason".to_owned(), "原因".to_owned())].into(),
        }],
        callback_id: new_callback_id(),
    }
}

/// Quota calls (not the token) the mock saw.
fn quota_calls(mock: &MockDingTalk) -> usize {
    mock.journal()
        .iter()
        .filter(|j| !j.path.contains("oauth2"))
        .count()
}

/// Files `n` requests (`spread` apart) and runs passes for `days`; returns the calls of each
/// day. `old` counts the design before, over `sample` of each day, scaled to the day.
async fn count(n: usize, spread: Duration, old: bool, days: u32, sample: Duration) -> Vec<f64> {
    let clock = ManualClock::new(1_800_000_000_000);
    let dingtalk_clock = clock.clone();
    let mock = MockDingTalk::builder()
        .clock(Arc::new(move || dingtalk_clock.now_ms()))
        .app(MockApp::new("dingcount", "secret"))
        .process(MockProcess::new(
            "PROC-COUNT",
            "count",
            vec![MockFormField::new("原因", "TextareaField", true)],
            vec!["approver1".into()],
        ))
        .start()
        .await
        .unwrap();
    let client = DingTalkClient::builder(Credentials::new("dingcount", "secret"))
        .api_base(mock.base_url())
        .budget(CallBudget::unlimited())
        .build()
        .unwrap();
    let dingtalk = DingTalkBackend::new(client, workflow()).unwrap();
    let backend: Arc<dyn ApprovalBackend> = if old {
        Arc::new(GetEach(dingtalk))
    } else {
        Arc::new(dingtalk)
    };
    let schedule = if old {
        RecheckSchedule::new(vec![], PASS)
    } else {
        RecheckSchedule::default()
    };
    let engine = Engine::builder(Arc::new(MemoryStore::new()), GrantSigner::from_bytes(&[3; 32]))
        .workflow(workflow(), backend)
        .recheck(schedule)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let passes_per_day = DAY.as_secs() / PASS.as_secs();
    let sampled = (sample.as_secs() / PASS.as_secs()).clamp(1, passes_per_day);
    let mut filed = 0;
    let mut per_day = Vec::new();
    for day in 0..u64::from(days) {
        let (calls_before, filed_before) = (quota_calls(&mock), filed);
        for pass in 0..sampled {
            let offset = Duration::from_secs((day * passes_per_day + pass) * PASS.as_secs());
            while filed < n && spread * u32::try_from(filed).unwrap() <= offset {
                engine
                    .submit(SubmitRequest::uninstall(
                        WorkflowId::new("wf"),
                        UserId::new(format!("user{filed}")),
                        DeviceId::new("laptop"),
                        "reinstall",
                    ))
                    .await
                    .unwrap();
                filed += 1;
            }
            engine.reconcile(PASS).await.unwrap();
            clock.advance(PASS);
        }
        // Creates are the filings' own calls, not reconciliation's.
        let spent = quota_calls(&mock) - calls_before - (filed - filed_before);
        per_day.push(spent as f64 * passes_per_day as f64 / sampled as f64);
        clock.advance(PASS * u32::try_from(passes_per_day - sampled).unwrap());
    }
    per_day
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "DingTalk calls per day spent by reconciliation on N pending requests (no events), passes every 30 s"
    );
    println!("| N | before: GET each, every pass | recheck schedule, filed at once: day 1 / day 2 | filed over a day: day 1 / day 2 |");
    println!("|---|---|---|---|");
    for n in [10, 100, 1_000] {
        // The design before costs the same every day: a sample of 10 minutes, scaled.
        let old = rt.block_on(count(n, Duration::ZERO, true, 1, Duration::from_secs(600)));
        let at_once = rt.block_on(count(n, Duration::ZERO, false, 2, DAY));
        let spread = DAY / u32::try_from(n).unwrap();
        let over_a_day = rt.block_on(count(n, spread, false, 2, DAY));
        println!(
            "| {n} | {:.0} | {:.0} / {:.0} | {:.0} / {:.0} |",
            old[0], at_once[0], at_once[1], over_a_day[0], over_a_day[1]
        );
    }
}
