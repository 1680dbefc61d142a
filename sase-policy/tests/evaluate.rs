//! Evaluation rules, the conflict rule, locale fallback, validation and grants.

use sase_policy::ids::{DeptId, DeviceId, DeviceTag, GrantId, GroupId, PolicyId, UserId, WorkflowId};
use sase_policy::model::{ApprovalConfig, Scope, Switches};
use sase_policy::{
    Action, Catalog, Context, Effect, Error, Grant, GrantRejection, GrantSigner, IssueKind, Policy,
    PolicyDocument, PolicySet, PresentedGrant, PromptText, Reason, Subject, WorkflowKind,
};
use std::collections::{BTreeMap, HashSet};

const NOW: i64 = 1_700_000_000_000;

fn prompt(title: &str) -> BTreeMap<String, PromptText> {
    ["zh-CN", "en-US"]
        .into_iter()
        .map(|l| {
            let t = PromptText {
                title: format!("{title} {l}"),
                content: "c".into(),
                primary_button: "File for Approval".into(),
                secondary_button: "Cancel".into(),
            };
            (l.to_owned(), t)
        })
        .collect()
}

fn policy(id: &str, priority: i32, groups: &[&str], filing: bool) -> Policy {
    Policy {
        id: PolicyId::new(id),
        name: format!("policy {id}"),
        enabled: true,
        priority,
        switches: Switches {
            anti_uninstall: true,
            auto_start: true,
            anti_logoff: false,
        },
        scope: Scope {
            groups: groups.iter().map(|g| GroupId::new(*g)).collect(),
            ..Scope::default()
        },
        whitelist: vec![],
        approval: ApprovalConfig {
            allow_filing: filing,
            workflow: Some(WorkflowId::new("wf-dt")),
        },
        prompt: prompt(id),
    }
}

fn catalog() -> Catalog {
    Catalog::new()
        .workflow(WorkflowId::new("wf-dt"), WorkflowKind::DingTalk)
        .workflow(WorkflowId::new("wf-builtin"), WorkflowKind::BuiltIn)
}

struct Who {
    user: UserId,
    device: DeviceId,
    groups: Vec<GroupId>,
    depts: Vec<DeptId>,
    tags: Vec<DeviceTag>,
}

fn who(user: &str, groups: &[&str]) -> Who {
    Who {
        user: UserId::new(user),
        device: DeviceId::new("dev-1"),
        groups: groups.iter().map(|g| GroupId::new(*g)).collect(),
        depts: vec![],
        tags: vec![],
    }
}

impl Who {
    fn subject(&self) -> Subject<'_> {
        Subject {
            user: &self.user,
            groups: &self.groups,
            departments: &self.depts,
            device: &self.device,
            tags: &self.tags,
        }
    }
}

fn ctx(locale: &str) -> Context<'_> {
    Context {
        now_ms: NOW,
        locale,
        grant: None,
    }
}

#[test]
fn switches_filing_and_scope_decide_the_effect() {
    let mut off = policy("off", 1, &["g-off"], true);
    off.switches.anti_uninstall = false;
    let set = PolicySet::compile(
        vec![
            policy("req", 1, &["g-req"], true),
            policy("deny", 1, &["g-deny"], false),
            off,
        ],
        &catalog(),
    )
    .unwrap();
    let d = set.evaluate(&who("u", &["g-req"]).subject(), Action::Uninstall, &ctx("en-US"));
    assert_eq!(d.reason, Reason::ApprovalRequired);
    assert!(matches!(d.effect, Effect::RequireApproval { workflow } if workflow.as_str() == "wf-dt"));
    assert_eq!(d.policy.unwrap().as_str(), "req");
    assert!(d.auto_start);
    let d = set.evaluate(&who("u", &["g-deny"]).subject(), Action::Uninstall, &ctx("en-US"));
    assert_eq!((d.effect, d.reason), (Effect::Deny, Reason::FilingDisabled));
    let d = set.evaluate(&who("u", &["g-off"]).subject(), Action::Uninstall, &ctx("en-US"));
    assert_eq!(
        (d.effect, d.reason, d.prompt),
        (Effect::Allow, Reason::SwitchOff, None)
    );
    // Logoff follows the anti-logoff switch, off here.
    let d = set.evaluate(&who("u", &["g-req"]).subject(), Action::Logoff, &ctx("en-US"));
    assert_eq!(d.reason, Reason::SwitchOff);
    let d = set.evaluate(
        &who("u", &["elsewhere"]).subject(),
        Action::Uninstall,
        &ctx("en-US"),
    );
    assert_eq!(
        (d.effect, d.reason, d.policy),
        (Effect::Allow, Reason::OutOfScope, None)
    );
}

