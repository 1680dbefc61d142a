//! Policy evaluation at scale: 1,000 policies over 10,000 groups, subjects in 1–20 groups;
//! and compiling (validating + indexing) the 1,000 policies.
//!
//! Run: `cargo bench --bench policy`

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    missing_docs,
    reason = "a benchmark's set-up fails loudly on the first unexpected value"
)]

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use sase_dingtalk::policy::ids::{DeviceId, GroupId, PolicyId, UserId, WorkflowId};
use sase_dingtalk::policy::model::{ApprovalConfig, Scope, Switches};
use sase_dingtalk::policy::{Action, Catalog, Context, Policy, PolicySet, PromptText, Subject, WorkflowKind};

/// A small deterministic generator (no dependency needed for reproducible inputs).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

fn policies() -> Vec<Policy> {
    let mut rng = Lcg(42);
    let text = |t: &str| PromptText {
        title: t.into(),
        content: "content".into(),
        primary_button: "File for Approval".into(),
        secondary_button: "Cancel".into(),
    };
    (0..1000)
        .map(|i| Policy {
            id: PolicyId::new(format!("policy-{i:04}")),
            name: format!("Policy {i}"),
            enabled: i % 10 != 0,
            priority: (rng.next(5)) as i32,
            switches: Switches {
                anti_uninstall: true,
                auto_start: true,
                anti_logoff: i % 2 == 0,
            },
            scope: Scope {
                groups: (0..10)
                    .map(|_| GroupId::new(format!("group-{:05}", rng.next(10_000))))
                    .collect(),
                ..Scope::default()
            },
            whitelist: (0..3)
                .map(|_| UserId::new(format!("user-{:05}", rng.next(100_000))))
                .collect(),
            approval: ApprovalConfig {
                allow_filing: i % 3 != 0,
                workflow: Some(WorkflowId::new("wf-dingtalk")),
            },
            prompt: [
                ("zh-CN".to_owned(), text("禁止卸载")),
                ("en-US".to_owned(), text("Uninstall blocked")),
            ]
            .into(),
        })
        .collect()
}

fn catalog() -> Catalog {
    Catalog::new().workflow(WorkflowId::new("wf-dingtalk"), WorkflowKind::DingTalk)
}

fn bench(c: &mut Criterion) {
    let source = policies();
    let set = PolicySet::compile(source.clone(), &catalog()).unwrap();
    let mut rng = Lcg(7);
    let device = DeviceId::new("device-1");
    let ctx = Context {
        now_ms: 1_700_000_000_000,
        locale: "zh-CN",
        grant: None,
    };

    let mut g = c.benchmark_group("policy_1000x10000");
    for n in [1usize, 10, 20] {
        // 64 subjects of n groups each, cycled, so caches do not see one subject only.
        let subjects: Vec<(UserId, Vec<GroupId>)> = (0..64)
            .map(|_| {
                let user = UserId::new(format!("user-{:05}", rng.next(100_000)));
                (
                    user,
                    (0..n)
                        .map(|_| GroupId::new(format!("group-{:05}", rng.next(10_000))))
                        .collect(),
                )
            })
            .collect();
        let mut i = 0;
        g.bench_function(format!("decision_{n}_groups"), |b| {
            b.iter(|| {
                i = (i + 1) % subjects.len();
                let (user, groups) = &subjects[i];
                let subject = Subject {
                    user,
                    groups,
                    departments: &[],
                    device: &device,
                    tags: &[],
                };
                black_box(set.evaluate(&subject, Action::Uninstall, &ctx).effect);
            })
        });
    }
    g.bench_function("compile_1000_validated", |b| {
        b.iter_batched(
            || source.clone(),
            |p| PolicySet::compile(p, &catalog()).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("compile_1000_unvalidated", |b| {
        b.iter_batched(
            || source.clone(),
            PolicySet::compile_unvalidated,
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
