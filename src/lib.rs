//! stepwise: resumable pipelines, as a command-line runner and as durable
//! steps inside Rust programs.
//!
//! Every attempt of every step is recorded in an append-only journal, so the
//! next run does exactly the unfinished work: a step that succeeded is
//! skipped, a step that failed or never started runs. The `stepwise` command
//! runs shell commands listed in a `stepwise.toml`; this library runs the
//! steps of your own program the same way, with the same journal, and the
//! command line can inspect what your program recorded.
//!
//! # Quick start: durable steps in a program
//!
//! Open a [`Run`] on a state dir, wrap each step in [`Run::step`], and
//! [`finish`](Run::finish) it. A step's closure returns a `Result`; its
//! value must be `serde::Serialize + serde::de::DeserializeOwned`, since it
//! is recorded as JSON.
//!
//! ```
//! use stepwise::{Run, StepKey};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let state_dir = dir.path().join(".stepwise");
//! # let download = |url: &str| -> Result<String, std::io::Error> { Ok(format!("a,b\n1,2\n")) };
//! let mut run = Run::open(&state_dir)?; // takes the lock, loads the journal
//!
//! // Done once it has succeeded: after a crash, the recorded text comes
//! // back and `download` is not called again.
//! let csv: String = run.step("download", || download("https://example.org/data.csv"))?;
//!
//! // Its input is part of its fingerprint: another `min_rows` reruns it.
//! let min_rows = 1;
//! let key = StepKey::new("parse").input_named("min_rows", &min_rows);
//! let rows: Vec<Vec<String>> = run.step_with(key, || {
//!     let rows: Vec<Vec<String>> = csv.lines().map(|l| l.split(',').map(String::from).collect()).collect();
//!     if rows.len() < min_rows { Err("too few rows") } else { Ok(rows) }
//! })?;
//!
//! let summary = run.finish()?; // records the end, syncs, releases the lock
//! assert_eq!(summary.to_string(), "2 ran, 0 skipped as done");
//!
//! // The same program again: nothing is done twice.
//! let mut run = Run::open(&state_dir)?;
//! let again: String = run.step("download", || -> Result<String, std::io::Error> {
//!     unreachable!("done steps are not run")
//! })?;
//! assert_eq!(again, csv);
//! # let _ = rows;
//! # Ok(())
//! # }
//! ```
//!
//! `examples/durable.rs` is a complete program to run, interrupt and run
//! again: `cargo run --example durable -- --pause 10s`.
//!
//! # When is a step done?
//!
//! A step is named by its [`StepKey`]: a name (letters, digits, `_`, `-`,
//! `.`, as in a pipeline file), and optionally inputs and a version that make
//! up its **fingerprint**. A step is **done** when its latest successful
//! attempt since it was last forgotten was made with the fingerprint it has
//! now, the rule the command line applies to its commands. Then its closure
//! is not called and its recorded value is returned.
//!
//! | what the journal holds for the step                 | `run.step(...)`                    |
//! |-----------------------------------------------------|------------------------------------|
//! | a success with the current fingerprint              | returns the recorded value         |
//! | a success, then an input or the version changed     | runs (`stale`)                     |
//! | only failed attempts                                | runs again (`failed`)              |
//! | an attempt that never finished (the process died)   | runs again (`interrupted`)         |
//! | a `forget` after its last success                   | runs again (`forgotten`)           |
//! | nothing                                             | runs (`never run`)                 |
//!
//! When it runs, each attempt is recorded: its start (with the fingerprint
//! and the components it is made of) before the closure is called, its end
//! after. An `Ok` value is serialized with `serde_json`, checked to read back
//! as its type, and recorded before [`Run::step`] returns it; an `Err` is
//! recorded with its message (and retried if the key has
//! [`retries`](StepKey::retries)), then returned as [`StepError::Failed`].
//! A panic is recorded as a failed attempt and resumed. Values larger than
//! [`durable::DEFAULT_INLINE_LIMIT`] bytes of JSON are written atomically to
//! `values/<digest>.json` in the state dir instead of the journal.
//!
//! Inputs are hashed from their JSON form with map keys sorted. Feeding a
//! step the value of an earlier one (`.input(&rows)`) makes it run again
//! exactly when that value changed: if the earlier step reruns and comes out
//! the same, the later one is still done. [`Run::summary`] says, for each
//! step, whether it ran and why, in the planner's words (`input changed:
//! min_rows`).
//!
//! # Crashes, concurrency and durability
//!
//! - **Killed at any instant** (`kill -9`, OOM, power cut): every record
//!   reaches the journal in a single write, so only whole records remain.
//!   A step that was running reads as interrupted and runs again; every step
//!   recorded done returns its value. The run that died is closed by the next
//!   [`Run::open`].
//! - **The closure itself is not transactional**: a step killed halfway may
//!   have done part of its side effects, and runs again from the start. Make
//!   steps idempotent, or write their outputs atomically.
//! - **One process at a time**: [`Run::open`] takes the same lock as
//!   `stepwise run`. A second process (a program or the command line) gets
//!   [`Error::Locked`] at once, naming the holder. The kernel releases the
//!   lock when the process ends, however it ends.
//! - **Durability**: by default the journal is fsynced at least once a second
//!   and when the run finishes, so a power cut can make the last second's
//!   steps run again, never mark undone work done.
//!   [`RunBuilder::sync`]`(`[`SyncMode::Always`]`)` fsyncs every record.
//!   Value files are always fsynced before the record naming them.
//!
//! # The command line on a program's state dir
//!
//! `stepwise status --state-dir DIR`, `plan --state-dir DIR`, `log`,
//! `forget STEP --state-dir DIR` and `checkpoint export --state-dir DIR` work
//! on a state dir without a pipeline file: its steps are the names in the
//! journal, in the order they first appear. Only the program knows its steps'
//! inputs, so `plan` decides by name there (done if a success is recorded
//! since the last forget); `run`, `why` and `checkpoint import` need a
//! pipeline file.
//!
//! # The heart of it
//!
//! Whatever decides, command line or program, starts from one pure rule,
//! [`resume_from_checkpoint`]: given the steps in order and the attempts
//! recorded as `(name, ok)`, a step is done if any attempt succeeded, and the
//! rest remain, in order. Fingerprints only ever turn "done" back into "run".
//!
//! ```
//! use stepwise::resume_from_checkpoint;
//!
//! let plan = resume_from_checkpoint(&["load", "clean", "train"], [("load", true), ("clean", false)]);
//! assert_eq!(plan.remaining, ["clean", "train"]);
//! assert_eq!(plan.to_string(), "Resume plan: 1 done, 2 remaining");
//! ```
//!
//! # Modules
//!
//! One idea per module:
//!
//! - [`durable`]: durable steps in a program ([`Run`], [`StepKey`])
//! - [`checkpoint`]: the seed contract, [`resume_from_checkpoint`]
//! - [`pipeline`]: the pipeline file, parsed and validated
//! - [`journal`]: the append-only record of attempts, and its durability
//! - [`fingerprint`], [`hash`] and [`workspace`]: what defines a step, and
//!   what the files on disk say about it
//! - [`plan`](mod@plan): which steps run and why
//! - [`run`]: doing the work: the scheduler, local processes, Slurm jobs
//! - [`state`]: what the journal means (history, runs, snapshot,
//!   compaction, fsck), the `.stepwise/` folder and its one writer
//! - [`project`]: a pipeline and its state dir, with the operations of the
//!   command line as library calls
//! - [`view`]: what stepwise shows: a run's progress (console, live
//!   display, `--events json`), `history`, `status --run`, `graph` and the
//!   HTML `report`; [`style`] (colour)
//! - [`cli`]: the command line, a thin layer over the above

