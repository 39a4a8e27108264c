//! The state dir, `.stepwise/` beside the pipeline file: where the journal,
//! the lock and the logs live, and the two ways to open it (read-only, or as
//! the one writer).

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::journal::{self, JsonlStore, StepValue, Store};
use crate::pipeline::{Pipeline, SyncMode};
use crate::run::process;
use crate::state::compact;
use crate::state::history::History;
use crate::state::lock::{Holder, StateLock};

/// The name of the state dir.
pub const STATE_DIR: &str = ".stepwise";

/// Paths inside a state dir.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
}

/// The journal as read, with anything worth telling the user.
pub struct Loaded {
    /// The journal, folded.
    pub history: History,
    /// Who holds the lock right now (a run, or another command that
    /// writes), if anyone.
    pub writer: Option<Holder>,
    /// The id of the run in progress, when there is one.
    pub live_run: Option<u64>,
    /// Things the user should know (a torn last line, ...).
    pub warnings: Vec<String>,
}

/// The state dir opened by its one writer: the lock is held for as long as
/// this lives.
pub struct Writer {
    /// The journal folded, kept current with every [`Writer::record`].
    pub history: History,
    /// The journal open for appending; [`JsonlStore::close`] it to learn of
    /// a failed final sync.
    pub store: JsonlStore,
    /// Things the user should know from opening it (a torn last line cut
    /// off, ...).
    pub warnings: Vec<String>,
    /// Records in the journal when it was opened.
    pub records: usize,
    /// Records appended since.
    appended: usize,
    /// The history snapshot the journal was read on from: its chunk
    /// digests, the bytes and lines it covered.
    snapshot: (Vec<crate::fingerprint::Digest>, u64, usize),
    /// Lines of zero bytes, and of zeros among records, in the journal, and
    /// whether it holds a checksummed record (see [`journal::ReadReport`]):
    /// what the snapshot must remember of it.
    debris: (Vec<usize>, Vec<usize>, bool),
    /// Whether the snapshot holds the whole journal: nothing to save.
    snapshot_current: bool,
    dir: StateDir,
    sync: SyncMode,
    _lock: StateLock,
}

/// `path` as one spelling of where it really is: absolute, without `.`,
/// `..` or symlinks (`canonicalize`), or merely absolute if it does not
/// exist (yet) or cannot be resolved. A pipeline's folder and its state dir
/// are named this way everywhere they are compared or handed on (the
/// outputs' folder check, `STEPWISE_STATE_DIR`), so `-f ../stepwise.toml`
/// from a subfolder or a path through a symlink means the same pipeline.
pub fn real_path(path: &Path) -> std::io::Result<PathBuf> {
    match std::fs::canonicalize(path) {
        Ok(real) => Ok(real),
        Err(_) => std::path::absolute(path),
    }
}

impl StateDir {
    /// `.stepwise/` beside `stepwise.toml`; a pipeline file with another
    /// name, `ci.toml`, gets `.stepwise-ci/`, so that two pipelines in one
    /// folder never mix their records or lock each other out.
    pub fn for_pipeline(pipeline: &Pipeline) -> StateDir {
        StateDir::new(pipeline.root.join(state_dir_name(&pipeline.path)))
    }

    /// The state dir of the pipeline file at `path`, without reading the
    /// file: for commands that look at the state alone (`fsck`), which must
    /// work even while the pipeline file does not parse.
    pub fn for_pipeline_file(path: &Path) -> Result<StateDir> {
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let root = real_path(folder)
            .context(format!("cannot resolve the folder of {}", path.display()))?;
        Ok(StateDir::new(root.join(state_dir_name(path))))
    }

    /// The state dir at `dir`, which need not exist yet.
    pub fn new(dir: impl Into<PathBuf>) -> StateDir {
        StateDir { dir: dir.into() }
    }

    /// The folder itself.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The journal file (see [`crate::journal`]).
    pub fn journal(&self) -> PathBuf {
        self.dir.join("journal.jsonl")
    }

