//! Validation on load: every problem, each with a path such as `policies[2].prompt.en-US`.

use crate::error::Error;
use crate::ids::WorkflowId;
use crate::model::Policy;
use rustc_hash::FxHashSet;
use std::collections::HashMap;
use std::fmt;

/// What kind of approval workflow an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkflowKind {
    /// Approved in SASE's own console.
    BuiltIn,
    /// Approved in DingTalk.
    DingTalk,
}

/// What validation checks policies against: the known workflows and the deployment's rules.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    workflows: HashMap<WorkflowId, WorkflowKind>,
    required_kind: Option<WorkflowKind>,
    required_locales: Vec<String>,
}

impl Catalog {
    /// An empty catalog requiring the `zh-CN` and `en-US` prompts.
    pub fn new() -> Self {
        Self {
            workflows: HashMap::new(),
            required_kind: None,
            required_locales: vec!["zh-CN".to_owned(), "en-US".to_owned()],
        }
    }

    /// Declares a workflow.
    pub fn workflow(mut self, id: WorkflowId, kind: WorkflowKind) -> Self {
        self.workflows.insert(id, kind);
        self
    }

    /// Filing must use a workflow of this kind (e.g. DingTalk-associated).
    pub fn require_kind(mut self, kind: WorkflowKind) -> Self {
        self.required_kind = Some(kind);
        self
    }

    /// The locales every prompt must have (default `zh-CN` and `en-US`).
    pub fn required_locales(mut self, locales: Vec<String>) -> Self {
        self.required_locales = locales;
        self
    }
}

/// What is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IssueKind {
    /// Two policies share an id.
    DuplicateId,
    /// The policy's name is empty.
    EmptyName,
    /// The scope lists no group, department or tag.
    EmptyScope,
    /// Filing is allowed but no workflow is named.
    MissingWorkflow,
    /// The workflow is not in the catalog.
    UnknownWorkflow,
    /// The workflow is not of the kind the deployment requires.
    WrongWorkflowKind,
    /// A required locale has no prompt, or the prompt has an empty text.
    MissingPrompt,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationIssue {
    /// Where, e.g. `policies[2].approval.workflow`.
    pub path: String,
    /// What kind of problem.
    pub kind: IssueKind,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ValidationIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Checks `policies` against `catalog`.
///
/// # Errors
/// [`Error::Validation`] listing every problem.
pub fn validate(policies: &[Policy], catalog: &Catalog) -> Result<(), Error> {
    let issues = issues(policies, catalog);
    if issues.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation { issues })
    }
}

/// Every problem of `policies` against `catalog`, in document order (none: they are valid).
pub fn issues(policies: &[Policy], catalog: &Catalog) -> Vec<ValidationIssue> {
    let mut issues = Vec::new();
    let mut issue =
        |path: String, kind, message: String| issues.push(ValidationIssue { path, kind, message });
    let mut seen = FxHashSet::default();
    for (i, p) in policies.iter().enumerate() {
        let at = |field: &str| format!("policies[{i}].{field}");
        if !seen.insert(&p.id) {
            issue(
                at("id"),
                IssueKind::DuplicateId,
                format!("duplicate policy id `{}`", p.id),
            );
        }
        if p.name.trim().is_empty() {
            issue(
                at("name"),
                IssueKind::EmptyName,
                "give the policy a name".to_owned(),
            );
        }
        if p.scope.is_empty() {
            issue(
                at("scope"),
                IssueKind::EmptyScope,
                "list at least one group, department or device tag".to_owned(),
            );
        }
        if p.approval.allow_filing {
            match &p.approval.workflow {
                None => issue(
                    at("approval.workflow"),
                    IssueKind::MissingWorkflow,
                    "filing is allowed: name the approval workflow".to_owned(),
                ),
                Some(w) => match catalog.workflows.get(w) {
                    None => issue(
                        at("approval.workflow"),
                        IssueKind::UnknownWorkflow,
                        format!("unknown workflow `{w}`"),
                    ),
                    Some(kind) if catalog.required_kind.is_some_and(|r| r != *kind) => issue(
                        at("approval.workflow"),
                        IssueKind::WrongWorkflowKind,
                        format!(
                            "workflow `{w}` is {kind:?}; this deployment requires {:?}",
                            catalog.required_kind
                        ),
                    ),
                    Some(_) => {}
                },
            }
        }
        for locale in &catalog.required_locales {
            let complete = p.prompt.get(locale).is_some_and(|t| {
                ![&t.title, &t.content, &t.primary_button, &t.secondary_button]
                    .iter()
                    .any(|s| s.trim().is_empty())
            });
            if !complete {
                issue(
                    at(&format!("prompt.{locale}")),
                    IssueKind::MissingPrompt,
                    format!("the {locale} prompt needs a title, content and both button texts"),
                );
            }
        }
    }
    issues
}
