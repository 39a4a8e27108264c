//! The journal: an append-only record of everything that happened to a
//! pipeline, one JSON object per line, `.stepwise/journal.jsonl`.
//!
//! Durability rules, in order of importance:
//! 1. Each record is written with a single `write` of the whole line, on a file
//!    opened with `O_APPEND`, *before* the runner acts on it. A kill at any
//!    instant leaves only whole lines behind, or at worst a torn last line.
//! 2. A torn last line (no trailing newline: the machine died mid-write) is
//!    ignored by readers and cut off by the next writer. A bad line anywhere
//!    else is corruption and an error: we never guess. Every record ends
//!    with a checksum of its line, so a changed byte makes a bad line, not
//!    a different record. Zero bytes a crash left, a line of them or run
//!    into the records of a line, are skipped and always reported.
//! 3. The file is fsynced at least once a second while a run goes on (group
//!    commit) and before the writer is closed; with [`SyncMode::Always`] after
//!    every record. A power cut therefore costs at most the last second of
//!    records, which only makes those steps run again.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::fingerprint::{Components, Digest};
use crate::pipeline::SyncMode;

/// The format version of every record this stepwise writes, and the newest
/// it reads, stored in every record as `"v"`. Format 3 records end with a
/// checksum of the line (see [`Record::to_line`]); formats 1 and 2 (2: a
/// Slurm `submit`) are those of earlier stepwise, read as before, without
/// one. An earlier stepwise refuses a format 3 journal as newer (it says
/// so) rather than append unchecked records to it.
pub const FORMAT_VERSION: u32 = 3;

/// The first format whose records carry a checksum: a record of it without
/// one was changed after it was written.
const CHECKED_VERSION: u32 = 3;

/// What ends every checksummed line: `,"sum":"` 8 lowercase hex digits `"}`,
/// the low 32 bits of the XXH3-64 of the line's bytes before this suffix.
/// Last and of fixed width, so it is found and checked without parsing the
/// JSON, and the line stays one JSON object for any other tool.
const SUM_KEY: &[u8] = b",\"sum\":\"";
const SUM_LEN: usize = SUM_KEY.len() + 8 + 2;

/// The checksum of a line's bytes before its suffix, as stored.
fn line_sum(body: &[u8]) -> [u8; 8] {
    let sum = xxhash_rust::xxh3::xxh3_64(body) as u32;
    let mut hex = [0u8; 8];
    for (i, digit) in hex.iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[(sum >> (28 - 4 * i)) as usize & 15];
    }
    hex
}

/// `line` (a JSON object, without its newline) with its checksum made
/// right, or added: a line changed on purpose (by a person repairing it by
/// hand, or a test) reads again.
pub fn reseal(line: &[u8]) -> Vec<u8> {
    let body = match split_sum(line) {
        Some((body, _)) => body,
        None => line.strip_suffix(b"}").unwrap_or(line),
    };
    [body, SUM_KEY, &line_sum(body), b"\"}"].concat()
}

/// A line's checksum suffix split off: the bytes it covers and the digits.
fn split_sum(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let body = line.len().checked_sub(SUM_LEN)?;
    let suffix = &line[body..];
    (suffix.starts_with(SUM_KEY) && suffix.ends_with(b"\"}"))
        .then(|| (&line[..body], &suffix[SUM_KEY.len()..SUM_KEY.len() + 8]))
}

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// The current time as [`Millis`].
pub fn now() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exited with status 0.
    Success,
    /// Exited with a non-zero status.
    Exited(i32),
    /// Killed by a signal it did not expect.
    Signaled(i32),
    /// Stopped by stepwise because it ran past its timeout.
    TimedOut,
    /// Stopped by stepwise because the run itself was interrupted (Ctrl-C,
    /// SIGTERM), with the signal the step was sent.
    Interrupted(i32),
    /// Could not be started at all; the message says why.
    NotStarted(String),
    /// Exited 0 without creating these declared outputs.
    OutputsMissing(Vec<String>),
    /// A step of a Rust program ([`crate::Run`]) returned an error or
    /// panicked, or its value could not be recorded; the message says which.
    Error(String),
    /// A Slurm job ended in this state (`OUT_OF_MEMORY`, `NODE_FAIL`,
    /// `CANCELLED`, ...) without the exit status of its command: Slurm
    /// stopped it, or it never ran.
    Job(String),
}

/// The value a step of a Rust program ([`crate::Run`]) returned, recorded
/// with its success so that the next run can return it without running the
/// step again.
#[derive(Clone, Debug)]
pub enum StepValue {
    /// The JSON text, in the `finish` record itself (`"value"`).
    Inline(Arc<serde_json::value::RawValue>),
    /// JSON text too large to sit in the journal, in the file
    /// `values/<digest>.json` of the state dir, whose content has this
    /// BLAKE3 digest (`"value_file"`).
    File(Digest),
}

impl StepValue {
    /// Where a [`StepValue::File`] lives, relative to the state dir.
    pub fn file_name(digest: &Digest) -> String {
        format!("values/{digest}.json")
    }

    /// Reads back what [`StepValue::file_name`] wrote; anything else is not
    /// a value file of ours, and a journal naming one is refused rather than
    /// trusted with a path.
    fn parse_file_name(name: &str) -> std::result::Result<Digest, String> {
        name.strip_prefix("values/")
            .and_then(|rest| rest.strip_suffix(".json"))
            .and_then(|hex| hex.parse().ok())
            .ok_or_else(|| format!("`value_file` is `{name}`, not `values/<32 hex digits>.json`"))
    }
}

impl PartialEq for StepValue {
    fn eq(&self, other: &StepValue) -> bool {
        match (self, other) {
            (StepValue::Inline(a), StepValue::Inline(b)) => a.get() == b.get(),
            (StepValue::File(a), StepValue::File(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for StepValue {}

/// What a step was when an attempt of it started (or was imported): its
/// fingerprint and the components it was made of.
///
/// Only the fingerprint decides anything; the components are read only to
/// explain a difference, so a stamp read from the journal keeps them as the
/// JSON text they were stored as and parses them on demand (a journal of a
/// million records would otherwise spend most of its load time on them).
#[derive(Clone, Debug)]
pub struct Stamp {
    /// The step's fingerprint: the hash of its components.
    pub fingerprint: Digest,
    parts: Parts,
}

#[derive(Clone, Debug)]
enum Parts {
    Parsed(Components),
    Stored(Box<serde_json::value::RawValue>),
    /// The JSON text as kept in a history snapshot (see
    /// [`crate::state::snapshot`]): bytes `.1` of the snapshot read, checked to be
    /// UTF-8 when read, shared by every stamp read from it.
    Text(Arc<Vec<u8>>, std::ops::Range<usize>),
}

fn shared_text<'a>(buf: &'a [u8], range: &std::ops::Range<usize>) -> &'a str {
    buf.get(range.clone())
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or("{}")
}

impl Stamp {
    /// A stamp from a fingerprint and the components it was computed from.
    pub fn new(fingerprint: Digest, parts: Components) -> Stamp {
        Stamp {
            fingerprint,
            parts: Parts::Parsed(parts),
        }
    }

    /// The components the fingerprint was made of. Stored components that
    /// cannot be read back count as none: every one then reads as changed,
    /// which only ever explains more, never decides differently.
    pub fn parts(&self) -> Cow<'_, Components> {
        match &self.parts {
            Parts::Parsed(c) => Cow::Borrowed(c),
            Parts::Stored(raw) => Cow::Owned(parse_parts(raw.get()).unwrap_or_default()),
            Parts::Text(buf, range) => {
                Cow::Owned(parse_parts(shared_text(buf, range)).unwrap_or_default())
            }
        }
    }

    /// The components as the JSON text the journal stores them as.
    pub(crate) fn parts_text(&self) -> Cow<'_, str> {
        match &self.parts {
            Parts::Stored(raw) => Cow::Borrowed(raw.get()),
            Parts::Text(buf, range) => Cow::Borrowed(shared_text(buf, range)),
            Parts::Parsed(_) => {
                Cow::Owned(RawStamp::from(self).parts.expect("set").get().to_string())
            }
        }
    }

    /// A stamp read back from a history snapshot: its parts are the text
    /// [`Stamp::parts_text`] gave, bytes `range` of `snapshot`, parsed only
    /// if asked for.
    pub(crate) fn from_text(
        fingerprint: Digest,
        snapshot: Arc<Vec<u8>>,
        range: std::ops::Range<usize>,
    ) -> Stamp {
        Stamp {
            fingerprint,
            parts: Parts::Text(snapshot, range),
        }
    }
}

fn parse_parts(json: &str) -> std::result::Result<Components, String> {
    let map: BTreeMap<String, String> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let mut parts = Components::default();
    for (key, digest) in map {
        parts.insert(key, digest.parse::<Digest>()?);
    }
    Ok(parts)
}

impl PartialEq for Stamp {
    fn eq(&self, other: &Stamp) -> bool {
        self.fingerprint == other.fingerprint && self.parts() == other.parts()
    }
}

impl Eq for Stamp {}

impl Outcome {
    /// Whether this is [`Outcome::Success`]: the only outcome that makes a
    /// step done.
    pub fn ok(&self) -> bool {
        matches!(self, Outcome::Success)
    }
}

/// One event in the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A `run` began. Run ids count up from 1.
    RunStarted {
        /// The run's id.
        run: u64,
        /// When it began.
        at: Millis,
        /// The runner's process id (0 in a record that lacks it).
        pid: u32,
    },
    /// An attempt of a step is about to start. Attempt numbers count every
    /// attempt of the step ever made, from 1.
    AttemptStarted {
        /// The run making the attempt.
        run: u64,
        /// The step's name.
        step: String,
        /// The attempt's number.
        attempt: u32,
        /// When it started.
        at: Millis,
        /// `None` when it could not be computed (a declared input missing).
        stamp: Option<Stamp>,
    },
    /// An attempt ended.
    AttemptFinished {
        /// The run that made the attempt.
        run: u64,
        /// The step's name.
        step: String,
        /// The attempt's number, as in its [`Record::AttemptStarted`].
        attempt: u32,
        /// When it ended.
        at: Millis,
        /// How long it ran, in milliseconds.
        duration_ms: u64,
        /// How it ended.
        outcome: Outcome,
        /// What a successful step of a Rust program returned; `None` for
        /// commands and failures. Old journals have none.
        value: Option<StepValue>,
    },
    /// An attempt was submitted to Slurm as this job, recorded the moment
    /// `sbatch` returned, so that a later run can find the job again.
    Submitted {
        /// The run the attempt belongs to.
        run: u64,
        /// The step's name.
        step: String,
        /// The attempt's number, as in its `start` record.
        attempt: u32,
        /// When `sbatch` returned.
        at: Millis,
        /// The Slurm job id `sbatch --parsable` printed (without a cluster
        /// name).
        job: String,
    },
    /// The user asked for these steps to run again (`None`: every step).
    Forgotten {
        /// When.
        at: Millis,
        /// The steps' names; `None` for every step recorded so far.
        steps: Option<Vec<String>>,
    },
    /// Attempts imported from a checkpoint file, `(name, ok)` in order,
    /// with each step's stamp as it stood at import time where it could be
    /// computed.
    Imported {
        /// When they were imported.
        at: Millis,
        /// `(step name, succeeded)`, in the checkpoint's order.
        attempts: Vec<(String, bool)>,
        /// By step name; a step missing here is imported by name alone.
        stamps: BTreeMap<String, Stamp>,
    },
    /// A `run` ended with this exit code; `None` when its runner died
    /// (killed, power cut) and a later run closed it after cleaning up what
    /// it left running.
    RunFinished {
        /// The run's id, as in its [`Record::RunStarted`].
        run: u64,
        /// When it ended, or when a later run closed it.
        at: Millis,
        /// Its exit code; `None` when its runner died.
        exit_code: Option<i32>,
        /// What the run did: attempts finished and failed, steps tried and
        /// failed, its last sign of life. Kept so a compacted journal still
        /// knows what each run did.
        counts: Option<RunCounts>,
    },
}

