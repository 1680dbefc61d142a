//! Each DingTalk workflow checked against DingTalk: at start and when saved (a workflow
//! DingTalk says is wrong stops the start, or is not saved, with every problem and its path),
//! and again until verified when DingTalk could not be asked. The console shows each
//! workflow's last check.

use dingtalk_sdk::client::DingTalkClient;
use sase_approval::clock::Clock;
use sase_approval::definition::{Problem, Workflow};
use sase_approval::dingtalk::{verify_workflow, Verification};
use sase_policy::ids::WorkflowId;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A workflow's last check, as the console shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct Checked {
    #[serde(flatten)]
    pub(crate) verification: Verification,
    /// When, in Unix milliseconds.
    pub(crate) checked_at_ms: i64,
    /// The version of the workflow checked.
    pub(crate) version: u64,
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

    pub(crate) fn set(&self, workflow: &WorkflowId, checked: Checked) {
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
/// a workflow of `server.toml` has its `app_uninstall` form's `process_code` and `fields` at
/// its top and its other forms in `mappings`, so the library's mapping `k` is the
/// configuration's `mappings[k-1]`.
pub(crate) fn config_path(problem: Problem) -> Problem {
    const MAPPINGS: &str = ".mappings[";
    let path = match problem.path.split_once(MAPPINGS).and_then(|(head, rest)| {
        let (index, tail) = rest.split_once(']')?;
        Some((head, index.parse::<usize>().ok()?, tail))
    }) {
        Some((head, 0, tail)) => format!("{head}{tail}"),
        Some((head, k, tail)) => format!("{head}{MAPPINGS}{}]{tail}", k - 1),
        None => problem.path,
    };
    Problem { path, ..problem }
}

/// Logs a check's outcome.
pub(crate) fn log(workflow: &Workflow, verification: &Verification) {
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

/// Checks the unverified workflows of `workflows()` (each with its client and version) again
/// every `every`, with the background priority of their app's budget, until each is verified
/// (or found wrong, which is logged and shown in the console: the server is already serving).
pub(crate) fn recheck_unverified(
    checks: WorkflowChecks,
    workflows: impl Fn() -> Vec<(Workflow, DingTalkClient, u64)> + Send + 'static,
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
            for (workflow, client, version) in workflows() {
                let unverified = matches!(
                    checks.get(&workflow.id),
                    Some(Checked {
                        verification: Verification::Unverified { .. },
                        ..
                    })
                );
                if !unverified {
                    continue;
                }
                let verification = verify_workflow(&client.background(), &workflow).await;
                log(&workflow, &verification);
                checks.set(
                    &workflow.id,
                    Checked {
                        verification,
                        checked_at_ms: clock.now_ms(),
                        version,
                    },
                );
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(library: &str) -> String {
        config_path(Problem {
            path: library.to_owned(),
            reason: String::new(),
        })
        .path
    }

    /// The library's mapping 0 is the configuration's top-level form; mapping k its
    /// `mappings[k-1]`; other paths are left alone.
    #[test]
    fn library_paths_become_the_configurations() {
        assert_eq!(
            path("workflows.wf.mappings[0].fields.reason"),
            "workflows.wf.fields.reason"
        );
        assert_eq!(path("workflows.wf.mappings[0]"), "workflows.wf");
        assert_eq!(
            path("workflows.wf.mappings[1].process_code"),
            "workflows.wf.mappings[0].process_code"
        );
        assert_eq!(
            path("workflows.wf.mappings[3].fields"),
            "workflows.wf.mappings[2].fields"
        );
        assert_eq!(path("workflows.wf.mappings"), "workflows.wf.mappings");
        assert_eq!(
            path("workflows.wf.dingtalk.client_secret"),
            "workflows.wf.dingtalk.client_secret"
        );
    }
}
