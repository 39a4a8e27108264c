//! Compaction: the journal rewritten to hold only what the current state
//! needs, so it never grows without bound.
//!
//! Kept, per step: its latest successful attempt since its last forget (what
//! makes it done), its latest attempt (what `status` shows, and whose number
//! the next attempt continues from) and, if it was forgotten after that, the
//! forget. Kept for the newest [`RUNS_KEPT`] runs, and for any older run a
//! kept attempt belongs to: its start and its end, the end carrying what the
//! run did ([`RunCounts`](crate::journal::RunCounts): attempts finished and
//! failed, steps tried and failed, its last sign of life), which `history`
//! shows once the attempts it was counted from are gone. Everything else —
//! older attempts, retries, superseded successes — goes. The plan made from
//! the compacted journal is the plan made from the whole one, and `fsck`
//! finds it clean; a test checks exactly that.
//!
//! The order: the kept runs' starts, then each step's records in their
//! order, steps in the order they first appeared (a state dir without a
//! pipeline file lists its steps in that order), then the runs' ends. Every
//! run thus starts before its attempts, as `fsck` requires, and ends after
//! them, so the counts its end carries are the last word. (The journal's
//! own order, run by run, would reorder the steps whenever an earlier
//! step's kept attempts all came from a later run than another's.)
//!
//! Pure: [`compacted`] turns a [`History`] into records;
//! [`journal::rewrite`](crate::journal::rewrite) writes them atomically.

use std::collections::{BTreeMap, HashSet};

use crate::journal::Record;
use crate::state::history::{Attempt, History, RunInfo, StepHistory};

/// How many runs' summaries compaction keeps (the newest): `history` shows
/// them; older ones would make the journal grow with every run forever.
pub const RUNS_KEPT: usize = 1000;

/// Below this many records a journal is never compacted automatically.
pub const AUTO_MIN_RECORDS: usize = 10_000;
/// A journal holding this many times the records its state needs is
/// compacted automatically when a run opens it.
pub const AUTO_FACTOR: usize = 4;

/// The records that rebuild `history`'s current state: the kept runs'
/// starts, each step's kept attempts and forget in their original order,
/// steps in the order they first appeared, then the kept runs' ends.
pub fn compacted(history: &History) -> Vec<Record> {
    let runs = kept_runs(history);
    let mut out = Vec::new();
    for run in &runs {
        out.push(Record::RunStarted {
            run: run.id,
            at: run.started_at,
            pid: run.pid,
        });
    }
    for (name, h) in history.steps() {
        for item in kept(h) {
            match item {
                Kept::Attempt(a) => push_attempt(&mut out, name, a),
                Kept::Forget(at) => out.push(Record::Forgotten {
                    at,
                    steps: Some(vec![name.to_string()]),
                }),
            }
        }
    }
    for run in &runs {
        // Compaction runs under the lock, so a run without an end is one
        // whose runner died: it is closed here as `run` would close it
        // (at its last sign of life), or its counts would be lost with its
        // attempts.
        let (at, exit_code) = run.ended.unwrap_or_else(|| {
            let last = run.counts.last_at.unwrap_or(0).max(run.started_at);
            (last, None)
        });
        out.push(Record::RunFinished {
            run: run.id,
            at,
            exit_code,
            counts: Some(run.counts),
        });
    }
    out
}

/// The runs whose start and end compaction keeps, oldest first: the newest
/// [`RUNS_KEPT`], and any older one a kept attempt belongs to (its start
/// must come before the attempt's).
fn kept_runs(history: &History) -> Vec<&RunInfo> {
    let runs = history.runs();
    let newest = runs.len().saturating_sub(RUNS_KEPT);
    let mut older_needed = HashSet::new();
    if newest > 0 {
        for (_, h) in history.steps() {
            for item in kept(h) {
                if let Kept::Attempt(Attempt { run: Some(run), .. }) = item {
                    older_needed.insert(*run);
                }
            }
        }
    }
    runs.iter()
        .enumerate()
        .filter(|(i, r)| *i >= newest || older_needed.contains(&r.id))
        .map(|(_, r)| r)
        .collect()
}

