//! The plan: for every step in scope, run it or skip it, and why.
//!
//! Two modes. [`Mode::ByName`] is the seed contract exactly:
//! [`resume_from_checkpoint`] applied to the
//! checkpoint the [`History`] holds. [`Mode::Fingerprint`] (the default)
//! starts from the same decision and only ever turns "skip" into "run": a
//! step is done when its latest successful attempt since its last forget was
//! made with the step's current fingerprint, its declared outputs exist, and
//! nothing it needs will run first.
//!
//! Pure: the facts about files come in as [`StepFacts`], gathered by
//! [`crate::workspace`].

use std::fmt;

use serde::Serialize;

use crate::checkpoint::resume_from_checkpoint;
use crate::fingerprint::Reason;
use crate::journal::Outcome;
use crate::pipeline::{Pipeline, StepId};
use crate::state::history::{Attempt, History, StepHistory};
use crate::time::{format_duration_ms, format_time};
use crate::workspace::{StepFacts, output_provides};

/// What the plan does with a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// It is not done: it runs.
    Run,
    /// It is done: it is left alone.
    Skip,
}

/// How "done" is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Done means: succeeded with the step as it is now, outputs present,
    /// nothing upstream about to run.
    #[default]
    Fingerprint,
    /// Done means: any attempt since the last forget succeeded (the seed
    /// contract, `--by-name`).
    ByName,
}

/// Where a step stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum State {
    /// Succeeded in a run, and still describes the step.
    #[serde(rename = "done")]
    Done,
    /// Marked successful by `checkpoint import`.
    #[serde(rename = "imported")]
    Imported,
    /// Succeeded, but no longer describes the step (see the reasons).
    #[serde(rename = "stale")]
    Stale,
    /// Its latest attempt failed.
    #[serde(rename = "failed")]
    Failed,
    /// Its latest attempt started and never finished, or was stopped by a
    /// signal to the run.
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
    /// The state in words, as `status` prints it and `--json` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Done => "done",
            State::Imported => "imported",
            State::Stale => "stale",
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
    /// The step.
    pub id: StepId,
    /// Whether it runs.
    pub action: Action,
    /// What the journal and the files say about it.
    pub state: State,
    /// Why it runs (empty when it is skipped).
    pub reasons: Vec<Reason>,
    /// The decision in words.
    pub reason: String,
    /// Declared inputs missing now that no step running before it declares
    /// as an output: the step will fail unless they appear.
    pub warnings: Vec<Reason>,
}

/// The decision for every step in scope, in pipeline order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// One per step in scope; steps out of scope are absent.
    pub steps: Vec<StepPlan>,
}

