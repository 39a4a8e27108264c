//! The journal seen run by run: every run with every attempt it made, for
//! `history`, `status --run` and the timeline of `report`.
//!
//! [`crate::state::history::History`] keeps what decides the plan (the latest
//! attempts of each step); this keeps everything, so it is only built by the
//! commands that look back.

use std::collections::HashMap;

use crate::journal::{Millis, Record, RunCounts};
use crate::state::history::{Attempt, Finished};

/// One `stepwise run`, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// The run's id, counting up from 1.
    pub id: u64,
    /// When it began.
    pub started_at: Millis,
    /// The runner's process id.
    pub pid: u32,
    /// When its `end` record was written, if it has one.
    pub ended_at: Option<Millis>,
    /// Its exit code; `None` when it has not ended or its runner died.
    pub exit_code: Option<i32>,
    /// The latest instant any record of it carries (its last sign of life),
    /// or its `end` record says it had.
    pub last_at: Millis,
    /// Its attempts, in the order they started, each with its step's name.
    /// Only those the journal still holds: compaction keeps only each
    /// step's latest ones, so an old run may have lost some or all.
    pub attempts: Vec<(String, Attempt)>,
    /// What it did: counted from its records as they are read, and taken
    /// from its `end` record, which carries them past compaction.
    pub counts: RunCounts,
}

impl Run {
    /// Attempts it finished.
    pub fn attempt_count(&self) -> usize {
        self.counts.ran as usize
    }

    /// How many steps it made attempts of ([`Run::steps`] names those
    /// whose attempts the journal still holds).
    pub fn step_count(&self) -> usize {
        self.counts.steps.map_or(0, |n| n as usize)
    }

    /// How many steps' last attempt in it did not succeed
    /// ([`Run::failed_steps`] names those the journal still holds).
    pub fn failed_step_count(&self) -> usize {
        self.counts.steps_failed.map_or(0, |n| n as usize)
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunResult {
    /// Every step in scope done (exit 0).
    Ok,
    /// A step failed or did not run (exit 1).
    Failed,
    /// Stopped by a signal to stepwise (exit 128 + the signal).
    Interrupted,
    /// stepwise itself failed (exit 2: the journal could not be written).
    Error,
    /// Its runner died (kill -9, power cut) before it could end.
    Killed,
    /// Still going, in another process.
    Running,
}

impl RunResult {
    /// The result in a word, as `history` prints it and `--json` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Ok => "ok",
            RunResult::Failed => "failed",
            RunResult::Interrupted => "interrupted",
            RunResult::Error => "error",
            RunResult::Killed => "killed",
            RunResult::Running => "running",
        }
    }
}

impl std::fmt::Display for RunResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl Run {
    /// How it ended; `live` is the id of the run in progress, if any.
    pub fn result(&self, live: Option<u64>) -> RunResult {
        match (self.ended_at, self.exit_code) {
            (Some(_), Some(0)) => RunResult::Ok,
            (Some(_), Some(1)) => RunResult::Failed,
            (Some(_), Some(code)) if code > 128 => RunResult::Interrupted,
            (Some(_), Some(_)) => RunResult::Error,
            (Some(_), None) => RunResult::Killed,
            (None, _) if live == Some(self.id) => RunResult::Running,
            (None, _) => RunResult::Killed,
        }
    }

    /// From its start to its end, or to its last record when its runner
    /// died (the `end` record a later run wrote for it says nothing about
    /// how long it ran).
    pub fn duration_ms(&self) -> u64 {
        let end = match (self.ended_at, self.exit_code) {
            (Some(at), Some(_)) => at,
            _ => self.last_at,
        };
        end.saturating_sub(self.started_at)
    }

    /// The steps it made attempts of, in the order they first started.
    pub fn steps(&self) -> Vec<&str> {
        let mut seen = Vec::new();
        for (name, _) in &self.attempts {
            if !seen.contains(&name.as_str()) {
                seen.push(name.as_str());
            }
        }
        seen
    }

    /// Its attempts of one step, in order.
    pub fn attempts_of<'a>(&'a self, step: &'a str) -> impl Iterator<Item = &'a Attempt> + 'a {
        self.attempts
            .iter()
            .filter(move |(n, _)| n == step)
            .map(|(_, a)| a)
    }

    /// The steps whose latest attempt in this run has not finished: while
    /// the run goes on ([`RunResult::Running`]), those running now.
    pub fn unfinished_steps(&self) -> Vec<&str> {
        let mut last: HashMap<&str, &Attempt> = HashMap::new();
        for (name, a) in &self.attempts {
            last.insert(name, a);
        }
        self.steps()
            .into_iter()
            .filter(|name| last.get(name).is_some_and(|a| a.finished.is_none()))
            .collect()
    }

    /// The steps whose last attempt in this run did not succeed.
    pub fn failed_steps(&self) -> Vec<&str> {
        let mut last: HashMap<&str, &Attempt> = HashMap::new();
        for (name, a) in &self.attempts {
            last.insert(name, a);
        }
        self.steps()
            .into_iter()
            .filter(|name| last.get(name).is_some_and(|a| !a.ok()))
            .collect()
    }
}

