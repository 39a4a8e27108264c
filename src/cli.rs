//! The command line: parses arguments, calls the library, prints, and maps
//! every error to an exit code in one place.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use serde_json::json;

use crate::checkpoint::{format_checkpoint, parse_checkpoint};
use crate::error::{EXIT_OK, Error, IoContext, Result};
use crate::history::{Attempt, export_checkpoint};
use crate::journal::{self, Record, now};
use crate::pipeline::{DEFAULT_FILE, Pipeline};
use crate::plan::{Action, State, attempt_duration, describe_outcome, plan};
use crate::report::{Console, Progress, display_path};
use crate::scheduler::{RunOptions, default_jobs, execute};
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
    },
    /// Show what `run` would do and why, without doing anything
    Plan {
        /// Only these steps, and the steps they need
        #[arg(value_name = "STEP")]
        steps: Vec<String>,
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
    },
    /// Export or import the checkpoint as a JSON list of [name, ok] pairs
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
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

fn dispatch(cli: Cli) -> Result<i32> {
    let path = cli
        .file
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_FILE));
    let pipeline = Pipeline::load(&path)?;
    let state = StateDir::for_pipeline(&pipeline);
    match cli.command {
        Command::Run {
            steps,
            jobs,
            keep_going,
        } => run(&pipeline, &state, &steps, jobs, keep_going),
        Command::Plan { steps, json } => show_plan(&pipeline, &state, &steps, json),
        Command::Status { json } => status(&pipeline, &state, json),
        Command::Log { step } => log(&pipeline, &state, &step),
        Command::Forget { steps, all } => forget(&pipeline, &state, &steps, all),
        Command::Checkpoint(CheckpointCommand::Export) => export(&state),
        Command::Checkpoint(CheckpointCommand::Import { file }) => import(&pipeline, &state, &file),
    }
}

fn warn(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

fn run(
    pipeline: &Pipeline,
    state: &StateDir,
    steps: &[String],
    jobs: Option<u32>,
    keep_going: bool,
) -> Result<i32> {
    let selected = pipeline.resolve(steps)?;
    let scope = pipeline.scope(&selected);
    let mut writer = state.open_writer(pipeline.sync, "run")?;
    warn(&writer.warnings);
    let the_plan = plan(pipeline, &writer.history, &scope, None);
    let mut console = Console::default();
    console.plan(pipeline, &the_plan);
    if the_plan.remaining() == 0 {
        eprintln!("nothing to do: every step in scope is done");
        return Ok(EXIT_OK);
    }
    let options = RunOptions {
        jobs: jobs
            .map(|j| j as usize)
            .or(pipeline.jobs)
            .unwrap_or_else(default_jobs),
        keep_going,
        kill_grace: pipeline.kill_grace,
    };
    let summary = execute(
        pipeline,
        &the_plan,
        state,
        &mut writer,
        &mut console,
        &options,
    )?;
    console.summary(pipeline, &summary);
    writer.store.close()?;
    Ok(summary.exit_code())
}

fn show_plan(pipeline: &Pipeline, state: &StateDir, steps: &[String], json: bool) -> Result<i32> {
    let selected = pipeline.resolve(steps)?;
    let loaded = state.load()?;
    warn(&loaded.warnings);
    let the_plan = plan(
        pipeline,
        &loaded.history,
        &pipeline.scope(&selected),
        loaded.live_run,
    );
    let mut out = std::io::stdout().lock();
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
                })
            })
            .collect();
        let doc = json!({
            "version": 1,
            "done": the_plan.done(),
            "remaining": the_plan.remaining(),
            "steps": steps,
        });
        writeln!(out, "{doc}").context("cannot write to stdout")?;
        return Ok(EXIT_OK);
    }
    writeln!(out, "{the_plan}").context("cannot write to stdout")?;
    if let Some(holder) = &loaded.writer {
        writeln!(
            out,
            "({holder} is working on this pipeline; this is what it has recorded so far)"
        )
        .context("cannot write to stdout")?;
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
        writeln!(
            out,
            "  {action}  {:width$}  {:11}  {}",
            pipeline.step(s.id).name,
            s.state,
            s.reason
        )
        .context("cannot write to stdout")?;
    }
    Ok(EXIT_OK)
}

