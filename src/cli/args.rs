//! The command line's definition: the arguments, subcommands and their
//! help, as clap reads them. What each command does is in [`super`].

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use crate::style::ColorChoice;
use crate::view::progress::OutputMode;

pub(super) const EXIT_CODES: &str = "\
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
pub(super) struct Cli {
    /// The pipeline file [default: ./stepwise.toml]
    #[arg(short = 'f', long = "file", value_name = "PATH", global = true)]
    pub(super) file: Option<PathBuf>,

    /// Inspect a state dir on its own, without a pipeline file: one a Rust
    /// program writes through the library (`stepwise::Run`). Works with
    /// plan (by name), status, log, forget and checkpoint export
    #[arg(
        long = "state-dir",
        value_name = "DIR",
        global = true,
        conflicts_with = "file"
    )]
    pub(super) state_dir: Option<PathBuf>,

    /// When to colour the console: auto colours a terminal unless NO_COLOR is set
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto, global = true)]
    pub(super) color: ColorChoice,

    /// Print less: only failures, warnings, errors, and the summary when something went wrong
    #[arg(short = 'q', long, global = true, conflicts_with = "verbose")]
    pub(super) quiet: bool,

    /// Print more: each step's plan, command and log file
    #[arg(short = 'v', long, global = true)]
    pub(super) verbose: bool,

    #[command(subcommand)]
    pub(super) command: Command,
}

/// `--format` of the inspecting commands that print text or JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Format {
    /// For people
    Text,
    /// One JSON object with a "version" field (see the README)
    Json,
}

/// `graph --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum GraphFormat {
    /// Graphviz: `stepwise graph | dot -Tsvg > graph.svg`
    Dot,
    /// Mermaid, for Markdown that renders it (GitHub, GitLab)
    Mermaid,
    /// One JSON object: nodes with their state, and edges
    Json,
}

/// `run --events`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum EventsFormat {
    /// One JSON object per line
    Json,
}

/// Whether an inspecting command prints JSON: `--json` or `--format json`.
pub(super) fn wants_json(json: bool, format: Option<Format>) -> bool {
    json || format == Some(Format::Json)
}

#[derive(Subcommand, Debug)]
pub(super) enum Command {
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
pub(super) enum CheckpointCommand {
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
