//! An append-only, hash-chained audit log: what happened ([`AuditRecord`]), each record linked
//! to the one before by a SHA-256 hash ([`AuditEntry`]), and the check that a chain read back
//! is whole ([`ChainVerifier`]). Pure: the stores keep the chain
//! ([`ApprovalStore::append_audit`](crate::store::ApprovalStore::append_audit)), this module
//! does no I/O.
//!
//! # What the chain proves
//!
//! Each entry's hash covers its sequence number, its record and the previous entry's hash,
//! so editing, removing, inserting or reordering an entry breaks the chain at that entry or
//! the one after it, and the store's head (the last entry's sequence number and hash, moved
//! with every append) catches a removed tail. The hash has no key: someone able to rewrite
//! the database can rewrite the whole chain from the edit on, head included. What they cannot
//! rewrite is a copy held elsewhere: a head written down earlier, or entries already shipped
//! to a log collector. Compare those with the chain to prove it unchanged up to them.
//!
//! # Hash encoding (version 1)
//!
//! [`entry_hash`] is the lowercase hex SHA-256 of these bytes, in order:
//!
//! | field | encoding |
//! | --- | --- |
//! | domain tag | the 19 ASCII bytes `sase-audit-chain-v1` |
//! | `seq` | 8 bytes, big-endian |
//! | `prev_hash` | a length-prefixed string |
//! | `at_ms` | 8 bytes, big-endian two's complement |
//! | `actor`, `action`, `subject` | a length-prefixed string each |
//! | `details` | its [`canonical_json`] text, length-prefixed |
//!
//! A length-prefixed string is its UTF-8 byte length (8 bytes, big-endian) followed by those
//! bytes. Canonical JSON has no whitespace, object keys sorted bytewise at every depth
//! (whatever order the map iterates in, so serde_json's `preserve_order` would not change a
//! hash), and serde_json's own text for strings, numbers, booleans and null. A float is
//! written as its shortest round-trip text; stores read it back exactly because this crate
//! turns on serde_json's `float_roundtrip` (its default parser may be one unit off in the
//! last place, which would break the chain).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::fmt::Write as _;

/// The `prev_hash` of the first entry: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The tag that starts every hashed encoding, naming its version.
const DOMAIN: &[u8] = b"sase-audit-chain-v1";

/// What happened, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct AuditRecord {
    /// When, Unix ms.
    pub at_ms: i64,
    /// Who: an admin's name, a requester, `system`, or (for an external event) the external
    /// system's user.
    pub actor: String,
    /// What, dotted: `request.approved`, `policy.put`, `admin.login_failed`, …
    pub action: String,
    /// To what: `request/req-…`, `policy/employees`, …
    pub subject: String,
    /// Anything else worth keeping (before and after, a reason), as JSON. Put text someone
    /// outside chose (a name typed at a failed login) here rather than in `actor` or
    /// `subject`: those may not contain a NUL, this may.
    pub details: Value,
}

impl AuditRecord {
    /// A record of `actor` doing `action` to `subject` at `at_ms`.
    pub fn new(
        at_ms: i64,
        actor: impl Into<String>,
        action: impl Into<String>,
        subject: impl Into<String>,
        details: Value,
    ) -> Self {
        Self {
            at_ms,
            actor: actor.into(),
            action: action.into(),
            subject: subject.into(),
            details,
        }
    }
}

/// A record in the chain. Serialized flat: `seq`, the record's fields, `prev_hash`, `hash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct AuditEntry {
    /// Its place in the chain: 1, 2, 3, … without gaps.
    pub seq: u64,
    /// What happened.
    #[serde(flatten)]
    pub record: AuditRecord,
    /// The previous entry's hash (hex); [`GENESIS`] for the first.
    pub prev_hash: String,
    /// [`entry_hash`] of this entry (hex), as stored.
    pub hash: String,
}

impl AuditEntry {
    /// The entry `seq` holding `record`, linked to `prev_hash` (the previous entry's hash, or
    /// [`GENESIS`] for seq 1), its hash computed: what a store appends.
    pub fn chained(seq: u64, prev_hash: impl Into<String>, record: AuditRecord) -> Self {
        let prev_hash = prev_hash.into();
        let hash = entry_hash(seq, &prev_hash, &record);
        Self {
            seq,
            record,
            prev_hash,
            hash,
        }
    }

