//! Durable steps inside a Rust program: the journal of the command line,
//! used by the program itself.
//!
//! A [`Run`] holds the state dir's lock for as long as it lives, like
//! `stepwise run`. Each [`Run::step`] is either done (its latest success
//! since the last forget was made with the step's current fingerprint), and
//! then its recorded value is returned without calling the closure, or it
//! runs: its attempt is recorded (start, then finish with the value or the
//! error message), exactly as the runner records a command. The fingerprint
//! of a step is made of what its [`StepKey`] mixes in: the serialized inputs
//! and an explicit version. The crate documentation has the guide; this
//! module has the parts.

use std::any::Any;
use std::collections::HashSet;
use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{EXIT_FAILED, EXIT_OK, Error, IoContext, Result};
use crate::fingerprint::{Components, Digest};
use crate::journal::{self, Outcome, Record, Stamp, StepValue, now};
use crate::pipeline::{DEFAULT_RETRY_DELAY, NAME_RULE, SyncMode, name_problem};
use crate::plan::{Action, State, describe_not_done, describe_success, staleness};
use crate::run::scheduler::retry_delay;
use crate::state::dir::{StateDir, Writer};
use crate::state::history::Attempt;
use crate::state::lock::LIBRARY_COMMAND;
use crate::workspace::StepFacts;

/// Values whose JSON text is longer than this many bytes are kept in a file
/// of their own under `values/` instead of in the journal, unless
/// [`RunBuilder::inline_limit`] says otherwise.
///
/// Every reader of the journal (`stepwise status`, the next run) reads every
/// line, so large values are kept out of it; small ones are cheaper inline
/// than as a file each.
pub const DEFAULT_INLINE_LIMIT: usize = 4096;

/// How to open a [`Run`]; [`Run::open`] uses the defaults.
#[derive(Clone, Debug)]
pub struct RunBuilder {
    sync: SyncMode,
    inline_limit: usize,
}

impl Default for RunBuilder {
    fn default() -> Self {
        RunBuilder {
            sync: SyncMode::Batched,
            inline_limit: DEFAULT_INLINE_LIMIT,
        }
    }
}

impl RunBuilder {
    /// When the journal reaches the disk: [`SyncMode::Batched`] (the
    /// default) at least once a second and when the run ends, so a power
    /// cut can make the last second's steps run again; [`SyncMode::Always`]
    /// after every record, at the cost of an fsync per record. A killed
    /// process loses nothing either way.
    pub fn sync(mut self, sync: SyncMode) -> RunBuilder {
        self.sync = sync;
        self
    }

    /// Values whose JSON text is longer than `bytes` are stored in a file
    /// of their own (`values/<digest>.json` in the state dir) instead of in
    /// the journal. Default: [`DEFAULT_INLINE_LIMIT`].
    pub fn inline_limit(mut self, bytes: usize) -> RunBuilder {
        self.inline_limit = bytes;
        self
    }

    /// Opens the state dir `dir` (creating it if needed) as [`Run::open`]
    /// does, with these settings.
    pub fn open(self, dir: impl AsRef<Path>) -> Result<Run> {
        // Absolute, so value files stay found if the program changes its
        // working dir, and messages name the state dir unambiguously.
        let dir = std::path::absolute(dir.as_ref())
            .context(format!("cannot resolve {}", dir.as_ref().display()))?;
        let state = StateDir::new(dir);
        let mut writer = state.open_writer(self.sync, &holder_command())?;
        let mut warnings = std::mem::take(&mut writer.warnings);
        let killed = writer.close_dead_runs()?;
        if !killed.is_empty() {
            warnings.push(format!(
                "killed {} process(es) that steps of a killed earlier run had left running",
                killed.len()
            ));
        }
        remove_debris(&state.values());
        let id = writer.history.next_run();
        writer.record(Record::RunStarted {
            run: id,
            at: now(),
            pid: std::process::id(),
        })?;
        Ok(Run {
            state,
            writer: Some(writer),
            id,
            inline_limit: self.inline_limit,
            used: HashSet::new(),
            summary: Summary::default(),
            errored: false,
            warnings,
        })
    }
}

