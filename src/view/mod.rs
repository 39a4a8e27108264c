//! What stepwise shows: the documents of the inspecting commands and their
//! renderers, and the consumers of a run's progress.
//!
//! - [`progress`]: the `Progress` trait a run reports to, the plain
//!   console, and the pieces shared by every display;
//! - [`live`]: the status area redrawn in place on a terminal;
//! - [`events`]: `run --events json`, one JSON object per line;
//! - [`plan`], [`why`] and [`status`]: what those commands print, as text
//!   and as `--json` documents;
//! - [`history`]: what `history` and `status --run` print;
//! - [`graph`]: the dependency graph as DOT, Mermaid, JSON and SVG;
//! - [`html`]: the self-contained report of `stepwise report`.
//!
//! Views read plans, histories and runs; they never write the journal or
//! start a process.

pub mod events;
pub mod graph;
pub mod history;
pub mod html;
pub mod live;
pub mod plan;
pub mod progress;
pub mod status;
pub mod why;
