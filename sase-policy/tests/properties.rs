//! Property tests: whitelisted users are never denied, users out of every scope are always
//! allowed, disabled policies never decide, and the result does not depend on policy order.

use proptest::prelude::*;
use sase_policy::ids::{DeviceId, GroupId, PolicyId, UserId, WorkflowId};
use sase_policy::model::{ApprovalConfig, Scope, Switches};
use sase_policy::{Action, Context, Effect, Policy, PolicySet, Reason, Subject};

fn arb_policy() -> impl Strategy<Value = Policy> {
    (
        0u8..40,
        any::<bool>(),
        -3i32..3,
        any::<(bool, bool)>(),
        proptest::collection::vec(0u8..8, 1..4),
        proptest::collection::vec(0u8..4, 0..2),
        any::<bool>(),
    )
        .prop_map(
            |(id, enabled, priority, (uninstall, logoff), groups, whitelist, filing)| Policy {
                id: PolicyId::new(format!("p{id}")),
                name: "p".into(),
                enabled,
                priority,
                switches: Switches {
                    anti_uninstall: uninstall,
                    auto_start: false,
                    anti_logoff: logoff,
                },
                scope: Scope {
                    groups: groups
                        .into_iter()
                        .map(|g| GroupId::new(format!("g{g}")))
                        .collect(),
                    ..Scope::default()
                },
                whitelist: whitelist
                    .into_iter()
                    .map(|u| UserId::new(format!("u{u}")))
                    .collect(),
                approval: ApprovalConfig {
                    allow_filing: filing,
                    workflow: Some(WorkflowId::new("wf")),
                },
                prompt: Default::default(),
            },
        )
}

/// Distinct ids, as validation guarantees.
fn arb_policies() -> impl Strategy<Value = Vec<Policy>> {
    proptest::collection::vec(arb_policy(), 0..10).prop_map(|mut ps| {
        let mut seen = std::collections::HashSet::new();
        ps.retain(|p| seen.insert(p.id.clone()));
        ps
    })
}

fn arb_subject() -> impl Strategy<Value = (u8, Vec<u8>)> {
    (0u8..6, proptest::collection::vec(0u8..10, 0..5))
}

fn decide(set: &PolicySet, user: u8, groups: &[u8], action: Action) -> (String, Option<String>, Reason) {
    let user = UserId::new(format!("u{user}"));
    let groups: Vec<GroupId> = groups.iter().map(|g| GroupId::new(format!("g{g}"))).collect();
    let device = DeviceId::new("d");
    let subject = Subject {
        user: &user,
        groups: &groups,
        departments: &[],
        device: &device,
        tags: &[],
    };
    let d = set.evaluate(
        &subject,
        action,
        &Context {
            now_ms: 0,
            locale: "en-US",
            grant: None,
        },
    );
    (
        format!("{:?}", d.effect),
        d.policy.map(|p| p.to_string()),
        d.reason,
    )
}

fn in_scope(p: &Policy, groups: &[u8]) -> bool {
    groups
        .iter()
        .any(|g| p.scope.groups.contains(&GroupId::new(format!("g{g}"))))
}

proptest! {
    #[test]
    fn whitelisted_users_are_never_denied(policies in arb_policies(), (user, groups) in arb_subject(), logoff in any::<bool>()) {
        let action = if logoff { Action::Logoff } else { Action::Uninstall };
        let whitelisted = policies.iter().any(|p| p.enabled && in_scope(p, &groups) && p.whitelist.contains(&UserId::new(format!("u{user}"))));
        let set = PolicySet::compile_unvalidated(policies);
        let (effect, _, reason) = decide(&set, user, &groups, action);
        if whitelisted {
            prop_assert_eq!(effect, format!("{:?}", Effect::Allow));
            prop_assert_eq!(reason, Reason::Whitelisted);
        }
    }

    #[test]
    fn users_out_of_every_scope_are_allowed(policies in arb_policies(), user in 0u8..6) {
        let set = PolicySet::compile_unvalidated(policies);
        // Group g99 is in no scope.
        let (effect, policy, reason) = decide(&set, user, &[99], Action::Uninstall);
        prop_assert_eq!(effect, format!("{:?}", Effect::Allow));
        prop_assert_eq!(policy, None);
        prop_assert_eq!(reason, Reason::OutOfScope);
    }

    #[test]
    fn disabled_policies_never_decide(policies in arb_policies(), (user, groups) in arb_subject()) {
        let disabled: Vec<String> = policies.iter().filter(|p| !p.enabled).map(|p| p.id.to_string()).collect();
        let without: Vec<Policy> = policies.iter().filter(|p| p.enabled).cloned().collect();
        let set = PolicySet::compile_unvalidated(policies);
        let decided = decide(&set, user, &groups, Action::Uninstall);
        if let Some(policy) = &decided.1 {
            prop_assert!(!disabled.contains(policy));
        }
        // Removing the disabled policies changes nothing but the out-of-scope reason.
        let other = decide(&PolicySet::compile_unvalidated(without), user, &groups, Action::Uninstall);
        prop_assert_eq!((&decided.0, &decided.1), (&other.0, &other.1));
    }

    #[test]
    fn order_does_not_matter(policies in arb_policies(), (user, groups) in arb_subject(), seed in any::<u64>()) {
        let mut shuffled = policies.clone();
        // A deterministic shuffle from the seed.
        let n = shuffled.len();
        for i in (1..n).rev() {
            let j = (seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i as u64) % (i as u64 + 1)) as usize;
            shuffled.swap(i, j);
        }
        shuffled.reverse();
        let a = decide(&PolicySet::compile_unvalidated(policies), user, &groups, Action::Uninstall);
        let b = decide(&PolicySet::compile_unvalidated(shuffled), user, &groups, Action::Uninstall);
        prop_assert_eq!(a, b);
    }
}
