//! Compaction: the journal rewritten to hold only what the current state
//! needs, so it never grows without bound.
//!
//! Kept, per step: its latest successful attempt since its last forget (what
//! makes it done), its latest attempt (what `status` shows, and whose number
//! the next attempt continues from) and, if it was forgotten after that, the
//! forget. Kept for every run: its start and end, with how many attempts it
//! finished and how many failed (the newest [`RUNS_KEPT`] runs). Everything else — older attempts, retries,
//! superseded successes — goes. The plan made from the compacted journal is
//! the plan made from the whole one; a test checks exactly that.
//!
//! Pure: [`compacted`] turns a [`History`] into records;
//! [`journal::rewrite`](crate::journal::rewrite) writes them atomically.

use std::collections::BTreeMap;

use crate::history::{Attempt, History, StepHistory};
use crate::journal::Record;

/// How many runs' summaries compaction keeps (the newest): `history` shows
/// them; older ones would make the journal grow with every run forever.
pub const RUNS_KEPT: usize = 1000;

/// Below this many records a journal is never compacted automatically.
pub const AUTO_MIN_RECORDS: usize = 10_000;
/// A journal holding this many times the records its state needs is
/// compacted automatically when a run opens it.
pub const AUTO_FACTOR: usize = 4;

/// The records that rebuild `history`'s current state: each step's kept
/// attempts and forget in their original order, steps in the order they
/// first appeared, then every run's summary.
pub fn compacted(history: &History) -> Vec<Record> {
    let mut out = Vec::new();
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
    let runs = history.runs();
    for run in &runs[runs.len().saturating_sub(RUNS_KEPT)..] {
        out.push(Record::RunStarted {
            run: run.id,
            at: run.started_at,
            pid: run.pid,
        });
        // Compaction runs under the lock, so a run without an end is one
        // whose runner died: it is closed here as `run` would close it, or
        // its counts would be lost with its attempts.
        let (at, exit_code) = run.ended.unwrap_or((run.started_at, None));
        out.push(Record::RunFinished {
            run: run.id,
            at,
            exit_code,
            counts: Some(run.counts),
        });
    }
    out
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
    steps + 2 * history.runs().len().min(RUNS_KEPT)
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
        Attempt { step: usize, ok: Option<bool> },
        Forget(usize),
        ForgetAll,
        Import { step: usize, ok: bool },
        Run,
    }

    fn events() -> impl Strategy<Value = Vec<Event>> {
        let event = prop_oneof![
            4 => (0usize..4, prop::option::of(any::<bool>())).prop_map(|(step, ok)| Event::Attempt { step, ok }),
            1 => (0usize..4).prop_map(Event::Forget),
            1 => Just(Event::ForgetAll),
            1 => (0usize..4, any::<bool>()).prop_map(|(step, ok)| Event::Import { step, ok }),
            1 => Just(Event::Run),
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
                Event::Run => {
                    if run > 0 {
                        out.push(Record::RunFinished {
                            run,
                            at,
                            exit_code: Some(0),
                            counts: None,
                        });
                    }
                    run += 1;
                    out.push(Record::RunStarted { run, at, pid: 1 });
                }
                Event::Attempt { step, ok } => {
                    attempts[step] += 1;
                    let stamp = Some(Stamp::new(
                        crate::fingerprint::text(&format!("v{}", at % 3)),
                        Default::default(),
                    ));
                    out.push(Record::AttemptStarted {
                        run: run.max(1),
                        step: format!("s{step}"),
                        attempt: attempts[step],
                        at,
                        stamp,
                    });
                    // Every other attempt went to Slurm: its job id must
                    // survive compaction, finished or not.
                    if at % 2 == 0 {
                        out.push(Record::Submitted {
                            run: run.max(1),
                            step: format!("s{step}"),
                            attempt: attempts[step],
                            at,
                            job: format!("{at}"),
                        });
                    }
                    if let Some(ok) = ok {
                        out.push(Record::AttemptFinished {
                            run: run.max(1),
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

    proptest! {
        #[test]
        fn the_compacted_journal_plans_and_reports_like_the_whole_one(events in events()) {
            let whole = History::from_records(records(&events));
            let small = History::from_records(compacted(&whole));
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
