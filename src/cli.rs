//! The command line: parses arguments, calls the library, prints, and maps
//! every error to an exit code in one place.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use serde_json::json;

use crate::checkpoint::{format_checkpoint, parse_checkpoint};
use crate::error::{EXIT_OK, Error, IoContext, Result};
use crate::history::{Attempt, export_checkpoint};
use crate::journal;
use crate::pipeline::DEFAULT_FILE;
use crate::plan::{Action, Mode, State, attempt_duration, describe_outcome};
use crate::project::{Project, Why};
use crate::report::{Console, Progress, display_path};
use crate::scheduler::{RunOptions, default_jobs};
use crate::state_dir::StateDir;
use crate::time::format_time;

const EXIT_CODES: &str = "\
Exit codes:
  0    every step in scope is done
  1    a step failed, or did not run because a step it needs failed
  2    usage error, invalid pipeline file, corrupt journal, bad import (nothing was run),
       or stepwise itself failed (e.g. the journal could not be written)
  3    another stepwise process is running this pipeline (it holds .stepwise/lock)
  130  the run was interrupted by SIGINT (Ctrl-C); 143 by SIGTERM; 129 by SIGHUP";

/// A resumable pipeline runner: runs the steps of stepwise.toml, and on the
/// next run only what is not done yet.
#[derive(Parser, Debug)]
#[command(name = "stepwise", version, after_help = EXIT_CODES, max_term_width = 100)]
struct Cli {
    /// The pipeline file [default: ./stepwise.toml]
    #[arg(short = 'f', long = "file", value_name = "PATH", global = true)]
    file: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run every step that is not done (or only STEPs and what they need)
    #[command(after_help = EXIT_CODES)]
    Run {
        /// Only these steps, and the steps they need
        #[arg(value_name = "STEP")]
        steps: Vec<String>,
        /// Run at most N steps at once [default: [pipeline] jobs, else the number of CPUs]
        #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        jobs: Option<u32>,
        /// After a failure, keep starting every step that does not need the failed one
        #[arg(short = 'k', long = "keep-going")]
        keep_going: bool,
        /// A step is done if any attempt since its last forget succeeded, whatever changed since
        #[arg(long)]
        by_name: bool,
    },
    /// Show what `run` would do and why, without doing anything
    Plan {
        /// Only these steps, and the steps they need
        #[arg(value_name = "STEP")]
        steps: Vec<String>,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
        /// A step is done if any attempt since its last forget succeeded, whatever changed since
        #[arg(long)]
        by_name: bool,
    },
    /// Explain, component by component, why a step will run or be skipped
    Why {
        #[arg(value_name = "STEP")]
        step: String,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Show each step's latest attempt: result, when, how long, where its log is
    Status {
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Print the log of a step's latest attempt
    Log {
        #[arg(value_name = "STEP")]
        step: String,
    },
    /// Make steps run again on the next run (their history is kept)
    Forget {
        #[arg(value_name = "STEP", required_unless_present = "all")]
        steps: Vec<String>,
        /// Forget every step
        #[arg(long, conflicts_with = "steps")]
        all: bool,
        /// Also forget every step that needs these, directly or not
        #[arg(long, conflicts_with = "all")]
        downstream: bool,
        /// Only show what would be forgotten
        #[arg(long)]
        dry_run: bool,
    },
    /// Export or import the checkpoint as a JSON list of [name, ok] pairs
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
    /// Check the state dir (exit 0 clean, 1 problems); --repair moves unreadable journal lines aside
    Fsck {
        /// Move unreadable journal lines to .stepwise/journal.corrupt.<time> and rewrite the journal with the rest
        #[arg(long)]
        repair: bool,
    },
}

#[derive(Subcommand, Debug)]
enum CheckpointCommand {
    /// Print one [name, ok] pair per finished attempt, in the order they happened
    Export,
    /// Record the attempts of a checkpoint file (`-` for stdin); an imported success counts as done
    Import {
        // Not `file`: that id is taken by the global -f/--file.
        #[arg(id = "checkpoint_file", value_name = "FILE")]
        file: PathBuf,
    },
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("{e}");
            e.exit_code()
        }
    }
}