/// Every run of a journal, oldest first.
#[derive(Clone, Debug, Default)]
pub struct Runs {
    /// Oldest first.
    pub runs: Vec<Run>,
}

impl Runs {
    /// Folds records, oldest first.
    pub fn from_records(records: impl IntoIterator<Item = Record>) -> Runs {
        let mut runs: Vec<Run> = Vec::new();
        let mut index: HashMap<u64, usize> = HashMap::new();
        // (run, step, attempt) -> position in that run's attempts.
        let mut open: HashMap<(u64, String, u32), usize> = HashMap::new();
        // (run, step) -> position of the step's latest attempt in that run.
        let mut latest: HashMap<(u64, String), usize> = HashMap::new();
        for record in records {
            match record {
                Record::RunStarted { run, at, pid } => {
                    index.insert(run, runs.len());
                    runs.push(Run {
                        id: run,
                        started_at: at,
                        pid,
                        ended_at: None,
                        exit_code: None,
                        last_at: at,
                        attempts: Vec::new(),
                        counts: RunCounts::default(),
                    });
                }
                Record::RunFinished {
                    run,
                    at,
                    exit_code,
                    counts,
                } => {
                    if let Some(&i) = index.get(&run) {
                        let r = &mut runs[i];
                        r.ended_at = Some(at);
                        r.exit_code = exit_code;
                        if let Some(counts) = counts {
                            r.counts.take_recorded(counts);
                            r.last_at = r.last_at.max(r.counts.last_at.unwrap_or(0));
                        }
                        if exit_code.is_some() {
                            r.last_at = r.last_at.max(at);
                        }
                    }
                }
                Record::AttemptStarted {
                    run,
                    step,
                    attempt,
                    at,
                    ..
                } => {
                    if let Some(&i) = index.get(&run) {
                        let r = &mut runs[i];
                        r.last_at = r.last_at.max(at);
                        let before = latest
                            .insert((run, step.clone()), r.attempts.len())
                            .map(|j| r.attempts[j].1.ok());
                        r.counts.attempt_started(before, at);
                        open.insert((run, step.clone(), attempt), r.attempts.len());
                        r.attempts.push((
                            step,
                            Attempt {
                                run: Some(run),
                                number: attempt,
                                started_at: at,
                                finished: None,
                                stamp: None,
                                seq: 0,
                                job: None,
                            },
                        ));
                    }
                }
                Record::AttemptFinished {
                    run,
                    step,
                    attempt,
                    at,
                    duration_ms,
                    outcome,
                    value,
                } => {
                    let Some(&i) = index.get(&run) else { continue };
                    let r = &mut runs[i];
                    r.last_at = r.last_at.max(at);
                    let j = open.remove(&(run, step.clone(), attempt));
                    // Counted as the fold of `History` counts it: every
                    // finish of the run, deciding for its step only when it
                    // ends the step's latest attempt in the run.
                    let decides = j.is_some() && latest.get(&(run, step)) == j.as_ref();
                    r.counts.attempt_finished(outcome.ok(), decides, at);
                    if let Some(j) = j {
                        r.attempts[j].1.finished = Some(Finished {
                            at,
                            duration_ms,
                            outcome,
                            value,
                        });
                    }
                }
                Record::Submitted {
                    run,
                    step,
                    attempt,
                    job,
                    at,
                } => {
                    let Some(&i) = index.get(&run) else { continue };
                    let r = &mut runs[i];
                    r.last_at = r.last_at.max(at);
                    r.counts.seen(at);
                    if let Some(&j) = open.get(&(run, step, attempt)) {
                        r.attempts[j].1.job = Some(job);
                    }
                }
                Record::Forgotten { .. } | Record::Imported { .. } => {}
            }
        }
        Runs { runs }
    }

    /// The run with this id.
    pub fn get(&self, id: u64) -> Option<&Run> {
        self.runs.iter().rev().find(|r| r.id == id)
    }