impl Plan {
    /// How many steps are skipped as done.
    pub fn done(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.action == Action::Skip)
            .count()
    }

    /// How many steps will run.
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

    /// The plan of one step, if it is in scope.
    pub fn step(&self, id: StepId) -> Option<&StepPlan> {
        self.steps.iter().find(|s| s.id == id)
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
/// `facts` are the surveyed facts per step for [`Mode::Fingerprint`]; `None`
/// plans [`Mode::ByName`].
pub fn plan(
    pipeline: &Pipeline,
    history: &History,
    scope: &[bool],
    live_run: Option<u64>,
    facts: Option<&[Option<StepFacts>]>,
) -> Plan {
    let in_scope: Vec<&str> = pipeline
        .ids()
        .filter(|id| scope[id.index()])
        .map(|id| pipeline.step(id).name.as_str())
        .collect();
    // The seed contract decides first; fingerprints can only add work.
    let seed = resume_from_checkpoint(&in_scope, history.checkpoint());
    let mut seed_done = vec![false; pipeline.steps.len()];
    for name in seed.done {
        if let Some(id) = pipeline.find(name) {
            seed_done[id.index()] = true;
        }
    }

    let mut decided: Vec<Option<StepPlan>> = vec![None; pipeline.steps.len()];
    for id in pipeline.topological_order() {
        if !scope[id.index()] {
            continue;
        }
        let h = history.step_hinted(&pipeline.step(id).name, id.index());
        let success = h.and_then(|h| h.success.as_ref().map(|s| (h, s)));
        let mut step_plan = match (seed_done[id.index()], success) {
            (true, Some((h, success))) => {
                let mut reasons = Vec::new();
                if let Some(facts) = facts {
                    let current = facts[id.index()].as_ref();
                    let declares_outputs = !pipeline.step(id).outputs.is_empty();
                    reasons = staleness(h, success, current, declares_outputs);
                    for &dep in &pipeline.step(id).after {
                        let dep_runs = decided[dep.index()]
                            .as_ref()
                            .is_some_and(|p| p.action == Action::Run);
                        let name = &pipeline.step(dep).name;
                        let named = reasons.iter().any(
                            |r| matches!(r, Reason::DependencyChanged { step } if step == name),
                        );
                        if dep_runs && !named {
                            reasons.push(Reason::DependencyWillRun { step: name.clone() });
                        }
                    }
                }
                if reasons.is_empty() {
                    let (state, reason) = describe_success(success);
                    StepPlan {
                        id,
                        action: Action::Skip,
                        state,
                        reasons,
                        reason,
                        warnings: Vec::new(),
                    }
                } else {
                    let reason = reasons
                        .iter()
                        .map(Reason::to_string)
                        .collect::<Vec<_>>()
                        .join("; ");
                    StepPlan {
                        id,
                        action: Action::Run,
                        state: State::Stale,
                        reasons,
                        reason,
                        warnings: Vec::new(),
                    }
                }
            }
            _ => {
                let (state, reason, why) = describe_not_done(h, live_run);
                StepPlan {
                    id,
                    action: Action::Run,
                    state,
                    reasons: vec![why],
                    reason,
                    warnings: Vec::new(),
                }
            }
        };
        if step_plan.action == Action::Run
            && let Some(facts) = facts.and_then(|f| f[id.index()].as_ref())
        {
            step_plan.warnings = facts
                .missing_inputs
                .iter()
                .filter(|m| !provided_upstream(pipeline, id, &m.pattern, &decided))
                .map(|m| Reason::InputMissing {
                    pattern: m.pattern.clone(),
                })
                .collect();
        }
        decided[id.index()] = Some(step_plan);
    }
    // `decided` is indexed by step id, so flattening it is pipeline order.
    Plan {
        steps: decided.into_iter().flatten().collect(),
    }
}

/// Why a success no longer describes the step, compared with the facts now.
/// Empty when it still does. A success without a stamp (imported while an
/// input was missing) counts by name.
///
/// For a step that declares outputs, the success must also be the step's
/// latest attempt: a later attempt (interrupted by a crash, or failed with
/// `keep_failed_outputs`) may have left its outputs half rewritten.
pub fn staleness(
    h: &StepHistory,
    success: &Attempt,
    now: Option<&StepFacts>,
    declares_outputs: bool,
) -> Vec<Reason> {
    let (Some(stamp), Some(now)) = (success.stamp.as_deref(), now) else {
        return Vec::new();
    };
    let mut reasons = Vec::new();
    // An attempt that never started, or an imported one, wrote nothing.
    let could_write = |a: &Attempt| {
        !a.imported()
            && !matches!(
                a.finished.as_ref().map(|f| &f.outcome),
                Some(Outcome::NotStarted(_))
            )
    };
    if declares_outputs
        && let Some(later) = h
            .current
            .as_ref()
            .filter(|c| *c != success && could_write(c))
    {
        reasons.push(Reason::OutputsTouched {
            attempt: later.number,
        });
    }
    if stamp.fingerprint != now.fingerprint {
        let changes = now.components.changes_since(&stamp.parts());
        if changes.is_empty() {
            reasons.push(Reason::DefinitionChanged {
                part: "fingerprint".into(),
            });
        }
        reasons.extend(changes);
    }
    reasons.extend(
        now.missing_outputs
            .iter()
            .map(|path| Reason::OutputMissing { path: path.clone() }),
    );
    reasons
}

/// Whether a step that will run first, upstream of `id`, declares an output
/// that provides the input `pattern`.
fn provided_upstream(
    pipeline: &Pipeline,
    id: StepId,
    pattern: &str,
    decided: &[Option<StepPlan>],
) -> bool {
    let dir = pipeline.step_dir(id);
    let mut seen = vec![false; pipeline.steps.len()];
    let mut stack: Vec<StepId> = pipeline.step(id).after.clone();
    while let Some(up) = stack.pop() {
        if std::mem::replace(&mut seen[up.index()], true) {
            continue;
        }
        let runs = decided[up.index()]
            .as_ref()
            .is_some_and(|p| p.action == Action::Run);
        if runs
            && pipeline
                .output_paths(up)
                .iter()
                .any(|o| output_provides(o, &dir, pattern))
        {
            return true;
        }
        stack.extend(&pipeline.step(up).after);
    }
    false
}

/// A small number's digits, without `format!`.
fn itoa_u32(n: u32) -> String {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    String::from_utf8_lossy(&digits[i..]).into_owned()
}

pub(crate) fn describe_success(success: &Attempt) -> (State, String) {
    let when = success
        .finished
        .as_ref()
        .map_or(success.started_at, |f| f.at);
    // Once per done step of every no-op: no `format!`.
    let mut text = String::with_capacity(48);
    if success.imported() {
        text.push_str("imported as successful on ");
        crate::time::push_time(&mut text, when);
        (State::Imported, text)
    } else {
        text.push_str("succeeded on ");
        crate::time::push_time(&mut text, when);
        text.push_str(" (attempt ");
        text.push_str(itoa_u32(success.number).as_str());
        text.push(')');
        (State::Done, text)
    }
}

pub(crate) fn describe_not_done(
    h: Option<&StepHistory>,
    live_run: Option<u64>,
) -> (State, String, Reason) {
    let Some(h) = h else {
        return (
            State::NeverRun,
            "no attempt recorded".into(),
            Reason::NeverRun,
        );
    };
    match &h.current {
        None if h.forgotten_at.is_some() && h.last.is_some() => (
            State::Forgotten,
            format!("forgotten on {}", format_time(h.forgotten_at.unwrap_or(0))),
            Reason::Forgotten,
        ),
        None => (
            State::NeverRun,
            "no attempt recorded".into(),
            Reason::NeverRun,
        ),
        Some(a) => match &a.finished {
            None if a.run.is_some() && a.run == live_run => (
                State::Running,
                format!(
                    "attempt {} is running now (run {})",
                    a.number,
                    a.run.unwrap_or(0)
                ),
                Reason::Running { attempt: a.number },
            ),
            None => (
                State::Interrupted,
                match &a.job {
                    // The job may well run on: `run` asks Slurm first.
                    Some(job) => format!(
                        "attempt {} (Slurm job {job}) started on {} and its runner was stopped; the next run asks Slurm how it went",
                        a.number,
                        format_time(a.started_at)
                    ),
                    None => format!(
                        "attempt {} started on {} and never finished: the runner was stopped",
                        a.number,
                        format_time(a.started_at)
                    ),
                },
                Reason::Interrupted { attempt: a.number },
            ),
            Some(f) if matches!(f.outcome, Outcome::Interrupted(_)) => (
                State::Interrupted,
                format!(
                    "attempt {} was {} on {}",
                    a.number,
                    describe_outcome(&f.outcome),
                    format_time(f.at)
                ),
                Reason::Interrupted { attempt: a.number },
            ),
            Some(_) => (
                State::Failed,
                failure_reason(a),
                Reason::Failed { attempt: a.number },
            ),
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
        Outcome::OutputsMissing(paths) => {
            format!("exited 0 but did not create {}", paths.join(", "))
        }
        Outcome::Error(message) => format!("error: {message}"),
        Outcome::Job(state) => format!("Slurm job {}", state.to_lowercase().replace('_', " ")),
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
                stamp: None,
            },
            Record::AttemptFinished {
                run: 1,
                step: step.into(),
                attempt,
                at: 1,
                duration_ms: 1,
                outcome,
                value: None,
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
            stamp: None,
        });
        let plan = plan(
            &p,
            &History::from_records(records),
            &p.scope(&[]),
            None,
            None,
        );
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
            stamp: None,
        }]);
        assert_eq!(
            plan(&p, &h, &[true], Some(7), None).steps[0].state,
            State::Running
        );
    }
}