fn mode(by_name: bool) -> Mode {
    if by_name {
        Mode::ByName
    } else {
        Mode::Fingerprint
    }
}

fn dispatch(cli: Cli) -> Result<i32> {
    let path = cli
        .file
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_FILE));
    // fsck looks at the state dir alone: it must work while the pipeline
    // file does not parse.
    if let Command::Fsck { repair } = cli.command {
        return crate::fsck::command(&path, repair);
    }
    let project = Project::open(&path)?;
    match cli.command {
        Command::Run {
            steps,
            jobs,
            keep_going,
            by_name,
        } => {
            let options = RunOptions {
                jobs: jobs
                    .map(|j| j as usize)
                    .or(project.pipeline.jobs)
                    .unwrap_or_else(default_jobs),
                keep_going,
                kill_grace: project.pipeline.kill_grace,
                mode: mode(by_name),
            };
            let mut console = Console::default();
            let report = project.run(&steps, &options, &mut console)?;
            match &report.summary {
                Some(summary) => console.summary(&project.pipeline, summary),
                None => eprintln!("nothing to do: every step in scope is done"),
            }
            Ok(report.exit_code())
        }
        Command::Plan {
            steps,
            json,
            by_name,
        } => show_plan(&project, &steps, json, mode(by_name)),
        Command::Why { step, json } => why(&project, &step, json),
        Command::Status { json } => status(&project, json),
        Command::Log { step } => log(&project, &step),
        Command::Forget {
            steps,
            all,
            downstream,
            dry_run,
        } => forget(&project, &steps, all, downstream, dry_run),
        Command::Checkpoint(CheckpointCommand::Export) => export(&project.state),
        Command::Checkpoint(CheckpointCommand::Import { file }) => import(&project, &file),
        Command::Fsck { .. } => unreachable!("handled before the pipeline is loaded"),
    }
}

fn warn(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .context("cannot write to stdout")?;
    out.flush().context("cannot write to stdout")
}

fn show_plan(project: &Project, steps: &[String], json: bool, mode: Mode) -> Result<i32> {
    let pipeline = &project.pipeline;
    let inspection = project.inspect(steps, mode)?;
    warn(&inspection.loaded.warnings);
    let the_plan = &inspection.plan;
    if json {
        let steps: Vec<_> = the_plan
            .steps
            .iter()
            .map(|s| {
                json!({
                    "name": pipeline.step(s.id).name,
                    "action": s.action,
                    "state": s.state,
                    "reason": s.reason,
                    "reasons": s.reasons,
                    "warnings": s.warnings,
                })
            })
            .collect();
        let doc = json!({
            "version": 1,
            "done": the_plan.done(),
            "remaining": the_plan.remaining(),
            "steps": steps,
        });
        return print(&format!("{doc}\n")).map(|_| EXIT_OK);
    }
    let mut out = format!("{the_plan}\n");
    if let Some(holder) = &inspection.loaded.writer {
        out += &format!(
            "({holder} is working on this pipeline; this is what it has recorded so far)\n"
        );
    }
    let width = the_plan
        .steps
        .iter()
        .map(|s| pipeline.step(s.id).name.len())
        .max()
        .unwrap_or(0);
    for s in &the_plan.steps {
        let action = match s.action {
            Action::Run => "run ",
            Action::Skip => "skip",
        };
        out += &format!(
            "  {action}  {:width$}  {:11}  {}\n",
            pipeline.step(s.id).name,
            s.state,
            s.reason
        );
        for w in &s.warnings {
            out += &format!(
                "  {:width$}        warning: {w}; the step will fail unless it appears\n",
                ""
            );
        }
    }
    print(&out).map(|_| EXIT_OK)
}

