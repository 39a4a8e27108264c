//! `run --events json`: one JSON object per line on stdout, as things
//! happen, for other programs to follow a run.
//!
//! Every event carries `"version": 1`, `"event"` (its kind) and `"at"`
//! (milliseconds since the Unix epoch). The kinds and their other fields:
//!
//! | event | fields |
//! |---|---|
//! | `run_started` | `run`, `done`, `remaining` |
//! | `step_skipped` | `step`, `state`, `reason` (`state` is `done`, `imported` or `up to date`) |
//! | `step_started` | `step`, `attempt`, `log` |
//! | `step_finished` | `step`, `attempt`, `ok`, `outcome`, `exit_code`, `signal`, `duration_ms`, `log` |
//! | `step_submitted` | `step`, `attempt`, `job` (the Slurm job id) |
//! | `step_reattached` | `step`, `attempt`, `job`, `message`: a Slurm job of a dead runner, found again before the plan |
//! | `step_retry` | `step`, `retry`, `retries`, `delay_ms` |
//! | `warning` | `message` |
//! | `run_interrupted` | `signal`, `running` |
//! | `run_finished` | `run`, `exit_code`, `succeeded`, `failed`, `skipped`, `up_to_date`, `not_run`, `duration_ms` |
//!
//! `log` is the attempt's log file (absolute; in `step_finished`, `null` when
//! the attempt printed nothing). `not_run` lists `{"step", "needs"}`, where
//! `needs` is the failed step that kept it from running, or `null` when the
//! run stopped first. When nothing needs to run, `run_started` and
//! `run_finished` have `"run": null`. New fields may be added within a
//! version; none is removed or changes meaning.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::journal::{Outcome, now};
use crate::pipeline::{Pipeline, StepId};
use crate::plan::{Action, Plan, describe_outcome};
use crate::run::scheduler::{NotRun, RunSummary};
use crate::state::history::History;
use crate::view::progress::Progress;

/// The version of the events' schema.
pub const EVENTS_VERSION: u32 = 1;

/// Writes one JSON event per line to `out` (stdout for the command line),
/// flushing after each so a follower sees it at once.
pub struct Events<W: Write> {
    out: W,
    /// The id the run will get, known from the journal once it is read.
    run: Option<u64>,
}

impl<W: Write> Events<W> {
    /// Events written to `out`.
    pub fn new(out: W) -> Events<W> {
        Events { out, run: None }
    }

    fn emit(&mut self, event: &str, fields: Value) {
        let mut doc = json!({ "version": EVENTS_VERSION, "event": event, "at": now() });
        if let (Some(doc), Value::Object(fields)) = (doc.as_object_mut(), fields) {
            doc.extend(fields);
        }
        // A reader that went away is not a reason to stop the run.
        let _ = writeln!(self.out, "{doc}");
        let _ = self.out.flush();
    }
}

/// Exit code and signal of an outcome, as the JSON documents give them.
pub fn exit_code_and_signal(outcome: &Outcome) -> (Option<i32>, Option<i32>) {
    match outcome {
        Outcome::Success | Outcome::OutputsMissing(_) => (Some(0), None),
        Outcome::Exited(c) => (Some(*c), None),
        Outcome::Signaled(s) | Outcome::Interrupted(s) => (None, Some(*s)),
        Outcome::TimedOut | Outcome::NotStarted(_) | Outcome::Error(_) | Outcome::Job(_) => {
            (None, None)
        }
    }
}

impl<W: Write> Progress for Events<W> {
    fn history(&mut self, _: &Pipeline, history: &History) {
        // The runner holds the lock, so this is the id its run gets.
        self.run = Some(history.next_run());
    }

    fn plan(&mut self, pipeline: &Pipeline, plan: &Plan) {
        let run = (plan.remaining() > 0).then_some(self.run).flatten();
        self.emit(
            "run_started",
            json!({ "run": run, "done": plan.done(), "remaining": plan.remaining() }),
        );
        for s in plan.steps.iter().filter(|s| s.action == Action::Skip) {
            self.emit(
                "step_skipped",
                json!({ "step": pipeline.step(s.id).name, "state": s.state, "reason": s.reason }),
            );
        }
    }

