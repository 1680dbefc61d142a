//! What the server adds to the store's hash-chained audit log
//! ([`sase_approval::audit`]): configuration changes (who changed which workflow, policy,
//! device or admin, before and after, secrets never), admin logins, failed logins and
//! logouts, and device enrollments; the engine records requests, their transitions and
//! grants itself. With `audit_log_lines`, each entry is also a log line (target `sase_audit`),
//! so that a SIEM collecting the logs holds a copy the database cannot rewrite.

use sase_approval::audit::AuditRecord;
use sase_approval::clock::Clock;
use sase_approval::store::ApprovalStore;
use serde_json::Value;
use std::sync::Arc;

/// Appends the server's entries.
#[derive(Clone)]
pub(crate) struct AuditLog {
    store: Arc<dyn ApprovalStore>,
    clock: Arc<dyn Clock>,
    lines: bool,
}

impl AuditLog {
    /// Entries in `store`, also logged as lines with `lines`.
    pub(crate) fn new(store: Arc<dyn ApprovalStore>, clock: Arc<dyn Clock>, lines: bool) -> Self {
        Self { store, clock, lines }
    }

    /// The store the chain is in.
    pub(crate) fn store(&self) -> &Arc<dyn ApprovalStore> {
        &self.store
    }

    /// The clock entries are stamped with.
    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Records that `actor` did `action` (e.g. `policy.put`) to `subject` (e.g.
    /// `policy/employees`). The change it records is made already: an entry that cannot be
    /// written is logged as an error, not undone.
    pub(crate) async fn record(&self, actor: &str, action: &str, subject: String, details: Value) {
        let record = AuditRecord::new(self.clock.now_ms(), actor, action, subject, details);
        match self.store.append_audit(&record).await {
            Ok(entry) if self.lines => log_line(&entry),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, actor, action, subject = %record.subject,
                "audit entry not written"),
        }
    }
}

/// The entry as a log line, for a SIEM.
pub(crate) fn log_line(entry: &sase_approval::audit::AuditEntry) {
    tracing::info!(
        target: "sase_audit",
        seq = entry.seq,
        actor = %entry.record.actor,
        action = %entry.record.action,
        subject = %entry.record.subject,
        at_ms = entry.record.at_ms,
        details = %entry.record.details,
        hash = %entry.hash,
        "audit"
    );
}

/// The chain in `store` checked from its first entry to its head: the entries verified, or
/// where it breaks.
///
/// # Errors
/// A store error.
pub(crate) async fn verify_chain(
    store: &dyn ApprovalStore,
) -> sase_approval::Result<Result<u64, sase_approval::audit::ChainBreak>> {
    // Up to the head read first: entries appended meanwhile are the next check's.
    let head = store.audit_head().await?;
    let until = head.as_ref().map_or(0, |(seq, _)| *seq);
    let mut verifier = sase_approval::audit::ChainVerifier::new();
    let mut page = sase_approval::audit::AuditFilter::default().page(0, 1_000);
    loop {
        let entries = store.list_audit(&page).await?;
        let Some(last) = entries.last() else { break };
        page.after_seq = last.seq;
        for entry in entries.iter().filter(|e| e.seq <= until) {
            if let Err(broken) = verifier.push(entry) {
                return Ok(Err(broken));
            }
        }
        if last.seq >= until {
            break;
        }
    }
    Ok(verifier.finish(head))
}
