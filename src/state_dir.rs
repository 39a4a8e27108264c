//! The state dir, `.stepwise/` beside the pipeline file: where the journal,
//! the lock and the logs live, and the two ways to open it (read-only, or as
//! the one writer).

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::history::History;
use crate::journal::{self, JsonlStore, Store};
use crate::lock::StateLock;
use crate::pipeline::{Pipeline, SyncMode};

/// The name of the state dir.
pub const STATE_DIR: &str = ".stepwise";

/// Paths inside a state dir.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
}

/// The journal as read, with anything worth telling the user.
pub struct Loaded {
    pub history: History,
    /// The pid of a run in progress, if the lock is held.
    pub writer: Option<u32>,
    /// The id of the run in progress, when there is one.
    pub live_run: Option<u64>,
    /// Things the user should know (a torn last line, ...).
    pub warnings: Vec<String>,
}

/// The state dir opened by its one writer: the lock is held for as long as
/// this lives.
pub struct Writer {
    pub history: History,
    pub store: JsonlStore,
    pub warnings: Vec<String>,
    _lock: StateLock,
}

impl StateDir {
    pub fn for_pipeline(pipeline: &Pipeline) -> StateDir {
        StateDir::new(pipeline.root.join(STATE_DIR))
    }

    pub fn new(dir: impl Into<PathBuf>) -> StateDir {
        StateDir { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn journal(&self) -> PathBuf {
        self.dir.join("journal.jsonl")
    }

    pub fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }

    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// The log file of one attempt.
    pub fn log(&self, step: &str, attempt: u32) -> PathBuf {
        self.logs().join(format!("{step}.{attempt}.log"))
    }

    /// Reads the journal without taking the lock: safe while a run is in
    /// progress, which it then reports in [`Loaded::writer`].
    pub fn load(&self) -> Result<Loaded> {
        let writer = StateLock::holder(&self.lock());
        let mut history = History::default();
        let report = journal::read_file(&self.journal(), &mut |r| history.apply(r))?;
        let mut warnings = Vec::new();
        // While a writer is active a partial last line is just a record being
        // written; only a torn line with nobody writing is worth a word.
        if writer.is_none()
            && let Some(line) = report.torn_line
        {
            warnings.push(torn_warning(
                &self.journal(),
                line,
                "the next run will cut it off",
            ));
        }
        let live_run = writer.and_then(|pid| {
            let last = history.runs().last()?;
            (last.ended.is_none() && (pid == 0 || last.pid == pid)).then_some(last.id)
        });
        Ok(Loaded {
            history,
            writer,
            live_run,
            warnings,
        })
    }

    /// Creates the state dir if needed, takes the lock (or fails with
    /// [`Error::Locked`](crate::Error::Locked)), and reads the journal.
    pub fn open_writer(&self, sync: SyncMode) -> Result<Writer> {
        if !self.dir.is_dir() {
            fs::create_dir_all(&self.dir).context(format!(
                "cannot create the state dir {}",
                self.dir.display()
            ))?;
            if let Some(parent) = self.dir.parent() {
                journal::sync_dir(parent)?;
            }
        }
        let lock = StateLock::acquire(&self.lock())?;
        let mut history = History::default();
        let report = journal::read_file(&self.journal(), &mut |r| history.apply(r))?;
        let mut warnings = Vec::new();
        if let Some(line) = report.torn_line {
            warnings.push(torn_warning(&self.journal(), line, "it has been cut off"));
        }
        let store = JsonlStore::open(&self.journal(), sync)?;
        Ok(Writer {
            history,
            store,
            warnings,
            _lock: lock,
        })
    }
}

impl Writer {
    /// Appends one record to the journal and to the in-memory history.
    pub fn record(&mut self, record: journal::Record) -> Result<()> {
        self.store.append(&record)?;
        self.history.apply(record);
        Ok(())
    }
}

fn torn_warning(journal: &Path, line: usize, fate: &str) -> String {
    format!(
        "the last line ({line}) of {} is incomplete, as if the machine stopped while writing it; it is ignored and {fate}",
        journal.display()
    )
}