/// What one run did, in numbers: what `history` shows of it. Counted from
/// its records as they are read; an `end` record carries them, so they
/// survive compaction dropping the records they were counted from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunCounts {
    /// Attempts that finished in the run.
    pub ran: u32,
    /// Of those, the ones that failed.
    pub failed: u32,
    /// Steps it made attempts of. `None` (as the two below) in an `end`
    /// record of a stepwise that did not record it, and for a run that
    /// made no attempt.
    pub steps: Option<u32>,
    /// Of those, the ones whose last attempt in the run did not succeed
    /// (an attempt that never finished did not).
    pub steps_failed: Option<u32>,
    /// When its last attempt record was written (a start, a submission or
    /// a finish): how long a run whose runner died lasted.
    pub last_at: Option<Millis>,
}

impl RunCounts {
    /// One of its attempts started at `at`. `before`: whether the step's
    /// previous attempt in this run succeeded (`None`: this is the step's
    /// first attempt in the run; `Some(false)` also when that one never
    /// finished).
    pub fn attempt_started(&mut self, before: Option<bool>, at: Millis) {
        let add = |n: &mut Option<u32>| *n = Some(n.unwrap_or(0).saturating_add(1));
        match before {
            None => {
                add(&mut self.steps);
                add(&mut self.steps_failed);
            }
            // A step that succeeded and starts again has not succeeded (yet).
            Some(true) => add(&mut self.steps_failed),
            Some(false) => {}
        }
        self.seen(at);
    }

    /// One of its attempts finished at `at`. `decides`: the attempt is its
    /// step's latest in this run and had not finished before, so how it
    /// ended is how the step did in the run.
    pub fn attempt_finished(&mut self, ok: bool, decides: bool, at: Millis) {
        self.ran += 1;
        self.failed += u32::from(!ok);
        if ok && decides {
            self.steps_failed = self.steps_failed.map(|n| n.saturating_sub(1));
        }
        self.seen(at);
    }

    /// A record of it was written at `at`.
    pub fn seen(&mut self, at: Millis) {
        self.last_at = Some(self.last_at.map_or(at, |last| last.max(at)));
    }

    /// Takes what its `end` record says over what was counted: the record
    /// was written from the whole journal, the count may be of a compacted
    /// one. Fields the record does not carry stay as counted.
    pub fn take_recorded(&mut self, recorded: RunCounts) {
        self.ran = recorded.ran;
        self.failed = recorded.failed;
        if recorded.steps.is_some() {
            self.steps = recorded.steps;
        }
        if recorded.steps_failed.is_some() {
            self.steps_failed = recorded.steps_failed;
        }
        if let Some(at) = recorded.last_at {
            self.seen(at);
        }
    }
}

/// The on-disk shape of a record: flat, every field but `v`, `event` and `at`
/// optional, unknown fields ignored (so a later version can add some).
#[derive(Serialize, Deserialize, Default)]
struct Raw<'a> {
    v: u32,
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run: Option<u64>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    step: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
    at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ran: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failed: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    steps_run: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    steps_failed: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_at: Option<Millis>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    fingerprint: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parts: Option<Box<serde_json::value::RawValue>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    stamps: Option<BTreeMap<Cow<'a, str>, RawStamp<'a>>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    missing: Option<Vec<Cow<'a, str>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ok: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signal: Option<i32>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    reason: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    error: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    job: Option<Cow<'a, str>>,
    /// The Slurm state a job ended in, with `reason: "slurm"`.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    state: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    value: Option<&'a serde_json::value::RawValue>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    value_file: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    steps: Option<Vec<Cow<'a, str>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    all: Option<bool>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    attempts: Option<Vec<(Cow<'a, str>, bool)>>,
}