/// One run of a program's durable steps, holding the state dir's lock.
///
/// Opened with [`Run::open`], used through [`Run::step`] and
/// [`Run::step_with`], ended with [`Run::finish`]. Dropping a run without
/// finishing it (an error returned with `?`, a panic) records its end too,
/// and releases the lock; a killed process leaves an unfinished run that
/// the next [`Run::open`] closes.
pub struct Run {
    state: StateDir,
    /// `None` once finished.
    writer: Option<Writer>,
    id: u64,
    inline_limit: usize,
    /// Steps that produced their value in this run: a name stands for one
    /// step and its one value. (A failed step may be called again.)
    used: HashSet<String>,
    summary: Summary,
    /// A step call failed other than by its closure's error (a bad name,
    /// the journal, a value that cannot be recorded), or panicked: the run's
    /// end is recorded with exit code 1, as it is when a step's last call
    /// failed.
    errored: bool,
    warnings: Vec<String>,
}

impl Run {
    /// Opens the state dir `dir`, creating it if needed: takes its lock,
    /// loads its journal and records the start of a run.
    ///
    /// The lock is the one `stepwise run` takes: while another process (a
    /// program or the command line) holds it, this fails at once with
    /// [`Error::Locked`], naming that process. The kernel releases it when
    /// the process ends, however it ends.
    ///
    /// A journal that cannot be read is refused ([`Error::CorruptJournal`],
    /// [`Error::NewerJournal`]) before anything is written; a torn last line,
    /// left by a power cut, is cut off and reported in [`Run::warnings`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Run> {
        Run::builder().open(dir)
    }

    /// Settings for opening a run: journal durability, where large values
    /// go.
    pub fn builder() -> RunBuilder {
        RunBuilder::default()
    }

    /// Runs the step `name`, or returns its recorded value if it is done.
    ///
    /// The same as [`Run::step_with`] with [`StepKey::new(name)`](StepKey::new):
    /// no inputs, no version, no retries.
    pub fn step<T, E, F>(&mut self, name: &str, f: F) -> Result<T, StepError<E>>
    where
        T: Serialize + DeserializeOwned,
        E: fmt::Display,
        F: FnMut() -> Result<T, E>,
    {
        self.step_with(StepKey::new(name), f)
    }

    /// Runs the step `key` names, or returns its recorded value if it is
    /// done.
    ///
    /// The step is **done** when its latest successful attempt since it was
    /// last forgotten was made with the fingerprint `key` has now (its inputs
    /// and version). Then `f` is not called, and the value that attempt
    /// recorded is read back as a `T`.
    ///
    /// Otherwise `f` runs. Its attempt is recorded before it starts; when it
    /// returns `Ok(value)`, the value is serialized with `serde_json`,
    /// checked to read back as a `T`, and recorded (inline in the journal,
    /// or in a file of its own when it is large) before this returns it.
    /// When it returns `Err(e)`, the attempt is recorded as failed with
    /// `e`'s message, and retried if `key` allows retries; the last error
    /// comes back as [`StepError::Failed`]. A panic in `f` is recorded as a
    /// failed attempt and then resumed.
    ///
    /// Errors of stepwise's own come back as [`StepError::Stepwise`]: an
    /// invalid name, a step that already produced its value in this run (a
    /// name stands for one step; a failed one may be called again), an
    /// input or a value that `serde_json` cannot write (or a value that does
    /// not read back), a recorded value that no longer reads as a `T` or
    /// whose file is gone or damaged, and journal I/O failures.
    pub fn step_with<T, E, F>(&mut self, key: StepKey, f: F) -> Result<T, StepError<E>>
    where
        T: Serialize + DeserializeOwned,
        E: fmt::Display,
        F: FnMut() -> Result<T, E>,
    {
        // Set before the call and settled after it: a panic leaves it set.
        // A step that failed is judged by the summary instead, where calling
        // it again and succeeding replaces the failure.
        let errored = std::mem::replace(&mut self.errored, true);
        let result = self.call(key, f);
        self.errored = errored || matches!(result, Err(StepError::Stepwise(_)));
        result
    }

    fn call<T, E, F>(&mut self, key: StepKey, mut f: F) -> Result<T, StepError<E>>
    where
        T: Serialize + DeserializeOwned,
        E: fmt::Display,
        F: FnMut() -> Result<T, E>,
    {
        let name = key.name.clone();
        if let Some(problem) = name_problem(&name) {
            return Err(
                step_error(&name, format!("invalid step name: {problem}"), NAME_RULE).into(),
            );
        }
        if self.used.contains(&name) {
            return Err(step_error(
                &name,
                "this step already produced its value in this run",
                "a name stands for one step and its one value; give each step its own name, e.g. `format!(\"fetch-{i}\")` in a loop",
            )
            .into());
        }
        let components = key.components()?;
        let fingerprint = components.fingerprint();

        let (state, reason) = match self.decide(&name, &components, fingerprint) {
            Decision::Done {
                state,
                reason,
                attempt,
            } => {
                let value = self.read_value(&name, &attempt)?;
                self.used.insert(name.clone());
                self.summary.record(StepReport {
                    name,
                    action: Action::Skip,
                    state,
                    reason,
                    attempts: 0,
                    ok: true,
                });
                return Ok(value);
            }
            Decision::Run { state, reason } => (state, reason),
        };
        let mut report = StepReport {
            name: name.clone(),
            action: Action::Run,
            state,
            reason,
            attempts: 0,
            ok: false,
        };
        let stamp = Stamp::new(fingerprint, components);
        let result = self.attempts(&key, &stamp, &mut report, &mut f);
        report.ok = result.is_ok();
        if report.ok {
            self.used.insert(name);
        }
        self.summary.record(report);
        result
    }

    /// Runs `f` until it succeeds or its retries are spent.
    fn attempts<T, E, F>(
        &mut self,
        key: &StepKey,
        stamp: &Stamp,
        report: &mut StepReport,
        f: &mut F,
    ) -> Result<T, StepError<E>>
    where
        T: Serialize + DeserializeOwned,
        E: fmt::Display,
        F: FnMut() -> Result<T, E>,
    {
        let name = &key.name;
        loop {
            let attempt = self
                .writer()
                .history
                .step(name)
                .map_or(0, |h| h.attempts_started)
                + 1;
            let run = self.id;
            self.writer().record(Record::AttemptStarted {
                run,
                step: name.clone(),
                attempt,
                at: now(),
                stamp: Some(stamp.clone()),
            })?;
            report.attempts += 1;
            let started = Instant::now();
            let result = panic::catch_unwind(AssertUnwindSafe(&mut *f));
            let duration_ms = started.elapsed().as_millis() as u64;
            let (outcome, value, ending) = match result {
                Err(payload) => {
                    let message = format!("panicked: {}", panic_message(&*payload));
                    // Recorded so the step reads as failed, not interrupted;
                    // the panic itself is the caller's to handle.
                    self.finished(name, attempt, duration_ms, Outcome::Error(message), None)?;
                    report.ok = false;
                    self.summary.record(report.clone());
                    panic::resume_unwind(payload);
                }
                Ok(Ok(value)) => match self.store_value(name, &value) {
                    Ok(stored) => (Outcome::Success, Some(stored), Ok(value)),
                    Err(Unrecordable { recorded, error }) => (
                        Outcome::Error(recorded),
                        None,
                        Err(StepError::Stepwise(error)),
                    ),
                },
                Ok(Err(e)) => {
                    let message = e.to_string();
                    let retry = report.attempts;
                    if retry <= key.retries {
                        self.finished(name, attempt, duration_ms, Outcome::Error(message), None)?;
                        std::thread::sleep(retry_delay(key.retry_delay, retry));
                        continue;
                    }
                    let failed = StepError::Failed {
                        step: name.clone(),
                        attempt,
                        error: e,
                    };
                    (Outcome::Error(message), None, Err(failed))
                }
            };
            self.finished(name, attempt, duration_ms, outcome, value)?;
            return ending;
        }
    }

    fn finished(
        &mut self,
        name: &str,
        attempt: u32,
        duration_ms: u64,
        outcome: Outcome,
        value: Option<StepValue>,
    ) -> Result<()> {
        let run = self.id;
        self.writer().record(Record::AttemptFinished {
            run,
            step: name.to_string(),
            attempt,
            at: now(),
            duration_ms,
            outcome,
            value,
        })
    }

    /// The plan's decision for one step, made by the planner's own rules:
    /// the seed contract (a success since the last forget), then
    /// [`staleness`] against the fingerprint now.
    fn decide(&self, name: &str, components: &Components, fingerprint: Digest) -> Decision {
        let history = self.writer_ref().history.step(name);
        let Some((h, success)) = history.and_then(|h| h.success.as_ref().map(|s| (h, s))) else {
            let (state, reason, _) = describe_not_done(history, None);
            return Decision::Run { state, reason };
        };
        let now = StepFacts {
            components: components.clone(),
            fingerprint,
            missing_inputs: Vec::new(),
            missing_outputs: Vec::new(),
            product: fingerprint,
        };
        let reasons = staleness(h, success, Some(&now), false);
        if reasons.is_empty() {
            let (state, reason) = describe_success(success);
            return Decision::Done {
                state,
                reason,
                attempt: success.clone(),
            };
        }
        let reason = reasons
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Decision::Run {
            state: State::Stale,
            reason,
        }
    }

    /// Serializes a step's value, checks it reads back, and keeps it inline
    /// or in a file.
    fn store_value<T>(&self, name: &str, value: &T) -> Result<StepValue, Unrecordable>
    where
        T: Serialize + DeserializeOwned,
    {
        let unrecordable = |message: String| {
            Unrecordable {
            recorded: message.clone(),
            error: Error::Step {
                step: name.to_string(),
                message,
                help: "a step's value is recorded as JSON: return a type serde_json can write and read back (maps need string keys, floats must be finite)".into(),
            },
        }
        };
        let json = serde_json::to_vec(value)
            .map_err(|e| unrecordable(format!("its value cannot be serialized: {e}")))?;
        // What a later run will do with it, done now: a value that does not
        // read back would make the step impossible to resume.
        serde_json::from_slice::<T>(&json).map_err(|e| {
            unrecordable(format!(
                "its value was serialized but does not read back as a {}: {e}",
                std::any::type_name::<T>()
            ))
        })?;
        if json.len() <= self.inline_limit {
            let text = String::from_utf8(json).expect("serde_json writes UTF-8");
            let raw = serde_json::value::RawValue::from_string(text)
                .expect("serde_json reads what it wrote");
            return Ok(StepValue::Inline(Arc::from(raw)));
        }
        let digest = Digest::of(&json);
        self.write_value_file(&json, &digest)
            .map_err(|error| Unrecordable {
                recorded: "its value could not be written to the state dir".into(),
                error,
            })?;
        Ok(StepValue::File(digest))
    }

    /// Writes a value file atomically and durably, before the record that
    /// names it: a record must never name a file a crash could lose.
    fn write_value_file(&self, json: &[u8], digest: &Digest) -> Result<()> {
        let dir = self.state.values();
        if !dir.is_dir() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .context(format!("cannot create {}", dir.display()))?;
            journal::sync_dir(self.state.path())?;
        }
        let path = self.state.path().join(StepValue::file_name(digest));
        // Files are named by their content, so an intact one is this value.
        if fs::read(&path).is_ok_and(|bytes| Digest::of(&bytes) == *digest) {
            return Ok(());
        }
        let tmp = dir.join(format!("{TMP_PREFIX}{digest}"));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)
            .context(format!("cannot create {}", tmp.display()))?;
        file.write_all(json)
            .and_then(|()| file.sync_all())
            .context(format!("cannot write {}", tmp.display()))?;
        drop(file);
        fs::rename(&tmp, &path).context(format!("cannot rename {}", tmp.display()))?;
        journal::sync_dir(&dir)
    }

    /// The value a done step recorded, as a `T`.
    fn read_value<T: DeserializeOwned>(&self, name: &str, success: &Attempt) -> Result<T> {
        let forget = format!(
            "`stepwise forget {name} --state-dir {}` (or `Run::forget`) makes the step run again",
            self.state.path().display()
        );
        let mismatch = |e: serde_json::Error| {
            step_error(
                name,
                format!(
                    "its recorded value does not read as a {}: {e}",
                    std::any::type_name::<T>()
                ),
                format!(
                    "if the step now returns another type, give it a new version (`StepKey::version`); or {forget}"
                ),
            )
        };
        match success.finished.as_ref().and_then(|f| f.value.as_ref()) {
            // Recorded without a value (imported, or a command of the same
            // name): only a type that is nothing can be read from it.
            None => serde_json::from_str("null").map_err(|_| {
                step_error(
                    name,
                    "its recorded success has no value: it was imported, or run as a command",
                    forget,
                )
            }),
            Some(StepValue::Inline(json)) => serde_json::from_str(json.get()).map_err(mismatch),
            Some(StepValue::File(digest)) => {
                let path = self.state.path().join(StepValue::file_name(digest));
                let bytes = match fs::read(&path) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        return Err(step_error(
                            name,
                            format!("its recorded value {} cannot be read: {e}", path.display()),
                            forget,
                        ));
                    }
                };
                if Digest::of(&bytes) != *digest {
                    return Err(step_error(
                        name,
                        format!(
                            "its recorded value {} is damaged: its content no longer has the digest it was recorded with",
                            path.display()
                        ),
                        forget,
                    ));
                }
                serde_json::from_slice(&bytes).map_err(mismatch)
            }
        }
    }

    /// Records that the step `name` must run again: its next
    /// [`Run::step`] calls the closure whatever is recorded (its history is
    /// kept). The same as `stepwise forget NAME --state-dir DIR`.
    pub fn forget(&mut self, name: &str) -> Result<()> {
        self.writer().record(Record::Forgotten {
            at: now(),
            steps: Some(vec![name.to_string()]),
        })
    }

    /// Ends the run: records its end (exit code 0, or 1 if a step call of
    /// it returned an error), makes the journal durable and releases the
    /// lock. Returns what happened to each step.
    pub fn finish(mut self) -> Result<Summary> {
        let exit_code = self.exit_code();
        let summary = std::mem::take(&mut self.summary);
        let mut writer = self.writer.take().expect("a run is finished once");
        let counts = writer.history.run(self.id).map(|r| r.counts);
        writer.record(Record::RunFinished {
            run: self.id,
            at: now(),
            exit_code: Some(exit_code),
            counts,
        })?;
        writer.close_saving_snapshot()?;
        Ok(summary)
    }

    /// What happened to each step so far in this run.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// The number of this run in the journal (runs count up from 1).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The state dir.
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// Things found when opening the state dir that the program may want
    /// to tell its user: a torn last journal line cut off, processes a killed
    /// earlier run left running.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn exit_code(&self) -> i32 {
        if self.errored {
            EXIT_FAILED
        } else {
            self.summary.exit_code()
        }
    }

    fn writer(&mut self) -> &mut Writer {
        self.writer
            .as_mut()
            .expect("a run is used until it is finished")
    }

    fn writer_ref(&self) -> &Writer {
        self.writer
            .as_ref()
            .expect("a run is used until it is finished")
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let exit_code = self.exit_code();
        if let Some(mut writer) = self.writer.take() {
            // Best effort: a run that cannot record its end reads as one
            // whose process died, which the next open closes.
            let counts = writer.history.run(self.id).map(|r| r.counts);
            let _ = writer.record(Record::RunFinished {
                run: self.id,
                at: now(),
                exit_code: Some(exit_code),
                counts,
            });
        }
    }
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("state_dir", &self.state.path())
            .field("id", &self.id)
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

