//! The command line: parses arguments, calls the library, prints, and maps
//! every error to an exit code in one place.

pub mod init;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser, Subcommand};
use serde_json::json;

use crate::checkpoint::{format_checkpoint, parse_checkpoint};
use crate::diagnostic::Diagnostic;
use crate::error::{EXIT_OK, Error, IoContext, Result};
use crate::history::export_checkpoint;
use crate::pipeline::DEFAULT_FILE;
use crate::plan::{Action, Mode, State, attempt_duration, describe_outcome};
use crate::project::{Project, Why};
use crate::run::scheduler::RunOptions;
use crate::runs::Runs;
use crate::state_dir::StateDir;
use crate::style::{ColorChoice, Style};
use crate::time::format_time;
use crate::view::events::Events;
use crate::view::history::{self, attempt_json};
use crate::view::html::ReportOptions;
use crate::view::live::Live;
use crate::view::progress::{Both, Console, ConsoleOptions, OutputMode, Progress, display_path};

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

    /// Inspect a state dir on its own, without a pipeline file: one a Rust
    /// program writes through the library (`stepwise::Run`). Works with
    /// plan (by name), status, log, forget and checkpoint export
    #[arg(
        long = "state-dir",
        value_name = "DIR",
        global = true,
        conflicts_with = "file"
    )]
    state_dir: Option<PathBuf>,

    /// When to colour the console: auto colours a terminal unless NO_COLOR is set
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto, global = true)]
    color: ColorChoice,

    /// Print less: only failures, warnings, errors, and the summary when something went wrong
    #[arg(short = 'q', long, global = true, conflicts_with = "verbose")]
    quiet: bool,

    /// Print more: each step's plan, command and log file
    #[arg(short = 'v', long, global = true)]
    verbose: bool,

    #[command(subcommand)]
    command: Command,
}

/// `--format` of the inspecting commands that print text or JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// For people
    Text,
    /// One JSON object with a "version" field (see the README)
    Json,
}

/// `graph --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum GraphFormat {
    /// Graphviz: `stepwise graph | dot -Tsvg > graph.svg`
    Dot,
    /// Mermaid, for Markdown that renders it (GitHub, GitLab)
    Mermaid,
    /// One JSON object: nodes with their state, and edges
    Json,
}

/// `run --events`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum EventsFormat {
    /// One JSON object per line
    Json,
}