thread_local! {
    /// Where a checked line's JSON is parsed from (see
    /// [`Record::from_journal_line`]): one buffer, not one per record.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The version of a line that reads as JSON with a `"v"` newer than this
/// stepwise's.
fn newer_version(line: &[u8]) -> Option<u32> {
    #[derive(Deserialize)]
    struct Version {
        v: u32,
    }
    let Version { v } = serde_json::from_slice(line).ok()?;
    (v > FORMAT_VERSION).then_some(v)
}

impl Record {
    /// The record as one journal line, newline included: the record as a
    /// JSON object whose last field, `"sum"`, is a checksum of the bytes
    /// before it (see `SUM_KEY`).
    pub fn to_line(&self) -> Vec<u8> {
        let flat_value: Option<Box<serde_json::value::RawValue>>;
        let mut raw = Raw {
            v: FORMAT_VERSION,
            ..Raw::default()
        };
        match self {
            Record::RunStarted { run, at, pid } => {
                raw.event = "run".into();
                (raw.run, raw.at, raw.pid) = (Some(*run), *at, Some(*pid));
            }
            Record::AttemptStarted {
                run,
                step,
                attempt,
                at,
                stamp,
            } => {
                raw.event = "start".into();
                (raw.run, raw.step, raw.attempt, raw.at) =
                    (Some(*run), Some(step.into()), Some(*attempt), *at);
                if let Some(stamp) = stamp {
                    let RawStamp { fingerprint, parts } = RawStamp::from(stamp);
                    (raw.fingerprint, raw.parts) = (Some(fingerprint), parts);
                }
            }
            Record::AttemptFinished {
                run,
                step,
                attempt,
                at,
                duration_ms,
                outcome,
                value,
            } => {
                raw.event = "finish".into();
                match value {
                    None => {}
                    Some(StepValue::Inline(json)) if json.get().contains(['\n', '\r']) => {
                        // A line break inside JSON can only be whitespace
                        // (strings escape theirs), and would end the record.
                        let flat = json.get().replace(['\n', '\r'], " ");
                        let flat = serde_json::value::RawValue::from_string(flat)
                            .expect("JSON with whitespace changed is still JSON");
                        flat_value = Some(flat);
                        raw.value = flat_value.as_deref();
                    }
                    Some(StepValue::Inline(json)) => raw.value = Some(&**json),
                    Some(StepValue::File(digest)) => {
                        raw.value_file = Some(StepValue::file_name(digest).into())
                    }
                }
                (raw.run, raw.step, raw.attempt, raw.at) =
                    (Some(*run), Some(step.into()), Some(*attempt), *at);
                raw.duration_ms = Some(*duration_ms);
                raw.ok = Some(outcome.ok());
                match outcome {
                    Outcome::Success => raw.exit_code = Some(0),
                    Outcome::Exited(code) => raw.exit_code = Some(*code),
                    Outcome::Signaled(sig) => raw.signal = Some(*sig),
                    Outcome::TimedOut => raw.reason = Some("timeout".into()),
                    Outcome::Interrupted(sig) => {
                        raw.reason = Some("interrupted".into());
                        raw.signal = Some(*sig);
                    }
                    Outcome::NotStarted(message) => {
                        raw.reason = Some("not started".into());
                        raw.error = Some(message.into());
                    }
                    Outcome::OutputsMissing(paths) => {
                        raw.exit_code = Some(0);
                        raw.reason = Some("outputs missing".into());
                        raw.missing = Some(paths.iter().map(|p| p.into()).collect());
                    }
                    Outcome::Error(message) => {
                        raw.reason = Some("error".into());
                        raw.error = Some(message.into());
                    }
                    Outcome::Job(state) => {
                        raw.reason = Some("slurm".into());
                        raw.state = Some(state.into());
                    }
                }
            }
            Record::Submitted {
                run,
                step,
                attempt,
                at,
                job,
            } => {
                raw.event = "submit".into();
                (raw.run, raw.step, raw.attempt, raw.at) =
                    (Some(*run), Some(step.into()), Some(*attempt), *at);
                raw.job = Some(job.into());
            }
            Record::Forgotten { at, steps } => {
                raw.event = "forget".into();
                raw.at = *at;
                match steps {
                    None => raw.all = Some(true),
                    Some(steps) => raw.steps = Some(steps.iter().map(|s| s.into()).collect()),
                }
            }
            Record::Imported {
                at,
                attempts,
                stamps,
            } => {
                raw.event = "import".into();
                raw.at = *at;
                raw.attempts = Some(attempts.iter().map(|(n, ok)| (n.into(), *ok)).collect());
                if !stamps.is_empty() {
                    raw.stamps = Some(
                        stamps
                            .iter()
                            .map(|(n, s)| (n.into(), RawStamp::from(s)))
                            .collect(),
                    );
                }
            }
            Record::RunFinished {
                run,
                at,
                exit_code,
                counts,
            } => {
                raw.event = "end".into();
                (raw.run, raw.at, raw.exit_code) = (Some(*run), *at, *exit_code);
                raw.reason = exit_code.is_none().then(|| "runner died".into());
                if let Some(c) = counts {
                    (raw.ran, raw.failed) = (Some(c.ran), Some(c.failed));
                    (raw.steps_run, raw.steps_failed, raw.last_at) =
                        (c.steps, c.steps_failed, c.last_at);
                }
            }
        }
        let mut line = Vec::with_capacity(256);
        serde_json::to_writer(&mut line, &raw).expect("a record always serializes");
        // `{...}` becomes `{...,"sum":"<8 hex digits>"}`: see [`SUM_KEY`].
        line.pop();
        let sum = line_sum(&line);
        line.extend_from_slice(SUM_KEY);
        line.extend_from_slice(&sum);
        line.extend_from_slice(b"\"}\n");
        line
    }

    /// Parses one journal line (without its newline), on its own: as the
    /// first line of a journal.
    pub fn from_line(line: &[u8]) -> std::result::Result<Record, RecordError> {
        Record::from_journal_line(line, false).map(|(record, _)| record)
    }

    /// Parses one journal line (without its newline) in its place in a
    /// journal: `after_checked` when a record with a checksum came before
    /// it. Returns the record and whether it carried a checksum.
    ///
    /// A line ending in a checksum is checked, whatever its version. A line
    /// without one is read only if its version predates checksums and no
    /// record with one came before: no stepwise ever appends an unchecked
    /// record after a checked one (an earlier stepwise refuses a journal
    /// holding format 3 as newer), so such a line was changed, perhaps
    /// only in its `"v"` and suffix, and is refused like any bad line.
    pub fn from_journal_line(
        line: &[u8],
        after_checked: bool,
    ) -> std::result::Result<(Record, bool), RecordError> {
        let sum = split_sum(line);
        if let Some((body, stored)) = sum {
            let actual = line_sum(body);
            if stored != actual {
                // A newer format may sum otherwise: say newer, not corrupt.
                if let Some(version) = newer_version(line) {
                    return Err(RecordError::Newer { version });
                }
                return Err(RecordError::Bad(format!(
                    "its checksum does not match its bytes: the line was changed after it was written (it says `\"sum\":\"{}\"`, its bytes give `{}`)",
                    String::from_utf8_lossy(stored),
                    String::from_utf8_lossy(&actual)
                )));
            }
        }
        let checked = sum.is_some();
        match sum {
            // The JSON without its checksum, `{...` closed again: skipping
            // the field costs more than copying the line.
            Some((body, _)) => SCRATCH.with_borrow_mut(|json| {
                json.clear();
                json.extend_from_slice(body);
                json.push(b'}');
                Record::from_json(json, line, true, after_checked)
            }),
            None => Record::from_json(line, line, false, after_checked),
        }
        .map(|record| (record, checked))
    }

    /// [`Record::from_journal_line`] after the checksum: `json` is `line`
    /// or its checked part.
    fn from_json(
        json: &[u8],
        line: &[u8],
        checked: bool,
        after_checked: bool,
    ) -> std::result::Result<Record, RecordError> {
        let raw: Raw<'_> = match serde_json::from_slice(json) {
            Ok(raw) => raw,
            Err(e) => {
                // Tell a record of a newer format apart from garbage before
                // complaining about its fields.
                if let Some(version) = newer_version(line) {
                    return Err(RecordError::Newer { version });
                }
                return Err(RecordError::Bad(format!("not a journal record ({e})")));
            }
        };
        if raw.v > FORMAT_VERSION {
            return Err(RecordError::Newer { version: raw.v });
        }
        if !checked && raw.v >= CHECKED_VERSION {
            return Err(RecordError::Bad(format!(
                "a format {} record without its checksum (`\"sum\"`, last): the line was changed after it was written",
                raw.v
            )));
        }
        if !checked && after_checked {
            return Err(RecordError::Bad(
                "a record without a checksum after records with one: the line was changed after it was written (every record this stepwise writes has one)".into(),
            ));
        }
        Record::from_raw(raw).map_err(RecordError::Bad)
    }

    fn from_raw(raw: Raw<'_>) -> std::result::Result<Record, String> {
        if raw.v == 0 {
            return Err("unknown journal format 0".into());
        }
        fn need<T>(value: Option<T>, field: &str, event: &str) -> std::result::Result<T, String> {
            value.ok_or_else(|| format!("a `{event}` record without `{field}`"))
        }
        let event = raw.event.as_ref();
        let at = raw.at;
        Ok(match event {
            "run" => Record::RunStarted {
                run: need(raw.run, "run", event)?,
                at,
                pid: raw.pid.unwrap_or(0),
            },
            "start" => Record::AttemptStarted {
                run: need(raw.run, "run", event)?,
                step: need(raw.step, "step", event)?.into_owned(),
                attempt: need(raw.attempt, "attempt", event)?,
                at,
                stamp: match raw.fingerprint {
                    None => None,
                    Some(fingerprint) => Some(
                        RawStamp {
                            fingerprint,
                            parts: raw.parts,
                        }
                        .parse()?,
                    ),
                },
            },
            "finish" => {
                let ok = need(raw.ok, "ok", event)?;
                let outcome = match (ok, raw.reason.as_deref()) {
                    (true, _) => Outcome::Success,
                    (false, Some("timeout")) => Outcome::TimedOut,
                    (false, Some("interrupted")) => Outcome::Interrupted(raw.signal.unwrap_or(0)),
                    (false, Some("not started")) => {
                        Outcome::NotStarted(raw.error.map(Cow::into_owned).unwrap_or_default())
                    }
                    (false, Some("outputs missing")) => Outcome::OutputsMissing(
                        raw.missing
                            .unwrap_or_default()
                            .into_iter()
                            .map(Cow::into_owned)
                            .collect(),
                    ),
                    (false, Some("error")) => {
                        Outcome::Error(raw.error.map(Cow::into_owned).unwrap_or_default())
                    }
                    (false, Some("slurm")) => {
                        Outcome::Job(raw.state.map(Cow::into_owned).unwrap_or_default())
                    }
                    (false, _) => match (raw.exit_code, raw.signal) {
                        (Some(code), _) => Outcome::Exited(code),
                        (None, Some(sig)) => Outcome::Signaled(sig),
                        (None, None) => Outcome::Exited(-1),
                    },
                };
                Record::AttemptFinished {
                    run: need(raw.run, "run", event)?,
                    step: need(raw.step, "step", event)?.into_owned(),
                    attempt: need(raw.attempt, "attempt", event)?,
                    at,
                    duration_ms: raw.duration_ms.unwrap_or(0),
                    // Only a success has a value worth returning.
                    value: match (ok, raw.value, raw.value_file) {
                        (false, ..) => None,
                        (true, Some(json), _) => {
                            Some(StepValue::Inline(Arc::from(json.to_owned())))
                        }
                        (true, None, Some(name)) => {
                            Some(StepValue::File(StepValue::parse_file_name(&name)?))
                        }
                        (true, None, None) => None,
                    },
                    outcome,
                }
            }
            "submit" => Record::Submitted {
                run: need(raw.run, "run", event)?,
                step: need(raw.step, "step", event)?.into_owned(),
                attempt: need(raw.attempt, "attempt", event)?,
                at,
                job: need(raw.job, "job", event)?.into_owned(),
            },
            "forget" => Record::Forgotten {
                at,
                steps: match (raw.all, raw.steps) {
                    (Some(true), _) => None,
                    (_, Some(steps)) => Some(steps.into_iter().map(Cow::into_owned).collect()),
                    _ => return Err("a `forget` record without `steps` or `all`".into()),
                },
            },
            "import" => Record::Imported {
                at,
                attempts: need(raw.attempts, "attempts", event)?
                    .into_iter()
                    .map(|(n, ok)| (n.into_owned(), ok))
                    .collect(),
                stamps: raw
                    .stamps
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(n, s)| Ok((n.into_owned(), s.parse()?)))
                    .collect::<std::result::Result<_, String>>()?,
            },
            "end" => Record::RunFinished {
                run: need(raw.run, "run", event)?,
                at,
                exit_code: raw.exit_code,
                counts: match (raw.ran, raw.failed) {
                    (Some(ran), Some(failed)) => Some(RunCounts {
                        ran,
                        failed,
                        steps: raw.steps_run,
                        steps_failed: raw.steps_failed,
                        last_at: raw.last_at,
                    }),
                    _ => None,
                },
            },
            other => return Err(format!("unknown event `{other}`")),
        })
    }
}