enum Decision {
    Done {
        state: State,
        reason: String,
        attempt: Attempt,
    },
    Run {
        state: State,
        reason: String,
    },
}

/// A value that could not be recorded: the message for the journal, and the
/// error for the caller.
struct Unrecordable {
    recorded: String,
    error: Error,
}

/// What names a step and makes up its fingerprint, and how often it is
/// retried.
///
/// ```
/// use std::time::Duration;
/// use stepwise::StepKey;
///
/// #[derive(serde::Serialize)]
/// struct Config { min_len: usize }
///
/// let key = StepKey::new("clean")
///     .input(&Config { min_len: 3 })        // a changed config reruns the step
///     .input_named("source", "data.csv")    // named: `why` says "input changed: source"
///     .version("2")                         // bump when the step's code changes
///     .retries(2)                           // up to 2 more attempts after a failure
///     .retry_delay(Duration::from_millis(100));
/// assert_eq!(key.name(), "clean");
/// ```
///
/// The fingerprint is made of the inputs and the version only: the retries
/// and the closure's code are not part of it, as a command's `retries` is
/// not. Inputs are hashed from their JSON form with object keys sorted, so a
/// `HashMap` hashes the same whatever its order; a `HashSet` serializes as a
/// list in no fixed order, so use a `BTreeSet` (or a sorted `Vec`) instead.
#[derive(Clone, Debug)]
pub struct StepKey {
    name: String,
    /// `(label, digest of the canonical JSON or why it could not be made)`.
    inputs: Vec<(String, std::result::Result<Digest, String>)>,
    version: Option<String>,
    retries: u32,
    retry_delay: Duration,
}

