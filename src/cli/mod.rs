//! The command line: parses arguments, calls the library, prints, and maps
//! every error to an exit code in one place.

mod args;
pub mod init;

pub use args::command;
use args::{CheckpointCommand, Cli, Command, GraphFormat, wants_json};

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Parser;

use crate::checkpoint::{format_checkpoint, parse_checkpoint};
use crate::diagnostic::Diagnostic;
use crate::error::{EXIT_OK, Error, IoContext, Result};
use crate::pipeline::DEFAULT_FILE;
use crate::plan::Mode;
use crate::project::Project;
use crate::run::scheduler::RunOptions;
use crate::state::dir::StateDir;
use crate::state::history::export_checkpoint;
use crate::state::runs::Runs;
use crate::style::{ColorChoice, Style};
use crate::view::events::Events;
use crate::view::history;
use crate::view::html::ReportOptions;
use crate::view::live::Live;
use crate::view::progress::{Both, Console, ConsoleOptions, OutputMode, Progress, display_path};

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
            let text = e.render();
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
        return crate::state::fsck::command(&path, repair);
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
fn describe_compaction(c: &crate::state::dir::Compaction) -> String {
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
        let doc = crate::view::plan::plan_json(pipeline, the_plan, &removed);
        return print(&format!("{doc}\n")).map(|_| EXIT_OK);
    }
    let writer = inspection.loaded.writer.as_ref();
    print(&crate::view::plan::plan_text(
        pipeline, the_plan, writer, &removed, expand,
    ))
    .map(|_| EXIT_OK)
}

fn why(project: &Project, step: &str, json: bool) -> Result<i32> {
    let (why, warnings) = project.why(step, Mode::Fingerprint)?;
    warn(&warnings);
    let pipeline = &project.pipeline;
    if json {
        let doc = crate::view::why::why_json(pipeline, &why);
        return print(&format!("{doc}\n")).map(|_| EXIT_OK);
    }
    print(&crate::view::why::why_text(pipeline, &why)).map(|_| EXIT_OK)
}

fn status(project: &Project, json: bool, expand: bool) -> Result<i32> {
    let (pipeline, state) = (&project.pipeline, &project.state);
    let inspection = &*Box::leak(Box::new(project.inspect(&[], Mode::Fingerprint)?));
    let loaded = &inspection.loaded;
    warn(&loaded.warnings);
    let the_plan = &inspection.plan;
    if json {
        let doc = crate::view::status::status_json(pipeline, state, loaded, the_plan);
        return print(&format!("{doc}\n")).map(|_| EXIT_OK);
    }
    print(&crate::view::status::status_text(
        pipeline, state, loaded, the_plan, expand,
    ))
    .map(|_| EXIT_OK)
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