#![deny(missing_docs)]

pub mod checkpoint;

static SKIP_FREEING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// For a process that exits right after its one command (the CLI): the
/// large structures a command builds (the pipeline, the history, the facts
/// of every step) are then left for the exit to reclaim at once rather than
/// freed an allocation at a time, which at 10,000 steps cost several
/// percent of a no-op run. A program that goes on must not call this.
pub fn skip_freeing_at_exit() {
    SKIP_FREEING.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Drops `value`, unless [`skip_freeing_at_exit`] was called.
pub(crate) fn dispose<T>(value: T) {
    if SKIP_FREEING.load(std::sync::atomic::Ordering::Relaxed) {
        std::mem::forget(value);
    } else {
        drop(value);
    }
}
pub mod cli;
pub mod diagnostic;
pub mod durable;
pub mod error;
pub mod fingerprint;
pub mod hash;
pub mod journal;
pub mod pipeline;
pub mod pipeline_cache;
pub mod plan;
pub mod project;
pub mod run;
pub mod state;
pub mod style;
pub mod time;
pub mod view;
pub mod workspace;

pub use checkpoint::{ResumePlan, resume_from_checkpoint};
pub use durable::{Run, RunBuilder, StepError, StepKey, StepReport, Summary};
pub use error::{Error, Result};
pub use pipeline::{Pipeline, Step, StepId, SyncMode};
pub use plan::{Mode, Plan, plan};
pub use project::Project;
