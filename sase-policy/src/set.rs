//! A compiled [`PolicySet`]: evaluation is a handful of hash lookups, not a scan.
//!
//! # Which policy decides
//!
//! Disabled policies never decide. Among the enabled policies whose scope includes the user
//! (any of their groups, departments or device tags):
//!
//! 1. If the user is on the whitelist of any of them, the answer is **Allow** (`Whitelisted`):
//!    the whitelist is an exemption list, and an exemption is never overridden.
//! 2. Otherwise the policies with the highest `priority` are considered; among them the most
//!    restrictive effect for the action wins (Deny > RequireApproval > Allow), then the
//!    lowest policy id. The result depends only on the policies, never on their order.
//! 3. A user no enabled policy includes is allowed (`OutOfScope`, or `PolicyDisabled` when a
//!    disabled policy would have included them).
//!
//! For the deciding policy: the action's switch off → Allow (`SwitchOff`); on and filing
//! allowed → RequireApproval with the policy's workflow; on and filing not allowed → Deny.
//! A valid grant presented for that user, device and action turns a Deny or RequireApproval
//! into Allow (`ValidGrant`); a rejected grant is reported and changes nothing.

use crate::decision::{Action, Context, Decision, Effect, Reason, Subject};
use crate::error::Error;
use crate::ids::{DeptId, DeviceTag, GroupId, UserId};
use crate::model::{localized, Policy};
use crate::validate::{validate, Catalog};
use rustc_hash::{FxHashMap, FxHashSet};
use smallvec::SmallVec;
use std::hash::Hash;

/// Policy positions, in precedence order; most keys have one or two.
type Ranks = SmallVec<[u32; 2]>;

/// Policies compiled for evaluation. Build a new one to reload, and swap it behind an `Arc`
/// (or `ArcSwap`) so readers never wait.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    /// Sorted by precedence: priority descending, then id ascending. Indexes hold positions.
    policies: Vec<Policy>,
    by_group: FxHashMap<GroupId, Ranks>,
    by_dept: FxHashMap<DeptId, Ranks>,
    by_tag: FxHashMap<DeviceTag, Ranks>,
    disabled_groups: FxHashSet<GroupId>,
    disabled_depts: FxHashSet<DeptId>,
    disabled_tags: FxHashSet<DeviceTag>,
    whitelist: FxHashMap<UserId, Ranks>,
}

fn index<K: Hash + Eq + Clone>(map: &mut FxHashMap<K, Ranks>, keys: &[K], rank: u32) {
    for key in keys {
        let list = map.entry(key.clone()).or_default();
        // Keys listed twice in one policy must not index it twice.
        if list.last() != Some(&rank) {
            list.push(rank);
        }
    }
}

impl PolicySet {
    /// Validates `policies` against `catalog` and compiles them.
    ///
    /// # Errors
    /// [`Error::Validation`] listing every problem.
    pub fn compile(policies: Vec<Policy>, catalog: &Catalog) -> Result<Self, Error> {
        validate(&policies, catalog)?;
        Ok(Self::compile_unvalidated(policies))
    }