/// A [`Stamp`] as stored: hex digests, the components as a JSON object.
#[derive(Serialize, Deserialize)]
struct RawStamp<'a> {
    #[serde(borrow)]
    fingerprint: Cow<'a, str>,
    #[serde(default)]
    parts: Option<Box<serde_json::value::RawValue>>,
}

impl From<&Stamp> for RawStamp<'_> {
    fn from(stamp: &Stamp) -> Self {
        let parts = match &stamp.parts {
            Parts::Stored(raw) => raw.clone(),
            // Checksummed text this stepwise wrote: anything else reads as
            // no components (see `Stamp::parts`).
            Parts::Text(buf, range) => {
                serde_json::value::RawValue::from_string(shared_text(buf, range).to_string())
                    .unwrap_or_else(|_| {
                        serde_json::value::RawValue::from_string("{}".into()).expect("valid")
                    })
            }
            Parts::Parsed(c) => {
                let map: BTreeMap<&str, String> =
                    c.0.iter()
                        .map(|(k, d)| (k.as_str(), d.to_string()))
                        .collect();
                serde_json::value::to_raw_value(&map).expect("a map of strings serializes")
            }
        };
        RawStamp {
            fingerprint: stamp.fingerprint.to_string().into(),
            parts: Some(parts),
        }
    }
}

impl RawStamp<'_> {
    fn parse(self) -> std::result::Result<Stamp, String> {
        let fingerprint: Digest = self.fingerprint.parse()?;
        let parts = match self.parts {
            Some(raw) => Parts::Stored(raw),
            None => Parts::Parsed(Components::default()),
        };
        Ok(Stamp { fingerprint, parts })
    }
}

/// Why a line is not a record this stepwise can use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// Written by a newer stepwise, in this format version.
    Newer {
        /// The record's `"v"`.
        version: u32,
    },
    /// Not a record at all, or a malformed one.
    Bad(String),
}

/// What reading a journal found besides its records.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadReport {
    /// Number of records read.
    pub records: usize,
    /// Byte length of the whole records; anything after is a torn tail.
    pub valid_len: u64,
    /// The 1-based line number of a torn last line, if there is one.
    pub torn_line: Option<usize>,
    /// Lines of zero bytes skipped: debris some filesystems leave where a
    /// crash caught data not yet written.
    pub zero_lines: Vec<usize>,
    /// Lines holding records and zero bytes: the same debris, when the zeros
    /// cover a line's newline too and run into a record. The records are
    /// read (their checksums say they are whole); whatever stood where the
    /// zeros are is lost, so it is reported, never passed over in silence.
    pub zeros_in_lines: Vec<usize>,
    /// A record with a checksum was read: every later one must have one.
    pub checked: bool,
}

/// Where events are stored. The planner never sees this: it works on the
/// [`History`](crate::state::history::History) folded from the records, so another
/// store (a database) only has to implement these three methods.
pub trait Store {
    /// Calls `visit` with every committed record, oldest first.
    fn read(&self, visit: &mut dyn FnMut(Record)) -> Result<ReadReport>;
    /// Adds a record. When this returns the record is visible to readers
    /// (but durable only after [`Store::sync`] or the next group commit).
    fn append(&mut self, record: &Record) -> Result<()>;
    /// Makes every appended record durable.
    fn sync(&mut self) -> Result<()>;
}

/// Reads a journal file, calling `visit` for each record. A missing file is
/// an empty journal.
pub fn read_file(path: &Path, visit: &mut dyn FnMut(Record)) -> Result<ReadReport> {
    read_file_with(path, &mut |_| None, visit)
}

/// [`read_file`], starting where `resume` says for the file opened (a
/// history snapshot checks it against the file and sets the history the
/// records are then applied to).
pub fn read_file_with(
    path: &Path,
    resume: &mut dyn FnMut(&File) -> Option<Resume>,
    visit: &mut dyn FnMut(Record),
) -> Result<ReadReport> {
    READS.fetch_add(1, Ordering::Relaxed);
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ReadReport::default()),
        Err(e) => return Err(e).context(format!("cannot read the journal {}", path.display())),
    };
    let start = seek_to(&file, resume(&file))
        .context(format!("cannot read the journal {}", path.display()))?;
    Ok(read_stream_from(path, file, start, visit)?.0)
}

/// Positions `file` at the resume point; the default start without one.
fn seek_to(mut file: &File, resume: Option<Resume>) -> std::io::Result<Resume> {
    use std::io::{Seek, SeekFrom};
    let resume = resume.unwrap_or_default();
    file.seek(SeekFrom::Start(resume.offset))?;
    Ok(resume)
}