enum Kept<'h> {
    Attempt(&'h Attempt),
    Forget(crate::journal::Millis),
}

/// What of one step survives compaction, in journal order: its latest
/// attempt, its latest attempt since the last forget, its latest success
/// since then, the latest attempt that really ran (it carries the attempt
/// count), and the last forget.
fn kept(h: &StepHistory) -> Vec<Kept<'_>> {
    let mut items: Vec<(u64, Kept<'_>)> = Vec::new();
    let candidates = [
        h.latest_real.as_ref().map(|(a, _)| a),
        h.last.as_ref(),
        h.current.as_ref(),
        h.success.as_ref(),
    ];
    for a in candidates.into_iter().flatten() {
        if !items.iter().any(|(seq, _)| *seq == a.seq) {
            items.push((a.seq, Kept::Attempt(a)));
        }
    }
    if let Some(at) = h.forgotten_at {
        items.push((h.forgotten_seq, Kept::Forget(at)));
    }
    items.sort_by_key(|(seq, _)| *seq);
    items.into_iter().map(|(_, item)| item).collect()
}

fn push_attempt(out: &mut Vec<Record>, name: &str, a: &Attempt) {
    let Some(run) = a.run else {
        // Imported: one import record, with the stamp it was given.
        let ok = a.ok();
        let mut stamps = BTreeMap::new();
        if let Some(stamp) = &a.stamp {
            stamps.insert(name.to_string(), (**stamp).clone());
        }
        out.push(Record::Imported {
            at: a.started_at,
            attempts: vec![(name.to_string(), ok)],
            stamps,
        });
        return;
    };
    out.push(Record::AttemptStarted {
        run,
        step: name.to_string(),
        attempt: a.number,
        at: a.started_at,
        stamp: a.stamp.as_deref().cloned(),
    });
    // Its Slurm job: what `status` shows, and what a later run re-attaches
    // to if it never finished.
    if let Some(job) = &a.job {
        out.push(Record::Submitted {
            run,
            step: name.to_string(),
            attempt: a.number,
            at: a.started_at,
            job: job.clone(),
        });
    }
    if let Some(f) = &a.finished {
        out.push(Record::AttemptFinished {
            run,
            step: name.to_string(),
            attempt: a.number,
            at: f.at,
            duration_ms: f.duration_ms,
            outcome: f.outcome.clone(),
            value: f.value.clone(),
        });
    }
}

/// How many records [`compacted`] would produce, without producing them.
pub fn needed(history: &History) -> usize {
    let steps: usize = history
        .steps()
        .iter()
        .flat_map(|(_, h)| kept(h))
        .map(|item| match item {
            Kept::Attempt(a) if a.run.is_some() => {
                1 + usize::from(a.finished.is_some()) + usize::from(a.job.is_some())
            }
            _ => 1,
        })
        .sum();
    steps + 2 * kept_runs(history).len()
}