    /// An entry as a store read it back, its hash as stored (not recomputed: that is the
    /// [`ChainVerifier`]'s check).
    pub fn stored(seq: u64, record: AuditRecord, prev_hash: String, hash: String) -> Self {
        Self {
            seq,
            record,
            prev_hash,
            hash,
        }
    }
}

/// The hash of entry `seq` holding `record` after an entry hashed `prev_hash`: lowercase hex
/// SHA-256 over the encoding the [module documentation](self) describes.
pub fn entry_hash(seq: u64, prev_hash: &str, record: &AuditRecord) -> String {
    fn field(hasher: &mut Sha256, bytes: &[u8]) {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    }
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update(seq.to_be_bytes());
    field(&mut hasher, prev_hash.as_bytes());
    hasher.update(record.at_ms.to_be_bytes());
    field(&mut hasher, record.actor.as_bytes());
    field(&mut hasher, record.action.as_bytes());
    field(&mut hasher, record.subject.as_bytes());
    field(&mut hasher, canonical_json(&record.details).as_bytes());
    format!("{:x}", hasher.finalize())
}

/// `value` as canonical JSON text: no whitespace, object keys sorted bytewise at every depth,
/// scalars as serde_json writes them. What [`entry_hash`] hashes, and what the SQL stores keep.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                // A key is written as the JSON string it is.
                let _ = write!(out, "{}", Value::from(key.as_str()));
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        // Null, booleans, numbers and strings: serde_json's compact text (writing to a
        // `String` cannot fail).
        scalar => {
            let _ = write!(out, "{scalar}");
        }
    }
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit entry {seq}: {reason}")]
pub struct ChainBreak {
    /// The first entry found wrong (or missing).
    pub seq: u64,
    /// What is wrong with it.
    pub reason: String,
}

fn broken(seq: u64, reason: impl Into<String>) -> ChainBreak {
    ChainBreak {
        seq,
        reason: reason.into(),
    }
}

/// Checks a chain read in seq order, from its first entry; pages of entries may be fed one
/// after another, so a long chain is checked in constant memory.
///
/// [`push`](Self::push) checks that seqs run 1, 2, 3, … without a gap, that each entry's
/// `prev_hash` is the previous entry's hash ([`GENESIS`] for the first) and that its hash is
/// [`entry_hash`] of its contents. [`finish`](Self::finish) checks that the last entry is the
/// head the store recorded, so a removed tail is found too.
///
/// ```
/// use sase_approval::audit::{AuditEntry, AuditRecord, ChainVerifier, GENESIS};
///
/// let first = AuditEntry::chained(1, GENESIS, AuditRecord::new(1, "admin", "policy.put", "policy/p", serde_json::json!({})));
/// let second = AuditEntry::chained(2, first.hash.clone(), AuditRecord::new(2, "admin", "admin.logout", "admin/admin", serde_json::json!(null)));
/// let mut verifier = ChainVerifier::new();
/// verifier.push(&first)?;
/// verifier.push(&second)?;
/// assert_eq!(verifier.finish(Some((2, second.hash.clone())))?, 2);
/// # Ok::<(), sase_approval::audit::ChainBreak>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ChainVerifier {
    /// The last entry accepted: its seq and hash.
    last: Option<(u64, String)>,
}

impl ChainVerifier {
    /// A verifier expecting entry 1 first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks `entry`, the next in the chain.
    ///
    /// # Errors
    /// A [`ChainBreak`] at `entry.seq` when its seq is not the one expected (an entry is
    /// missing or out of place), its `prev_hash` is not the previous entry's hash, or its hash
    /// is not that of its contents. After a break, the verifier is left as it was.
    pub fn push(&mut self, entry: &AuditEntry) -> Result<(), ChainBreak> {
        let (expected_seq, expected_prev) = match &self.last {
            None => (1, GENESIS),
            Some((seq, hash)) => (seq.saturating_add(1), hash.as_str()),
        };
        if entry.seq != expected_seq {
            return Err(broken(
                entry.seq,
                format!("found where entry {expected_seq} should be (an entry is missing or out of place)"),
            ));
        }
        if entry.prev_hash != expected_prev {
            return Err(broken(
                entry.seq,
                format!(
                    "its prev_hash {} is not the hash of entry {} ({expected_prev})",
                    entry.prev_hash,
                    entry.seq.saturating_sub(1)
                ),
            ));
        }
        let recomputed = entry_hash(entry.seq, &entry.prev_hash, &entry.record);
        if entry.hash != recomputed {
            return Err(broken(
                entry.seq,
                format!(
                    "its hash {} is not the hash of its contents ({recomputed})",
                    entry.hash
                ),
            ));
        }
        self.last = Some((entry.seq, entry.hash.clone()));
        Ok(())
    }