static READS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
thread_local! {
    static PARSED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many times this process has read a journal file: a no-op run must
/// read it once, whatever the pipeline's size (a test holds it to that).
pub fn reads() -> u64 {
    READS.load(Ordering::Relaxed)
}

/// How many journal bytes this thread has read to parse into records: with
/// a current history snapshot, a no-op run parses none (a test holds it to
/// that).
pub fn bytes_parsed() -> u64 {
    PARSED.with(std::cell::Cell::get)
}

/// Where reading a journal starts: the beginning, or the end of what a
/// history snapshot already holds, with what reading up to there found.
#[derive(Clone, Debug, Default)]
pub struct Resume {
    /// Bytes already read: whole lines, the last one ending in a newline.
    pub offset: u64,
    /// Lines in them.
    pub lines: usize,
    /// What reading them found.
    pub report: ReadReport,
}

/// Parses journal contents; `path` is only used in messages.
pub fn read_bytes(path: &Path, bytes: &[u8], visit: &mut dyn FnMut(Record)) -> Result<ReadReport> {
    let mut lines = Lines::new(path);
    let mut pos = 0;
    while pos < bytes.len() {
        match memchr::memchr(b'\n', &bytes[pos..]) {
            Some(len) => {
                lines.line(&bytes[pos..pos + len], true, visit)?;
                pos += len + 1;
            }
            None => {
                lines.line(&bytes[pos..], false, visit)?;
                pos = bytes.len();
            }
        }
    }
    Ok(lines.report)
}

/// Reads a journal from `reader` a chunk at a time (a journal can be
/// hundreds of megabytes; only one chunk is ever in memory). Returns the
/// report, the total length and the last byte read.
pub fn read_stream(
    path: &Path,
    reader: impl std::io::Read,
    visit: &mut dyn FnMut(Record),
) -> Result<(ReadReport, u64, Option<u8>)> {
    read_stream_from(path, reader, Resume::default(), visit)
}

/// [`read_stream`] of a reader positioned at `start.offset`, whose bytes
/// before are accounted for in `start`.
pub fn read_stream_from(
    path: &Path,
    reader: impl std::io::Read,
    start: Resume,
    visit: &mut dyn FnMut(Record),
) -> Result<(ReadReport, u64, Option<u8>)> {
    // Small enough to zero cheaply, large enough for few reads.
    read_chunks(path, reader, start, visit, 256 << 10)
}

fn read_chunks(
    path: &Path,
    mut reader: impl std::io::Read,
    start: Resume,
    visit: &mut dyn FnMut(Record),
    chunk: usize,
) -> Result<(ReadReport, u64, Option<u8>)> {
    let mut lines = Lines::new(path);
    lines.line_no = start.lines;
    lines.pos = start.offset;
    lines.report = start.report;
    let mut buf: Vec<u8> = Vec::with_capacity(chunk);
    let mut total = start.offset;
    // What it resumes after ends with a newline.
    let mut last = (start.offset > 0).then_some(b'\n');
    loop {
        let start = buf.len();
        buf.resize(start + chunk, 0);
        let n = loop {
            match reader.read(&mut buf[start..]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => {
                    break other.context(format!("cannot read the journal {}", path.display()))?;
                }
            }
        };
        buf.truncate(start + n);
        PARSED.with(|p| p.set(p.get() + n as u64));
        if n == 0 {
            if !buf.is_empty() {
                lines.line(&buf, false, visit)?;
            }
            return Ok((lines.report, total, last));
        }
        total += n as u64;
        last = buf.last().copied();
        // Whole lines now; the tail waits for the next chunk.
        let mut pos = 0;
        while let Some(len) = memchr::memchr(b'\n', &buf[pos..]) {
            lines.line(&buf[pos..pos + len], true, visit)?;
            pos += len + 1;
        }
        buf.drain(..pos);
    }
}

/// The line-by-line rules shared by every way of reading a journal.
struct Lines<'p> {
    path: &'p Path,
    report: ReadReport,
    line_no: usize,
    /// Bytes seen so far (the start of the next line).
    pos: u64,
}

impl<'p> Lines<'p> {
    fn new(path: &'p Path) -> Lines<'p> {
        Lines {
            path,
            report: ReadReport::default(),
            line_no: 0,
            pos: 0,
        }
    }

    /// One line, without its newline; `complete` when a newline ended it.
    fn line(&mut self, line: &[u8], complete: bool, visit: &mut dyn FnMut(Record)) -> Result<()> {
        self.line_no += 1;
        let line_no = self.line_no;
        let next = self.pos + line.len() as u64 + u64::from(complete);
        self.pos = next;
        let report = &mut self.report;
        let mut records = match read_line(line, report.checked) {
            LineRead::Blank => {
                if complete {
                    report.valid_len = next;
                }
                return Ok(());
            }
            LineRead::Zeros => {
                report.zero_lines.push(line_no);
                if complete {
                    report.valid_len = next;
                } else {
                    report.torn_line = Some(line_no);
                }
                return Ok(());
            }
            LineRead::One(Ok(one)) => {
                // A last line without its newline is fine if it is a whole
                // record (a hand edit, or a crash between the record and its
                // newline); the next writer adds the newline.
                report.valid_len = next;
                accept(one, report, visit);
                return Ok(());
            }
            LineRead::One(Err(e)) => return self.bad(e, complete),
            LineRead::Zeroed(parts) => {
                let mut records = Vec::with_capacity(parts.len());
                for (_, read) in parts {
                    match read {
                        Ok(one) => records.push(one),
                        Err(e) => return self.bad(e, complete),
                    }
                }
                records
            }
        };
        report.valid_len = next;
        report.zeros_in_lines.push(line_no);
        for one in records.drain(..) {
            accept(one, report, visit);
        }
        Ok(())
    }

    /// The current line cannot be read for `e`: a torn last line if no
    /// newline ended it, else an error.
    fn bad(&mut self, e: RecordError, complete: bool) -> Result<()> {
        let line_no = self.line_no;
        match e {
            _ if !complete => {
                self.report.torn_line = Some(line_no);
                Ok(())
            }
            RecordError::Newer { version } => Err(Error::NewerJournal {
                path: self.path.to_path_buf(),
                line: line_no,
                version,
            }),
            RecordError::Bad(message) => Err(Error::CorruptJournal {
                path: self.path.to_path_buf(),
                line: line_no,
                message,
                help: format!(
                    "nothing was run or changed; `stepwise fsck --repair` moves unreadable lines aside (keeping them in a file beside the journal) and keeps the rest; or repair line {line_no} by hand"
                ),
            }),
        }
    }
}

fn accept(
    (record, checked): (Record, bool),
    report: &mut ReadReport,
    visit: &mut dyn FnMut(Record),
) {
    report.records += 1;
    report.checked |= checked;
    visit(record);
}

/// A record read from a line, with whether it carried a checksum.
pub type LineRecord = std::result::Result<(Record, bool), RecordError>;

/// What one journal line holds, by the rules every reader of a journal
/// shares (the reader here and `fsck`, which must agree on every byte).
pub enum LineRead<'a> {
    /// Nothing but whitespace.
    Blank,
    /// Zero bytes (and whitespace) only: debris some filesystems leave where
    /// a crash caught data not yet written. Not a record, and never
    /// something a user wrote.
    Zeros,
    /// A line without zero bytes: one record, or why it is none.
    One(LineRecord),
    /// The same debris run into records, when the zeros covered a newline:
    /// each part of the line between runs of zeros that is not blank, as
    /// read. Whatever stood where the zeros are is lost.
    Zeroed(Vec<(&'a [u8], LineRecord)>),
}

/// Reads one journal line (without its newline); `after_checked` as for
/// [`Record::from_journal_line`], for its first record.
pub fn read_line(line: &[u8], after_checked: bool) -> LineRead<'_> {
    // No line that reads holds a zero byte (JSON escapes control bytes in
    // strings and allows none outside): look for them only when it does not
    // read, and the usual line pays nothing for it.
    if line.first() != Some(&0) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return LineRead::Blank;
        }
        let one = Record::from_journal_line(line, after_checked);
        if one.is_ok() || memchr::memchr(0, line).is_none() {
            return LineRead::One(one);
        }
    }
    let mut checked = after_checked;
    let parts: Vec<_> = line
        .split(|&b| b == 0)
        .filter(|part| !part.iter().all(u8::is_ascii_whitespace))
        .map(|part| {
            let read = Record::from_journal_line(part, checked);
            if let Ok((_, c)) = &read {
                checked |= c;
            }
            (part, read)
        })
        .collect();
    if parts.is_empty() {
        LineRead::Zeros
    } else {
        LineRead::Zeroed(parts)
    }
}

/// The journal file, open for appending by the one process holding the lock.
pub struct JsonlStore {
    path: PathBuf,
    file: Arc<File>,
    mode: SyncMode,
    /// Length of the file up to the last whole record we know of: a failed
    /// append is cut back to it, so a record is never glued to debris.
    len: u64,
    /// Records appended and not yet fsynced (batched mode).
    dirty: Arc<AtomicBool>,
    /// Held across "is anything dirty? fsync", so a sync that finds nothing
    /// to do knows every earlier fsync has completed.
    syncing: Arc<Mutex<()>>,
    /// The first write or sync error. An fsync error is reported only once by
    /// the kernel, so it is kept here and every later call fails with it:
    /// we never carry on as if records were safe when they may not be.
    failed: Arc<Mutex<Option<String>>>,
    /// Device and inode of the file we opened: if the path stops naming
    /// this file (someone moved, deleted or replaced the journal), appending
    /// on would write records nobody reads, a silent fork of the history.
    identity: (u64, u64),
    /// Dropping this stops the group-commit thread, which then syncs once more.
    stop: Option<mpsc::Sender<()>>,
    committer: Option<thread::JoinHandle<()>>,
}

/// How often a batched journal is made durable.
const GROUP_COMMIT_INTERVAL: Duration = Duration::from_millis(1000);

impl JsonlStore {
    /// Opens (creating if needed) the journal for appending. The caller must
    /// hold the state dir's lock. A torn last line is cut off here (a whole
    /// last record missing its newline gets one), so new records start on a
    /// line of their own.
    pub fn open(path: &Path, mode: SyncMode) -> Result<JsonlStore> {
        Ok(JsonlStore::open_reading(path, mode, &mut |_| None, &mut |_| {})?.0)
    }