    /// The history snapshot (see [`crate::state::snapshot`]).
    pub fn snapshot(&self) -> PathBuf {
        self.dir.join(crate::state::snapshot::FILE)
    }

    /// The lock file (see [`crate::state::lock`]).
    pub fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }

    /// The folder of the attempts' log files (see [`StateDir::log`]).
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// Where large values of durable steps are kept (see [`crate::Run`]).
    pub fn values(&self) -> PathBuf {
        self.dir.join("values")
    }

    /// The log file of one attempt: `<step>.<attempt>.log`.
    ///
    /// Expanded step names can hold any character (`thumb[path=raw/a.jpg]`):
    /// every byte outside a safe set is percent-encoded, so a name can never
    /// make a path leave the logs folder or name a subfolder. A name too
    /// long for a file name is shortened (see [`step_file_name`]).
    pub fn log(&self, step: &str, attempt: u32) -> PathBuf {
        self.logs().join(log_file_name(step, attempt))
    }

    /// Refuses (exit 2, before anything is read, run or written) a state
    /// dir that stepwise could be led out of: one that is a symlink or not
    /// a folder, or that holds a symlink. A `.stepwise/` committed to a
    /// repository and cloned could otherwise make `run` write its journal
    /// into, or `gc` delete, files anywhere the user can write. Also
    /// refused: a symlink named `journal.jsonl` or `lock` that dangles.
    /// Nothing is followed, so a state dir that does not exist yet passes.
    pub fn check_safe(&self) -> Result<()> {
        let refuse = |what: String, help: String| {
            Err(Error::Usage {
                message: what,
                help: Some(help),
            })
        };
        let shown = self.dir.display();
        match fs::symlink_metadata(&self.dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(e).context(format!("cannot look at the state dir {shown}"));
            }
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&self.dir).unwrap_or_default();
                return refuse(
                    format!(
                        "the state dir {shown} is a symlink (to {}): stepwise never follows a symlink where it keeps its state",
                        target.display()
                    ),
                    format!(
                        "if you made it, replace the link by the folder itself (`rm {shown} && mv {} {shown}`); if it came with the project, remove it; nothing was run or changed",
                        target.display()
                    ),
                );
            }
            Ok(meta) if !meta.is_dir() => {
                return refuse(
                    format!(
                        "{shown} is a file, not a folder: stepwise keeps its state in a folder of that name"
                    ),
                    format!(
                        "move the file away (`mv {shown} {shown}.old`) and run again; nothing was run or changed"
                    ),
                );
            }
            Ok(_) => {}
        }
        // The top level, and the Slurm folder whose files job scripts write
        // by name. (A symlinked log file is refused when opened; the logs
        // folder may hold many thousands, not worth reading on every plan.)
        let slurm = self.dir.join("slurm");
        let mut entries: Vec<fs::DirEntry> = fs::read_dir(&self.dir)
            .and_then(|d| d.collect())
            .context(format!("cannot read the state dir {shown}"))?;
        if fs::symlink_metadata(&slurm).is_ok_and(|m| m.is_dir()) {
            entries.extend(
                fs::read_dir(&slurm)
                    .and_then(|d| d.collect::<std::io::Result<Vec<_>>>())
                    .context(format!("cannot read {}", slurm.display()))?,
            );
        }
        for entry in entries {
            let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
            if is_link {
                let path = entry.path();
                let target = fs::read_link(&path).unwrap_or_default();
                return refuse(
                    format!(
                        "{} is a symlink (to {}): stepwise never follows a symlink inside its state dir, where it would write or delete what the link points to",
                        path.display(),
                        crate::diagnostic::escape_controls(&target.to_string_lossy())
                    ),
                    format!(
                        "remove the link (`rm {}`); stepwise recreates what it needs. Nothing was run or changed",
                        path.display()
                    ),
                );
            }
        }
        Ok(())
    }

    /// Reads the journal without taking the lock: safe while a run is in
    /// progress, which it then reports in [`Loaded::writer`].
    pub fn load(&self) -> Result<Loaded> {
        let history = std::cell::RefCell::new(History::default());
        let snapshot = self.snapshot();
        let (writer, warnings) = self.read_with(
            &mut |file| {
                let valid = crate::state::snapshot::load(&snapshot, file)?;
                *history.borrow_mut() = valid.history;
                Some(valid.resume)
            },
            &mut |r| history.borrow_mut().apply(r),
        )?;
        let history = history.into_inner();
        let live_run = writer.as_ref().and_then(|holder| {
            let last = history.runs().last()?;
            let same = holder.pid.is_none_or(|pid| pid == last.pid);
            (last.ended.is_none() && same).then_some(last.id)
        });
        Ok(Loaded {
            history,
            writer,
            live_run,
            warnings,
        })
    }

    /// Reads every record without taking the lock; returns who holds the
    /// lock (if anyone) and what the user should be told.
    pub fn read(
        &self,
        visit: &mut dyn FnMut(journal::Record),
    ) -> Result<(Option<Holder>, Vec<String>)> {
        self.read_with(&mut |_| None, visit)
    }

    fn read_with(
        &self,
        resume: &mut dyn FnMut(&fs::File) -> Option<journal::Resume>,
        visit: &mut dyn FnMut(journal::Record),
    ) -> Result<(Option<Holder>, Vec<String>)> {
        self.check_safe()?;
        let report = journal::read_file_with(&self.journal(), resume, visit)?;
        // Asked after reading: a run that started meanwhile explains a
        // partial last line (a record being written), which is then no news.
        let writer = StateLock::holder(&self.lock());
        let mut warnings = zero_warnings(&self.journal(), &report);
        if writer.is_none()
            && let Some(line) = report.torn_line
        {
            warnings.push(torn_warning(
                &self.journal(),
                line,
                "the next run will cut it off",
            ));
        }
        Ok((writer, warnings))
    }

    /// Creates the state dir if needed, takes the lock (or fails with
    /// [`Error::Locked`]), and reads the journal.
    pub fn open_writer(&self, sync: SyncMode, command: &str) -> Result<Writer> {
        self.check_safe()?;
        if !self.dir.is_dir() {
            create_private_dir(&self.dir).context(format!(
                "cannot create the state dir {}",
                self.dir.display()
            ))?;
            if let Some(parent) = self.dir.parent() {
                journal::sync_dir(parent)?;
            }
        }
        self.check_writable()?;
        let lock = StateLock::acquire(&self.lock(), command)?;
        // What a writer killed mid-rewrite left; a live reader's (a `plan`
        // writing the pipeline cache) is left alone.
        self.remove_dead_temp_files();
        let history = std::cell::RefCell::new(History::default());
        let snapshot_path = self.snapshot();
        let mut snapshot = (Vec::new(), 0, 0);
        let (store, report) = JsonlStore::open_reading(
            &self.journal(),
            sync,
            &mut |file| {
                let valid = crate::state::snapshot::load(&snapshot_path, file)?;
                *history.borrow_mut() = valid.history;
                snapshot = (valid.chunks, valid.resume.offset, valid.resume.lines);
                Some(valid.resume)
            },
            &mut |r| history.borrow_mut().apply(r),
        )?;
        let history = history.into_inner();
        let mut warnings = zero_warnings(&self.journal(), &report);
        if let Some(line) = report.torn_line {
            warnings.push(torn_warning(&self.journal(), line, "it has been cut off"));
        }
        let snapshot_current = snapshot.1 > 0 && snapshot.1 == store.written_len();
        Ok(Writer {
            history,
            store,
            warnings,
            records: report.records,
            appended: 0,
            snapshot,
            debris: (report.zero_lines, report.zeros_in_lines, report.checked),
            snapshot_current,
            dir: self.clone(),
            sync,
            _lock: lock,
        })
    }
}