    /// Ends the check: the last entry pushed must be `head`, the `(seq, hash)` the store
    /// recorded with its last append (`None`: the chain is empty).
    ///
    /// Read the head first, then the entries up to its seq: entries appended meanwhile (past
    /// the head read) are not to be pushed, or the chain would not end at the head.
    ///
    /// # Errors
    /// A [`ChainBreak`] at the first entry missing when the chain ends before the head (a
    /// removed tail), at the first entry past the head when it goes on, and at the head's seq
    /// when the entry there is not the head.
    pub fn finish(self, head: Option<(u64, String)>) -> Result<u64, ChainBreak> {
        let last_seq = self.last.as_ref().map_or(0, |(seq, _)| *seq);
        let (head_seq, head_hash) = head.unwrap_or((0, GENESIS.to_owned()));
        if last_seq < head_seq {
            return Err(broken(
                last_seq + 1,
                format!("missing: the chain ends at entry {last_seq}, the store's head is entry {head_seq}"),
            ));
        }
        if last_seq > head_seq {
            return Err(broken(
                head_seq + 1,
                format!("past the store's head (entry {head_seq}): the chain goes on to entry {last_seq}"),
            ));
        }
        match self.last {
            Some((seq, hash)) if hash != head_hash => Err(broken(
                seq,
                format!("its hash {hash} is not the store's head {head_hash}"),
            )),
            _ => Ok(last_seq),
        }
    }
}

/// Which audit entries to list ([`ApprovalStore::list_audit`](crate::store::ApprovalStore::list_audit)),
/// by seq. Page through the chain with `after_seq` (the last seq of the page before) and
/// `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditFilter {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only actions starting with this (bytewise, case-sensitive): `request.` for every
    /// request's.
    pub action_prefix: Option<String>,
    /// Only this subject.
    pub subject: Option<String>,
    /// Only at or after, Unix ms.
    pub from_ms: Option<i64>,
    /// Only before, Unix ms.
    pub to_ms: Option<i64>,
    /// Only entries with a seq above this (0: from the first).
    pub after_seq: u64,
    /// At most this many (all, if zero).
    pub limit: usize,
}