/// Whether a journal of `records` records holding `history` is worth
/// compacting on its own.
pub fn worth_it(records: usize, history: &History) -> bool {
    records >= AUTO_MIN_RECORDS && records > AUTO_FACTOR * needed(history).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Outcome, Stamp};
    use crate::plan::plan;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Event {
        Attempt {
            step: usize,
            ok: Option<bool>,
        },
        Forget(usize),
        ForgetAll,
        Import {
            step: usize,
            ok: bool,
        },
        /// A run starts; the previous one ended: 0 by itself, its `end`
        /// carrying its counts; 1 by itself, written by a stepwise that
        /// recorded no counts; 2 killed, closed by this one; 3 killed, not
        /// closed (only [`compacted`] on its own meets that).
        Run(u8),
    }

    fn events() -> impl Strategy<Value = Vec<Event>> {
        let event = prop_oneof![
            4 => (0usize..4, prop::option::of(any::<bool>())).prop_map(|(step, ok)| Event::Attempt { step, ok }),
            1 => (0usize..4).prop_map(Event::Forget),
            1 => Just(Event::ForgetAll),
            1 => (0usize..4, any::<bool>()).prop_map(|(step, ok)| Event::Import { step, ok }),
            1 => (0u8..4).prop_map(Event::Run),
        ];
        prop::collection::vec(event, 0..40)
    }

    fn records(events: &[Event]) -> Vec<Record> {
        let mut out = Vec::new();
        let mut run = 0u64;
        let mut attempts = [0u32; 4];
        let mut at = 0;
        for e in events {
            at += 1;
            match *e {
                Event::Run(ended) => {
                    // What the runner, or the next run, writes: the counts
                    // of the journal so far.
                    let counts = History::from_records(out.clone())
                        .run(run)
                        .map(|r| r.counts);
                    let end = match ended {
                        0 => Some((Some(0), counts)),
                        1 => Some((Some(1), None)),
                        2 => Some((None, counts)),
                        _ => None,
                    };
                    if let (true, Some((exit_code, counts))) = (run > 0, end) {
                        out.push(Record::RunFinished {
                            run,
                            at,
                            exit_code,
                            counts,
                        });
                    }
                    run += 1;
                    out.push(Record::RunStarted { run, at, pid: 1 });
                }
                Event::Attempt { step, ok } => {
                    // An attempt is made by a run.
                    if run == 0 {
                        run = 1;
                        out.push(Record::RunStarted { run, at, pid: 1 });
                    }
                    attempts[step] += 1;
                    let stamp = Some(Stamp::new(
                        crate::fingerprint::text(&format!("v{}", at % 3)),
                        Default::default(),
                    ));
                    out.push(Record::AttemptStarted {
                        run,
                        step: format!("s{step}"),
                        attempt: attempts[step],
                        at,
                        stamp,
                    });
                    // Every other attempt went to Slurm: its job id must
                    // survive compaction, finished or not.
                    if at % 2 == 0 {
                        out.push(Record::Submitted {
                            run,
                            step: format!("s{step}"),
                            attempt: attempts[step],
                            at,
                            job: format!("{at}"),
                        });
                    }
                    if let Some(ok) = ok {
                        out.push(Record::AttemptFinished {
                            run,
                            step: format!("s{step}"),
                            attempt: attempts[step],
                            at,
                            duration_ms: 1,
                            outcome: if ok {
                                Outcome::Success
                            } else {
                                Outcome::Exited(1)
                            },
                            // A library step's value must survive compaction.
                            value: ok.then(|| {
                                crate::journal::StepValue::File(crate::fingerprint::text(&format!(
                                    "value {at}"
                                )))
                            }),
                        });
                    }
                }
                Event::Forget(step) => out.push(Record::Forgotten {
                    at,
                    steps: Some(vec![format!("s{step}")]),
                }),
                Event::ForgetAll => out.push(Record::Forgotten { at, steps: None }),
                Event::Import { step, ok } => out.push(Record::Imported {
                    at,
                    attempts: vec![(format!("s{step}"), ok)],
                    stamps: Default::default(),
                }),
            }
        }
        out
    }

    fn pipeline() -> crate::Pipeline {
        let mut src = String::new();
        for i in 0..4 {
            src.push_str(&format!(
                "[[step]]\nname = \"s{i}\"\nrun = \"true\"\nafter = []\n"
            ));
        }
        crate::Pipeline::parse("p.toml".as_ref(), "/".as_ref(), &src).unwrap()
    }

    fn bytes(records: &[Record]) -> Vec<u8> {
        records.iter().flat_map(Record::to_line).collect()
    }

    /// `history --json`'s view of every run, but for the names of the
    /// failed steps (compaction drops the records of most of them).
    fn history_view(records: Vec<Record>) -> Vec<(serde_json::Value, Vec<String>)> {
        let runs = crate::state::runs::Runs::from_records(records);
        runs.runs
            .iter()
            .map(|r| {
                let mut doc = crate::view::history::run_json(r, None);
                let failed = doc.as_object_mut().unwrap().remove("failed").unwrap();
                (doc, serde_json::from_value(failed).unwrap())
            })
            .collect()
    }

    #[test]
    fn a_run_older_than_those_kept_is_kept_when_a_kept_attempt_belongs_to_it() {
        // `a` ran in run 1 only; `b` in every run, 2 + RUNS_KEPT of them.
        let mut records = Vec::new();
        let runs = 2 + RUNS_KEPT as u64;
        for run in 1..=runs {
            let at = run * 10;
            records.push(Record::RunStarted { run, at, pid: 1 });
            let steps: &[&str] = if run == 1 { &["a", "b"] } else { &["b"] };
            for step in steps {
                let attempt = if *step == "a" { 1 } else { run as u32 };
                records.push(Record::AttemptStarted {
                    run,
                    step: step.to_string(),
                    attempt,
                    at,
                    stamp: None,
                });
                records.push(Record::AttemptFinished {
                    run,
                    step: step.to_string(),
                    attempt,
                    at: at + 1,
                    duration_ms: 1,
                    outcome: Outcome::Success,
                    value: None,
                });
            }
            records.push(Record::RunFinished {
                run,
                at: at + 2,
                exit_code: Some(0),
                counts: None,
            });
        }
        let whole = History::from_records(records);
        let compact = compacted(&whole);
        let x = crate::state::fsck::examine(&bytes(&compact));
        assert_eq!(x.problems(), 0, "{:?}", x.inconsistencies);
        let small = History::from_records(compact);
        let ids: Vec<u64> = small.runs().iter().map(|r| r.id).collect();
        let want: Vec<u64> = std::iter::once(1).chain(3..=runs).collect();
        assert_eq!(
            ids, want,
            "run 1, for a's attempt, then the newest {RUNS_KEPT}"
        );
        assert_eq!(small.run(1), whole.run(1));
        assert_eq!(compacted(&whole).len(), needed(&whole));
    }

    proptest! {
        #[test]
        fn the_compacted_journal_plans_and_reports_like_the_whole_one(events in events()) {
            let records = records(&events);
            let whole = History::from_records(records.clone());
            let compact = compacted(&whole);
            let small = History::from_records(compact.clone());
            // A journal fsck finds clean compacts to one it finds clean.
            let before = crate::state::fsck::examine(&bytes(&records));
            prop_assert_eq!(before.problems(), 0, "{:?}", before.inconsistencies);
            let after = crate::state::fsck::examine(&bytes(&compact));
            prop_assert_eq!(after.problems(), 0, "{:?}", after.inconsistencies);
            // `history` shows every run as it did: counts, durations,
            // results; it names only failed steps whose records it kept.
            let shown = history_view(records);
            let kept = history_view(compact);
            prop_assert_eq!(shown.len(), kept.len());
            for ((doc, failed), (kept_doc, kept_failed)) in shown.iter().zip(&kept) {
                prop_assert_eq!(doc, kept_doc);
                prop_assert!(kept_failed.iter().all(|f| failed.contains(f)), "{:?} {:?}", failed, kept_failed);
            }
            // Steps are listed in the order they first appeared.
            prop_assert_eq!(small.step_names(), whole.step_names());
            let p = pipeline();
            let scope = p.scope(&[]);
            let a = plan(&p, &whole, &scope, None, None);
            let b = plan(&p, &small, &scope, None, None);
            prop_assert_eq!(&a, &b);
            for (name, h) in whole.steps() {
                let s = small.step(name).expect("every step is kept");
                prop_assert_eq!(s.attempts_started, h.attempts_started, "{}", name);
                prop_assert_eq!(&s.last, &h.last, "{}", name);
                prop_assert_eq!(&s.success, &h.success, "{}", name);
                prop_assert_eq!(&s.current, &h.current, "{}", name);
            }
            prop_assert_eq!(small.next_run(), whole.next_run());
            prop_assert_eq!(compacted(&whole).len(), needed(&whole));
            let runs: Vec<_> = whole.runs().iter().map(|r| (r.id, r.counts, r.ended.map(|e| e.1))).collect();
            let kept: Vec<_> = small.runs().iter().map(|r| (r.id, r.counts, r.ended.map(|e| e.1))).collect();
            let dead_closed: Vec<_> = runs.iter().map(|&(id, c, e)| (id, c, Some(e.flatten()))).collect();
            prop_assert_eq!(kept, dead_closed);
            // Compacting again changes nothing.
            prop_assert_eq!(compacted(&small), compacted(&whole));
        }
    }
}