/// A temp file of an atomic rewrite (`.NAME.tmp.PID`, see
/// [`crate::hash::write_atomically`]) found in the state dir.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TempFile {
    /// Where it is.
    pub path: PathBuf,
    /// The process that was writing it.
    pub pid: u32,
    /// Whether that process is still alive (then it may be writing it now).
    pub writer_alive: bool,
}

impl StateDir {
    /// The temp files of atomic rewrites in the state dir: what a writer
    /// killed between creating one and renaming it leaves behind.
    pub fn temp_files(&self) -> Vec<TempFile> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let me = std::process::id();
        let mut found: Vec<TempFile> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                let (_, pid) = name.strip_prefix('.')?.rsplit_once(".tmp.")?;
                let pid: u32 = pid.parse().ok()?;
                Some(TempFile {
                    path: e.path(),
                    pid,
                    writer_alive: pid != me && crate::state::lock::alive(pid),
                })
            })
            .collect();
        found.sort_by(|a, b| a.path.cmp(&b.path));
        found
    }

    /// Removes the temp files whose writer is dead (see
    /// [`StateDir::temp_files`]); returns how many.
    pub fn remove_dead_temp_files(&self) -> usize {
        self.temp_files()
            .into_iter()
            .filter(|t| !t.writer_alive && fs::remove_file(&t.path).is_ok())
            .count()
    }
}