/// Whether an inspecting command prints JSON: `--json` or `--format json`.
fn wants_json(json: bool, format: Option<Format>) -> bool {
    json || format == Some(Format::Json)
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
        /// Which output of the steps to show: stream (live), failed (a failed step's last
        /// 20 lines) or none [default: stream with -j1 on a terminal, else failed]
        #[arg(long, value_enum, value_name = "WHICH")]
        output: Option<OutputMode>,
        /// Also write one JSON event per line to stdout (step started, finished, skipped,
        /// run finished)
        #[arg(long, value_enum, value_name = "FORMAT")]
        events: Option<EventsFormat>,
        /// Where steps that do not set `executor` run: local (processes here) or slurm
        /// (one sbatch job per attempt) [default: [pipeline] executor, else local]
        ///
        /// On Slurm, each attempt is a batch job named stepwise:<folder>:<step>, asking for
        /// the resources of [step.slurm] over [pipeline.slurm]: partition, cpus, mem, time
        /// (else the step's timeout), gpus, account, qos, sbatch_args = [...]; Slurm is asked
        /// about all jobs in flight every [pipeline.slurm] poll_interval (default 1s). -j
        /// counts jobs in flight too. The state dir must be on a filesystem the compute
        /// nodes share (checked once by a small job). A run after a crash waits for the jobs
        /// still in flight instead of submitting them again; Ctrl-C cancels them.
        #[arg(long, value_enum, value_name = "EXECUTOR")]
        executor: Option<crate::pipeline::Executor>,
    },
    /// Show what `run` would do and why, without doing anything
    Plan {
        /// Only these steps, and the steps they need
        #[arg(value_name = "STEP")]
        steps: Vec<String>,
        /// Print one JSON object instead of text (same as --format json)
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Print text or JSON
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<Format>,
        /// A step is done if any attempt since its last forget succeeded, whatever changed since
        #[arg(long)]
        by_name: bool,
        /// List every expansion of a matrix or for_each step, not one line per template
        #[arg(short = 'e', long)]
        expand: bool,
    },
    /// Explain, component by component, why a step will run or be skipped
    Why {
        #[arg(value_name = "STEP")]
        step: String,
        /// Print one JSON object instead of text (same as --format json)
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Print text or JSON
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<Format>,
    },
    /// Show each step's latest attempt: result, when, how long, where its log is
    Status {
        /// Show one run instead: each step it ran, with its attempts in that run
        #[arg(long, value_name = "ID")]
        run: Option<u64>,
        /// Print one JSON object instead of text (same as --format json)
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Print text or JSON
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<Format>,
        /// List every expansion of a matrix or for_each step, not one row per template
        #[arg(short = 'e', long)]
        expand: bool,
    },
    /// List the recorded runs, newest first: when, how long, how it ended, steps run and failed
    History {
        /// Show the last N runs; 0 shows all
        #[arg(short = 'n', long = "limit", value_name = "N", default_value_t = 20)]
        limit: usize,
        /// Print one JSON object instead of text (same as --format json)
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Print text or JSON
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<Format>,
    },
    /// Print the dependency graph, each step coloured by its plan state
    Graph {
        /// Only these steps, and the steps they need
        #[arg(value_name = "STEP")]
        steps: Vec<String>,
        /// Graphviz DOT, Mermaid or JSON
        #[arg(long, value_enum, value_name = "FORMAT", default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
        /// Print one JSON object (same as --format json)
        #[arg(long, conflicts_with = "format")]
        json: bool,
    },
    /// Write an HTML page of the pipeline and its runs: graph, timeline, steps, failed logs
    Report {
        /// Where to write it; `-` for stdout [default: report.html in the state dir]
        #[arg(short = 'o', long = "output", value_name = "PATH")]
        output: Option<PathBuf>,
        /// How many of the latest runs the timeline and the logs show
        #[arg(long, value_name = "N", default_value_t = 5)]
        runs: usize,
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
    /// Compact the journal: keep each step's latest success and latest attempt, and every run's summary
    Gc,
    /// Write a commented starter stepwise.toml (or the -f PATH); never overwrites
    Init,
    /// Print a shell completion script: `stepwise completions bash > ~/.local/share/bash-completion/completions/stepwise`
    Completions {
        /// The shell to complete in
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `stepwise man | man -l -`; --dir writes one page per command
    Man {
        /// Write stepwise.1 and one page per command (stepwise-run.1, ...) into this folder
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
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

/// The command line's definition, for completions and man pages.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    // One command, then exit: the exit frees everything at once.
    crate::skip_freeing_at_exit();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let style = Style::new(cli.color.for_stderr());
    match dispatch(cli) {
        Ok(code) => code,
        // `stepwise plan | head`: the reader has seen enough; not an error.
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => {
            let _ = std::io::stdout().flush();
            // Whatever the message quotes (a step name, a line of the file,
            // a path) cannot act on the terminal.
            let text = e.to_string();
            eprintln!(
                "{}",
                style.diagnostic(&crate::diagnostic::escape_controls(&text))
            );
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
    // The commands that need no pipeline.
    match &cli.command {
        Command::Init => {
            crate::cli::init::init(&path)?;
            let command = if path == Path::new(DEFAULT_FILE) {
                "stepwise run".to_string()
            } else {
                format!("stepwise -f {} run", path.display())
            };
            eprintln!(
                "wrote {}: `{command}` runs it; edit its steps to make it yours",
                path.display()
            );
            return Ok(EXIT_OK);
        }
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut command(), "stepwise", &mut out);
            return print(&String::from_utf8_lossy(&out)).map(|_| EXIT_OK);
        }
        Command::Man { dir } => return man(dir.as_deref()),
        _ => {}
    }
    // Left for the exit to reclaim (see `skip_freeing_at_exit`).
    let project = std::mem::ManuallyDrop::new(match &cli.state_dir {
        Some(dir) => Project::from_state_dir(dir)?,
        None => Project::open(&path)?,
    });
    let (quiet, verbose, color) = (cli.quiet, cli.verbose, cli.color);
    match cli.command {
        Command::Run {
            steps,
            jobs,
            keep_going,
            by_name,
            output,
            events,
            executor,
        } => {
            let mut options = RunOptions::for_pipeline(&project.pipeline);
            if let Some(j) = jobs {
                options.jobs = j as usize;
            }
            options.keep_going = keep_going;
            options.mode = mode(by_name);
            options.executor = executor;
            let console = ConsoleChoice {
                quiet,
                verbose,
                color,
                output,
                events: events.is_some(),
            };
            run(&project, &steps, &options, console)
        }
        Command::Plan {
            steps,
            json,
            format,
            by_name,
            expand,
        } => show_plan(
            &project,
            &steps,
            wants_json(json, format),
            mode(by_name),
            expand,
        ),
        Command::Why { step, json, format } => why(&project, &step, wants_json(json, format)),
        Command::Status {
            run,
            json,
            format,
            expand,
        } => match run {
            Some(id) => status_of_run(&project, id, wants_json(json, format)),
            None => status(&project, wants_json(json, format), expand),
        },
        Command::History {
            limit,
            json,
            format,
        } => history(&project, limit, wants_json(json, format)),
        Command::Graph {
            steps,
            format,
            json,
        } => graph(
            &project,
            &steps,
            if json { GraphFormat::Json } else { format },
        ),
        Command::Report { output, runs } => report(&project, output, runs),
        Command::Log { step } => log(&project, &step),
        Command::Forget {
            steps,
            all,
            downstream,
            dry_run,
        } => forget(&project, &steps, all, downstream, dry_run),
        Command::Gc => {
            let c = project.gc()?;
            if !c.leftovers_killed.is_empty() {
                eprintln!(
                    "killed {} process(es) left running by a killed run",
                    c.leftovers_killed.len()
                );
            }
            eprintln!("{}", describe_compaction(&c));
            Ok(EXIT_OK)
        }
        Command::Checkpoint(CheckpointCommand::Export) => export(&project.state),
        Command::Checkpoint(CheckpointCommand::Import { file }) => import(&project, &file),
        Command::Init | Command::Completions { .. } | Command::Man { .. } => Ok(EXIT_OK),
        Command::Fsck { .. } => unreachable!("handled before the pipeline is loaded"),
    }
}

/// What the console of `run` should be.
struct ConsoleChoice {
    quiet: bool,
    verbose: bool,
    color: ColorChoice,
    output: Option<OutputMode>,
    events: bool,
}

fn run(
    project: &Project,
    steps: &[String],
    options: &RunOptions,
    choice: ConsoleChoice,
) -> Result<i32> {
    let stderr_tty = std::io::stderr().is_terminal() && !crate::style::dumb_terminal();
    // JSON events into the same terminal would tear the live display.
    let live = stderr_tty && !choice.quiet && !(choice.events && std::io::stdout().is_terminal());
    let output = choice.output.unwrap_or(if stderr_tty && options.jobs == 1 {
        OutputMode::Stream
    } else {
        OutputMode::Failed
    });
    let console_options = ConsoleOptions {
        quiet: choice.quiet,
        verbose: choice.verbose,
        style: Style::new(choice.color.for_stderr()),
        output,
        prefix_output: options.jobs > 1,
        ..ConsoleOptions::default()
    };
    let mut console: Box<dyn Progress> = if live {
        Box::new(Live::stderr(console_options, options.jobs))
    } else {
        Box::new(Console::new(std::io::stderr(), console_options))
    };
    let mut events = choice.events.then(|| Events::new(std::io::stdout()));
    let mut both;
    let progress: &mut dyn Progress = match &mut events {
        Some(events) => {
            both = Both(console.as_mut(), events);
            &mut both
        }
        None => console.as_mut(),
    };
    let report = project.run(steps, options, progress)?;
    if let Some(c) = &report.compaction {
        progress.warning(&format!(
            "compacted the journal first: {}",
            describe_compaction(c)
        ));
    }
    match &report.summary {
        Some(summary) => progress.summary(&project.pipeline, summary),
        None => progress.nothing_to_do(&project.pipeline, &report.plan),
    }
    let code = report.exit_code();
    crate::dispose(report);
    Ok(code)
}

fn history(project: &Project, limit: usize, json: bool) -> Result<i32> {
    let (runs, live) = load_runs(project)?;
    if json {
        let doc = history::history_json(&runs, live, limit);
        return print(&format!("{doc}\n")).map(|_| EXIT_OK);
    }
    print(&history::history_text(&runs, live, limit)).map(|_| EXIT_OK)
}

/// Every run of the journal, and the id of the run in progress, if any.
fn load_runs(project: &Project) -> Result<(Runs, Option<u64>)> {
    let mut records = Vec::new();
    let (writer, warnings) = project.state.read(&mut |r| records.push(r))?;
    warn(&warnings);
    let runs = Runs::from_records(records);
    let live = writer.as_ref().and_then(|holder| {
        let last = runs.runs.last()?;
        let same = holder.pid.is_none_or(|pid| pid == last.pid);
        (last.ended_at.is_none() && same).then_some(last.id)
    });
    Ok((runs, live))
}

fn status_of_run(project: &Project, id: u64, json: bool) -> Result<i32> {
    let (runs, live) = load_runs(project)?;
    let Some(run) = runs.get(id) else {
        let help = match (runs.runs.first(), runs.runs.last()) {
            (Some(first), Some(last)) => format!(
                "the recorded runs are numbered {} to {}; `stepwise history` lists them",
                first.id, last.id
            ),
            _ => "no run is recorded yet: `stepwise run` runs the pipeline".to_string(),
        };
        return Err(Error::usage_with_help(
            format!("no run {id} in the journal"),
            help,
        ));
    };
    let (pipeline, state) = (&project.pipeline, &project.state);
    if json {
        let doc = history::run_status_json(pipeline, state, run, live);
        return print(&format!("{doc}\n")).map(|_| EXIT_OK);
    }
    print(&history::run_status_text(pipeline, state, run, live)).map(|_| EXIT_OK)
}

fn graph(project: &Project, steps: &[String], format: GraphFormat) -> Result<i32> {
    let inspection = project.inspect(steps, Mode::Fingerprint)?;
    warn(&inspection.loaded.warnings);
    let (pipeline, plan) = (&project.pipeline, &inspection.plan);
    let text = match format {
        GraphFormat::Dot => crate::view::graph::dot(pipeline, plan),
        GraphFormat::Mermaid => crate::view::graph::mermaid(pipeline, plan),
        GraphFormat::Json => format!("{}\n", crate::view::graph::json(pipeline, plan)),
    };
    print(&text).map(|_| EXIT_OK)
}

fn report(project: &Project, output: Option<PathBuf>, runs: usize) -> Result<i32> {
    let options = ReportOptions {
        runs,
        ..ReportOptions::default()
    };
    let (html, warnings) = crate::view::html::render(project, &options)?;
    warn(&warnings);
    let in_state_dir = output.is_none();
    let path = output.unwrap_or_else(|| project.state.path().join("report.html"));
    if path == Path::new("-") {
        return print(&html).map(|_| EXIT_OK);
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).context(format!("cannot create {}", parent.display()))?;
    }
    // Into the state dir atomically, replacing (never following) whatever
    // is at that name; a path the user gave is written as they asked.
    let written = if in_state_dir {
        crate::hash::write_atomically(&path, html.as_bytes())
    } else {
        std::fs::write(&path, html)
    };
    written.context(format!("cannot write {}", path.display()))?;
    eprintln!(
        "wrote {}: open it in a browser",
        display_path(&std::path::absolute(&path).unwrap_or(path.clone())).display()
    );
    Ok(EXIT_OK)
}

fn man(dir: Option<&Path>) -> Result<i32> {
    let cmd = command();
    match dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .context("cannot render the man page")?;
            print(&String::from_utf8_lossy(&out)).map(|_| EXIT_OK)
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).context(format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .context(format!("cannot write the man pages into {}", dir.display()))?;
            eprintln!("wrote the man pages into {}", dir.display());
            Ok(EXIT_OK)
        }
    }
}

