//! Each DingTalk workflow checked against DingTalk: at start (a workflow DingTalk says is
//! wrong stops the start, with every problem and its path), and again until verified when
//! DingTalk could not be asked. The console shows each workflow's last check.

use dingtalk_sdk::client::DingTalkClient;
use sase_approval::clock::Clock;
use sase_approval::definition::{Problem, Template, Workflow};
use sase_approval::dingtalk::{verify_workflow, Verification};
use sase_policy::ids::WorkflowId;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A workflow's last check, as the console shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Checked {
    #[serde(flatten)]
    pub(crate) verification: Verification,
    /// When, in Unix milliseconds.
    pub(crate) checked_at_ms: i64,
}

/// The DingTalk workflows' last checks, shared by the console and the re-check task.
#[derive(Debug, Clone, Default)]
pub(crate) struct WorkflowChecks(Arc<RwLock<BTreeMap<WorkflowId, Checked>>>);

impl WorkflowChecks {
    /// `workflow`'s last check (`None`: not a DingTalk workflow).
    pub(crate) fn get(&self, workflow: &WorkflowId) -> Option<Checked> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(workflow)
            .cloned()
    }

    fn set(&self, workflow: &WorkflowId, checked: Checked) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(workflow.clone(), checked);
    }
}

/// Workflows are wrong: every problem found, each with its path.
#[derive(Debug, thiserror::Error)]
#[error("{} problem(s) with the workflows:{}", problems.len(), list(problems))]
pub struct WorkflowProblems {
    /// The problems, workflow by workflow.
    pub problems: Vec<Problem>,
}

fn list(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

/// A library path (`workflows.wf.mappings[0].fields.reason`) as the configuration names it:
/// a workflow of `server.toml` has one mapping, its `process_code` and `fields` at its top.
fn config_path(problem: Problem) -> Problem {
    Problem {
        path: problem
            .path
            .replacen(".mappings[0].", ".", 1)
            .replacen(".mappings[0]", "", 1),
        ..problem
    }
}

/// Checks every workflow: against its template (no call), then, for DingTalk ones, against
/// DingTalk with its app's client. Logs each outcome.
///
/// # Errors
/// Every problem of every workflow found wrong; a workflow DingTalk could not be asked about
/// is not an error (it is re-checked by [`recheck_unverified`]).
pub(crate) async fn check_at_start(
    workflows: &[(Workflow, Option<DingTalkClient>)],
    clock: &dyn Clock,
) -> Result<WorkflowChecks, WorkflowProblems> {
    let checks = WorkflowChecks::default();
    let mut problems = Vec::new();
    for (workflow, client) in workflows {
        let own = workflow.problems(&[Template::app_uninstall()]);
        if !own.is_empty() {
            problems.extend(own.into_iter().map(config_path));
            continue;
        }
        let Some(client) = client else {
            continue;
        };
        let verification = verify_workflow(client, workflow).await;
        log(workflow, &verification);
        if let Verification::Invalid { problems: found } = &verification {
            problems.extend(found.iter().cloned().map(config_path));
        }
        checks.set(
            &workflow.id,
            Checked {
                verification,
                checked_at_ms: clock.now_ms(),
            },
        );
    }
    if problems.is_empty() {
        Ok(checks)
    } else {
        Err(WorkflowProblems { problems })
    }
}

fn log(workflow: &Workflow, verification: &Verification) {
    match verification {
        Verification::Verified => {
            tracing::info!(workflow = %workflow.id, "workflow verified against DingTalk");
        }
        Verification::Unverified { reason } => tracing::warn!(
            workflow = %workflow.id, reason = %reason,
            "workflow not verified: DingTalk could not be asked; checked again later"
        ),
        Verification::Invalid { problems } => {
            for problem in problems.iter().cloned().map(config_path) {
                tracing::error!(workflow = %workflow.id, path = %problem.path, problem = %problem.reason, "workflow invalid");
            }
        }
        _ => {}
    }
}

/// Checks the unverified workflows again every `every`, with the background priority of
/// their app's budget, until each is verified (or found wrong, which is logged and shown in
/// the console: the server is already serving).
pub(crate) fn recheck_unverified(
    checks: WorkflowChecks,
    workflows: Vec<(Workflow, DingTalkClient)>,
    clock: Arc<dyn Clock>,
    every: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let unverified = workflows.iter().filter(|(w, _)| {
                matches!(
                    checks.get(&w.id),
                    Some(Checked {
                        verification: Verification::Unverified { .. },
                        ..
                    })
                )
            });
            for (workflow, client) in unverified {
                let verification = verify_workflow(&client.background(), workflow).await;
                log(workflow, &verification);
                checks.set(
                    &workflow.id,
                    Checked {
                        verification,
                        checked_at_ms: clock.now_ms(),
                    },
                );
            }
        }
    })
}