/// What compacting the journal did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compaction {
    /// Records in the journal before.
    pub records_before: usize,
    /// Records in the journal after.
    pub records_after: usize,
    /// The journal's size before, in bytes.
    pub bytes_before: u64,
    /// The journal's size after, in bytes.
    pub bytes_after: u64,
    /// Log files of attempts no longer in the journal, removed.
    pub logs_removed: usize,
    /// Value files (`values/`) no attempt in the journal returns, removed.
    pub values_removed: usize,
    /// Processes left running by dead runs, killed first.
    pub leftovers_killed: Vec<u32>,
}

impl StateDir {
    /// Fails, before anything is written or run, unless this process can
    /// create files in the state dir: otherwise a run would start steps and
    /// then fail to record them, or fail at the first log.
    fn check_writable(&self) -> Result<()> {
        use nix::unistd::{AccessFlags, access};
        match access(&self.dir, AccessFlags::W_OK | AccessFlags::X_OK) {
            Ok(()) => Ok(()),
            Err(errno) => Err(Error::Usage {
                message: format!(
                    "the state dir {} is not writable: {}",
                    self.dir.display(),
                    std::io::Error::from(errno)
                ),
                help: Some(
                    "stepwise records every attempt there before it runs anything; make it writable (e.g. `chmod u+rwx` it, or remount the filesystem read-write); nothing was run or changed".into(),
                ),
            }),
        }
    }
}

/// Creates a folder (and missing parents) readable by its owner only: the
/// state dir holds the journal and the steps' logs, which may show secrets.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

impl Writer {
    /// Runs whose runner died left no `end` record: kills what their steps
    /// left running (see [`process::kill_leftovers`]) and closes them, so
    /// this happens once. Holding the lock, no live run exists.
    pub fn close_dead_runs(&mut self) -> Result<Vec<u32>> {
        let dead: Vec<u64> = self
            .history
            .runs()
            .iter()
            .filter(|r| r.ended.is_none())
            .map(|r| r.id)
            .collect();
        if dead.is_empty() {
            return Ok(Vec::new());
        }
        // Only the attempts that were running when their runner died.
        let running: Vec<(u64, &str, u32)> = self
            .history
            .steps()
            .into_iter()
            .filter_map(|(name, h)| {
                let last = h.last.as_ref()?;
                let run = last.run.filter(|r| dead.contains(r))?;
                last.finished.is_none().then_some((run, name, last.number))
            })
            .collect();
        let dir = real_path(self.dir.path()).unwrap_or_else(|_| self.dir.path().to_path_buf());
        let killed = process::kill_leftovers(&dir, &running);
        for run in dead {
            let counts = self.history.run(run).map(|r| r.counts);
            self.record(journal::Record::RunFinished {
                run,
                at: journal::now(),
                exit_code: None,
                counts,
            })?;
        }
        Ok(killed)
    }