#[test]
fn departments_and_device_tags_are_scopes_too() {
    let mut p = policy("p", 1, &[], false);
    p.scope.departments = vec![DeptId::new("d-eng")];
    p.scope.device_tags = vec![DeviceTag::new("byod")];
    let set = PolicySet::compile(vec![p], &catalog()).unwrap();
    let mut w = who("u", &[]);
    assert_eq!(
        set.evaluate(&w.subject(), Action::Uninstall, &ctx("zh-CN"))
            .effect,
        Effect::Allow
    );
    w.depts = vec![DeptId::new("d-eng")];
    assert_eq!(
        set.evaluate(&w.subject(), Action::Uninstall, &ctx("zh-CN"))
            .effect,
        Effect::Deny
    );
    w.depts.clear();
    w.tags = vec![DeviceTag::new("byod")];
    assert_eq!(
        set.evaluate(&w.subject(), Action::Uninstall, &ctx("zh-CN"))
            .effect,
        Effect::Deny
    );
}

#[test]
fn several_policies_highest_priority_then_most_restrictive_then_lowest_id() {
    let set = PolicySet::compile(
        vec![
            policy("b-low", 1, &["g1"], false),
            policy("z-high", 5, &["g2"], true),
            policy("a-high", 5, &["g3"], true),
        ],
        &catalog(),
    )
    .unwrap();
    // Priority beats restrictiveness: the Deny of the low-priority policy does not win.
    let d = set.evaluate(
        &who("u", &["g1", "g2"]).subject(),
        Action::Uninstall,
        &ctx("en-US"),
    );
    assert_eq!(d.policy.unwrap().as_str(), "z-high");
    // Equal priority and effect: the lowest id.
    let d = set.evaluate(
        &who("u", &["g2", "g3"]).subject(),
        Action::Uninstall,
        &ctx("en-US"),
    );
    assert_eq!(d.policy.unwrap().as_str(), "a-high");
    // Equal priority: the most restrictive effect.
    let set = PolicySet::compile(
        vec![policy("a", 5, &["g1"], true), policy("b", 5, &["g2"], false)],
        &catalog(),
    )
    .unwrap();
    let d = set.evaluate(
        &who("u", &["g1", "g2"]).subject(),
        Action::Uninstall,
        &ctx("en-US"),
    );
    assert_eq!((d.effect, d.policy.unwrap().as_str()), (Effect::Deny, "b"));
}

#[test]
fn whitelists_exempt_and_disabled_policies_never_decide() {
    let mut p = policy("p", 1, &["g"], false);
    p.whitelist = vec![UserId::new("boss")];
    let mut disabled = policy("x-disabled", 9, &["g", "g-only-disabled"], false);
    disabled.enabled = false;
    let set = PolicySet::compile(vec![p, disabled], &catalog()).unwrap();
    let d = set.evaluate(&who("boss", &["g"]).subject(), Action::Uninstall, &ctx("en-US"));
    assert_eq!(
        (d.effect, d.reason, d.policy.unwrap().as_str()),
        (Effect::Allow, Reason::Whitelisted, "p")
    );
    let d = set.evaluate(&who("worker", &["g"]).subject(), Action::Uninstall, &ctx("en-US"));
    assert_eq!((d.effect, d.policy.unwrap().as_str()), (Effect::Deny, "p"));
    let d = set.evaluate(
        &who("worker", &["g-only-disabled"]).subject(),
        Action::Uninstall,
        &ctx("en-US"),
    );
    assert_eq!((d.effect, d.reason), (Effect::Allow, Reason::PolicyDisabled));
}

