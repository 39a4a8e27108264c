//! What the journal means, and the folder it lives in.
//!
//! - [`dir`]: the state dir (`.stepwise/`): its files, opening it to read or
//!   as the one writer, refusing symlinks in it, temp-file clean-up;
//! - [`lock`]: one writer at a time;
//! - [`history`]: the journal folded into each step's history, what the
//!   plan decides from;
//! - [`runs`]: the journal seen run by run, for `history` and the report;
//! - [`snapshot`]: the history saved beside the journal, so a command reads
//!   only the journal's tail;
//! - [`compact`]: the history written back as the fewest records;
//! - [`fsck`]: checking the state dir and repairing an unreadable journal.
//!
//! The bytes of the journal (records, checksums, the append-only store)
//! are [`crate::journal`]'s; this folder gives them meaning. Nothing here
//! starts a process or decides what runs.

pub mod compact;
pub mod dir;
pub mod fsck;
pub mod history;
pub mod lock;
pub mod runs;
pub mod snapshot;