    /// Whether the journal has grown well past what its state needs.
    pub fn compaction_due(&self) -> bool {
        compact::worth_it(self.records + self.appended, &self.history)
    }

    /// Rewrites the journal with only what the current state needs (see
    /// [`compact`]), atomically, and removes the logs of attempts it no
    /// longer holds.
    pub fn compact(&mut self) -> Result<Compaction> {
        let leftovers_killed = self.close_dead_runs()?;
        self.store.sync()?;
        let path = self.dir.journal();
        let bytes_before = std::fs::metadata(&path).map_or(0, |m| m.len());
        let records_before = self.records + self.appended;
        let kept = compact::compacted(&self.history);
        journal::rewrite(&path, &kept)?;
        // The old store appends to the file just replaced: open the new one.
        let mut history = History::default();
        let (store, report) =
            JsonlStore::open_reading(&path, self.sync, &mut |_| None, &mut |r| history.apply(r))?;
        drop(std::mem::replace(&mut self.store, store));
        self.history = history;
        self.records = report.records;
        self.appended = 0;
        self.snapshot = (Vec::new(), 0, 0);
        self.debris = (report.zero_lines, report.zeros_in_lines, report.checked);
        self.snapshot_current = false;
        let logs_removed = self.remove_unreferenced_logs();
        let values_removed = self.remove_unreferenced_values();
        Ok(Compaction {
            records_before,
            records_after: report.records,
            bytes_before,
            bytes_after: std::fs::metadata(&path).map_or(0, |m| m.len()),
            logs_removed,
            values_removed,
            leftovers_killed,
        })
    }

    /// The attempts the journal holds that a file can belong to: per step,
    /// its latest, its latest since the last forget, its latest success and
    /// its latest that really ran.
    fn kept_attempts(&self) -> impl Iterator<Item = (&str, &crate::state::history::Attempt)> {
        self.history.steps().into_iter().flat_map(|(name, h)| {
            [&h.last, &h.current, &h.success]
                .into_iter()
                .flatten()
                .chain(h.latest_real.as_ref().map(|(a, _)| a))
                .map(move |a| (name, a))
        })
    }

    /// Deletes, inside the logs folder only, the log files of attempts the
    /// journal no longer holds.
    fn remove_unreferenced_logs(&self) -> usize {
        let keep = self
            .kept_attempts()
            .map(|(name, a)| log_file_name(name, a.number))
            .collect();
        remove_unlisted(&self.dir.logs(), ".log", &keep)
    }

    /// Deletes, inside the values folder only, the value files (of a Rust
    /// program's steps, see [`crate::Run`]) that no attempt the journal
    /// still holds returns: those of attempts compacted away, and any a
    /// program wrote before dying ahead of its `finish` record. We hold the
    /// lock, so no run is writing one right now.
    fn remove_unreferenced_values(&self) -> usize {
        let keep = self
            .kept_attempts()
            .filter_map(|(_, a)| match a.finished.as_ref()?.value.as_ref()? {
                StepValue::File(digest) => Some(format!("{digest}.json")),
                StepValue::Inline(_) => None,
            })
            .collect();
        remove_unlisted(&self.dir.values(), ".json", &keep)
    }

    /// Closes the journal (see [`JsonlStore::close`]) and then, unless it
    /// is current already, writes the history snapshot: the next opening
    /// reads only what is appended after this.
    pub fn close_saving_snapshot(self) -> Result<()> {
        let Writer {
            history,
            store,
            records,
            appended,
            snapshot,
            debris: (zero_lines, zeros_in_lines, checked),
            snapshot_current,
            dir,
            _lock,
            ..
        } = self;
        let len = store.written_len();
        store.close()?;
        if snapshot_current && appended == 0 {
            crate::dispose(history);
            return Ok(());
        }
        let state = journal::Resume {
            offset: len,
            lines: 0,
            report: journal::ReadReport {
                records: records + appended,
                valid_len: len,
                torn_line: None,
                zero_lines,
                zeros_in_lines,
                // Every record it appended has a checksum.
                checked: checked || appended > 0,
            },
        };
        crate::state::snapshot::save(
            &dir.snapshot(),
            &dir.journal(),
            state,
            (&snapshot.0, snapshot.1, snapshot.2),
            &history,
        );
        crate::dispose(history);
        drop(_lock);
        Ok(())
    }