#[test]
fn prompts_fall_back_by_language_then_english_then_chinese() {
    let mut p = policy("p", 1, &["g"], true);
    p.prompt.insert(
        "zh-TW".into(),
        PromptText {
            title: "繁體".into(),
            ..p.prompt["zh-CN"].clone()
        },
    );
    let set = PolicySet::compile(vec![p], &catalog()).unwrap();
    let title = |locale: &str| {
        set.evaluate(&who("u", &["g"]).subject(), Action::Uninstall, &ctx(locale))
            .prompt
            .unwrap()
            .title
            .clone()
    };
    assert_eq!(title("zh-TW"), "繁體");
    assert_eq!(title("en-US"), "p en-US");
    assert_eq!(title("en-GB"), "p en-US");
    assert_eq!(
        title("zh-HK"),
        "p zh-CN",
        "first locale of the same language, in locale order"
    );
    assert_eq!(title("fr-FR"), "p en-US");
}

#[test]
fn validation_lists_every_problem_with_its_path() {
    let mut empty_scope = policy("dup", 1, &[], true);
    empty_scope.prompt.remove("en-US");
    let mut unknown = policy("dup", 1, &["g"], true);
    unknown.approval.workflow = Some(WorkflowId::new("nope"));
    let mut builtin = policy("bi", 1, &["g"], true);
    builtin.approval.workflow = Some(WorkflowId::new("wf-builtin"));
    let mut missing = policy("mw", 1, &["g"], true);
    missing.approval.workflow = None;
    let catalog = catalog().require_kind(WorkflowKind::DingTalk);
    let Err(Error::Validation { issues }) =
        PolicySet::compile(vec![empty_scope, unknown, builtin, missing], &catalog)
    else {
        panic!("expected validation errors");
    };
    let found: Vec<(String, IssueKind)> = issues.iter().map(|i| (i.path.clone(), i.kind)).collect();
    assert_eq!(
        found,
        [
            ("policies[0].scope".to_owned(), IssueKind::EmptyScope),
            ("policies[0].prompt.en-US".to_owned(), IssueKind::MissingPrompt),
            ("policies[1].id".to_owned(), IssueKind::DuplicateId),
            (
                "policies[1].approval.workflow".to_owned(),
                IssueKind::UnknownWorkflow
            ),
            (
                "policies[2].approval.workflow".to_owned(),
                IssueKind::WrongWorkflowKind
            ),
            (
                "policies[3].approval.workflow".to_owned(),
                IssueKind::MissingWorkflow
            ),
        ]
    );
    let text = Error::Validation { issues }.to_string();
    assert!(text.contains("policies[2].approval.workflow"), "{text}");
}

#[test]
fn documents_load_from_json() {
    let doc: PolicyDocument = serde_json::from_str(
        r#"{"policies":[{"id":"p","name":"P","scope":{"groups":["g"]},"switches":{"anti_uninstall":true},
            "whitelist":["u-1"],"approval":{"allow_filing":false},
            "prompt":{"zh-CN":{"title":"t","content":"c","primary_button":"a","secondary_button":"b"},
                      "en-US":{"title":"t","content":"c","primary_button":"a","secondary_button":"b"}}}]}"#,
    )
    .unwrap();
    assert!(doc.policies[0].enabled, "enabled defaults to true");
    let set = PolicySet::compile(doc.policies, &catalog()).unwrap();
    assert_eq!(set.len(), 1);
}

