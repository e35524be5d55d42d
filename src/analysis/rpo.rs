//! Data loss and write-path recovery of a database drill: the lost-write check.
//!
//! Pure functions over a writer's history (every write it attempted, with its outcome) and the
//! set of sequence numbers read back from the new primary after recovery. No I/O, no clocks.
//!
//! The check is the classic one from linearizability testing, reduced to a set: a write the
//! database *acknowledged* must be readable afterwards; if it is not, it was lost, and that
//! is the recovery point objective's number. A write whose outcome the client cannot know (the
//! connection died, or timed out, while the commit was in flight) is *indeterminate*: finding
//! it or not finding it are both correct behaviours, so indeterminate writes are reported,
//! found and not found separately, and never counted as lost. A write that *failed* before its
//! commit could have been sent must not be found; if it is, the writer misclassified it, and
//! the report says so instead of hiding it.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Bracket;
use crate::timeline::secs;

/// What the client knows about one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WriteOutcome {
    /// The server confirmed the commit.
    Acknowledged,
    /// Definitely not committed: no connection, or the server rejected the statement.
    Failed,
    /// Unknown: the connection was lost or the write timed out after it was sent.
    Indeterminate,
}

/// One write attempt, stamped with offsets on the run's clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteAttempt {
    pub seq: u64,
    /// When the attempt started (including any reconnect it needed).
    #[serde(rename = "sent_s", with = "secs")]
    pub sent: Duration,
    /// When its outcome was known.
    #[serde(rename = "done_s", with = "secs")]
    pub done: Duration,
    pub outcome: WriteOutcome,
    /// Why it did not succeed, for people.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

/// The interval a set of writes was attempted in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// The earliest write's start.
    #[serde(rename = "from_s", with = "secs")]
    pub from: Duration,
    /// The latest write's acknowledgement.
    #[serde(rename = "to_s", with = "secs")]
    pub to: Duration,
}

impl Span {
    pub fn length(&self) -> Duration {
        self.to.saturating_sub(self.from)
    }
}

/// The lost-write verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpoReport {
    pub attempted: u64,
    pub acknowledged: u64,
    pub failed: u64,
    pub indeterminate: u64,
    /// Acknowledged but not read back: the RPO as a count.
    pub lost: u64,
    /// The first [`RpoReport::MAX_LISTED`] lost sequence numbers, ascending.
    pub lost_seqs: Vec<u64>,
    /// The time the lost writes cover (`None` when nothing was lost).
    pub lost_span: Option<Span>,
    /// Indeterminate writes that did commit.
    pub indeterminate_found: u64,
    /// Indeterminate writes that did not commit. Never counted as lost.
    pub indeterminate_missing: u64,
    /// Writes classified as failed that were read back anyway: a writer bug, not data loss.
    pub failed_but_found: Vec<u64>,
    /// Rows read back that the history never attempted (another writer used this run id).
    pub unexpected: u64,
}

impl RpoReport {
    pub const MAX_LISTED: usize = 100;

    /// No acknowledged write was lost.
    pub fn zero_loss(&self) -> bool {
        self.lost == 0
    }
}

/// Compare the writer's history with the sequence numbers read back after recovery.
pub fn check_writes(history: &[WriteAttempt], read_back: &HashSet<u64>) -> RpoReport {
    let mut r = RpoReport {
        attempted: history.len() as u64,
        acknowledged: 0,
        failed: 0,
        indeterminate: 0,
        lost: 0,
        lost_seqs: vec![],
        lost_span: None,
        indeterminate_found: 0,
        indeterminate_missing: 0,
        failed_but_found: vec![],
        unexpected: 0,
    };
    let mut attempted: HashSet<u64> = HashSet::with_capacity(history.len());
    let mut lost_seqs = Vec::new();
    for w in history {
        attempted.insert(w.seq);
        let found = read_back.contains(&w.seq);
        match w.outcome {
            WriteOutcome::Acknowledged => {
                r.acknowledged += 1;
                if !found {
                    r.lost += 1;
                    lost_seqs.push(w.seq);
                    let span = r.lost_span.get_or_insert(Span {
                        from: w.sent,
                        to: w.done,
                    });
                    span.from = span.from.min(w.sent);
                    span.to = span.to.max(w.done);
                }
            }
            WriteOutcome::Failed => {
                r.failed += 1;
                if found {
                    r.failed_but_found.push(w.seq);
                }
            }
            WriteOutcome::Indeterminate => {
                r.indeterminate += 1;
                if found {
                    r.indeterminate_found += 1;
                } else {
                    r.indeterminate_missing += 1;
                }
            }
        }
    }
    lost_seqs.sort_unstable();
    lost_seqs.truncate(RpoReport::MAX_LISTED);
    r.lost_seqs = lost_seqs;
    r.failed_but_found.sort_unstable();
    r.failed_but_found.truncate(RpoReport::MAX_LISTED);
    r.unexpected = read_back.iter().filter(|s| !attempted.contains(s)).count() as u64;
    r
}