impl StepKey {
    /// A step named `name`: letters, digits, `_`, `-` and `.`, not starting
    /// with `.` or `-`, as in a pipeline file. The name is checked when the
    /// step runs.
    pub fn new(name: impl Into<String>) -> StepKey {
        StepKey {
            name: name.into(),
            inputs: Vec::new(),
            version: None,
            retries: 0,
            retry_delay: DEFAULT_RETRY_DELAY,
        }
    }

    /// Mixes `value`, serialized, into the fingerprint: when it changes, the
    /// step runs again. Explanations call it by its position among the key's
    /// inputs: `input changed: #1`.
    pub fn input<I: Serialize + ?Sized>(self, value: &I) -> StepKey {
        let label = format!("#{}", self.inputs.len() + 1);
        self.input_named(&label, value)
    }

    /// As [`StepKey::input`], under a name of your choosing, which
    /// `stepwise plan` and the run's [`Summary`] use: `input changed: config`.
    pub fn input_named<I: Serialize + ?Sized>(mut self, label: &str, value: &I) -> StepKey {
        let digest = canonical_json(value)
            .map(|json| Digest::of(&json))
            .map_err(|e| e.to_string());
        self.inputs.push((label.to_string(), digest));
        self
    }

    /// Mixes an explicit version into the fingerprint: change it when the
    /// step's code changes in a way that should make it run again.
    pub fn version(mut self, version: impl Into<String>) -> StepKey {
        self.version = Some(version.into());
        self
    }

