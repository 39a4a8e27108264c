//! The plan: for every step in scope, run it or skip it, and why.
//!
//! The decision itself is the seed contract,
//! [`resume_from_checkpoint`](crate::resume_from_checkpoint), applied to the
//! checkpoint the [`History`] holds; this module only adds the words.

use std::fmt;

use serde::Serialize;

use crate::checkpoint::resume_from_checkpoint;
use crate::history::{Attempt, History};
use crate::journal::Outcome;
use crate::pipeline::{Pipeline, StepId};
use crate::time::{format_duration_ms, format_time};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Run,
    Skip,
}

/// Where a step stands, as far as the journal knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum State {
    /// Succeeded in a run.
    #[serde(rename = "done")]
    Done,
    /// Marked successful by `checkpoint import`.
    #[serde(rename = "imported")]
    Imported,
    /// Its latest attempt failed.
    #[serde(rename = "failed")]
    Failed,
    /// Its latest attempt started and never finished: the runner was killed.
    #[serde(rename = "interrupted")]
    Interrupted,
    /// Its latest attempt is running right now, in another process.
    #[serde(rename = "running")]
    Running,
    /// `stepwise forget` was asked for it after its last attempt.
    #[serde(rename = "forgotten")]
    Forgotten,
    /// No attempt recorded.
    #[serde(rename = "never run")]
    NeverRun,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Done => "done",
            State::Imported => "imported",
            State::Failed => "failed",
            State::Interrupted => "interrupted",
            State::Running => "running",
            State::Forgotten => "forgotten",
            State::NeverRun => "never run",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The decision for one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepPlan {
    pub id: StepId,
    pub action: Action,
    pub state: State,
    /// The reason, in words.
    pub reason: String,
}

/// The decision for every step in scope, in pipeline order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<StepPlan>,
}

impl Plan {
    pub fn done(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.action == Action::Skip)
            .count()
    }

    pub fn remaining(&self) -> usize {
        self.steps.len() - self.done()
    }

    /// The steps that will run, in pipeline order.
    pub fn to_run(&self) -> impl Iterator<Item = StepId> + '_ {
        self.steps
            .iter()
            .filter(|s| s.action == Action::Run)
            .map(|s| s.id)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Resume plan: {} done, {} remaining",
            self.done(),
            self.remaining()
        )
    }
}

/// Plans the steps of `pipeline` that `scope` marks (see
/// [`Pipeline::scope`]). `live_run` is the id of a run in progress in another
/// process, if any: its unfinished attempts are running, not interrupted.
pub fn plan(pipeline: &Pipeline, history: &History, scope: &[bool], live_run: Option<u64>) -> Plan {
    let in_scope: Vec<&str> = pipeline
        .ids()
        .filter(|id| scope[id.index()])
        .map(|id| pipeline.step(id).name.as_str())
        .collect();
    let seed = resume_from_checkpoint(&in_scope, history.checkpoint());
    let mut done = vec![false; pipeline.steps.len()];
    for name in seed.done {
        if let Some(id) = pipeline.find(name) {
            done[id.index()] = true;
        }
    }
    let steps = pipeline
        .ids()
        .filter(|id| scope[id.index()])
        .map(|id| {
            let h = history.step(&pipeline.step(id).name);
            let (state, reason) = describe(h, done[id.index()], live_run);
            StepPlan {
                id,
                action: if done[id.index()] {
                    Action::Skip
                } else {
                    Action::Run
                },
                state,
                reason,
            }
        })
        .collect();
    Plan { steps }
}