    /// [`JsonlStore::open`], calling `visit` with every record on the way:
    /// the file is read once, for the caller and for mending its tail. A
    /// corrupt journal is refused before anything is written to it.
    /// `resume` may skip what a history snapshot already holds (see
    /// [`read_file_with`]).
    pub fn open_reading(
        path: &Path,
        mode: SyncMode,
        resume: &mut dyn FnMut(&File) -> Option<Resume>,
        visit: &mut dyn FnMut(Record),
    ) -> Result<(JsonlStore, ReadReport)> {
        let created = !path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            // A planted symlink must not have records appended to its target.
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
            .context(format!("cannot open the journal {}", path.display()))?;
        if created && let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        let identity = file
            .metadata()
            .map(|m| (m.dev(), m.ino()))
            .context(format!("cannot stat the journal {}", path.display()))?;
        let mut store = JsonlStore {
            path: path.to_path_buf(),
            file: Arc::new(file),
            mode,
            identity,
            len: 0,
            dirty: Arc::new(AtomicBool::new(false)),
            syncing: Arc::new(Mutex::new(())),
            failed: Arc::new(Mutex::new(None)),
            stop: None,
            committer: None,
        };
        READS.fetch_add(1, Ordering::Relaxed);
        let start = seek_to(&store.file, resume(&store.file))
            .context(format!("cannot read the journal {}", path.display()))?;
        let (report, total, last) = read_stream_from(path, &*store.file, start, visit)?;
        store.mend_tail(total, last, &report)?;
        // The group-commit thread starts with the first append: a run with
        // nothing to do spawns no thread.
        Ok((store, report))
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's length: whole records, each ending in a newline.
    pub fn written_len(&self) -> u64 {
        self.len
    }

    /// `total` bytes were read, the last one `last`.
    fn mend_tail(&mut self, total: u64, last: Option<u8>, report: &ReadReport) -> Result<()> {
        let whole = report.valid_len;
        if whole < total {
            self.file.set_len(whole).context(format!(
                "cannot cut the torn last line of {}",
                self.path.display()
            ))?;
        }
        self.len = whole;
        // Whole lines end with a newline; only a last record read in full
        // without one (so nothing was cut) can lack it.
        if whole > 0 && whole == total && last != Some(b'\n') {
            (&*self.file).write_all(b"\n").context(format!(
                "cannot append to the journal {}",
                self.path.display()
            ))?;
            self.len += 1;
        }
        if self.len != total {
            self.file.sync_all().context("cannot sync the journal")?;
        }
        Ok(())
    }

    fn start_group_commit(&mut self) {
        let (tx, rx) = mpsc::channel::<()>();
        let file = Arc::clone(&self.file);
        let dirty = Arc::clone(&self.dirty);
        let failed = Arc::clone(&self.failed);
        let syncing = Arc::clone(&self.syncing);
        self.stop = Some(tx);
        self.committer = Some(thread::spawn(move || {
            loop {
                let stopping = !matches!(
                    rx.recv_timeout(GROUP_COMMIT_INTERVAL),
                    Err(mpsc::RecvTimeoutError::Timeout)
                );
                let _guard = syncing.lock().unwrap_or_else(|p| p.into_inner());
                if dirty.swap(false, Ordering::AcqRel)
                    && let Err(e) = file.sync_data()
                {
                    let mut failed = failed.lock().unwrap_or_else(|p| p.into_inner());
                    failed.get_or_insert_with(|| format!("cannot sync the journal: {e}"));
                }
                if stopping {
                    return;
                }
            }
        }));
    }

    fn check(&self) -> Result<()> {
        let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        match &*failed {
            None => Ok(()),
            Some(why) => Err(Error::Io {
                context: format!(
                    "the journal {} cannot be trusted any more",
                    self.path.display()
                ),
                source: std::io::Error::other(why.clone()),
            }),
        }
    }

    /// Fails (for good) if the journal's path no longer names the file this
    /// store writes to. One `stat` per record: nothing next to the `write`.
    fn check_identity(&self) -> Result<()> {
        let now = match std::fs::metadata(&self.path) {
            Ok(m) => Some((m.dev(), m.ino())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(e).context(format!("cannot stat the journal {}", self.path.display()));
            }
        };
        if now == Some(self.identity) {
            return Ok(());
        }
        let what = if now.is_some() {
            "replaced by another file"
        } else {
            "moved or deleted"
        };
        let why = format!(
            "it was {what} while this process was writing it; stopping rather than recording into a file nobody reads (check what else touched {})",
            self.path.display()
        );
        self.fail(why);
        self.check()
    }

    fn fail(&self, why: String) {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        failed.get_or_insert(why);
    }

    /// Syncs and closes; unlike dropping, reports a failed final sync.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        self.stop.take();
        if let Some(handle) = self.committer.take() {
            let _ = handle.join();
        }
        self.sync()
    }
}

impl Store for JsonlStore {
    fn read(&self, visit: &mut dyn FnMut(Record)) -> Result<ReadReport> {
        read_file(&self.path, visit)
    }

    fn append(&mut self, record: &Record) -> Result<()> {
        self.check()?;
        self.check_identity()?;
        let line = record.to_line();
        // One write of the whole line: `write_all` only loops on a short
        // write, which regular files do not do short of a full disk.
        if let Err(e) = (&*self.file).write_all(&line) {
            // Cut back whatever part reached the file, so the journal still
            // ends with a whole record, and refuse to go on.
            let _ = self.file.set_len(self.len);
            self.fail(format!("cannot append to it: {e}"));
            let full = matches!(
                e.raw_os_error(),
                Some(nix::libc::ENOSPC | nix::libc::EFBIG | nix::libc::EDQUOT)
            );
            return Err(e).context(format!(
                "cannot append to the journal {}{}",
                self.path.display(),
                if full {
                    " (the disk is full, or a file size limit was hit): stopped; every record before this one is kept, and the steps whose results could not be recorded run again next time"
                } else {
                    ""
                }
            ));
        }
        self.len += line.len() as u64;
        match self.mode {
            SyncMode::Always => {
                if let Err(e) = self.file.sync_data() {
                    self.fail(format!("cannot sync it: {e}"));
                    return Err(e)
                        .context(format!("cannot sync the journal {}", self.path.display()));
                }
            }
            SyncMode::Batched => {
                self.dirty.store(true, Ordering::Release);
                if self.committer.is_none() {
                    self.start_group_commit();
                }
            }
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.check()?;
        self.check_identity()?;
        // Nothing appended since the last sync (ours or the group commit's,
        // which holds this lock until its fsync returns): nothing to make
        // durable, and an fsync costs milliseconds a no-op run should not pay.
        let _guard = self.syncing.lock().unwrap_or_else(|p| p.into_inner());
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        if let Err(e) = self.file.sync_data() {
            self.fail(format!("cannot sync it: {e}"));
            return Err(e).context(format!("cannot sync the journal {}", self.path.display()));
        }
        Ok(())
    }
}

impl Drop for JsonlStore {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Replaces the journal at `path` with `records`, atomically: a crash at any
/// instant leaves the old journal or the new one, never a mix (temp file in
/// the same folder, fsync, rename, fsync of the folder). The caller holds
/// the lock.
pub fn rewrite(path: &Path, records: &[Record]) -> Result<()> {
    let mut text = Vec::with_capacity(records.len() * 160);
    for record in records {
        text.extend_from_slice(&record.to_line());
    }
    // It would not be trusted anyway (another file); no need to ask.
    crate::state::snapshot::remove_beside(path);
    crate::hash::write_atomically(path, &text)
        .context(format!("cannot rewrite the journal {}", path.display()))
}

/// fsyncs a directory, so a file created or renamed in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .context(format!("cannot sync the folder {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_kinds() -> Vec<Record> {
        vec![
            Record::RunStarted {
                run: 1,
                at: 5,
                pid: 42,
            },
            Record::AttemptStarted {
                run: 1,
                step: "a\"b".into(),
                attempt: 1,
                at: 6,
                stamp: None,
            },
            Record::AttemptFinished {
                run: 1,
                step: "a".into(),
                attempt: 1,
                at: 7,
                duration_ms: 1,
                outcome: Outcome::Success,
                value: None,
            },
            Record::AttemptFinished {
                run: 1,
                step: "a".into(),
                attempt: 2,
                at: 7,
                duration_ms: 1,
                outcome: Outcome::Exited(3),
                value: None,
            },
            Record::AttemptFinished {
                run: 1,
                step: "a".into(),
                attempt: 3,
                at: 7,
                duration_ms: 1,
                outcome: Outcome::Signaled(9),
                value: None,
            },
            Record::AttemptFinished {
                run: 1,
                step: "a".into(),
                attempt: 4,
                at: 7,
                duration_ms: 1,
                outcome: Outcome::TimedOut,
                value: None,
            },
            Record::AttemptFinished {
                run: 1,
                step: "a".into(),
                attempt: 5,
                at: 7,
                duration_ms: 1,
                outcome: Outcome::Interrupted(2),
                value: None,
            },
            Record::AttemptFinished {
                run: 1,
                step: "a".into(),
                attempt: 6,
                at: 7,
                duration_ms: 1,
                outcome: Outcome::NotStarted("no such dir".into()),
                value: None,
            },
            Record::AttemptFinished {
                run: 1,
                step: "a".into(),
                attempt: 7,
                at: 7,
                duration_ms: 1,
                outcome: Outcome::Error("no \"rows\"\nat all".into()),
                value: None,
            },
            Record::AttemptFinished {
                run: 1,
                step: "lib".into(),
                attempt: 1,
                at: 7,
                duration_ms: 1,
                outcome: Outcome::Success,
                value: Some(StepValue::Inline(Arc::from(
                    serde_json::value::RawValue::from_string(
                        r#"{"rows": [1, 2.5, "x\"y", null], "ok": true}"#.into(),
                    )
                    .unwrap(),
                ))),
            },
            Record::AttemptFinished {
                run: 1,
                step: "lib".into(),
                attempt: 2,
                at: 7,
                duration_ms: 1,
                outcome: Outcome::Success,
                value: Some(StepValue::File(Digest::of(b"[1,2,3]"))),
            },
            Record::AttemptFinished {
                run: 1,
                step: "a".into(),
                attempt: 8,
                at: 7,
                duration_ms: 1,
                outcome: Outcome::Job("OUT_OF_MEMORY".into()),
                value: None,
            },
            Record::Submitted {
                run: 1,
                step: "a".into(),
                attempt: 9,
                at: 7,
                job: "4242".into(),
            },
            Record::Forgotten {
                at: 8,
                steps: Some(vec!["a".into()]),
            },
            Record::Forgotten { at: 8, steps: None },
            Record::Imported {
                at: 9,
                attempts: vec![("a".into(), true), ("b".into(), false)],
                stamps: Default::default(),
            },
            Record::RunFinished {
                run: 1,
                at: 10,
                exit_code: Some(1),
                counts: Some(RunCounts {
                    ran: 3,
                    failed: 1,
                    steps: Some(2),
                    steps_failed: Some(1),
                    last_at: Some(9),
                }),
            },
            Record::RunFinished {
                run: 1,
                at: 10,
                exit_code: Some(1),
                counts: Some(RunCounts {
                    ran: 3,
                    failed: 1,
                    ..RunCounts::default()
                }),
            },
            Record::RunFinished {
                run: 2,
                at: 11,
                exit_code: None,
                counts: None,
            },
        ]
    }