fn why(project: &Project, step: &str, json: bool) -> Result<i32> {
    let (why, warnings) = project.why(step, Mode::Fingerprint)?;
    warn(&warnings);
    let pipeline = &project.pipeline;
    let name = &pipeline.step(why.id).name;
    if json {
        let changes: Vec<_> = why
            .changes
            .iter()
            .map(|c| {
                let mut v = serde_json::to_value(&c.reason).unwrap_or_default();
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("was".into(), json!(c.was.map(|d| d.to_string())));
                    obj.insert("now".into(), json!(c.now.map(|d| d.to_string())));
                }
                v
            })
            .collect();
        let doc = json!({
            "version": 1,
            "name": name,
            "action": why.plan.action,
            "state": why.plan.state,
            "reason": why.plan.reason,
            "compared_with": why.compared_with.as_ref().map(|a| json!({
                "attempt": a.number,
                "run": a.run,
                "imported": a.imported(),
                "finished_at": a.finished.as_ref().map(|f| f.at),
                "fingerprint": a.stamp.as_ref().map(|s| s.fingerprint.to_string()),
            })),
            "reasons": changes,
            "unchanged": why.unchanged,
            "warnings": why.plan.warnings,
        });
        return print(&format!("{doc}\n")).map(|_| EXIT_OK);
    }
    print(&explain(project, &why)).map(|_| EXIT_OK)
}

/// `why` in words.
fn explain(project: &Project, why: &Why) -> String {
    let pipeline = &project.pipeline;
    let name = &pipeline.step(why.id).name;
    let verdict = match why.plan.action {
        Action::Run => "will run",
        Action::Skip => "will be skipped",
    };
    let mut out = format!("{name}: {verdict} ({})\n", why.plan.state);
    let compared = why.compared_with.as_ref().filter(|a| a.stamp.is_some());
    match (why.plan.state, compared) {
        (State::Done | State::Imported, Some(a)) => {
            out += &format!("  {}\n", why.plan.reason);
            out += &format!(
                "  attempt {} was made with the step exactly as it is now: {}\n",
                a.number,
                summarize_components(&why.unchanged)
            );
            let outputs = &pipeline.step(why.id).outputs;
            if !outputs.is_empty() {
                out += &format!("  its outputs are present: {}\n", outputs.join(", "));
            }
        }
        (State::Done | State::Imported, None) => {
            out += &format!("  {}\n", why.plan.reason);
            out += "  it is done by name: it has no fingerprint to compare (imported while an input was missing, or planned --by-name)\n";
        }
        (State::Stale, Some(a)) => {
            let when = a.finished.as_ref().map_or(a.started_at, |f| f.at);
            let which = if a.imported() {
                "the imported success".to_string()
            } else {
                format!("attempt {}", a.number)
            };
            out += &format!(
                "  compared with {which}, which succeeded on {}:\n",
                format_time(when)
            );
            for c in &why.changes {
                out += &format!("  - {}", c.reason);
                match (c.was, c.now) {
                    (Some(was), Some(now)) => {
                        out += &format!(" (was {}, now {})", was.short(), now.short())
                    }
                    (Some(was), None) => out += &format!(" (was {})", was.short()),
                    (None, Some(now)) => out += &format!(" (now {})", now.short()),
                    (None, None) => {}
                }
                if let crate::fingerprint::Reason::DependencyWillRun { step } = &c.reason
                    && let Some(dep) = pipeline.find(step).and_then(|d| why.full_plan.step(d))
                {
                    out += &format!(" ({}: {})", dep.state, dep.reason);
                }
                out += "\n";
            }
            if !why.unchanged.is_empty() {
                out += &format!("  unchanged: {}\n", summarize_components(&why.unchanged));
            }
        }
        _ => out += &format!("  {}\n", why.plan.reason),
    }
    for m in &why.missing_inputs {
        out += &format!("  warning: input `{}` {}\n", m.pattern, m.why);
    }
    out
}

/// "command, shell, dir, 2 env vars, 3 inputs, 1 dependency".
fn summarize_components(keys: &[String]) -> String {
    let count = |prefix: &str| keys.iter().filter(|k| k.starts_with(prefix)).count();
    let mut parts: Vec<String> = Vec::new();
    for (key, word) in [("run", "command"), ("shell", "shell"), ("dir", "dir")] {
        if keys.iter().any(|k| k == key) {
            parts.push(word.into());
        }
    }
    for (prefix, one, many) in [
        ("env:", "env var", "env vars"),
        ("input:", "input", "inputs"),
        ("dep:", "dependency", "dependencies"),
    ] {
        match count(prefix) {
            0 => {}
            1 => parts.push(format!("1 {one}")),
            n => parts.push(format!("{n} {many}")),
        }
    }
    parts.join(", ")
}