    /// Appends one record to the journal and to the in-memory history.
    pub fn record(&mut self, record: journal::Record) -> Result<()> {
        self.store.append(&record)?;
        self.appended += 1;
        self.history.apply(record);
        Ok(())
    }
}

/// The longest file name Linux filesystems take (`NAME_MAX`), in bytes.
const NAME_MAX: usize = 255;

/// The name of the log file of one attempt of `step` (see [`StateDir::log`]).
pub fn log_file_name(step: &str, attempt: u32) -> String {
    step_file_name(step, &format!(".{attempt}.log"))
}

/// The name of a file of `step` in the state dir: [`file_name_safe`]`(step)`
/// followed by `suffix` (`.3.log`), as long as that fits in a file name
/// (255 bytes), which every name but a long expansion's does: such names
/// are exactly what they always were.
///
/// An expansion's name can be far longer (`for_each` over a file whose
/// name is 30 CJK characters is 270 bytes once encoded). Its file is then
/// named by the start of the encoding, `~`, and 16 hex digits of the BLAKE3
/// hash of the whole step name: as stable as the name, unique to it, and
/// never the name of another step's file, since `~` is written `%7E` in an
/// encoded name.
pub fn step_file_name(step: &str, suffix: &str) -> String {
    let safe = file_name_safe(step);
    if safe.len() + suffix.len() <= NAME_MAX {
        return safe + suffix;
    }
    let hash = blake3::hash(step.as_bytes()).to_hex();
    let hash = &hash.as_str()[..16];
    let mut cut = NAME_MAX.saturating_sub(1 + hash.len() + suffix.len());
    // Not in the middle of a `%XX`.
    if let Some(percent) = safe.as_bytes()[..cut].iter().rposition(|&b| b == b'%')
        && percent + 3 > cut
    {
        cut = percent;
    }
    format!("{}~{hash}{suffix}", &safe[..cut])
}