fn attempt_json(state: &StateDir, name: &str, a: &Attempt) -> serde_json::Value {
    let (exit_code, signal) = match a.finished.as_ref().map(|f| &f.outcome) {
        Some(journal::Outcome::Success) => (Some(0), None),
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
        "log": (!a.imported()).then(|| state.log(name, a.number)),
    })
}

fn status(pipeline: &Pipeline, state: &StateDir, json: bool) -> Result<i32> {
    let loaded = state.load()?;
    warn(&loaded.warnings);
    let the_plan = plan(
        pipeline,
        &loaded.history,
        &pipeline.scope(&[]),
        loaded.live_run,
    );
    let mut out = std::io::stdout().lock();
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
        writeln!(out, "{doc}").context("cannot write to stdout")?;
        return Ok(EXIT_OK);
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
                        Some(f) if a.imported() => format!(
                            "imported ({})",
                            if f.outcome.ok() { "ok" } else { "failed" }
                        ),
                        Some(f) if f.outcome.ok() => "ok".to_string(),
                        Some(f) => describe_outcome(&f.outcome),
                    };
                    let when = format_time(a.finished.as_ref().map_or(a.started_at, |f| f.at));
                    let took = attempt_duration(a).unwrap_or_else(|| "-".into());
                    let log = if a.imported() {
                        "-".to_string()
                    } else {
                        display_path(&state.log(&name, a.number))
                            .display()
                            .to_string()
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
    if let Some(holder) = &loaded.writer {
        writeln!(out, "{holder} is working on this pipeline").context("cannot write to stdout")?;
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
        writeln!(out, "{}", line.trim_end()).context("cannot write to stdout")?;
    }
    Ok(EXIT_OK)
}

fn log(pipeline: &Pipeline, state: &StateDir, step: &str) -> Result<i32> {
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
    let mut file =
        std::fs::File::open(&path).context(format!("cannot open the log {}", path.display()))?;
    std::io::copy(&mut file, &mut std::io::stdout().lock()).context("cannot write to stdout")?;
    Ok(EXIT_OK)
}

fn forget(pipeline: &Pipeline, state: &StateDir, steps: &[String], all: bool) -> Result<i32> {
    let ids = pipeline.resolve(steps)?;
    let mut writer = state.open_writer(pipeline.sync, "forget")?;
    warn(&writer.warnings);
    let names: Vec<String> = ids
        .iter()
        .map(|&id| pipeline.step(id).name.clone())
        .collect();
    writer.record(Record::Forgotten {
        at: now(),
        steps: if all { None } else { Some(names.clone()) },
    })?;
    writer.store.close()?;
    if all {
        eprintln!("forgot every step: the next run runs them all");
    } else {
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
    let text = format_checkpoint(&export_checkpoint(records));
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("cannot write to stdout")?;
    Ok(EXIT_OK)
}

fn import(pipeline: &Pipeline, state: &StateDir, file: &Path) -> Result<i32> {
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
    let mut unknown: Vec<&str> = attempts
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| pipeline.find(n).is_none())
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    let mut writer = state.open_writer(pipeline.sync, "checkpoint import")?;
    warn(&writer.warnings);
    for name in &unknown {
        eprintln!(
            "warning: `{name}` is not a step of {}; its attempts are recorded but change nothing",
            pipeline.path.display()
        );
    }
    let ok = attempts.iter().filter(|(_, ok)| *ok).count();
    let total = attempts.len();
    writer.record(Record::Imported {
        at: now(),
        attempts,
    })?;
    writer.store.close()?;
    eprintln!(
        "imported {total} attempt{} ({ok} successful) from {}",
        if total == 1 { "" } else { "s" },
        file.display()
    );
    Ok(EXIT_OK)
}
