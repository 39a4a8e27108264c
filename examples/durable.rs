//! Durable steps in a Rust program: four steps whose results survive a crash.
//!
//! ```sh
//! cargo run --example durable                      # all four steps run
//! cargo run --example durable                      # nothing runs: every value comes from the journal
//! cargo run --example durable -- --pause 10s       # `rank` takes 10s: press Ctrl-C (or kill -9) during it,
//! cargo run --example durable                      #   then run again: fetch and count are not redone
//! cargo run --example durable -- --min-len 5       # a changed input: count and rank run again;
//!                                                  #   publish does not, since rank came out the same
//! cargo run -- status --state-dir target/durable-example/.stepwise
//! ```
//!
//! Each step appends its name to `effects.log` in the work dir when its
//! body runs, so the side effects can be counted: a step that is done is
//! never run again, its recorded value is returned instead.

use std::collections::BTreeMap;
use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use stepwise::{Run, StepKey};

/// What the program is asked to do.
pub struct Options {
    /// Where it keeps its files: `effects.log`, `report.txt` and its state
    /// dir, `.stepwise/`.
    pub work: PathBuf,
    /// Words shorter than this are not counted. An input of `count`.
    pub min_len: usize,
    /// How long `rank` takes, to leave time to interrupt it.
    pub pause: Duration,
}

/// The value of `fetch`: where the text came from, and when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub text: String,
    /// The process that fetched it: after a resume, the killed one.
    pub fetched_by_pid: u32,
    pub fetched_at_ms: u64,
}

/// Everything one run of the program ends with, fresh or recorded.
#[derive(Debug, Serialize, Deserialize)]
pub struct Outcome {
    pub document: Document,
    pub counts: BTreeMap<String, u32>,
    pub top: Vec<(String, u32)>,
    pub report: PathBuf,
    /// `2 ran, 2 skipped as done`.
    pub summary: String,
}

const TEXT: &str = "A journal records every attempt of every step. The journal keeps the
values of the steps that finished, so after a crash the program gets those
values back instead of doing the work again: the journal is the checkpoint,
and its values are the results. Failed steps run again, and steps never
started run for the first time.";

/// The program: four steps, each a closure whose value is recorded.
pub fn run(options: &Options) -> Result<Outcome, Box<dyn Error>> {
    std::fs::create_dir_all(&options.work)?;
    let effects = options.work.join("effects.log");
    let mut run = Run::open(options.work.join(".stepwise"))?;

    // No inputs: done once it has succeeded, until forgotten.
    let document: Document = run.step("fetch", || {
        side_effect(&effects, "fetch")?;
        Ok::<_, std::io::Error>(Document {
            text: TEXT.to_string(),
            fetched_by_pid: std::process::id(),
            fetched_at_ms: now_ms(),
        })
    })?;

    // Its inputs are part of its fingerprint: another `--min-len`, or
    // another text, and it runs again.
    let count = StepKey::new("count")
        .input_named("min_len", &options.min_len)
        .input_named("text", &document.text);
    let counts: BTreeMap<String, u32> = run.step_with(count, || {
        side_effect(&effects, "count")?;
        Ok::<_, std::io::Error>(count_words(&document.text, options.min_len))
    })?;

    // Fed by the value of `count`: it runs again when that value changed.
    let rank = StepKey::new("rank")
        .input(&counts)
        .retries(2)
        .retry_delay(Duration::from_millis(100));
    let top: Vec<(String, u32)> = run.step_with(rank, || {
        side_effect(&effects, "rank")?;
        std::thread::sleep(options.pause);
        Ok::<_, std::io::Error>(top_words(&counts, 3))
    })?;

    // Runs again only when the ranking itself changed.
    let report_path = options.work.join("report.txt");
    let report: PathBuf = run.step_with(StepKey::new("publish").input(&top), || {
        side_effect(&effects, "publish")?;
        let lines: Vec<String> = top.iter().map(|(w, n)| format!("{w} {n}\n")).collect();
        std::fs::write(&report_path, lines.concat())?;
        Ok::<_, std::io::Error>(report_path.clone())
    })?;

    let summary = run.finish()?;
    Ok(Outcome {
        document,
        counts,
        top,
        report,
        summary: summary.to_string(),
    })
}

/// Appends the step's name to the effects log: proof that its body ran.
fn side_effect(log: &Path, step: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    writeln!(file, "{step}")?;
    file.sync_all()
}

/// How many times each step's body has run, from the effects log.
pub fn effects(work: &Path) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let text = std::fs::read_to_string(work.join("effects.log")).unwrap_or_default();
    for line in text.lines() {
        *counts.entry(line.to_string()).or_insert(0) += 1;
    }
    counts
}

fn count_words(text: &str, min_len: usize) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for word in text
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| w.len() >= min_len)
    {
        *counts.entry(word.to_ascii_lowercase()).or_insert(0) += 1;
    }
    counts
}

fn top_words(counts: &BTreeMap<String, u32>, n: usize) -> Vec<(String, u32)> {
    let mut words: Vec<(String, u32)> = counts.iter().map(|(w, c)| (w.clone(), *c)).collect();
    words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    words.truncate(n);
    words
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        work: PathBuf::from("target/durable-example"),
        min_len: 4,
        pause: Duration::ZERO,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--min-len" => {
                options.min_len = value()?.parse().map_err(|e| format!("--min-len: {e}"))?
            }
            "--pause" => options.pause = stepwise::pipeline::parse_duration(&value()?)?,
            "--work" => options.work = PathBuf::from(value()?),
            other => {
                return Err(format!(
                    "unknown argument `{other}`; usage: durable [--work DIR] [--min-len N] [--pause 10s]"
                ));
            }
        }
    }
    Ok(options)
}

fn main() {
    let result = parse_args()
        .map_err(Box::<dyn Error>::from)
        .and_then(|options| run(&options).map(|outcome| (options, outcome)));
    match result {
        Ok((options, outcome)) => {
            println!("{}", outcome.summary);
            println!(
                "text fetched by process {} (this is process {})",
                outcome.document.fetched_by_pid,
                std::process::id()
            );
            for (word, n) in &outcome.top {
                println!("  {word:10} {n}");
            }
            println!("report: {}", outcome.report.display());
            let effects: Vec<String> = effects(&options.work)
                .iter()
                .map(|(step, n)| format!("{step} {n}x"))
                .collect();
            println!("step bodies run so far: {}", effects.join(", "));
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
