//! What a run tells the user while it works, behind the [`Progress`] trait so
//! the scheduler does not care whether it talks to a terminal, a CI log or
//! nobody.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::journal::Outcome;
use crate::pipeline::{Pipeline, StepId};
use crate::plan::{Plan, describe_outcome};
use crate::scheduler::{NotRun, RunSummary};
use crate::time::format_duration_ms;

/// Receives what happens during a run.
pub trait Progress {
    fn plan(&mut self, pipeline: &Pipeline, plan: &Plan);
    fn step_started(&mut self, pipeline: &Pipeline, id: StepId, attempt: u32, log: &Path);
    fn step_finished(
        &mut self,
        pipeline: &Pipeline,
        id: StepId,
        attempt: u32,
        outcome: &Outcome,
        duration_ms: u64,
        log: Option<&Path>,
    );
    /// A step planned to run turned out up to date when its turn came: what
    /// it needs reran and produced the same content.
    fn step_up_to_date(&mut self, pipeline: &Pipeline, id: StepId);
    /// Something the user should know that is not about one attempt.
    fn warning(&mut self, message: &str);
    /// Before starting: `pids` were left running by steps of earlier runs
    /// whose runner was killed, and have been killed.
    fn leftovers_killed(&mut self, pids: &[u32]);
    /// Attempt failed; retry number `retry` of `retries` starts after `delay`.
    fn retry_scheduled(
        &mut self,
        pipeline: &Pipeline,
        id: StepId,
        retry: u32,
        retries: u32,
        delay: Duration,
    );
    /// The run received `signal`; `running` steps are being stopped.
    fn interrupted(&mut self, signal: Signal, running: usize);
    fn summary(&mut self, pipeline: &Pipeline, summary: &RunSummary);
}

/// Ignores everything; for library users who report on their own.
pub struct Silent;

impl Progress for Silent {
    fn plan(&mut self, _: &Pipeline, _: &Plan) {}
    fn step_started(&mut self, _: &Pipeline, _: StepId, _: u32, _: &Path) {}
    fn step_finished(
        &mut self,
        _: &Pipeline,
        _: StepId,
        _: u32,
        _: &Outcome,
        _: u64,
        _: Option<&Path>,
    ) {
    }
    fn step_up_to_date(&mut self, _: &Pipeline, _: StepId) {}
    fn warning(&mut self, _: &str) {}
    fn leftovers_killed(&mut self, _: &[u32]) {}
    fn retry_scheduled(&mut self, _: &Pipeline, _: StepId, _: u32, _: u32, _: Duration) {}
    fn interrupted(&mut self, _: Signal, _: usize) {}
    fn summary(&mut self, _: &Pipeline, _: &RunSummary) {}
}

/// Plain, append-only lines on stderr: readable in a terminal, a CI log or a
/// file alike.
pub struct Console {
    out: io::Stderr,
    /// Lines of a failed step's log to show.
    pub tail_lines: usize,
}

impl Default for Console {
    fn default() -> Self {
        Console {
            out: io::stderr(),
            tail_lines: 20,
        }
    }
}

impl Progress for Console {
    fn plan(&mut self, _: &Pipeline, plan: &Plan) {
        let _ = writeln!(self.out, "{plan}");
    }

    fn step_started(&mut self, pipeline: &Pipeline, id: StepId, attempt: u32, _: &Path) {
        let name = &pipeline.step(id).name;
        let _ = if attempt > 1 {
            writeln!(self.out, "start  {name} (attempt {attempt})")
        } else {
            writeln!(self.out, "start  {name}")
        };
    }

    fn step_finished(
        &mut self,
        pipeline: &Pipeline,
        id: StepId,
        _: u32,
        outcome: &Outcome,
        ms: u64,
        log: Option<&Path>,
    ) {
        let name = &pipeline.step(id).name;
        let took = format_duration_ms(ms);
        if outcome.ok() {
            let _ = writeln!(self.out, "ok     {name} ({took})");
            return;
        }
        let Some(log) = log else {
            let _ = writeln!(
                self.out,
                "FAILED {name} ({}, {took}) - it printed nothing",
                describe_outcome(outcome)
            );
            return;
        };
        let _ = writeln!(
            self.out,
            "FAILED {name} ({}, {took}) - log: {}",
            describe_outcome(outcome),
            display_path(log).display()
        );
        for line in tail(log, self.tail_lines) {
            let _ = writeln!(self.out, "  | {line}");
        }
    }

    fn step_up_to_date(&mut self, pipeline: &Pipeline, id: StepId) {
        let _ = writeln!(
            self.out,
            "skip   {} (up to date: what it needs reran and came out the same)",
            pipeline.step(id).name
        );
    }

    fn warning(&mut self, message: &str) {
        let _ = writeln!(self.out, "warning: {message}");
    }

    fn leftovers_killed(&mut self, pids: &[u32]) {
        let list: Vec<String> = pids.iter().map(u32::to_string).collect();
        let _ = writeln!(
            self.out,
            "killed {} process{} that steps of a killed earlier run had left running (pid {})",
            pids.len(),
            if pids.len() == 1 { "" } else { "es" },
            list.join(", ")
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
        let _ = writeln!(
            self.out,
            "retry  {} in {} (retry {retry} of {retries})",
            pipeline.step(id).name,
            format_duration_ms(delay.as_millis() as u64)
        );
    }

    fn interrupted(&mut self, signal: Signal, running: usize) {
        let _ = writeln!(
            self.out,
            "stepwise: {signal}: stopping {running} running step{} (again to kill at once)",
            if running == 1 { "" } else { "s" }
        );
    }

    fn summary(&mut self, pipeline: &Pipeline, s: &RunSummary) {
        let ran = s.succeeded.len() + s.failed.len();
        let mut line = format!("{ran} ran");
        if !s.failed.is_empty() {
            line += &format!(" ({} failed)", s.failed.len());
        }
        line += &format!(", {} skipped as done", s.skipped + s.up_to_date.len());
        if !s.up_to_date.is_empty() {
            line += &format!(" ({} found up to date)", s.up_to_date.len());
        }
        if !s.not_run.is_empty() {
            line += &format!(", {} not run", s.not_run.len());
        }
        let _ = writeln!(
            self.out,
            "{line} in {}",
            format_duration_ms(s.elapsed.as_millis() as u64)
        );
        let name = |id: StepId| pipeline.step(id).name.as_str();
        if !s.failed.is_empty() {
            let names: Vec<&str> = s.failed.iter().map(|&id| name(id)).collect();
            let _ = writeln!(self.out, "failed: {}", names.join(", "));
        }
        for &(id, why) in &s.not_run {
            let _ = match why {
                NotRun::NeedsFailed(f) => writeln!(
                    self.out,
                    "not run: {} (needs {}, which failed)",
                    name(id),
                    name(f)
                ),
                NotRun::Stopped if s.interrupted.is_some() => {
                    writeln!(self.out, "not run: {} (the run was interrupted)", name(id))
                }
                NotRun::Stopped => writeln!(
                    self.out,
                    "not run: {} (stopped after a failure; --keep-going runs what does not need it)",
                    name(id)
                ),
            };
        }
    }
}

/// The last `n` lines of a file, lossily decoded; empty if it cannot be read.
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    const WINDOW: u64 = 64 * 1024;
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let start = len.saturating_sub(WINDOW);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        lines.remove(0); // probably cut in the middle
    }
    let from = lines.len().saturating_sub(n);
    lines[from..].iter().map(|l| l.to_string()).collect()
}

/// A path relative to the current dir when it is inside it, as people
/// would type it.
pub fn display_path(path: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
}
