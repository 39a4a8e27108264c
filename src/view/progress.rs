//! What a run tells the user while it works, behind the [`Progress`] trait so
//! the scheduler does not care whether it talks to a terminal, a CI log or
//! nobody.
//!
//! Implementations: [`Console`] (plain append-only lines, for CI logs, pipes
//! and files), [`crate::view::live::Live`] (a status area redrawn in place, for a
//! terminal), [`crate::view::events::Events`] (`run --events json`), [`Silent`],
//! and [`Both`] to feed two of them.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::journal::Outcome;
use crate::pipeline::{Pipeline, StepId};
use crate::plan::{Plan, describe_outcome};
use crate::run::scheduler::{NotRun, RunSummary};
use crate::state::history::History;
use crate::style::{Paint, Style};
use crate::time::format_duration_ms;

/// Receives what happens during a run.
///
/// The scheduler calls these from its one thread, in the order things
/// happen. Every hook with a default body is optional.
///
/// [`Project::run`](crate::Project::run) calls everything up to the last
/// attempt; [`Progress::summary`] and [`Progress::nothing_to_do`] are left
/// to its caller, which has the [`RunReport`](crate::project::RunReport)
/// (the command line calls one of them).
pub trait Progress {
    /// Before the plan: what the journal holds, e.g. to estimate how long
    /// the run will take from the durations of earlier attempts.
    fn history(&mut self, _pipeline: &Pipeline, _history: &History) {}
    /// The plan, before anything runs (also when nothing will).
    fn plan(&mut self, pipeline: &Pipeline, plan: &Plan);
    /// Attempt number `attempt` of a step starts; `log` is where its
    /// output will go, a file created only if it prints something.
    fn step_started(&mut self, pipeline: &Pipeline, id: StepId, attempt: u32, log: &Path);
    /// A chunk of what a running step printed (its stdout and stderr share
    /// one pipe), as it arrives; also written to the attempt's log.
    fn step_output(&mut self, _pipeline: &Pipeline, _id: StepId, _bytes: &[u8]) {}
    /// An attempt ended, as recorded in the journal, after `duration_ms`
    /// milliseconds; `log` is its log file, `None` if it printed nothing.
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
    /// After the run: what it did. Called by whoever ran it, not by
    /// [`Project::run`](crate::Project::run).
    fn summary(&mut self, pipeline: &Pipeline, summary: &RunSummary);
    /// Instead of a summary: the plan had nothing to run. Called by whoever
    /// ran it, as [`Progress::summary`].
    fn nothing_to_do(&mut self, _pipeline: &Pipeline, _plan: &Plan) {}
    /// An attempt was submitted to Slurm as job `job` (after
    /// [`Progress::step_started`]).
    fn job_submitted(&mut self, _pipeline: &Pipeline, _id: StepId, _attempt: u32, _job: &str) {}
    /// Before the plan: what became of a Slurm job an attempt of a dead
    /// runner was submitted as (`what`, in words: still running and waited
    /// for, ended and recorded, or lost).
    fn reattached(&mut self, _step: &str, _attempt: u32, _job: &str, _what: &str) {}
    /// This run waits for a Slurm job an earlier, dead runner submitted
    /// (after [`Progress::reattached`] said so): the step runs, though this
    /// run never started it.
    fn job_adopted(&mut self, _pipeline: &Pipeline, _id: StepId, _attempt: u32) {}
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

/// Passes every event to two receivers, in order: the console and
/// `--events json`, say.
pub struct Both<'a>(pub &'a mut dyn Progress, pub &'a mut dyn Progress);

impl Progress for Both<'_> {
    fn history(&mut self, pipeline: &Pipeline, history: &History) {
        self.0.history(pipeline, history);
        self.1.history(pipeline, history);
    }
    fn plan(&mut self, pipeline: &Pipeline, plan: &Plan) {
        self.0.plan(pipeline, plan);
        self.1.plan(pipeline, plan);
    }
    fn step_started(&mut self, pipeline: &Pipeline, id: StepId, attempt: u32, log: &Path) {
        self.0.step_started(pipeline, id, attempt, log);
        self.1.step_started(pipeline, id, attempt, log);
    }
    fn step_output(&mut self, pipeline: &Pipeline, id: StepId, bytes: &[u8]) {
        self.0.step_output(pipeline, id, bytes);
        self.1.step_output(pipeline, id, bytes);
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
        self.0
            .step_finished(pipeline, id, attempt, outcome, duration_ms, log);
        self.1
            .step_finished(pipeline, id, attempt, outcome, duration_ms, log);
    }
    fn step_up_to_date(&mut self, pipeline: &Pipeline, id: StepId) {
        self.0.step_up_to_date(pipeline, id);
        self.1.step_up_to_date(pipeline, id);
    }
    fn warning(&mut self, message: &str) {
        self.0.warning(message);
        self.1.warning(message);
    }
    fn leftovers_killed(&mut self, pids: &[u32]) {
        self.0.leftovers_killed(pids);
        self.1.leftovers_killed(pids);
    }
    fn retry_scheduled(
        &mut self,
        pipeline: &Pipeline,
        id: StepId,
        retry: u32,
        retries: u32,
        delay: Duration,
    ) {
        self.0.retry_scheduled(pipeline, id, retry, retries, delay);
        self.1.retry_scheduled(pipeline, id, retry, retries, delay);
    }
    fn interrupted(&mut self, signal: Signal, running: usize) {
        self.0.interrupted(signal, running);
        self.1.interrupted(signal, running);
    }
    fn summary(&mut self, pipeline: &Pipeline, summary: &RunSummary) {
        self.0.summary(pipeline, summary);
        self.1.summary(pipeline, summary);
    }
    fn nothing_to_do(&mut self, pipeline: &Pipeline, plan: &Plan) {
        self.0.nothing_to_do(pipeline, plan);
        self.1.nothing_to_do(pipeline, plan);
    }
    fn job_submitted(&mut self, pipeline: &Pipeline, id: StepId, attempt: u32, job: &str) {
        self.0.job_submitted(pipeline, id, attempt, job);
        self.1.job_submitted(pipeline, id, attempt, job);
    }
    fn reattached(&mut self, step: &str, attempt: u32, job: &str, what: &str) {
        self.0.reattached(step, attempt, job, what);
        self.1.reattached(step, attempt, job, what);
    }
    fn job_adopted(&mut self, pipeline: &Pipeline, id: StepId, attempt: u32) {
        self.0.job_adopted(pipeline, id, attempt);
        self.1.job_adopted(pipeline, id, attempt);
    }
}