    fn step_started(&mut self, pipeline: &Pipeline, id: StepId, attempt: u32, log: &Path) {
        self.emit(
            "step_started",
            json!({ "step": pipeline.step(id).name, "attempt": attempt, "log": log }),
        );
    }

    fn step_finished(
        &mut self,
        pipeline: &Pipeline,
        id: StepId,
        attempt: u32,
        outcome: &Outcome,
        duration_ms: u64,
        log: Option<&Path>,
    ) {
        let (exit_code, signal) = exit_code_and_signal(outcome);
        self.emit(
            "step_finished",
            json!({
                "step": pipeline.step(id).name,
                "attempt": attempt,
                "ok": outcome.ok(),
                "outcome": describe_outcome(outcome),
                "exit_code": exit_code,
                "signal": signal,
                "duration_ms": duration_ms,
                "log": log,
            }),
        );
    }

    fn step_up_to_date(&mut self, pipeline: &Pipeline, id: StepId) {
        self.emit(
            "step_skipped",
            json!({
                "step": pipeline.step(id).name,
                "state": "up to date",
                "reason": "what it needs reran and came out the same",
            }),
        );
    }

    fn job_submitted(&mut self, pipeline: &Pipeline, id: StepId, attempt: u32, job: &str) {
        self.emit(
            "step_submitted",
            json!({ "step": pipeline.step(id).name, "attempt": attempt, "job": job }),
        );
    }

    fn reattached(&mut self, step: &str, attempt: u32, job: &str, what: &str) {
        self.emit(
            "step_reattached",
            json!({ "step": step, "attempt": attempt, "job": job, "message": what }),
        );
    }

    fn warning(&mut self, message: &str) {
        self.emit("warning", json!({ "message": message }));
    }

    fn leftovers_killed(&mut self, pids: &[u32]) {
        self.emit(
            "warning",
            json!({ "message": format!("killed {} processes that steps of a killed earlier run had left running", pids.len()) }),
        );
    }

    fn retry_scheduled(
        &mut self,
        pipeline: &Pipeline,
        id: StepId,
        retry: u32,
        retries: u32,
        delay: Duration,
    ) {
        self.emit(
            "step_retry",
            json!({
                "step": pipeline.step(id).name,
                "retry": retry,
                "retries": retries,
                "delay_ms": delay.as_millis() as u64,
            }),
        );
    }

    fn interrupted(&mut self, signal: Signal, running: usize) {
        self.emit(
            "run_interrupted",
            json!({ "signal": signal.as_str(), "running": running }),
        );
    }

    fn summary(&mut self, pipeline: &Pipeline, s: &RunSummary) {
        let name = |id: StepId| pipeline.step(id).name.clone();
        let not_run: Vec<Value> = s
            .not_run
            .iter()
            .map(|&(id, why)| {
                let needs = match why {
                    NotRun::NeedsFailed(f) => Some(name(f)),
                    NotRun::Stopped => None,
                };
                json!({ "step": name(id), "needs": needs })
            })
            .collect();
        self.emit(
            "run_finished",
            json!({
                "run": s.run,
                "exit_code": s.exit_code(),
                "succeeded": s.succeeded.iter().map(|&id| name(id)).collect::<Vec<_>>(),
                "failed": s.failed.iter().map(|&id| name(id)).collect::<Vec<_>>(),
                "skipped": s.skipped,
                "up_to_date": s.up_to_date.iter().map(|&id| name(id)).collect::<Vec<_>>(),
                "not_run": not_run,
                "duration_ms": s.elapsed.as_millis() as u64,
            }),
        );
    }

    fn nothing_to_do(&mut self, _: &Pipeline, plan: &Plan) {
        self.emit(
            "run_finished",
            json!({
                "run": null,
                "exit_code": 0,
                "succeeded": [],
                "failed": [],
                "skipped": plan.done(),
                "up_to_date": [],
                "not_run": [],
                "duration_ms": 0,
            }),
        );
    }
}