fn describe(
    h: Option<&crate::history::StepHistory>,
    done: bool,
    live_run: Option<u64>,
) -> (State, String) {
    let Some(h) = h else {
        return (State::NeverRun, "no attempt recorded".into());
    };
    if done && let Some(success) = &h.success {
        let when = success
            .finished
            .as_ref()
            .map_or(success.started_at, |f| f.at);
        if success.imported() {
            return (
                State::Imported,
                format!("imported as successful on {}", format_time(when)),
            );
        }
        return (
            State::Done,
            format!(
                "succeeded on {} (attempt {})",
                format_time(when),
                success.number
            ),
        );
    }
    match &h.current {
        None if h.forgotten_at.is_some() && h.last.is_some() => (
            State::Forgotten,
            format!("forgotten on {}", format_time(h.forgotten_at.unwrap_or(0))),
        ),
        None => (State::NeverRun, "no attempt recorded".into()),
        Some(a) => match &a.finished {
            None if a.run.is_some() && a.run == live_run => (
                State::Running,
                format!(
                    "attempt {} is running now (run {})",
                    a.number,
                    a.run.unwrap_or(0)
                ),
            ),
            None => (
                State::Interrupted,
                format!(
                    "attempt {} started on {} and never finished: the runner was stopped",
                    a.number,
                    format_time(a.started_at)
                ),
            ),
            Some(f) if matches!(f.outcome, Outcome::Interrupted(_)) => (
                State::Interrupted,
                format!(
                    "attempt {} was {} on {}",
                    a.number,
                    describe_outcome(&f.outcome),
                    format_time(f.at)
                ),
            ),
            Some(_) => (State::Failed, failure_reason(a)),
        },
    }
}

/// "attempt 2 failed on …: exit code 1", for messages.
pub fn failure_reason(a: &Attempt) -> String {
    let Some(f) = &a.finished else {
        return "never finished".into();
    };
    let what = describe_outcome(&f.outcome);
    if a.imported() {
        return format!("imported as failed on {}", format_time(f.at));
    }
    format!(
        "attempt {} failed on {}: {what}",
        a.number,
        format_time(f.at)
    )
}

/// An outcome in a few words: `exit code 3`, `killed by signal 9`, ….
pub fn describe_outcome(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Success => "succeeded".into(),
        Outcome::Exited(code) => format!("exit code {code}"),
        Outcome::Signaled(sig) => format!("killed by {}", signal_name(*sig)),
        Outcome::TimedOut => "timed out".into(),
        Outcome::Interrupted(sig) => format!("interrupted by {}", signal_name(*sig)),
        Outcome::NotStarted(why) => format!("could not start: {why}"),
    }
}

/// `SIGKILL` for 9, or `signal 64` when unnamed.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string())
}

/// "1.2s" for how long an attempt took.
pub fn attempt_duration(a: &Attempt) -> Option<String> {
    a.finished
        .as_ref()
        .map(|f| format_duration_ms(f.duration_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Record;
    use std::path::Path;

    fn pipeline(n: usize) -> Pipeline {
        let mut src = String::new();
        for i in 0..n {
            src.push_str(&format!("[[step]]\nname = \"s{i}\"\nrun = \"true\"\n"));
        }
        Pipeline::parse(Path::new("p.toml"), Path::new("/"), &src).unwrap()
    }

    fn finish(step: &str, attempt: u32, outcome: Outcome) -> [Record; 2] {
        [
            Record::AttemptStarted {
                run: 1,
                step: step.into(),
                attempt,
                at: 0,
            },
            Record::AttemptFinished {
                run: 1,
                step: step.into(),
                attempt,
                at: 1,
                duration_ms: 1,
                outcome,
            },
        ]
    }

    #[test]
    fn the_seed_table_in_words() {
        let p = pipeline(4);
        let mut records: Vec<Record> = Vec::new();
        records.extend(finish("s0", 1, Outcome::Success));
        records.extend(finish("s1", 1, Outcome::Exited(3)));
        records.push(Record::AttemptStarted {
            run: 1,
            step: "s2".into(),
            attempt: 1,
            at: 0,
        });
        let plan = plan(&p, &History::from_records(records), &p.scope(&[]), None);
        let states: Vec<_> = plan.steps.iter().map(|s| (s.action, s.state)).collect();
        assert_eq!(
            states,
            [
                (Action::Skip, State::Done),
                (Action::Run, State::Failed),
                (Action::Run, State::Interrupted),
                (Action::Run, State::NeverRun)
            ]
        );
        assert!(
            plan.steps[1].reason.contains("exit code 3"),
            "{}",
            plan.steps[1].reason
        );
        assert_eq!(plan.to_string(), "Resume plan: 1 done, 3 remaining");
    }

    #[test]
    fn a_live_run_is_running_not_interrupted() {
        let p = pipeline(1);
        let h = History::from_records([Record::AttemptStarted {
            run: 7,
            step: "s0".into(),
            attempt: 1,
            at: 0,
        }]);
        assert_eq!(
            plan(&p, &h, &[true], Some(7)).steps[0].state,
            State::Running
        );
    }
}