/// `--output`: which output of the steps the console shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputMode {
    /// Every step's output, live, as it prints it (each line after the
    /// step's name when several steps can run at once).
    Stream,
    /// Only a failed step's output: its last lines, after the failure.
    #[default]
    Failed,
    /// No step output at all; a failure names its log file.
    None,
}

/// How the console speaks.
#[derive(Clone, Debug)]
pub struct ConsoleOptions {
    /// Only failures, warnings and, when something went wrong, the summary.
    pub quiet: bool,
    /// Also each step's plan, command and log file.
    pub verbose: bool,
    /// Colour or not.
    pub style: Style,
    /// Which output of the steps to show.
    pub output: OutputMode,
    /// Put the step's name before each streamed line (several steps may
    /// run at once, so their lines interleave).
    pub prefix_output: bool,
    /// Lines of a failed step's log to show.
    pub tail_lines: usize,
    /// Print a `start` line for each attempt. The live display shows the
    /// running steps itself, so it leaves them out unless verbose.
    pub show_starts: bool,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        ConsoleOptions {
            quiet: false,
            verbose: false,
            style: Style::default(),
            output: OutputMode::Failed,
            prefix_output: false,
            tail_lines: 20,
            show_starts: true,
        }
    }
}

/// Plain, append-only lines: readable in a terminal, a CI log or a file
/// alike. Writes to stderr unless told otherwise.
pub struct Console<W: Write = io::Stderr> {
    out: W,
    /// How it speaks; may be changed between events.
    pub options: ConsoleOptions,
    /// Streamed output of each step not yet ended by a newline.
    partial: HashMap<StepId, Vec<u8>>,
}

impl Default for Console {
    fn default() -> Self {
        Console::new(io::stderr(), ConsoleOptions::default())
    }
}

