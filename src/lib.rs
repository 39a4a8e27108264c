//! stepwise: a resumable pipeline runner.
//!
//! A pipeline is an ordered list of steps, each a shell command, possibly
//! depending on others. Every attempt is recorded in an append-only journal,
//! so the next run does exactly the unfinished work: a step that succeeded is
//! skipped, a step that failed or never started runs, in the pipeline's
//! order.
//!
//! The rule at the heart of it is [`resume_from_checkpoint`]. The rest is
//! organised one idea per module:
//!
//! - [`pipeline`]: the pipeline file, parsed and validated
//! - [`journal`]: the append-only record of attempts, and its durability
//! - [`history`]: what the journal says about each step
//! - [`fingerprint`], [`hash`] and [`workspace`]: what defines a step, and
//!   what the files on disk say about it
//! - [`plan`]: which steps run and why
//! - [`scheduler`] and [`process`]: running steps along the graph
//! - [`state_dir`] and [`lock`]: the `.stepwise/` folder and its one writer
//! - [`fsck`]: checking the state dir, and repairing an unreadable journal
//! - [`project`]: a pipeline and its state dir, with the operations of the
//!   command line as library calls
//! - [`report`]: what a run prints
//! - [`cli`]: the command line, a thin layer over the above

pub mod checkpoint;
pub mod cli;
pub mod diagnostic;
pub mod error;
pub mod fingerprint;
pub mod fsck;
pub mod hash;
pub mod history;
pub mod journal;
pub mod lock;
pub mod pipeline;
pub mod plan;
pub mod process;
pub mod project;
pub mod report;
pub mod scheduler;
pub mod state_dir;
pub mod time;
pub mod workspace;

pub use checkpoint::{ResumePlan, resume_from_checkpoint};
pub use error::{Error, Result};
pub use pipeline::{Pipeline, Step, StepId};
pub use plan::{Mode, Plan, plan};
pub use project::Project;