    /// Compiles without validating (for policies validated when they were saved).
    pub fn compile_unvalidated(policies: Vec<Policy>) -> Self {
        // Sort small keys, not the policies themselves, then move each policy once.
        let mut order: Vec<(i32, usize)> = policies
            .iter()
            .enumerate()
            .map(|(i, p)| (p.priority, i))
            .collect();
        order.sort_unstable_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| match (policies.get(a.1), policies.get(b.1)) {
                    (Some(x), Some(y)) => x.id.cmp(&y.id),
                    _ => a.1.cmp(&b.1),
                })
        });
        let mut slots: Vec<Option<Policy>> = policies.into_iter().map(Some).collect();
        let policies: Vec<Policy> = order
            .iter()
            .filter_map(|(_, i)| slots.get_mut(*i).and_then(Option::take))
            .collect();
        let refs = |f: fn(&Policy) -> usize| policies.iter().map(f).sum::<usize>();
        let mut set = PolicySet {
            by_group: FxHashMap::with_capacity_and_hasher(refs(|p| p.scope.groups.len()), Default::default()),
            by_dept: FxHashMap::with_capacity_and_hasher(
                refs(|p| p.scope.departments.len()),
                Default::default(),
            ),
            by_tag: FxHashMap::with_capacity_and_hasher(
                refs(|p| p.scope.device_tags.len()),
                Default::default(),
            ),
            whitelist: FxHashMap::with_capacity_and_hasher(refs(|p| p.whitelist.len()), Default::default()),
            ..PolicySet::default()
        };
        for (rank, p) in policies.iter().enumerate() {
            let rank = u32::try_from(rank).unwrap_or(u32::MAX);
            if p.enabled {
                index(&mut set.by_group, &p.scope.groups, rank);
                index(&mut set.by_dept, &p.scope.departments, rank);
                index(&mut set.by_tag, &p.scope.device_tags, rank);
                index(&mut set.whitelist, &p.whitelist, rank);
            } else {
                set.disabled_groups.extend(p.scope.groups.iter().cloned());
                set.disabled_depts.extend(p.scope.departments.iter().cloned());
                set.disabled_tags.extend(p.scope.device_tags.iter().cloned());
            }
        }
        set.policies = policies;
        set
    }

    /// The policies, in precedence order.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    fn policy(&self, rank: u32) -> Option<&Policy> {
        self.policies.get(usize::try_from(rank).ok()?)
    }

    /// What `subject` may do about `action`, and why. See the module docs for the rules.
    pub fn evaluate<'a>(&'a self, subject: &Subject<'_>, action: Action, ctx: &Context<'_>) -> Decision<'a> {
        let mut lists: Vec<&[u32]> =
            Vec::with_capacity(subject.groups.len() + subject.departments.len() + subject.tags.len());
        lists.extend(
            subject
                .groups
                .iter()
                .filter_map(|g| self.by_group.get(g))
                .map(|l| l.as_slice()),
        );
        lists.extend(
            subject
                .departments
                .iter()
                .filter_map(|d| self.by_dept.get(d))
                .map(|l| l.as_slice()),
        );
        lists.extend(
            subject
                .tags
                .iter()
                .filter_map(|t| self.by_tag.get(t))
                .map(|l| l.as_slice()),
        );

        let allow = |reason, policy: Option<&'a Policy>| Decision {
            effect: Effect::Allow,
            reason,
            policy: policy.map(|p| &p.id),
            prompt: None,
            grant_rejected: None,
            auto_start: policy.is_some_and(|p| p.switches.auto_start),
        };
        let Some(best) = lists.iter().filter_map(|l| l.first().copied()).min() else {
            let disabled = subject.groups.iter().any(|g| self.disabled_groups.contains(g))
                || subject
                    .departments
                    .iter()
                    .any(|d| self.disabled_depts.contains(d))
                || subject.tags.iter().any(|t| self.disabled_tags.contains(t));
            return allow(
                if disabled {
                    Reason::PolicyDisabled
                } else {
                    Reason::OutOfScope
                },
                None,
            );
        };
        let Some(top) = self.policy(best) else {
            return allow(Reason::OutOfScope, None);
        };
        if let Some(exempting) = self.whitelist.get(subject.user) {
            let includes = |rank: &u32| lists.iter().any(|l| l.binary_search(rank).is_ok());
            if let Some(rank) = exempting.iter().find(|r| includes(r)) {
                return allow(Reason::Whitelisted, self.policy(*rank));
            }
        }

        // The top-priority tier: every list is in precedence order, so its tier is a prefix.
        let (mut effect, mut reason) = effect_of(top, action);
        let mut chosen = top;
        for &rank in lists.iter().flat_map(|l| {
            l.iter()
                .take_while(|r| self.policy(**r).is_some_and(|p| p.priority == top.priority))
        }) {
            let Some(p) = self.policy(rank) else { continue };
            let (e, r) = effect_of(p, action);
            let stricter = e.restrictiveness() > effect.restrictiveness()
                || (e.restrictiveness() == effect.restrictiveness() && p.id < chosen.id);
            if stricter {
                (chosen, effect, reason) = (p, e, r);
            }
        }
        if effect == Effect::Allow {
            return allow(reason, Some(chosen));
        }
        let mut decision = Decision {
            effect,
            reason,
            policy: Some(&chosen.id),
            prompt: localized(&chosen.prompt, ctx.locale),
            grant_rejected: None,
            auto_start: top.switches.auto_start,
        };
        if let Some(presented) = ctx.grant {
            match presented.verifier.verify(
                presented.grant,
                subject.user,
                subject.device,
                action,
                ctx.now_ms,
                presented.used,
            ) {
                Ok(_) => {
                    decision.effect = Effect::Allow;
                    decision.reason = Reason::ValidGrant;
                    decision.prompt = None;
                }
                Err(e) => decision.grant_rejected = e.grant_rejection(),
            }
        }
        decision
    }
}

/// The effect `policy` gives `action` (for a user it does not exempt).
fn effect_of(policy: &Policy, action: Action) -> (Effect<'_>, Reason) {
    let on = match action {
        Action::Uninstall => policy.switches.anti_uninstall,
        Action::Logoff => policy.switches.anti_logoff,
    };
    match (&policy.approval.workflow, on, policy.approval.allow_filing) {
        (_, false, _) => (Effect::Allow, Reason::SwitchOff),
        (Some(workflow), true, true) => (Effect::RequireApproval { workflow }, Reason::ApprovalRequired),
        _ => (Effect::Deny, Reason::FilingDisabled),
    }
}