impl AuditFilter {
    /// Whether `entry` passes the filter (`after_seq` included, `limit` aside).
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        let record = &entry.record;
        entry.seq > self.after_seq
            && self.actor.as_ref().is_none_or(|a| *a == record.actor)
            && self
                .action_prefix
                .as_ref()
                .is_none_or(|p| record.action.starts_with(p.as_str()))
            && self.subject.as_ref().is_none_or(|s| *s == record.subject)
            && self.from_ms.is_none_or(|t| record.at_ms >= t)
            && self.to_ms.is_none_or(|t| record.at_ms < t)
    }

    /// Only `actor`.
    #[must_use]
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Only actions starting with `prefix`.
    #[must_use]
    pub fn action_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.action_prefix = Some(prefix.into());
        self
    }

    /// Only `subject`.
    #[must_use]
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Only at or after `from_ms` and before `to_ms`.
    #[must_use]
    pub fn between(mut self, from_ms: Option<i64>, to_ms: Option<i64>) -> Self {
        self.from_ms = from_ms;
        self.to_ms = to_ms;
        self
    }

    /// A page: at most `limit` entries (0: all) after seq `after_seq`.
    #[must_use]
    pub fn page(mut self, after_seq: u64, limit: usize) -> Self {
        self.after_seq = after_seq;
        self.limit = limit;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(at_ms: i64, actor: &str) -> AuditRecord {
        AuditRecord::new(
            at_ms,
            actor,
            "request.approved",
            "request/req-1",
            json!({"note": "ok", "grant": {"id": "g-1", "ttl_s": 3600}, "f": 0.1}),
        )
    }

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut entries: Vec<AuditEntry> = Vec::new();
        for seq in 1..=n {
            let prev = entries.last().map_or(GENESIS.to_owned(), |e| e.hash.clone());
            let at_ms = 1_000 + i64::try_from(seq).unwrap_or(0);
            entries.push(AuditEntry::chained(seq, prev, record(at_ms, "admin")));
        }
        entries
    }

    fn verify(entries: &[AuditEntry], head: Option<(u64, String)>) -> Result<u64, ChainBreak> {
        let mut verifier = ChainVerifier::new();
        for entry in entries {
            verifier.push(entry)?;
        }
        verifier.finish(head)
    }

    fn head_of(entries: &[AuditEntry]) -> Option<(u64, String)> {
        entries.last().map(|e| (e.seq, e.hash.clone()))
    }

    /// The encoding is fixed: a change to it (or to how details are written) changes this.
    /// The hashes were also computed apart from this code, from the module documentation, in
    /// Python: `hashlib.sha256` over `struct.pack('>Q', …)` fields and `json.dumps(details,
    /// sort_keys=True, separators=(',', ':'), ensure_ascii=False)`.
    #[test]
    fn entry_hash_is_a_fixed_vector() {
        let record = AuditRecord::new(
            1_767_225_600_000,
            "admin",
            "request.approved",
            "request/req-1",
            json!({"z": [1, -2, 2.5, null, true], "a": {"y": "重装 \"x\"\n\u{0}", "b": 7.784722406916115e85}}),
        );
        assert_eq!(
            canonical_json(&record.details),
            r#"{"a":{"b":7.784722406916115e+85,"y":"重装 \"x\"\n\u0000"},"z":[1,-2,2.5,null,true]}"#
        );
        let first = entry_hash(1, GENESIS, &record);
        assert_eq!(
            first,
            "40d239746c368f26021a692b152e2614a851756906515ff1456160465f117fcb"
        );
        assert_eq!(
            entry_hash(2, &first, &record),
            "13ccaed1f5793d52b7b8fa4046b7b1f5fcad29fbcb413ead8754f24e26885450"
        );
    }

    #[test]
    fn every_field_is_in_the_hash_and_fields_do_not_run_together() {
        let base = record(5, "admin");
        let hash = entry_hash(3, GENESIS, &base);
        let mut changed = vec![
            entry_hash(4, GENESIS, &base),
            entry_hash(3, &"1".repeat(64), &base),
        ];
        for edit in [
            |r: &mut AuditRecord| r.at_ms = 6,
            |r: &mut AuditRecord| r.actor = "admin2".into(),
            |r: &mut AuditRecord| r.action = "request.rejected".into(),
            |r: &mut AuditRecord| r.subject = "request/req-2".into(),
            |r: &mut AuditRecord| r.details = json!({"note": "ok"}),
            // The same bytes, moved from one field to the next.
            |r: &mut AuditRecord| {
                r.actor = "admin.".into();
                r.action = "approved".into();
            },
        ] {
            let mut r = base.clone();
            edit(&mut r);
            changed.push(entry_hash(3, GENESIS, &r));
        }
        for (i, other) in changed.iter().enumerate() {
            assert_ne!(*other, hash, "change {i}");
        }
        // Key order does not matter: the same object built the other way round.
        let mut reordered = base.clone();
        reordered.details = json!({"f": 0.1, "grant": {"ttl_s": 3600, "id": "g-1"}, "note": "ok"});
        assert_eq!(entry_hash(3, GENESIS, &reordered), hash);
    }

    #[test]
    fn a_whole_chain_verifies_fed_in_pages() {
        let entries = chain(7);
        let mut verifier = ChainVerifier::new();
        for page in entries.chunks(3) {
            for entry in page {
                verifier.push(entry).unwrap();
            }
        }
        assert_eq!(verifier.finish(head_of(&entries)), Ok(7));
        assert_eq!(verify(&[], None), Ok(0), "an empty chain");
    }

    #[test]
    fn each_kind_of_damage_is_found_at_its_entry() {
        let entries = chain(5);
        let head = head_of(&entries);

        let mut edited = entries.clone();
        edited[2].record.actor = "mallory".into();
        assert_eq!(verify(&edited, head.clone()).unwrap_err().seq, 3);

        let mut rehashed = entries.clone();
        rehashed[2].record.actor = "mallory".into();
        rehashed[2].hash = entry_hash(3, &rehashed[2].prev_hash, &rehashed[2].record);
        let found = verify(&rehashed, head.clone()).unwrap_err();
        assert_eq!(found.seq, 4, "{found}");
        assert!(found.reason.contains("prev_hash"), "{found}");

        let mut removed = entries.clone();
        removed.remove(2);
        assert_eq!(verify(&removed, head.clone()).unwrap_err().seq, 4);

        let mut swapped = entries.clone();
        swapped.swap(1, 3);
        assert_eq!(
            verify(&swapped, head.clone()).unwrap_err().seq,
            4,
            "seqs out of order"
        );
        let mut contents_swapped = entries.clone();
        let (second, fourth) = (entries[1].clone(), entries[3].clone());
        contents_swapped[1] = AuditEntry::stored(2, fourth.record, fourth.prev_hash, fourth.hash);
        contents_swapped[3] = AuditEntry::stored(4, second.record, second.prev_hash, second.hash);
        assert_eq!(verify(&contents_swapped, head.clone()).unwrap_err().seq, 2);

        let mut bad_genesis = chain(1);
        bad_genesis[0] = AuditEntry::chained(1, "1".repeat(64), record(1, "admin"));
        assert_eq!(verify(&bad_genesis, head_of(&bad_genesis)).unwrap_err().seq, 1);

        let truncated = &entries[..4];
        let found = verify(truncated, head.clone()).unwrap_err();
        assert_eq!(found.seq, 5, "{found}");
        assert!(found.reason.contains("missing"), "{found}");

        let found = verify(&entries, Some((3, entries[2].hash.clone()))).unwrap_err();
        assert_eq!(found.seq, 4, "past the head: {found}");
        let found = verify(&entries, Some((5, entries[3].hash.clone()))).unwrap_err();
        assert_eq!(found.seq, 5, "not the head's hash: {found}");
        assert_eq!(verify(&[], head).unwrap_err().seq, 1, "every entry removed");
        assert_eq!(
            verify(&entries, None).unwrap_err().seq,
            1,
            "entries without a head"
        );
    }

    #[test]
    fn a_break_leaves_the_verifier_where_it_was() {
        let entries = chain(3);
        let mut verifier = ChainVerifier::new();
        verifier.push(&entries[0]).unwrap();
        assert!(verifier.push(&entries[2]).is_err());
        verifier.push(&entries[1]).unwrap();
        verifier.push(&entries[2]).unwrap();
        assert_eq!(verifier.finish(head_of(&entries)), Ok(3));
    }

    #[test]
    fn entries_serialize_flat_and_back() {
        let entry = chain(1).remove(0);
        let text = serde_json::to_value(&entry).unwrap();
        assert_eq!(text["seq"], 1);
        assert_eq!(text["actor"], "admin");
        assert_eq!(text["details"]["grant"]["id"], "g-1");
        assert_eq!(text["prev_hash"], GENESIS);
        let back: AuditEntry = serde_json::from_value(text).unwrap();
        assert_eq!(back, entry);
    }

    #[test]
    fn filters_match_by_each_field() {
        let entry = AuditEntry::chained(
            4,
            GENESIS,
            AuditRecord::new(100, "alice", "request.approved", "request/r1", json!(null)),
        );
        assert!(AuditFilter::default().matches(&entry));
        assert!(AuditFilter::default().actor("alice").matches(&entry));
        assert!(!AuditFilter::default().actor("Alice").matches(&entry));
        assert!(AuditFilter::default().action_prefix("request.").matches(&entry));
        assert!(!AuditFilter::default().action_prefix("Request.").matches(&entry));
        assert!(!AuditFilter::default().action_prefix("request_").matches(&entry));
        assert!(AuditFilter::default().subject("request/r1").matches(&entry));
        assert!(AuditFilter::default()
            .between(Some(100), Some(101))
            .matches(&entry));
        assert!(!AuditFilter::default().between(None, Some(100)).matches(&entry));
        assert!(AuditFilter::default().page(3, 1).matches(&entry));
        assert!(!AuditFilter::default().page(4, 0).matches(&entry));
    }
}