/// `step` with every byte outside `[A-Za-z0-9_.=,+@[]-]` written `%XX`.
pub fn file_name_safe(step: &str) -> String {
    let mut out = String::with_capacity(step.len());
    for b in step.bytes() {
        if b.is_ascii_alphanumeric() || b"_.=,+@[]-".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Deletes the files of `dir` (only there, not below) whose names end with
/// `suffix` and are not in `keep`; returns how many.
fn remove_unlisted(dir: &Path, suffix: &str, keep: &std::collections::HashSet<String>) -> usize {
    // Never through a symlink: a planted `logs -> ~/project` would lose
    // every `*.log` there. (Refused when the state dir was opened; this
    // holds even if the link appeared since.)
    if !fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(suffix)
            && !keep.contains(name)
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// Whether a file name is that of a state dir: `.stepwise` or
/// `.stepwise-NAME` (not `.stepwiserc`).
pub fn is_state_dir_name(name: &str) -> bool {
    name == STATE_DIR
        || name
            .strip_prefix(STATE_DIR)
            .is_some_and(|rest| rest.starts_with('-'))
}

/// The state dir name for a pipeline file: `.stepwise` for the default
/// `stepwise.toml`, `.stepwise-NAME` for `NAME.toml`.
pub fn state_dir_name(pipeline_file: &Path) -> String {
    // A name that is not UTF-8 keeps its own state dir too (its invalid
    // bytes shown as U+FFFD), rather than sharing `stepwise.toml`'s.
    let file = pipeline_file
        .file_name()
        .map_or(crate::pipeline::DEFAULT_FILE.into(), |f| {
            f.to_string_lossy()
        });
    let file: &str = &file;
    if file == crate::pipeline::DEFAULT_FILE {
        STATE_DIR.to_string()
    } else {
        let stem = file.strip_suffix(".toml").unwrap_or(file);
        format!("{STATE_DIR}-{stem}")
    }
}

fn zero_warnings(journal: &Path, report: &journal::ReadReport) -> Vec<String> {
    let mut warnings = Vec::new();
    if let [first, ..] = report.zero_lines.as_slice() {
        warnings.push(format!(
            "{} line(s) of zero bytes in {} (first: line {first}), left by a crash; ignored",
            report.zero_lines.len(),
            journal.display(),
        ));
    }
    // The zeros took a line's newline with them: what stood there is gone.
    if let [first, rest @ ..] = report.zeros_in_lines.as_slice() {
        let more = match rest.len() {
            0 => String::new(),
            n => format!(" (and {n} more line(s))"),
        };
        warnings.push(format!(
            "line {first} of {}{more} holds zero bytes among its records, left by a crash that zeroed what was written there: a record that stood there is lost (if it was a success, its step runs again); the records around the zeros are read. `stepwise fsck --repair` removes the zeros",
            journal.display(),
        ));
    }
    warnings
}

fn torn_warning(journal: &Path, line: usize, fate: &str) -> String {
    format!(
        "the last line ({line}) of {} is incomplete, as if the machine stopped while writing it; it is ignored and {fate}",
        journal.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn each_pipeline_file_name_has_its_state_dir() {
        assert_eq!(state_dir_name(Path::new("stepwise.toml")), ".stepwise");
        assert_eq!(state_dir_name(Path::new("a/ci.toml")), ".stepwise-ci");
        assert_eq!(state_dir_name(Path::new("Pipefile")), ".stepwise-Pipefile");
        // Not UTF-8: its own, not the default file's.
        let odd = Path::new(OsStr::from_bytes(b"p\xffx.toml"));
        assert_eq!(state_dir_name(odd), ".stepwise-p\u{fffd}x");
    }

    #[test]
    fn a_file_name_that_fits_is_the_encoded_step_name() {
        assert_eq!(log_file_name("clean", 1), "clean.1.log");
        assert_eq!(
            log_file_name("thumb[path=raw/a b.jpg]", 12),
            "thumb[path=raw%2Fa%20b.jpg].12.log"
        );
        // Up to the very last byte a file name may have.
        let longest = "x".repeat(NAME_MAX - ".1.log".len());
        assert_eq!(log_file_name(&longest, 1), format!("{longest}.1.log"));
    }

    #[test]
    fn a_name_too_long_for_a_file_is_shortened_stably_and_uniquely() {
        let stem = "写真".repeat(15);
        let step = format!("thumb[path=raw/{stem}.jpg]");
        let name = log_file_name(&step, 3);
        assert!(name.len() <= NAME_MAX, "{} bytes: {name}", name.len());
        assert!(name.starts_with("thumb[path=raw%2F%E5%86%99"), "{name}");
        assert!(name.ends_with(".3.log"), "{name}");
        assert_eq!(name, log_file_name(&step, 3), "the same every time");
        // No `%XX` cut in half before the `~`.
        let head = name.split('~').next().unwrap();
        let last = head.rfind('%').unwrap();
        assert_eq!(head.len() - last, 3, "{name}");

        // Two names alike for far longer than a file name differ.
        let other = format!("thumb[path=raw/{stem}.png]");
        assert_ne!(log_file_name(&other, 3), name);
        // One byte past the limit is shortened, and with the other suffixes.
        let over = "x".repeat(NAME_MAX - ".1.log".len() + 1);
        let short = log_file_name(&over, 1);
        assert!(short.len() <= NAME_MAX && short.contains('~'), "{short}");
        assert_ne!(short, log_file_name(&"x".repeat(NAME_MAX), 1));
        for suffix in [".4294967295.status", ".1.sh"] {
            assert!(step_file_name(&step, suffix).len() <= NAME_MAX);
        }
    }
}