    #[test]
    fn every_record_round_trips() {
        for record in all_kinds() {
            let line = record.to_line();
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(Record::from_line(&line[..line.len() - 1]), Ok(record));
        }
    }

    #[test]
    fn values_are_stored_as_written() {
        let json = r#"{"b": 1, "a": [true]}"#;
        let record = Record::AttemptFinished {
            run: 1,
            step: "s".into(),
            attempt: 1,
            at: 2,
            duration_ms: 3,
            outcome: Outcome::Success,
            value: Some(StepValue::Inline(Arc::from(
                serde_json::value::RawValue::from_string(json.into()).unwrap(),
            ))),
        };
        let line = String::from_utf8(record.to_line()).unwrap();
        assert!(line.contains(r#""value":{"b": 1, "a": [true]}"#), "{line}");
        let pretty = "{\n  \"a\": \"x\\ny\"\r\n}";
        let record = Record::AttemptFinished {
            run: 1,
            step: "s".into(),
            attempt: 1,
            at: 2,
            duration_ms: 3,
            outcome: Outcome::Success,
            value: Some(StepValue::Inline(Arc::from(
                serde_json::value::RawValue::from_string(pretty.into()).unwrap(),
            ))),
        };
        let line = record.to_line();
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        match Record::from_line(&line[..line.len() - 1]).unwrap() {
            Record::AttemptFinished {
                value: Some(StepValue::Inline(json)),
                ..
            } => {
                let v: serde_json::Value = serde_json::from_str(json.get()).unwrap();
                assert_eq!(v, serde_json::json!({"a": "x\ny"}));
            }
            other => panic!("{other:?}"),
        }
        let digest = Digest::of(b"{}");
        let record = Record::AttemptFinished {
            run: 1,
            step: "s".into(),
            attempt: 1,
            at: 2,
            duration_ms: 3,
            outcome: Outcome::Success,
            value: Some(StepValue::File(digest)),
        };
        let line = String::from_utf8(record.to_line()).unwrap();
        assert!(
            line.contains(&format!(r#""value_file":"values/{digest}.json""#)),
            "{line}"
        );
    }

    /// Lines exactly as stepwise wrote them before values existed: they must
    /// load unchanged, with no value.
    #[test]
    fn journals_from_before_values_still_load() {
        let old = br#"{"v":1,"event":"run","run":1,"at":1795975940540,"pid":17780}
{"v":1,"event":"start","run":1,"step":"a","attempt":1,"at":1795975940540,"fingerprint":"462ed1994f92dd3a1485e307eec2ecbf","parts":{"dir":"a2b910880c859d384db4e83c839bb044","input:in.txt":"44c77418e27569db9213c6b43d9049ec","run":"224baa3da1c00d175b8163d26975f67e","shell":"1fe31171d43528a088d60e244f9957dc"}}
{"v":1,"event":"finish","run":1,"step":"a","attempt":1,"at":1795975940541,"ok":true,"exit_code":0,"duration_ms":1}
{"v":1,"event":"finish","run":1,"step":"b","attempt":1,"at":1795975940543,"ok":false,"exit_code":3,"duration_ms":1}
{"v":1,"event":"finish","run":1,"step":"c","attempt":1,"at":1795975940543,"ok":false,"reason":"not started","error":"input `x` is missing","duration_ms":0}
{"v":1,"event":"end","run":1,"at":1795975940543,"exit_code":1}
{"v":1,"event":"forget","at":1795975940568,"steps":["a"]}
{"v":1,"event":"import","at":1795975940592,"stamps":{"a":{"fingerprint":"462ed1994f92dd3a1485e307eec2ecbf","parts":{"dir":"a2b910880c859d384db4e83c839bb044"}}},"attempts":[["a",true]]}
"#;
        let mut records = Vec::new();
        let report = read_bytes(Path::new("j"), old, &mut |r| records.push(r)).unwrap();
        assert_eq!(report.records, 8);
        assert_eq!(report.torn_line, None);
        let finishes: Vec<(&Outcome, &Option<StepValue>)> = records
            .iter()
            .filter_map(|r| match r {
                Record::AttemptFinished { outcome, value, .. } => Some((outcome, value)),
                _ => None,
            })
            .collect();
        assert_eq!(
            finishes,
            [
                (&Outcome::Success, &None),
                (&Outcome::Exited(3), &None),
                (&Outcome::NotStarted("input `x` is missing".into()), &None),
            ]
        );
        // Written again, an old record is the same line in format 3: its
        // version changes and a checksum ends it, nothing else.
        let finish = std::str::from_utf8(old.split(|&b| b == b'\n').nth(2).unwrap()).unwrap();
        let again = String::from_utf8(records[2].to_line()).unwrap();
        let body = finish.replace("\"v\":1", "\"v\":3");
        assert_eq!(again[..body.len() - 1], body[..body.len() - 1], "{again}");
        assert!(
            again[body.len() - 1..].starts_with(",\"sum\":\""),
            "{again}"
        );
    }

    #[test]
    fn unknown_fields_are_ignored_and_a_failure_has_no_value() {
        let line = br#"{"v":1,"event":"finish","run":1,"step":"s","attempt":1,"at":1,"ok":false,"reason":"error","error":"boom","value":[1],"later":{"x":1}}"#;
        match Record::from_line(line).unwrap() {
            Record::AttemptFinished { outcome, value, .. } => {
                assert_eq!(outcome, Outcome::Error("boom".into()));
                assert_eq!(value, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_value_file_outside_the_values_folder_is_refused() {
        for name in [
            "../../etc/passwd",
            "values/../../x.json",
            "values/abc.json",
            "/tmp/0123456789abcdef0123456789abcdef.json",
        ] {
            let line = format!(
                r#"{{"v":1,"event":"finish","run":1,"step":"s","attempt":1,"at":1,"ok":true,"value_file":"{name}"}}"#
            );
            assert!(
                matches!(Record::from_line(line.as_bytes()), Err(RecordError::Bad(_))),
                "{name}"
            );
        }
    }

    #[test]
    fn a_torn_last_line_is_not_a_record() {
        let mut bytes: Vec<u8> = all_kinds().iter().flat_map(|r| r.to_line()).collect();
        bytes.extend_from_slice(b"{\"v\":1,\"event\":\"sta");
        let mut n = 0;
        let report = read_bytes(Path::new("j"), &bytes, &mut |_| n += 1).unwrap();
        assert_eq!(n, all_kinds().len());
        assert_eq!(report.torn_line, Some(all_kinds().len() + 1));
    }

    #[test]
    fn reading_in_chunks_of_any_size_reads_the_same() {
        let mut bytes: Vec<u8> = all_kinds().iter().flat_map(|r| r.to_line()).collect();
        bytes.extend_from_slice(b"\0\0\0\n");
        bytes.extend_from_slice(&all_kinds()[0].to_line());
        bytes.extend_from_slice(b"{\"v\":1,\"ev");
        let mut whole = Vec::new();
        let expected = read_bytes(Path::new("j"), &bytes, &mut |r| whole.push(r)).unwrap();
        for chunk in [1, 2, 3, 7, 64, 1 << 20] {
            let mut got = Vec::new();
            let (report, total, last) = read_chunks(
                Path::new("j"),
                &bytes[..],
                Resume::default(),
                &mut |r| got.push(r),
                chunk,
            )
            .unwrap();
            assert_eq!(report, expected, "chunk {chunk}");
            assert_eq!(got, whole, "chunk {chunk}");
            assert_eq!((total, last), (bytes.len() as u64, bytes.last().copied()));
        }
    }

    #[test]
    fn a_bad_line_in_the_middle_is_an_error_naming_it() {
        let bytes = b"{\"v\":1,\"event\":\"run\",\"run\":1,\"at\":1}\ngarbage\n{\"v\":1,\"event\":\"end\",\"run\":1,\"at\":2}\n";
        let err = read_bytes(Path::new("j"), bytes, &mut |_| {}).unwrap_err();
        assert!(
            matches!(err, Error::CorruptJournal { line: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn every_record_is_format_3_and_ends_with_the_checksum_of_the_bytes_before() {
        for record in all_kinds() {
            let line = record.to_line();
            let text = std::str::from_utf8(&line).unwrap();
            assert!(text.starts_with("{\"v\":3,"), "{text}");
            let line = &line[..line.len() - 1];
            let (body, sum) = split_sum(line).expect("a checksum last");
            assert_eq!(sum, line_sum(body));
            assert!(sum.iter().all(|b| b"0123456789abcdef".contains(b)));
            // Still one JSON object, for any other tool.
            let json: serde_json::Value = serde_json::from_slice(line).unwrap();
            assert_eq!(json["sum"], std::str::from_utf8(sum).unwrap());
        }
    }

    /// What a flipped bit, a bad sector or a stray edit does to one byte:
    /// before checksums, 61 of 150 such changes loaded without a word, 3
    /// of them dropping a success by changing a digit of a fingerprint.
    #[test]
    fn every_single_byte_change_of_a_record_is_refused() {
        for record in all_kinds() {
            let line = record.to_line();
            let line = &line[..line.len() - 1];
            for at in 0..line.len() {
                for new in [
                    line[at] ^ 1,
                    line[at] ^ 0x20,
                    b'0',
                    b'1',
                    b'3',
                    b' ',
                    b'"',
                    0xff,
                ] {
                    if new == line[at] {
                        continue;
                    }
                    let mut changed = line.to_vec();
                    changed[at] = new;
                    let text = String::from_utf8_lossy(&changed);
                    assert!(Record::from_line(&changed).is_err(), "accepted: {text}");
                }
            }
        }
    }

    /// A format 3 record whose checksum is gone (its `"v"` turned into 1 and
    /// its suffix broken as well) would read as a record from before
    /// checksums: after a checked record, it cannot be one.
    #[test]
    fn a_record_cannot_pass_for_one_from_before_checksums() {
        let run = Record::RunStarted {
            run: 1,
            at: 1,
            pid: 1,
        }
        .to_line();
        let unchecked = b"{\"v\":1,\"event\":\"forget\",\"at\":2,\"all\":true}\n";
        // As in a journal of an earlier stepwise, then appended to: reads.
        let old_then_new = [&unchecked[..], &run].concat();
        let report = read_bytes(Path::new("j"), &old_then_new, &mut |_| {}).unwrap();
        assert_eq!((report.records, report.checked), (2, true));
        // The other way round no stepwise writes.
        let new_then_old = [&run[..], unchecked].concat();
        let err = read_bytes(Path::new("j"), &new_then_old, &mut |_| {}).unwrap_err();
        assert!(
            matches!(err, Error::CorruptJournal { line: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("checksum"), "{err}");
        // Format 3 without its checksum, anywhere.
        let line = b"{\"v\":3,\"event\":\"forget\",\"at\":2,\"all\":true}";
        let err = Record::from_line(line).unwrap_err();
        assert!(
            matches!(&err, RecordError::Bad(m) if m.contains("checksum")),
            "{err:?}"
        );
    }

    #[test]
    fn a_changed_checksum_is_named_with_the_one_the_bytes_give() {
        let mut line = Record::Forgotten { at: 1, steps: None }.to_line();
        line.pop();
        let (body, sum) = split_sum(&line).unwrap();
        let (body, sum) = (body.to_vec(), sum.to_vec());
        let n = line.len();
        line[n - 3] = if line[n - 3] == b'0' { b'1' } else { b'0' };
        match Record::from_line(&line) {
            Err(RecordError::Bad(message)) => {
                assert!(message.contains("checksum does not match"), "{message}");
                assert!(
                    message.contains(std::str::from_utf8(&sum).unwrap()),
                    "{message}"
                );
                assert_eq!(line_sum(&body), sum[..]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn zeros_run_into_a_record_are_reported_and_the_records_around_them_read() {
        let kinds = all_kinds();
        let mut bytes = kinds[0].to_line();
        // A whole line zeroed with its newline: its zeros start the next.
        bytes.extend(std::iter::repeat_n(0u8, 50));
        bytes.extend_from_slice(&kinds[1].to_line());
        // Zeros from the end of a record into the next one.
        let mut third = kinds[2].to_line();
        third.pop();
        bytes.extend_from_slice(&third);
        bytes.extend_from_slice(&[0; 9]);
        bytes.extend_from_slice(&kinds[3].to_line());
        bytes.extend_from_slice(b"\0\0\n");
        let mut got = Vec::new();
        let report = read_bytes(Path::new("j"), &bytes, &mut |r| got.push(r)).unwrap();
        assert_eq!(got, kinds[..4]);
        assert_eq!(report.zeros_in_lines, [2, 3]);
        assert_eq!(report.zero_lines, [4]);
        assert_eq!(report.valid_len, bytes.len() as u64);
        // What is left of a zeroed record is no record: corruption.
        let mut bytes = kinds[0].to_line();
        bytes.extend_from_slice(&third[..20]);
        bytes.extend_from_slice(&[0; 9]);
        bytes.extend_from_slice(&kinds[3].to_line());
        let err = read_bytes(Path::new("j"), &bytes, &mut |_| {}).unwrap_err();
        assert!(
            matches!(err, Error::CorruptJournal { line: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_newer_format_is_refused() {
        let err = Record::from_line(b"{\"v\":4,\"event\":\"run\",\"run\":1,\"at\":1}").unwrap_err();
        assert_eq!(err, RecordError::Newer { version: 4 });
        let err = Record::from_line(b"{\"v\":4,\"event\":\"new kind\",\"stuff\":[1]}").unwrap_err();
        assert_eq!(err, RecordError::Newer { version: 4 });
        // Even if it ends in what reads as a checksum of ours, and is not.
        let err =
            Record::from_line(b"{\"v\":4,\"event\":\"run\",\"sum\":\"00000000\"}").unwrap_err();
        assert_eq!(err, RecordError::Newer { version: 4 });
    }

    #[test]
    fn a_store_whose_file_was_replaced_refuses_every_later_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let record = Record::Forgotten { at: 1, steps: None };
        let mut store = JsonlStore::open(&path, SyncMode::Always).unwrap();
        store.append(&record).unwrap();
        std::fs::copy(&path, dir.path().join("copy")).unwrap();
        std::fs::rename(dir.path().join("copy"), &path).unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = store.append(&record).unwrap_err().to_string();
        assert!(err.contains("replaced by another file"), "{err}");
        // Failed for good, even if the path is put back.
        assert!(store.append(&record).is_err());
        assert!(store.sync().is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn the_writer_cuts_a_torn_tail_and_appends_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        std::fs::write(
            &path,
            b"{\"v\":1,\"event\":\"run\",\"run\":1,\"at\":1}\n{\"v\":1,\"ev",
        )
        .unwrap();
        let mut store = JsonlStore::open(&path, SyncMode::Batched).unwrap();
        store
            .append(&Record::RunFinished {
                run: 1,
                at: 2,
                exit_code: Some(0),
                counts: None,
            })
            .unwrap();
        store.close().unwrap();
        let mut records = Vec::new();
        let report = read_file(&path, &mut |r| records.push(r)).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(report.torn_line, None);
    }
}