#[test]
fn grants_verify_offline_and_every_rejection_is_typed() {
    let signer = GrantSigner::from_bytes(&[7u8; 32]);
    let verifier = sase_policy::GrantVerifier::from_hex(&signer.verifier().to_hex()).unwrap();
    let grant = |id: &str, user: &str, device: &str, action, expires| {
        signer.sign(Grant {
            id: GrantId::new(id),
            user: UserId::new(user),
            device: DeviceId::new(device),
            action,
            issued_at_ms: NOW - 1000,
            expires_at_ms: expires,
            request_id: Some("req-1".into()),
        })
    };
    let set = PolicySet::compile(vec![policy("p", 1, &["g"], true)], &catalog()).unwrap();
    let w = who("u", &["g"]);
    let used: HashSet<GrantId> = [GrantId::new("spent")].into_iter().collect();
    let eval = |g: &sase_policy::SignedGrant| {
        let ctx = Context {
            now_ms: NOW,
            locale: "en-US",
            grant: Some(PresentedGrant {
                grant: g,
                verifier: &verifier,
                used: &used,
            }),
        };
        let d = set.evaluate(&w.subject(), Action::Uninstall, &ctx);
        (d.effect, d.reason, d.grant_rejected)
    };
    assert_eq!(
        eval(&grant("g1", "u", "dev-1", Action::Uninstall, NOW + 60_000)),
        (Effect::Allow, Reason::ValidGrant, None)
    );
    let mut tampered = grant("g2", "u", "dev-1", Action::Uninstall, NOW + 60_000);
    tampered.grant.expires_at_ms += 1;
    let workflow = WorkflowId::new("wf-dt");
    let required = Effect::RequireApproval { workflow: &workflow };
    for (g, rejection) in [
        (tampered, GrantRejection::BadSignature),
        (
            grant("g3", "u", "dev-1", Action::Uninstall, NOW),
            GrantRejection::Expired,
        ),
        (
            grant("spent", "u", "dev-1", Action::Uninstall, NOW + 60_000),
            GrantRejection::Used,
        ),
        (
            grant("g4", "other", "dev-1", Action::Uninstall, NOW + 60_000),
            GrantRejection::Foreign,
        ),
        (
            grant("g5", "u", "dev-2", Action::Uninstall, NOW + 60_000),
            GrantRejection::Foreign,
        ),
        (
            grant("g6", "u", "dev-1", Action::Logoff, NOW + 60_000),
            GrantRejection::Foreign,
        ),
    ] {
        assert_eq!(eval(&g), (required, Reason::ApprovalRequired, Some(rejection)));
    }
    // A grant signed by another server is refused.
    let forged = GrantSigner::from_bytes(&[8u8; 32])
        .sign(grant("g7", "u", "dev-1", Action::Uninstall, NOW + 60_000).grant);
    assert!(matches!(
        verifier.verify(
            &forged,
            &UserId::new("u"),
            &DeviceId::new("dev-1"),
            Action::Uninstall,
            NOW,
            &used
        ),
        Err(Error::GrantBadSignature)
    ));
    assert!(
        !format!("{signer:?}").contains("0707"),
        "the seed is never printed"
    );
    // Grants survive a JSON round trip and still verify.
    let json = serde_json::to_string(&grant("g8", "u", "dev-1", Action::Uninstall, NOW + 60_000)).unwrap();
    let back: sase_policy::SignedGrant = serde_json::from_str(&json).unwrap();
    assert!(verifier
        .verify(
            &back,
            &UserId::new("u"),
            &DeviceId::new("dev-1"),
            Action::Uninstall,
            NOW,
            &used
        )
        .is_ok());
}

#[test]
fn a_misspelt_key_is_refused_not_ignored() {
    // `whitlist` ignored would leave alice subject to the policy she is meant to be exempt from.
    for misspelt in [
        r#"{"policies":[{"id":"p","name":"p","whitlist":["alice"]}]}"#,
        r#"{"policies":[{"id":"p","name":"p","scope":{"group":["employees"]}}]}"#,
        r#"{"policies":[{"id":"p","name":"p","switches":{"anti_uninstal":true}}]}"#,
        r#"{"policies":[{"id":"p","name":"p","approval":{"allow_filling":true}}]}"#,
        r#"{"policy":[]}"#,
    ] {
        let e = serde_json::from_str::<PolicyDocument>(misspelt).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{misspelt}: {e}");
    }
}