    /// Extra attempts after a failed one, within the same run (default 0).
    /// Every attempt is recorded.
    pub fn retries(mut self, retries: u32) -> StepKey {
        self.retries = retries;
        self
    }

    /// The wait before the first retry (default 1s); it doubles for each
    /// next one, up to a minute (or this delay, if longer), as for commands.
    pub fn retry_delay(mut self, delay: Duration) -> StepKey {
        self.retry_delay = delay;
        self
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The components of the fingerprint: `input:LABEL` for each input and
    /// `version` for the version, each a digest.
    fn components(&self) -> Result<Components> {
        let mut components = Components::default();
        if let Some(version) = &self.version {
            components.insert("version", crate::fingerprint::text(version));
        }
        for (label, digest) in &self.inputs {
            let key = format!("input:{label}");
            if components.get(&key).is_some() {
                return Err(step_error(
                    &self.name,
                    format!("two inputs are named `{label}`"),
                    "give each input its own name",
                ));
            }
            match digest {
                Ok(digest) => components.insert(key, *digest),
                Err(e) => {
                    return Err(step_error(
                        &self.name,
                        format!("its input `{label}` cannot be serialized: {e}"),
                        "an input is hashed from its JSON form: pass something serde_json can write (maps need string keys)",
                    ));
                }
            }
        }
        Ok(components)
    }
}

impl From<&str> for StepKey {
    fn from(name: &str) -> StepKey {
        StepKey::new(name)
    }
}

impl From<String> for StepKey {
    fn from(name: String) -> StepKey {
        StepKey::new(name)
    }
}

/// Why [`Run::step`] did not return a value.
#[derive(Debug)]
pub enum StepError<E> {
    /// The step's closure returned `error` on its last attempt (after any
    /// retries). The attempt is recorded as failed, with the error's
    /// message; the next run runs the step again.
    Failed {
        /// The step's name.
        step: String,
        /// The number of the failed attempt, counting every attempt of the
        /// step ever made.
        attempt: u32,
        /// What the closure returned.
        error: E,
    },
    /// stepwise could not do its part: see [`Run::step_with`].
    Stepwise(Error),
}

impl<E> From<Error> for StepError<E> {
    fn from(e: Error) -> Self {
        StepError::Stepwise(e)
    }
}

impl<E> StepError<E> {
    /// What to do about an error of stepwise's own (see [`Error::help`]);
    /// `None` for the step's own failure.
    pub fn help(&self) -> Option<String> {
        match self {
            StepError::Stepwise(e) => e.help(),
            StepError::Failed { .. } => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for StepError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepError::Failed {
                step,
                attempt,
                error,
            } => write!(f, "step `{step}` failed (attempt {attempt}): {error}"),
            StepError::Stepwise(e) => write!(f, "{e}"),
        }
    }
}

impl<E: fmt::Display + fmt::Debug> std::error::Error for StepError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StepError::Failed { .. } => None,
            StepError::Stepwise(e) => Some(e),
        }
    }
}