    /// The last `n` runs, newest first.
    pub fn newest(&self, n: usize) -> impl Iterator<Item = &Run> {
        self.runs.iter().rev().take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Outcome;

    fn attempt(run: u64, step: &str, n: u32, at: u64, ok: bool) -> [Record; 2] {
        [
            Record::AttemptStarted {
                run,
                step: step.into(),
                attempt: n,
                at,
                stamp: None,
            },
            Record::AttemptFinished {
                run,
                step: step.into(),
                attempt: n,
                at: at + 10,
                duration_ms: 10,
                outcome: if ok {
                    Outcome::Success
                } else {
                    Outcome::Exited(1)
                },
                value: None,
            },
        ]
    }

    #[test]
    fn folds_runs_with_every_attempt() {
        let mut records = vec![Record::RunStarted {
            run: 1,
            at: 100,
            pid: 7,
        }];
        records.extend(attempt(1, "a", 1, 100, true));
        records.extend(attempt(1, "b", 1, 110, false));
        records.extend(attempt(1, "b", 2, 130, true));
        records.extend(attempt(1, "c", 1, 150, false));
        records.push(Record::RunFinished {
            run: 1,
            at: 170,
            exit_code: Some(1),
            counts: None,
        });
        records.push(Record::RunStarted {
            run: 2,
            at: 200,
            pid: 8,
        });
        records.push(Record::AttemptStarted {
            run: 2,
            step: "c".into(),
            attempt: 2,
            at: 210,
            stamp: None,
        });
        // Run 2's runner died; run 3 closed it.
        records.push(Record::RunFinished {
            run: 2,
            at: 900,
            exit_code: None,
            counts: None,
        });
        let runs = Runs::from_records(records);
        assert_eq!(runs.runs.len(), 2);
        let one = runs.get(1).unwrap();
        assert_eq!(one.steps(), ["a", "b", "c"]);
        assert_eq!(one.attempts_of("b").count(), 2);
        assert_eq!(one.failed_steps(), ["c"], "b's retry succeeded");
        assert_eq!(
            (
                one.step_count(),
                one.failed_step_count(),
                one.attempt_count()
            ),
            (3, 1, 4),
            "counted as they are named"
        );
        assert_eq!(one.result(None), RunResult::Failed);
        assert_eq!(one.duration_ms(), 70);
        let two = runs.get(2).unwrap();
        assert_eq!(two.result(None), RunResult::Killed);
        assert_eq!(two.duration_ms(), 10, "up to its last sign of life");
        assert_eq!(
            two.failed_steps(),
            ["c"],
            "an unfinished attempt did not succeed"
        );
        assert_eq!((two.step_count(), two.failed_step_count()), (1, 1));
        let newest: Vec<u64> = runs.newest(5).map(|r| r.id).collect();
        assert_eq!(newest, [2, 1]);
    }

    #[test]
    fn counts_come_from_the_end_record_when_the_attempts_are_gone() {
        // Run 1 as compaction leaves it: b's failed attempt dropped, a's
        // kept, the end carrying what the run did.
        let mut records = vec![Record::RunStarted {
            run: 1,
            at: 100,
            pid: 7,
        }];
        records.extend(attempt(1, "a", 1, 100, true));
        records.push(Record::RunFinished {
            run: 1,
            at: 900,
            exit_code: None,
            counts: Some(RunCounts {
                ran: 3,
                failed: 2,
                steps: Some(2),
                steps_failed: Some(1),
                last_at: Some(400),
            }),
        });
        let runs = Runs::from_records(records.clone());
        let one = runs.get(1).unwrap();
        assert_eq!(
            (
                one.step_count(),
                one.failed_step_count(),
                one.attempt_count()
            ),
            (2, 1, 3)
        );
        assert_eq!(
            one.failed_steps(),
            Vec::<&str>::new(),
            "b's records are gone"
        );
        assert_eq!(
            one.duration_ms(),
            300,
            "killed: up to its last sign of life"
        );

        // An `end` of a stepwise that counted only attempts: the steps are
        // counted from the records.
        records.pop();
        records.extend(attempt(1, "b", 1, 120, false));
        records.push(Record::RunFinished {
            run: 1,
            at: 900,
            exit_code: Some(1),
            counts: Some(RunCounts {
                ran: 2,
                failed: 1,
                ..RunCounts::default()
            }),
        });
        let runs = Runs::from_records(records);
        let one = runs.get(1).unwrap();
        assert_eq!(
            (
                one.step_count(),
                one.failed_step_count(),
                one.attempt_count()
            ),
            (2, 1, 2)
        );
        assert_eq!(one.failed_steps(), ["b"]);
    }

    #[test]
    fn a_run_in_progress_is_running() {
        let runs = Runs::from_records([Record::RunStarted {
            run: 4,
            at: 1,
            pid: 1,
        }]);
        assert_eq!(runs.get(4).unwrap().result(Some(4)), RunResult::Running);
        assert_eq!(runs.get(4).unwrap().result(None), RunResult::Killed);
    }
}