/// A partial line longer than this is shown without waiting for its end.
const LONGEST_LINE: usize = 16 * 1024;

impl<W: Write> Console<W> {
    /// A console writing to `out`.
    pub fn new(out: W, options: ConsoleOptions) -> Console<W> {
        Console {
            out,
            options,
            partial: HashMap::new(),
        }
    }

    /// Where it writes.
    pub fn writer(&mut self) -> &mut W {
        &mut self.out
    }

    fn paint(&self, paint: Paint, text: &str) -> String {
        self.options.style.paint(paint, text)
    }

    fn line(&mut self, text: &str) {
        // One write per line: stderr is unbuffered, and `writeln!` would
        // write the text and its newline separately (two system calls per
        // line, and a line another writer could split).
        let mut line = String::with_capacity(text.len() + 1);
        line.push_str(text);
        line.push('\n');
        let _ = self.out.write_all(line.as_bytes());
    }

    fn streamed_line(&mut self, name: &str, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        let shown = if self.options.prefix_output {
            format!("{} {text}", self.paint(Paint::Dim, &format!("{name} |")))
        } else {
            text.to_string()
        };
        self.line(&shown);
    }

    /// Shows what is left of a step's streamed output when it ends.
    fn flush_partial(&mut self, pipeline: &Pipeline, id: StepId) {
        if let Some(rest) = self.partial.remove(&id)
            && !rest.is_empty()
        {
            self.streamed_line(&pipeline.step(id).name, &rest);
        }
    }

    fn verbose_plan(&mut self, pipeline: &Pipeline, plan: &Plan) {
        let width = plan
            .steps
            .iter()
            .map(|s| pipeline.step(s.id).name.len())
            .max()
            .unwrap_or(0);
        for s in &plan.steps {
            let action = match s.action {
                crate::plan::Action::Run => "run ",
                crate::plan::Action::Skip => "skip",
            };
            let line = format!(
                "  {action}  {:width$}  {:11}  {}",
                pipeline.step(s.id).name,
                s.state,
                s.reason
            );
            let line = if s.action == crate::plan::Action::Skip {
                self.paint(Paint::Dim, &line)
            } else {
                line
            };
            self.line(&line);
        }
    }
}

impl<W: Write> Progress for Console<W> {
    fn plan(&mut self, pipeline: &Pipeline, plan: &Plan) {
        if self.options.quiet {
            return;
        }
        self.line(&plan.to_string());
        if self.options.verbose {
            self.verbose_plan(pipeline, plan);
        }
    }

    fn step_started(&mut self, pipeline: &Pipeline, id: StepId, attempt: u32, log: &Path) {
        if self.options.quiet || !self.options.show_starts {
            return;
        }
        let step = pipeline.step(id);
        let head = self.paint(Paint::Dim, "start ");
        let name = &step.name;
        if attempt > 1 {
            self.line(&format!("{head} {name} (attempt {attempt})"));
        } else {
            self.line(&format!("{head} {name}"));
        }
        if self.options.verbose {
            let run = step.run.lines().collect::<Vec<_>>().join(" \u{23ce} ");
            self.line(&format!("       $ {run}"));
            self.line(&format!("       output: {}", display_path(log).display()));
        }
    }

    fn job_submitted(&mut self, _: &Pipeline, _: StepId, _: u32, job: &str) {
        if self.options.verbose && !self.options.quiet {
            self.line(&format!("       Slurm job {job}"));
        }
    }

    fn reattached(&mut self, step: &str, attempt: u32, job: &str, what: &str) {
        if self.options.quiet {
            return;
        }
        let head = self.paint(Paint::Dim, "attach");
        self.line(&format!(
            "{head} {step} (attempt {attempt}, Slurm job {job}) {what}"
        ));
    }