/// What happened to one step in a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepReport {
    /// The step's name.
    pub name: String,
    /// [`Action::Skip`] when its recorded value was returned,
    /// [`Action::Run`] when its closure was called.
    pub action: Action,
    /// Where it stood when the run came to it, in the words of `stepwise
    /// plan`: done, stale, failed, interrupted, never run, ...
    pub state: State,
    /// Why it ran (`input changed: config`) or was skipped (`succeeded on
    /// ... (attempt 1)`).
    pub reason: String,
    /// Attempts made in this run: 0 when skipped.
    pub attempts: u32,
    /// Whether it ended with a value.
    pub ok: bool,
}

/// What happened to each step of a run, in the order the program came to
/// them. Displays as `2 ran (1 failed), 3 skipped as done`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// One report per step, in the order the steps were called.
    pub steps: Vec<StepReport>,
}

impl Summary {
    /// Adds what became of a step call. A step called again after it
    /// failed (a program's own retry) keeps one report: where it stood when
    /// the run first came to it, the attempts of every call, and how its
    /// last call ended.
    fn record(&mut self, report: StepReport) {
        match self.steps.iter_mut().find(|s| s.name == report.name) {
            Some(earlier) => {
                earlier.attempts += report.attempts;
                earlier.action = report.action;
                earlier.ok = report.ok;
            }
            None => self.steps.push(report),
        }
    }