fn attempt_json(state: &StateDir, name: &str, a: &Attempt) -> serde_json::Value {
    let (exit_code, signal) = match a.finished.as_ref().map(|f| &f.outcome) {
        Some(journal::Outcome::Success | journal::Outcome::OutputsMissing(_)) => (Some(0), None),
        Some(journal::Outcome::Exited(c)) => (Some(*c), None),
        Some(journal::Outcome::Signaled(s) | journal::Outcome::Interrupted(s)) => (None, Some(*s)),
        _ => (None, None),
    };
    json!({
        "number": a.number,
        "run": a.run,
        "imported": a.imported(),
        "ok": a.ok(),
        "finished": a.finished.is_some(),
        "outcome": a.finished.as_ref().map(|f| describe_outcome(&f.outcome)),
        "exit_code": exit_code,
        "signal": signal,
        "started_at": a.started_at,
        "finished_at": a.finished.as_ref().map(|f| f.at),
        "duration_ms": a.finished.as_ref().map(|f| f.duration_ms),
        "log": Some(state.log(name, a.number)).filter(|p| !a.imported() && p.exists()),
    })
}

fn status(project: &Project, json: bool) -> Result<i32> {
    let (pipeline, state) = (&project.pipeline, &project.state);
    let inspection = project.inspect(&[], Mode::Fingerprint)?;
    let loaded = &inspection.loaded;
    warn(&loaded.warnings);
    let the_plan = &inspection.plan;
    if json {
        let steps: Vec<_> = the_plan
            .steps
            .iter()
            .map(|s| {
                let name = &pipeline.step(s.id).name;
                let h = loaded.history.step(name);
                json!({
                    "name": name,
                    "state": s.state,
                    "attempts": h.map_or(0, |h| h.attempts_started),
                    "last_attempt": h.and_then(|h| h.last.as_ref()).map(|a| attempt_json(state, name, a)),
                })
            })
            .collect();
        let doc = json!({ "version": 1, "running": loaded.writer.as_ref().map(|h| h.pid), "steps": steps });
        return print(&format!("{doc}\n")).map(|_| EXIT_OK);
    }
    let rows: Vec<[String; 6]> = the_plan
        .steps
        .iter()
        .map(|s| {
            let name = pipeline.step(s.id).name.clone();
            let h = loaded.history.step(&name);
            let attempts = h.map_or(0, |h| h.attempts_started);
            match h.and_then(|h| h.last.as_ref()) {
                None => [
                    name,
                    s.state.to_string(),
                    "-".into(),
                    "-".into(),
                    "0".into(),
                    "-".into(),
                ],
                Some(a) => {
                    let result = match &a.finished {
                        None if s.state == State::Running => "running".to_string(),
                        None => "interrupted".to_string(),
                        Some(f) if a.imported() => {
                            format!(
                                "imported ({})",
                                if f.outcome.ok() { "ok" } else { "failed" }
                            )
                        }
                        Some(f) if f.outcome.ok() && s.state == State::Stale => {
                            "ok (now stale)".to_string()
                        }
                        Some(f) if f.outcome.ok() => "ok".to_string(),
                        Some(f) => describe_outcome(&f.outcome),
                    };
                    let when = format_time(a.finished.as_ref().map_or(a.started_at, |f| f.at));
                    let took = attempt_duration(a).unwrap_or_else(|| "-".into());
                    let path = state.log(&name, a.number);
                    let log = if a.imported() {
                        "-".to_string()
                    } else if !path.exists() {
                        "(no output)".to_string()
                    } else {
                        display_path(&path).display().to_string()
                    };
                    [name, result, when, took, attempts.to_string(), log]
                }
            }
        })
        .collect();
    let header = ["STEP", "LAST RESULT", "WHEN", "TOOK", "ATTEMPTS", "LOG"].map(String::from);
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    if let Some(holder) = &loaded.writer {
        out += &format!("{holder} is working on this pipeline\n");
    }
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:w$}  "));
            }
        }
        out += line.trim_end();
        out.push('\n');
    }
    print(&out).map(|_| EXIT_OK)
}