    fn step_output(&mut self, pipeline: &Pipeline, id: StepId, bytes: &[u8]) {
        if self.options.output != OutputMode::Stream {
            return;
        }
        let name = pipeline.step(id).name.clone();
        let mut buf = self.partial.remove(&id).unwrap_or_default();
        buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
            self.streamed_line(&name, &buf[start..start + nl]);
            start += nl + 1;
        }
        let mut rest = buf.split_off(start);
        if rest.len() > LONGEST_LINE {
            self.streamed_line(&name, &rest);
            rest.clear();
        }
        self.partial.insert(id, rest);
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
        self.flush_partial(pipeline, id);
        let name = &pipeline.step(id).name;
        let took = format_duration_ms(ms);
        if outcome.ok() {
            if self.options.quiet {
                return;
            }
            let head = self.paint(Paint::Good, "ok    ");
            match log.filter(|_| self.options.verbose) {
                Some(log) => self.line(&format!(
                    "{head} {name} ({took}) - output: {}",
                    display_path(log).display()
                )),
                None => self.line(&format!("{head} {name} ({took})")),
            }
            return;
        }
        let head = self.paint(Paint::Bad, "FAILED");
        let Some(log) = log else {
            self.line(&format!(
                "{head} {name} ({}, {took}) - it printed nothing",
                describe_outcome(outcome)
            ));
            return;
        };
        self.line(&format!(
            "{head} {name} ({}, {took}) - log: {}",
            describe_outcome(outcome),
            display_path(log).display()
        ));
        // Streamed output was shown in full already.
        if self.options.output == OutputMode::Failed {
            let bar = self.paint(Paint::Dim, "  |");
            for line in tail(log, self.options.tail_lines) {
                self.line(&format!("{bar} {line}"));
            }
        }
    }

    fn step_up_to_date(&mut self, pipeline: &Pipeline, id: StepId) {
        if self.options.quiet {
            return;
        }
        let line = format!(
            "skip   {} (up to date: what it needs reran and came out the same)",
            pipeline.step(id).name
        );
        let line = self.paint(Paint::Dim, &line);
        self.line(&line);
    }

    fn warning(&mut self, message: &str) {
        let head = self.paint(Paint::Warn, "warning:");
        self.line(&format!("{head} {message}"));
    }

    fn leftovers_killed(&mut self, pids: &[u32]) {
        let list: Vec<String> = pids.iter().map(u32::to_string).collect();
        self.line(&format!(
            "killed {} process{} that steps of a killed earlier run had left running (pid {})",
            pids.len(),
            if pids.len() == 1 { "" } else { "es" },
            list.join(", ")
        ));
    }

    fn retry_scheduled(
        &mut self,
        pipeline: &Pipeline,
        id: StepId,
        retry: u32,
        retries: u32,
        delay: Duration,
    ) {
        if self.options.quiet {
            return;
        }
        let head = self.paint(Paint::Warn, "retry ");
        self.line(&format!(
            "{head} {} in {} (retry {retry} of {retries})",
            pipeline.step(id).name,
            format_duration_ms(delay.as_millis() as u64)
        ));
    }

    fn interrupted(&mut self, signal: Signal, running: usize) {
        self.line(&format!(
            "stepwise: {signal}: stopping {running} running step{} (again to kill at once)",
            if running == 1 { "" } else { "s" }
        ));
    }

    fn summary(&mut self, pipeline: &Pipeline, s: &RunSummary) {
        let all_well = s.failed.is_empty() && s.not_run.is_empty() && s.interrupted.is_none();
        if self.options.quiet && all_well {
            return;
        }
        let ran = s.succeeded.len() + s.failed.len();
        let mut line = format!("{ran} ran");
        if !s.failed.is_empty() {
            line += &self.paint(Paint::Bad, &format!(" ({} failed)", s.failed.len()));
        }
        line += &format!(", {} skipped as done", s.skipped + s.up_to_date.len());
        if !s.up_to_date.is_empty() {
            line += &format!(" ({} found up to date)", s.up_to_date.len());
        }
        if !s.not_run.is_empty() {
            line += &format!(", {} not run", s.not_run.len());
        }
        line += &format!(" in {}", format_duration_ms(s.elapsed.as_millis() as u64));
        self.line(&line);
        let name = |id: StepId| pipeline.step(id).name.as_str();
        if !s.failed.is_empty() {
            let names: Vec<&str> = s.failed.iter().map(|&id| name(id)).collect();
            let head = self.paint(Paint::Bad, "failed:");
            self.line(&format!("{head} {}", names.join(", ")));
        }
        for &(id, why) in &s.not_run {
            let line = match why {
                // What it needed was stopped by the signal, not failed.
                _ if s.interrupted.is_some() => {
                    format!("not run: {} (the run was interrupted)", name(id))
                }
                NotRun::NeedsFailed(f) => {
                    format!("not run: {} (needs {}, which failed)", name(id), name(f))
                }
                NotRun::Stopped => format!(
                    "not run: {} (stopped after a failure; --keep-going runs what does not need it)",
                    name(id)
                ),
            };
            self.line(&line);
        }
    }

    fn nothing_to_do(&mut self, _: &Pipeline, _: &Plan) {
        if !self.options.quiet {
            self.line("nothing to do: every step in scope is done");
        }
    }
}