/// Recovery as the write path saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WritePathRecovery {
    /// Time to recover from the injection: the write path was down when the last unacknowledged
    /// attempt started and up when the first acknowledged one after it ended.
    pub rto: Bracket,
    /// The gap between the last commit before the outage and the first after it. Each commit
    /// happened inside its write's `[sent, done]`, so the gap lies in
    /// `[after.sent − before.done, after.done − before.sent]`.
    pub outage: Bracket,
    /// The last acknowledged write before the outage (`None` when the writer never succeeded
    /// before it).
    pub last_ack_before: Option<u64>,
    pub first_ack_after: u64,
    /// Attempts that were not acknowledged from the start of the outage to its end.
    pub unacknowledged: u64,
}

/// Write-path recovery after a fault accepted at `t_inject`: `None` when no write failed after
/// the fault (no visible impact) or the writer never succeeded again (not recovered).
///
/// Like a probe's TTR, the outage ends at the first acknowledged write after the *last*
/// unacknowledged one, and starts at the first unacknowledged attempt at or after `t_inject`.
pub fn write_path_recovery(
    history: &[WriteAttempt],
    t_inject: Duration,
) -> Option<WritePathRecovery> {
    let acked = |w: &WriteAttempt| w.outcome == WriteOutcome::Acknowledged;
    let first_bad = history
        .iter()
        .position(|w| w.done >= t_inject && !acked(w))?;
    let last_bad = history.iter().rposition(|w| !acked(w))?;
    let after = history[last_bad + 1..].iter().find(|w| acked(w))?;
    let before = history[..first_bad].iter().rev().find(|w| acked(w));
    let since = |d: Duration| d.saturating_sub(t_inject);
    let rto = Bracket::new(since(history[last_bad].sent), since(after.done));
    let outage = match before {
        Some(b) => Bracket::new(
            after.sent.saturating_sub(b.done),
            after.done.saturating_sub(b.sent),
        ),
        None => Bracket::new(
            after.sent.saturating_sub(history[first_bad].sent),
            after.done.saturating_sub(history[first_bad].sent),
        ),
    };
    Some(WritePathRecovery {
        rto,
        outage,
        last_ack_before: before.map(|b| b.seq),
        first_ack_after: after.seq,
        unacknowledged: history[first_bad..=last_bad]
            .iter()
            .filter(|w| !acked(w))
            .count() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// A writer history at 10 ms per write: acknowledged, then an outage of failed and
    /// indeterminate attempts, then acknowledged again.
    fn history(rng: &mut ChaCha8Rng) -> Vec<WriteAttempt> {
        let n = rng.random_range(20..400u64);
        let outage_start = rng.random_range(1..n);
        let outage_end = rng.random_range(outage_start..n);
        (0..n)
            .map(|seq| {
                let outcome = if (outage_start..outage_end).contains(&seq) {
                    if rng.random_bool(0.3) {
                        WriteOutcome::Indeterminate
                    } else {
                        WriteOutcome::Failed
                    }
                } else if rng.random_bool(0.01) {
                    WriteOutcome::Indeterminate
                } else {
                    WriteOutcome::Acknowledged
                };
                WriteAttempt {
                    seq,
                    sent: ms(seq * 10),
                    done: ms(seq * 10 + rng.random_range(1..9)),
                    outcome,
                    reason: None,
                }
            })
            .collect()
    }

    /// What a correct database returns: every acknowledged write, and any indeterminate ones.
    fn clean_read_back(h: &[WriteAttempt], rng: &mut ChaCha8Rng) -> HashSet<u64> {
        h.iter()
            .filter(|w| match w.outcome {
                WriteOutcome::Acknowledged => true,
                WriteOutcome::Indeterminate => rng.random_bool(0.5),
                WriteOutcome::Failed => false,
            })
            .map(|w| w.seq)
            .collect()
    }

    #[test]
    fn a_thousand_clean_histories_have_no_false_positives() {
        let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_0001);
        for _ in 0..1000 {
            let h = history(&mut rng);
            let back = clean_read_back(&h, &mut rng);
            let r = check_writes(&h, &back);
            assert_eq!(r.lost, 0, "{r:?}");
            assert!(r.lost_span.is_none());
            assert!(r.failed_but_found.is_empty());
            assert_eq!(
                r.indeterminate_found + r.indeterminate_missing,
                r.indeterminate
            );
            assert_eq!(r.acknowledged + r.failed + r.indeterminate, r.attempted);
            assert_eq!(r.unexpected, 0);
        }
    }

    #[test]
    fn a_thousand_histories_with_injected_loss_are_all_detected_exactly() {
        let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_0002);
        for _ in 0..1000 {
            let h = history(&mut rng);
            let mut back = clean_read_back(&h, &mut rng);
            let acked: Vec<&WriteAttempt> = h
                .iter()
                .filter(|w| w.outcome == WriteOutcome::Acknowledged)
                .collect();
            // Lose a tail of acknowledged writes (what async replication loses), sometimes
            // also a random one: between 1 and 5 in all.
            let k = rng.random_range(1..=acked.len().min(5));
            let mut dropped: Vec<u64> = Vec::new();
            for w in acked.iter().rev().take(k) {
                back.remove(&w.seq);
                dropped.push(w.seq);
            }
            if rng.random_bool(0.3) && acked.len() > k {
                let w = acked[rng.random_range(0..acked.len() - k)];
                back.remove(&w.seq);
                dropped.push(w.seq);
            }
            dropped.sort_unstable();
            let r = check_writes(&h, &back);
            assert_eq!(r.lost, dropped.len() as u64);
            assert_eq!(r.lost_seqs, dropped);
            let span = r.lost_span.unwrap();
            let first = h.iter().find(|w| w.seq == dropped[0]).unwrap();
            let last = h
                .iter()
                .find(|w| w.seq == *dropped.last().unwrap())
                .unwrap();
            assert_eq!(span.from, first.sent);
            assert_eq!(span.to, last.done);
        }
    }

    #[test]
    fn indeterminate_writes_are_never_lost_and_failed_ones_found_are_flagged() {
        let w = |seq, outcome| WriteAttempt {
            seq,
            sent: ms(seq),
            done: ms(seq + 1),
            outcome,
            reason: None,
        };
        let h = vec![
            w(1, WriteOutcome::Acknowledged),
            w(2, WriteOutcome::Indeterminate),
            w(3, WriteOutcome::Indeterminate),
            w(4, WriteOutcome::Failed),
        ];
        let back: HashSet<u64> = [1, 3, 4, 99].into_iter().collect();
        let r = check_writes(&h, &back);
        assert_eq!(r.lost, 0);
        assert_eq!((r.indeterminate_found, r.indeterminate_missing), (1, 1));
        assert_eq!(r.failed_but_found, vec![4]);
        assert_eq!(r.unexpected, 1);
    }

    #[test]
    fn write_path_recovery_brackets_the_outage() {
        use WriteOutcome::*;
        let w = |seq: u64, sent: u64, done: u64, outcome| WriteAttempt {
            seq,
            sent: ms(sent),
            done: ms(done),
            outcome,
            reason: None,
        };
        let h = vec![
            w(1, 0, 2, Acknowledged),
            w(2, 10, 12, Acknowledged),
            w(3, 20, 120, Indeterminate),
            w(4, 130, 140, Failed),
            w(5, 150, 160, Failed),
            w(6, 170, 175, Acknowledged),
            w(7, 180, 182, Acknowledged),
        ];
        // Fault accepted at 15 ms.
        let r = write_path_recovery(&h, ms(15)).unwrap();
        assert_eq!(r.last_ack_before, Some(2));
        assert_eq!(r.first_ack_after, 6);
        assert_eq!(r.unacknowledged, 3);
        assert_eq!((r.rto.lower, r.rto.upper), (ms(135), ms(160)));
        assert_eq!((r.outage.lower, r.outage.upper), (ms(158), ms(165)));
        // No failure after the fault: no visible impact.
        assert!(write_path_recovery(&h[..2], ms(15)).is_none());
        // Never acknowledged again: not recovered.
        assert!(write_path_recovery(&h[..5], ms(15)).is_none());
    }
}