/// "journal: 200200 records, 4.2 MB -> 2002 records, 412 KB; 3 old logs removed".
fn describe_compaction(c: &crate::state_dir::Compaction) -> String {
    let size = |b: u64| {
        if b >= 1 << 20 {
            format!("{:.1} MB", b as f64 / (1 << 20) as f64)
        } else {
            format!("{:.0} KB", (b as f64 / 1024.0).ceil())
        }
    };
    let mut text = format!(
        "journal: {} records, {} -> {} records, {}",
        c.records_before,
        size(c.bytes_before),
        c.records_after,
        size(c.bytes_after)
    );
    if c.logs_removed > 0 {
        text += &format!("; {} old log file(s) removed", c.logs_removed);
    }
    if c.values_removed > 0 {
        text += &format!(
            "; {} step value file(s) no attempt returns removed",
            c.values_removed
        );
    }
    text
}

fn warn(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {}", crate::diagnostic::escape_controls(w));
    }
}

fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .context("cannot write to stdout")?;
    out.flush().context("cannot write to stdout")
}

fn show_plan(
    project: &Project,
    steps: &[String],
    json: bool,
    mode: Mode,
    expand: bool,
) -> Result<i32> {
    let pipeline = &project.pipeline;
    let inspection = project.inspect(steps, mode)?;
    // Freeing a big journal's history piece by piece costs more than the
    // exit that frees it at once.
    let inspection = &*Box::leak(Box::new(inspection));
    warn(&inspection.loaded.warnings);
    let the_plan = &inspection.plan;
    // Expansions the journal knows that the pipeline no longer has: a value
    // left its matrix, a file its for_each.
    let removed: Vec<&str> = inspection
        .loaded
        .history
        .step_names()
        .iter()
        .map(String::as_str)
        .filter(|name| pipeline.find(name).is_none())
        .filter(|name| {
            crate::pipeline::parse_selector(name)
                .is_some_and(|(t, _)| pipeline.template(&t).is_some())
        })
        .collect();
    if json {
        let steps: Vec<_> = the_plan
            .steps
            .iter()
            .map(|s| {
                let step = pipeline.step(s.id);
                let mut doc = json!({
                    "name": step.name,
                    "action": s.action,
                    "state": s.state,
                    "reason": s.reason,
                    "reasons": s.reasons,
                    "warnings": s.warnings,
                });
                if let (Some(template), Some(obj)) = (&step.template, doc.as_object_mut()) {
                    let values: serde_json::Map<String, serde_json::Value> = step
                        .values
                        .iter()
                        .map(|(k, v)| (k.clone(), json!(v)))
                        .collect();
                    obj.insert("template".into(), json!(template));
                    obj.insert("values".into(), serde_json::Value::Object(values));
                }
                doc
            })
            .collect();
        let mut doc = json!({
            "version": 1,
            "done": the_plan.done(),
            "remaining": the_plan.remaining(),
            "steps": steps,
        });
        if !removed.is_empty()
            && let Some(obj) = doc.as_object_mut()
        {
            obj.insert("removed".into(), json!(removed));
        }
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
    let mut shown_templates: Vec<&str> = Vec::new();
    for s in &the_plan.steps {
        let step = pipeline.step(s.id);
        if let Some(template) = step.template.as_deref().filter(|_| !expand) {
            // One line per template: `align: 312 done, 1 failed, 187 remaining`.
            if shown_templates.contains(&template) {
                continue;
            }
            shown_templates.push(template);
            let group: Vec<&crate::plan::StepPlan> = the_plan
                .steps
                .iter()
                .filter(|p| pipeline.step(p.id).template.as_deref() == Some(template))
                .collect();
            let mut counts: Vec<(State, usize)> = Vec::new();
            for p in &group {
                match counts.iter_mut().find(|(state, _)| *state == p.state) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((p.state, 1)),
                }
            }
            let remaining = group.iter().filter(|p| p.action == Action::Run).count();
            let mut parts: Vec<String> = counts
                .iter()
                .map(|(state, n)| format!("{n} {state}"))
                .collect();
            parts.push(format!("{remaining} to run"));
            let action = if remaining > 0 { "run " } else { "skip" };
            out += &format!(
                "  {action}  {:width$}  {} steps: {}\n",
                template,
                group.len(),
                parts.join(", ")
            );
            continue;
        }
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
    if !removed.is_empty() {
        out += &format!(
            "  no longer in the pipeline ({}): {}\n",
            removed.len(),
            removed.join(", ")
        );
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

/// One `status` row per template: `align (6)`, its results counted, the
/// latest time, the attempts summed.
fn fold_templates(
    pipeline: &crate::Pipeline,
    plan: &crate::Plan,
    rows: Vec<[String; 6]>,
) -> Vec<[String; 6]> {
    let mut out: Vec<[String; 6]> = Vec::new();
    let mut folded: Vec<(String, usize)> = Vec::new();
    for (s, row) in plan.steps.iter().zip(rows) {
        let Some(template) = pipeline.step(s.id).template.clone() else {
            out.push(row);
            continue;
        };
        let at = match folded.iter().find(|(t, _)| *t == template) {
            Some(&(_, i)) => i,
            None => {
                folded.push((template.clone(), out.len()));
                out.push([
                    template,
                    String::new(),
                    "-".into(),
                    "-".into(),
                    "0".into(),
                    "-".into(),
                ]);
                out.len() - 1
            }
        };
        let group = &mut out[at];
        // Results as "5 ok, 1 exit code 3": counted in the result column.
        let mut counts: Vec<(String, usize)> = group[1]
            .split(", ")
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                p.split_once(' ')
                    .map(|(n, r)| (r.to_string(), n.parse().unwrap_or(0)))
            })
            .collect();
        match counts.iter_mut().find(|(r, _)| *r == row[1]) {
            Some((_, n)) => *n += 1,
            None => counts.push((row[1].clone(), 1)),
        }
        group[1] = counts
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect::<Vec<_>>()
            .join(", ");
        if row[2] != "-" && (group[2] == "-" || row[2] > group[2]) {
            group[2] = row[2].clone();
        }
        let attempts: u64 =
            group[4].parse::<u64>().unwrap_or(0) + row[4].parse::<u64>().unwrap_or(0);
        group[4] = attempts.to_string();
    }
    for (template, at) in folded {
        let n = pipeline.template(&template).map_or(0, <[_]>::len);
        out[at][0] = format!("{template} ({n} steps)");
    }
    out
}

fn status(project: &Project, json: bool, expand: bool) -> Result<i32> {
    let (pipeline, state) = (&project.pipeline, &project.state);
    let inspection = &*Box::leak(Box::new(project.inspect(&[], Mode::Fingerprint)?));
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
    // Expansions of a template fold into one row, unless asked for each.
    let rows = if expand {
        rows
    } else {
        fold_templates(pipeline, the_plan, rows)
    };
    let header = ["STEP", "LAST RESULT", "WHEN", "TOOK", "ATTEMPTS", "LOG"].map(String::from);
    let (header, rows) = with_job_column(loaded, pipeline, the_plan, header, rows);
    let mut out = String::new();
    if let Some(holder) = &loaded.writer {
        out += &format!("{holder} is working on this pipeline\n");
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    out += &history::table(&header, &rows, &[]);
    print(&out).map(|_| EXIT_OK)
}

/// The status table with a JOB column before LOG, when the latest attempt
/// of some step ran as a Slurm job and the rows are one per step, in plan
/// order; otherwise as it was, so other pipelines' tables do not change.
fn with_job_column(
    loaded: &crate::state_dir::Loaded,
    pipeline: &crate::Pipeline,
    plan: &crate::Plan,
    header: [String; 6],
    rows: Vec<[String; 6]>,
) -> (Vec<String>, Vec<Vec<String>>) {
    let jobs: Vec<Option<&String>> = plan
        .steps
        .iter()
        .map(|s| {
            loaded
                .history
                .step(&pipeline.step(s.id).name)
                .and_then(|h| h.last.as_ref())
                .and_then(|a| a.job.as_ref())
        })
        .collect();
    let mut header = header.to_vec();
    let mut rows: Vec<Vec<String>> = rows.into_iter().map(Vec::from).collect();
    if rows.len() == jobs.len() && jobs.iter().any(Option::is_some) {
        header.insert(5, "JOB".into());
        for (row, job) in rows.iter_mut().zip(&jobs) {
            row.insert(5, job.map_or("-".to_string(), |j| j.to_string()));
        }
    }
    (header, rows)
}

fn log(project: &Project, step: &str) -> Result<i32> {
    let (pipeline, state) = (&project.pipeline, &project.state);
    let id = pipeline.resolve_one(step)?;
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
    let attempts =
        parse_checkpoint(&bytes).map_err(|message| not_a_checkpoint(file, &bytes, message))?;
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

/// The error for a checkpoint file that does not parse: pointing at the
/// problem in the file, as for the pipeline file, when JSON says where.
fn not_a_checkpoint(file: &Path, bytes: &[u8], message: String) -> Error {
    const HELP: &str = "a checkpoint is a JSON list of [name, ok] pairs such as [[\"load\", true]]; nothing was imported, the journal is unchanged";
    let empty = bytes.iter().all(u8::is_ascii_whitespace);
    let located = std::str::from_utf8(bytes)
        .ok()
        .filter(|_| !empty)
        .and_then(|text| {
            let e = serde_json::from_slice::<Vec<(String, bool)>>(bytes).err()?;
            if e.line() == 0 {
                return None;
            }
            let line_start: usize = text
                .split_inclusive('\n')
                .take(e.line() - 1)
                .map(str::len)
                .sum();
            // serde_json's column is just past the offending byte.
            let at = (line_start + e.column().saturating_sub(1)).min(text.len());
            let what = e.to_string();
            let what = what
                .rfind(" at line ")
                .map_or(what.as_str(), |i| &what[..i]);
            Some(
                Diagnostic::new(format!("{} is not a checkpoint: {what}", file.display()))
                    .at(file, text, at.saturating_sub(1)..at)
                    .help(HELP),
            )
        });
    match located {
        Some(d) => Error::invalid(d),
        None => Error::usage_with_help(
            format!("{} is not a checkpoint: {message}", file.display()),
            HELP,
        ),
    }
}