/// Where a running step's output goes: its log file, and the progress's
/// [`Progress::step_output`].
pub struct Tee<'a> {
    log: &'a mut dyn Write,
    progress: &'a mut dyn Progress,
    pipeline: &'a Pipeline,
    id: StepId,
}

impl<'a> Tee<'a> {
    /// Output of step `id`, written to `log` and shown to `progress`.
    pub fn new(
        log: &'a mut dyn Write,
        progress: &'a mut dyn Progress,
        pipeline: &'a Pipeline,
        id: StepId,
    ) -> Tee<'a> {
        Tee {
            log,
            progress,
            pipeline,
            id,
        }
    }
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.progress.step_output(self.pipeline, self.id, buf);
        self.log.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.log.flush()
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
    if start > 0 && lines.len() > 1 {
        lines.remove(0); // probably cut in the middle
    }
    let from = lines.len().saturating_sub(n);
    lines[from..].iter().map(|l| clip_line(l)).collect()
}

/// A line of at most [`TAIL_LINE_CHARS`] characters: the end of a longer
/// one (where a message usually says what went wrong), marked as cut, and
/// safe to print (see [`printable`]).
fn clip_line(line: &str) -> String {
    const TAIL_LINE_CHARS: usize = 500;
    let line = printable(line);
    match line.char_indices().rev().nth(TAIL_LINE_CHARS - 1) {
        Some((at, _)) if at > 0 => format!("…{}", &line[at..]),
        _ => line,
    }
}

/// What a terminal would show of a line of a step's output, without what
/// would act on the terminal itself: after a carriage return only what
/// overwrote the line (a progress bar's last state), colours (`ESC [ ... m`)
/// kept, and every other control character shown as `^X` (so `ESC [2J` in
/// a failed step's output cannot clear the screen, nor `ESC ]0;` retitle
/// the window).
fn printable(line: &str) -> String {
    let line = line
        .rsplit('\r')
        .find(|part| !part.is_empty())
        .unwrap_or("");
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            // A colour: ESC [ digits and semicolons, then `m`.
            let rest: String = chars
                .clone()
                .skip(1)
                .take_while(|c| c.is_ascii_digit() || *c == ';')
                .collect();
            let after = chars.clone().nth(1 + rest.len());
            if after == Some('m') {
                out.push(c);
                out.push('[');
                out.push_str(&rest);
                out.push('m');
                for _ in 0..rest.len() + 2 {
                    chars.next();
                }
                continue;
            }
        }
        match c {
            '\t' => out.push(c),
            c if (c as u32) < 0x20 => {
                out.push('^');
                out.push(char::from(c as u8 + 64));
            }
            '\u{7f}' => out.push_str("^?"),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// A path relative to the current dir when it is inside it, as people
/// would type it.
pub fn display_path(path: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_line_cannot_act_on_the_terminal_but_keeps_its_colours() {
        // Clear screen, retitle the window, a bell: shown, not obeyed.
        assert_eq!(printable("a\u{1b}[2Jb"), "a^[[2Jb");
        assert_eq!(printable("\u{1b}]0;pwned\u{7}x"), "^[]0;pwned^Gx");
        // Colours stay.
        assert_eq!(
            printable("\u{1b}[1;31merror\u{1b}[0m"),
            "\u{1b}[1;31merror\u{1b}[0m"
        );
        // A progress bar: what the terminal would show last.
        assert_eq!(printable("10%\r55%\r100%"), "100%");
        assert_eq!(printable("tab\there\u{7f}"), "tab\there^?");
        assert_eq!(printable("\u{9b}x"), "?x");
    }
}