    /// Steps whose closure was called.
    pub fn ran(&self) -> impl Iterator<Item = &StepReport> {
        self.steps.iter().filter(|s| s.action == Action::Run)
    }

    /// Steps whose recorded value was returned.
    pub fn skipped(&self) -> impl Iterator<Item = &StepReport> {
        self.steps.iter().filter(|s| s.action == Action::Skip)
    }

    /// Steps that ran and did not end with a value.
    pub fn failed(&self) -> impl Iterator<Item = &StepReport> {
        self.steps.iter().filter(|s| !s.ok)
    }

    /// 0 when no step failed, else 1, as `stepwise run` exits.
    pub fn exit_code(&self) -> i32 {
        if self.failed().next().is_some() {
            EXIT_FAILED
        } else {
            EXIT_OK
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ran", self.ran().count())?;
        let failed = self.failed().count();
        if failed > 0 {
            write!(f, " ({failed} failed)")?;
        }
        write!(f, ", {} skipped as done", self.skipped().count())
    }
}

const TMP_PREFIX: &str = ".tmp-";

/// Removes value files a crash left half written. Only the lock holder
/// writes there, and it holds the lock now, so none is in progress.
fn remove_debris(values: &Path) {
    let Ok(entries) = fs::read_dir(values) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Who holds the lock, for the message another process gets.
fn holder_command() -> String {
    let program = std::env::args_os()
        .next()
        .and_then(|arg0| {
            Path::new(&arg0)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "a program".into());
    format!("{LIBRARY_COMMAND}{program}")
}

fn step_error(step: &str, message: impl Into<String>, help: impl Into<String>) -> Error {
    Error::Step {
        step: step.to_string(),
        message: message.into(),
        help: help.into(),
    }
}

/// JSON with every object's keys sorted, so that equal values hash equal
/// whatever order a map iterates in.
fn canonical_json<I: Serialize + ?Sized>(value: &I) -> serde_json::Result<Vec<u8>> {
    fn sort(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                map.sort_keys();
                map.values_mut().for_each(sort);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(sort),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(value)?;
    sort(&mut value);
    serde_json::to_vec(&value)
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap};

    #[test]
    fn map_order_does_not_change_an_input() {
        let a: HashMap<String, u32> = (0..50).map(|i| (format!("k{i}"), i)).collect();
        let b: BTreeMap<String, u32> = a.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let fingerprint = |key: StepKey| key.components().unwrap().fingerprint();
        assert_eq!(
            fingerprint(StepKey::new("s").input(&a)),
            fingerprint(StepKey::new("s").input(&b))
        );
        assert_ne!(
            fingerprint(StepKey::new("s").input(&a)),
            fingerprint(StepKey::new("s").input(&1))
        );
    }

    #[test]
    fn inputs_and_version_make_the_components() {
        let key = StepKey::new("s")
            .input(&1)
            .input_named("config", &"x")
            .version("2");
        let c = key.components().unwrap();
        let keys: Vec<&str> = c.0.keys().map(String::as_str).collect();
        assert_eq!(keys, ["input:#1", "input:config", "version"]);
        let other = StepKey::new("s")
            .input(&2)
            .input_named("config", &"x")
            .version("2");
        let reasons: Vec<String> = other
            .components()
            .unwrap()
            .changes_since(&c)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(reasons, ["input changed: #1"]);
    }

    #[test]
    fn a_bad_input_or_a_label_twice_is_an_error_naming_the_step() {
        let bad: HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let err = StepKey::new("s").input(&bad).components().unwrap_err();
        assert!(err.to_string().contains("step `s`"), "{err}");
        assert!(err.to_string().contains("input `#1`"), "{err}");
        let err = StepKey::new("s")
            .input_named("a", &1)
            .input_named("a", &2)
            .components()
            .unwrap_err();
        assert!(
            err.to_string().contains("two inputs are named `a`"),
            "{err}"
        );
    }

    #[test]
    fn summaries_read_like_the_runner() {
        let report = |action, ok| StepReport {
            name: "s".into(),
            action,
            state: State::NeverRun,
            reason: String::new(),
            attempts: 1,
            ok,
        };
        let summary = Summary {
            steps: vec![
                report(Action::Run, true),
                report(Action::Run, false),
                report(Action::Skip, true),
            ],
        };
        assert_eq!(summary.to_string(), "2 ran (1 failed), 1 skipped as done");
        assert_eq!(summary.exit_code(), EXIT_FAILED);
        assert_eq!(Summary::default().exit_code(), EXIT_OK);
    }

    #[test]
    fn a_run_can_move_to_another_thread() {
        fn send<T: Send>() {}
        send::<Run>();
        send::<StepKey>();
    }

    #[test]
    fn panic_messages_are_read_from_either_payload() {
        assert_eq!(panic_message(&"boom"), "boom");
        assert_eq!(panic_message(&String::from("bang")), "bang");
        assert_eq!(panic_message(&3), "a panic without a message");
    }
}