fn log(project: &Project, step: &str) -> Result<i32> {
    let (pipeline, state) = (&project.pipeline, &project.state);
    let id = pipeline.resolve(&[step.to_string()])?[0];
    let name = &pipeline.step(id).name;
    let loaded = state.load()?;
    warn(&loaded.warnings);
    let Some(a) = loaded.history.step(name).and_then(|h| h.last.as_ref()) else {
        return Err(Error::usage_with_help(
            format!("step `{name}` has no recorded attempt, so no log"),
            "`stepwise run` runs it",
        ));
    };
    if a.imported() {
        return Err(Error::usage(format!(
            "the latest attempt of `{name}` was imported from a checkpoint, so it has no log"
        )));
    }
    let path = state.log(name, a.number);
    if !path.exists() {
        // Logs are created on a step's first byte of output.
        eprintln!("(attempt {} of `{name}` printed nothing)", a.number);
        return Ok(EXIT_OK);
    }
    let mut file =
        std::fs::File::open(&path).context(format!("cannot open the log {}", path.display()))?;
    std::io::copy(&mut file, &mut std::io::stdout().lock()).context("cannot write to stdout")?;
    Ok(EXIT_OK)
}

fn forget(
    project: &Project,
    steps: &[String],
    all: bool,
    downstream: bool,
    dry_run: bool,
) -> Result<i32> {
    let names = |ids: &[crate::StepId]| -> Vec<String> {
        ids.iter()
            .map(|&id| project.pipeline.step(id).name.clone())
            .collect()
    };
    if dry_run {
        let ids = project.forget_targets(steps, all, downstream)?;
        let mut out = format!(
            "would forget {} step{}:\n",
            ids.len(),
            if ids.len() == 1 { "" } else { "s" }
        );
        for name in names(&ids) {
            out += &format!("  {name}\n");
        }
        return print(&out).map(|_| EXIT_OK);
    }
    let ids = project.forget(steps, all, downstream)?;
    if all {
        eprintln!("forgot every step: the next run runs them all");
    } else {
        let names = names(&ids);
        eprintln!(
            "forgot {}: the next run runs {}",
            names.join(", "),
            if names.len() == 1 { "it" } else { "them" }
        );
    }
    Ok(EXIT_OK)
}

fn export(state: &StateDir) -> Result<i32> {
    let mut records = Vec::new();
    let (_, warnings) = state.read(&mut |r| records.push(r))?;
    warn(&warnings);
    print(&format_checkpoint(&export_checkpoint(records))).map(|_| EXIT_OK)
}

fn import(project: &Project, file: &Path) -> Result<i32> {
    let bytes = if file == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .context("cannot read stdin")?;
        bytes
    } else {
        std::fs::read(file).map_err(|e| {
            Error::usage(format!(
                "cannot read the checkpoint file {}: {e}",
                file.display()
            ))
        })?
    };
    let attempts = parse_checkpoint(&bytes).map_err(|message| {
        Error::usage_with_help(
            format!("{} is not a checkpoint: {message}", file.display()),
            "nothing was imported; the journal is unchanged",
        )
    })?;
    let ok = attempts.iter().filter(|(_, ok)| *ok).count();
    let total = attempts.len();
    let (unknown, by_name) = project.import(attempts)?;
    for name in &unknown {
        eprintln!(
            "warning: `{name}` is not a step of {}; its attempts are recorded but change nothing",
            project.pipeline.path.display()
        );
    }
    for name in &by_name {
        eprintln!(
            "warning: `{name}`: its fingerprint cannot be computed now (an input of it, or of a step it needs, is missing); its imported success counts by name"
        );
    }
    eprintln!(
        "imported {total} attempt{} ({ok} successful) from {}",
        if total == 1 { "" } else { "s" },
        file.display()
    );
    Ok(EXIT_OK)
}
