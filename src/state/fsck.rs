//! `stepwise fsck [--repair]`: checks the state dir, and with `--repair`
//! makes an unreadable journal readable again without losing a readable
//! record.
//!
//! What is checked:
//! - every line of the journal is a record of a format this stepwise knows
//!   (a record of a newer format refuses the whole journal, repair included:
//!   it is never misread, and never "repaired" away);
//! - the records agree with each other: a run starts once, ends at most once;
//!   an attempt belongs to a run that started; each step's attempt numbers
//!   increase; a finish follows its start, once. An attempt that started and
//!   never finished is what a crash leaves behind (it reads as interrupted),
//!   so it is counted, not reported as a problem;
//! - the stat cache, if any, carries a valid checksum.
//!
//! The repair moves the unreadable lines (a torn last line included) to
//! `journal.corrupt.<timestamp>` beside the journal, then replaces the
//! journal atomically with the readable lines, byte for byte as they were.
//! Readable records are never dropped or rewritten, even inconsistent ones:
//! stepwise reads them deterministically (a finish without its start is
//! ignored), and only a person can tell which of two contradicting records
//! is wrong. A corrupt stat cache is deleted: it is only a speed-up.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{EXIT_FAILED, EXIT_OK, Error, IoContext, Result};
use crate::journal::{self, LineRead, Record, RecordError};
use crate::state::dir::StateDir;
use crate::state::lock::StateLock;
use crate::view::progress::display_path;

/// A journal line that cannot be read as a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    /// 1-based line number.
    pub line: usize,
    /// The line as it is in the file, without its newline.
    pub bytes: Vec<u8>,
    /// Why it cannot be read.
    pub message: String,
    /// What it seems to have been, as far as can be told.
    pub guess: Guess,
}

/// What an unreadable line seems to have been.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Guess {
    /// The record's `event`, if it can be made out.
    pub event: Option<String>,
    /// The step it names, if it can be made out.
    pub step: Option<String>,
    /// The attempt number, if it can be made out.
    pub attempt: Option<u64>,
}

/// Two records that do not agree, or a record that makes no sense after the
/// ones before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inconsistency {
    /// 1-based line number of the record that disagrees.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// What [`examine`] found in a journal's bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Examination {
    /// Records read.
    pub records: usize,
    /// Lines that are not records, other than a torn last line.
    pub unreadable: Vec<Unreadable>,
    /// A last line without its newline that is not a record: a crash in the
    /// middle of a write. Harmless (readers ignore it, the next writer cuts
    /// it off), so not a problem.
    pub torn: Option<Unreadable>,
    /// Lines of zero bytes, left by a crash on some filesystems. Harmless.
    pub zero_lines: Vec<usize>,
    /// Lines of records with zero bytes among them: the same debris, run
    /// into a record because the zeros covered a newline. A problem: a
    /// record that stood where the zeros are is lost. Repair keeps the
    /// records and drops the zeros.
    pub zeros_in_lines: Vec<usize>,
    /// Records that disagree with the ones before them.
    pub inconsistencies: Vec<Inconsistency>,
    /// Attempts that started and never finished, `(step, attempt)`: what a
    /// crash (or a run still going on) leaves. Not a problem.
    pub unfinished: Vec<(String, u32)>,
    /// The first line written in a newer format, and that format.
    pub newer: Option<(usize, u32)>,
    /// The readable lines, each with its newline: what a repaired journal
    /// holds.
    pub kept: Vec<u8>,
}

impl Examination {
    /// Problems: unreadable lines, lines with zero bytes among records, and
    /// inconsistencies.
    pub fn problems(&self) -> usize {
        self.unreadable.len() + self.zeros_in_lines.len() + self.inconsistencies.len()
    }
}

/// Reads a journal's bytes line by line the way
/// [`journal::read_bytes`] does, but instead of stopping at the first bad
/// line, notes every one, and checks the records against each other.
pub fn examine(bytes: &[u8]) -> Examination {
    let mut x = Examination::default();
    let mut consistency = Consistency::default();
    // A record with a checksum was kept: later ones must have one too.
    let mut checked = false;
    let mut pos = 0;
    let mut line_no = 0;
    while pos < bytes.len() {
        line_no += 1;
        let (line, complete) = match bytes[pos..].iter().position(|&b| b == b'\n') {
            Some(len) => (&bytes[pos..pos + len], true),
            None => (&bytes[pos..], false),
        };
        pos += line.len() + usize::from(complete);
        let (read, zeros) = match journal::read_line(line, checked) {
            LineRead::Blank => continue,
            LineRead::Zeros => {
                x.zero_lines.push(line_no);
                continue;
            }
            LineRead::One(one) => (vec![(line, one)], false),
            LineRead::Zeroed(parts) => (parts, true),
        };
        if !complete {
            // The reader takes a last line whole or not at all.
            if let Some((part, Err(e))) = read.iter().find(|(_, r)| r.is_err()) {
                x.torn = Some(unreadable(line_no, line, part, e));
                continue;
            }
        }
        let mut all = true;
        for (part, one) in read {
            match one {
                Ok((rec, c)) => {
                    checked |= c;
                    x.records += 1;
                    x.kept.extend_from_slice(part);
                    x.kept.push(b'\n');
                    consistency.check(line_no, &rec, &mut x.inconsistencies);
                }
                Err(e) => {
                    all = false;
                    if let RecordError::Newer { version } = e {
                        x.newer.get_or_insert((line_no, version));
                    }
                    // Only the bad part goes aside: records around zeros stay.
                    x.unreadable.push(unreadable(line_no, part, part, &e));
                }
            }
        }
        if zeros && all {
            x.zeros_in_lines.push(line_no);
        }
    }
    x.unfinished = consistency.unfinished();
    x
}

/// Line `line_no`, `bytes` as moved aside, which cannot be read because
/// its part `record` gave `e`.
fn unreadable(line_no: usize, bytes: &[u8], record: &[u8], e: &RecordError) -> Unreadable {
    Unreadable {
        line: line_no,
        bytes: bytes.to_vec(),
        message: match e {
            RecordError::Newer { version } => {
                format!("written by a newer stepwise (format {version})")
            }
            RecordError::Bad(message) => message.clone(),
        },
        guess: guess(record),
    }
}

/// The running state of the consistency checks.
#[derive(Default)]
struct Consistency {
    /// Run id -> (line it started on, whether it ended).
    runs: HashMap<u64, (usize, bool)>,
    last_run: Option<u64>,
    /// Step -> the highest attempt number started.
    attempts: HashMap<String, u32>,
    /// (step, run, attempt) -> the line of its start, while not finished.
    open: BTreeMap<(String, u64, u32), usize>,
}

impl Consistency {
    fn check(&mut self, line: usize, record: &Record, out: &mut Vec<Inconsistency>) {
        let mut problem = |message: String| out.push(Inconsistency { line, message });
        match record {
            Record::RunStarted { run, .. } => {
                if let Some((first, _)) = self.runs.get(run) {
                    problem(format!(
                        "run {run} starts again (it started on line {first})"
                    ));
                } else if let Some(last) = self.last_run.filter(|last| last >= run) {
                    problem(format!("run {run} starts after run {last}"));
                }
                self.runs.entry(*run).or_insert((line, false));
                self.last_run = self.last_run.max(Some(*run));
            }
            Record::RunFinished { run, .. } => match self.runs.get_mut(run) {
                None => problem(format!("run {run} ends, but never started")),
                Some((_, true)) => problem(format!("run {run} ends a second time")),
                Some((_, ended)) => *ended = true,
            },
            Record::AttemptStarted {
                run, step, attempt, ..
            } => {
                if !self.runs.contains_key(run) {
                    problem(format!(
                        "attempt {attempt} of `{step}` belongs to run {run}, which never started"
                    ));
                }
                let last = self.attempts.entry(step.clone()).or_insert(0);
                if *attempt <= *last {
                    problem(format!(
                        "attempt {attempt} of `{step}` starts after its attempt {last}: attempt numbers must increase"
                    ));
                }
                *last = (*last).max(*attempt);
                self.open.insert((step.clone(), *run, *attempt), line);
            }
            Record::AttemptFinished {
                run, step, attempt, ..
            } => {
                if self.open.remove(&(step.clone(), *run, *attempt)).is_none() {
                    problem(format!(
                        "attempt {attempt} of `{step}` (run {run}) finishes without having started, or finishes twice"
                    ));
                }
            }
            Record::Submitted {
                run, step, attempt, ..
            } => {
                if !self.open.contains_key(&(step.clone(), *run, *attempt)) {
                    problem(format!(
                        "attempt {attempt} of `{step}` (run {run}) is submitted to Slurm without being started, or after it finished"
                    ));
                }
            }
            Record::Forgotten { .. } | Record::Imported { .. } => {}
        }
    }

    fn unfinished(self) -> Vec<(String, u32)> {
        let mut out: Vec<(usize, String, u32)> = self
            .open
            .into_iter()
            .map(|((step, _, attempt), line)| (line, step, attempt))
            .collect();
        out.sort();
        out.into_iter().map(|(_, s, a)| (s, a)).collect()
    }
}

/// What an unreadable line seems to have been: read leniently as JSON, or,
/// if it is not even that, fished for its `"event"`, `"step"` and
/// `"attempt"` fields as text.
fn guess(line: &[u8]) -> Guess {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(line) {
        return Guess {
            event: map.get("event").and_then(|v| v.as_str()).map(String::from),
            step: map.get("step").and_then(|v| v.as_str()).map(String::from),
            attempt: map.get("attempt").and_then(|v| v.as_u64()),
        };
    }
    let text = String::from_utf8_lossy(line);
    let field = |name: &str| -> Option<String> {
        let start = text.find(&format!("\"{name}\":"))? + name.len() + 3;
        let rest = text[start..].trim_start();
        let value = match rest.strip_prefix('"') {
            Some(quoted) => &quoted[..quoted.find('"')?],
            None => {
                let end = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                &rest[..end]
            }
        };
        (!value.is_empty()).then(|| value.to_string())
    };
    Guess {
        event: field("event"),
        step: field("step"),
        attempt: field("attempt").and_then(|a| a.parse().ok()),
    }
}

impl Unreadable {
    /// "a `finish` record of attempt 2 of `b`", as far as known.
    fn describe(&self) -> String {
        let g = &self.guess;
        let what = match &g.event {
            Some(event) => format!("a `{event}` record"),
            None => "a record".to_string(),
        };
        match (&g.step, g.attempt) {
            (Some(step), Some(n)) => format!("{what} of attempt {n} of `{step}`"),
            (Some(step), None) => format!("{what} of `{step}`"),
            (None, _) => format!("{what} of no step that can be told"),
        }
    }

    /// What losing it means for the plan.
    fn consequence(&self) -> &'static str {
        match self.guess.event.as_deref() {
            Some("finish") => {
                "that attempt now reads as interrupted: the step runs again unless another attempt of it succeeded"
            }
            Some("start") => {
                "the attempt's finish, if recorded, no longer counts: the step runs again unless another attempt of it succeeded"
            }
            Some("import") => "those imported attempts no longer count",
            Some("submit") => {
                "if the attempt's Slurm job is still in flight, the next run cannot find it by its id (it looks for the job by its script instead)"
            }
            Some("forget") => {
                "that forget no longer counts: steps it cleared may count as done again"
            }
            Some("run") | Some("end") => {
                "only the run's bookkeeping; no step's state depends on it"
            }
            _ => "if it was a step's success, that step runs again",
        }
    }
}

/// `stepwise fsck [--repair]` for the pipeline file at `pipeline_file`:
/// prints the report and returns the exit code (0 clean or repaired, 1
/// problems left). The pipeline file itself need not be valid: only the
/// state dir beside it is looked at.
pub fn command(pipeline_file: &Path, repair: bool) -> Result<i32> {
    let state = StateDir::for_pipeline_file(pipeline_file)?;
    let mut out = String::new();
    let code = if repair {
        run_repair(&state, &mut out)?
    } else {
        run_check(&state, &mut out)?
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|_| stdout.flush())
        .context("cannot write to stdout")?;
    Ok(code)
}

/// The journal's bytes, and an error for a journal of a newer format.
fn read_journal(state: &StateDir) -> Result<(Vec<u8>, Examination)> {
    let path = state.journal();
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).context(format!("cannot read the journal {}", path.display())),
    };
    let x = examine(&bytes);
    if let Some((line, version)) = x.newer {
        return Err(Error::NewerJournal {
            path,
            line,
            version,
        });
    }
    Ok((bytes, x))
}

fn run_check(state: &StateDir, out: &mut String) -> Result<i32> {
    state.check_safe()?;
    if !state.path().is_dir() {
        let _ = writeln!(
            out,
            "no state dir at {}: nothing recorded yet, nothing to check",
            display_path(state.path()).display()
        );
        return Ok(EXIT_OK);
    }
    let (_, x) = read_journal(state)?;
    let journal = display_path(&state.journal()).display().to_string();
    let running = StateLock::holder(&state.lock());
    report_journal(&journal, &x, running.is_some(), out);
    let cache = check_cache(state);
    if let Some(cache) = &cache {
        let _ = writeln!(out, "problem: {cache}");
    }
    note_permissions(state, out);
    note_temp_files(state, out);
    let problems = x.problems() + usize::from(cache.is_some());
    if problems == 0 {
        let _ = writeln!(out, "clean: {} records, no problem", x.records);
        return Ok(EXIT_OK);
    }
    let repairable = !x.unreadable.is_empty() || cache.is_some();
    let _ = writeln!(
        out,
        "{problems} problem{}{}",
        if problems == 1 { "" } else { "s" },
        if repairable {
            "; `stepwise fsck --repair` moves the unreadable lines aside and rewrites the journal with the rest"
        } else if !x.zeros_in_lines.is_empty() {
            "; `stepwise fsck --repair` rewrites the journal without the zero bytes"
        } else {
            ""
        }
    );
    Ok(EXIT_FAILED)
}

fn report_journal(journal: &str, x: &Examination, running: bool, out: &mut String) {
    let _ = writeln!(out, "journal {journal}: {} records", x.records);
    for bad in &x.unreadable {
        let _ = writeln!(
            out,
            "problem: line {} cannot be read: {}\n  it looks like {}",
            bad.line,
            bad.message,
            bad.describe()
        );
    }
    for i in &x.inconsistencies {
        let _ = writeln!(out, "problem: line {}: {}", i.line, i.message);
    }
    if let Some(torn) = &x.torn {
        let fate = if running {
            "a run in progress is probably writing it"
        } else {
            "a crash in the middle of a write; ignored, and cut off by the next run"
        };
        let _ = writeln!(
            out,
            "note: the last line ({}) is incomplete: {fate}",
            torn.line
        );
    }
    for line in &x.zeros_in_lines {
        let _ = writeln!(
            out,
            "problem: line {line} holds zero bytes among its records, left by a crash that zeroed what was written there: a record that stood there is lost (if it was a success, its step runs again); the records around the zeros read"
        );
    }
    if !x.zero_lines.is_empty() {
        let _ = writeln!(
            out,
            "note: {} line(s) of zero bytes (first: line {}), left by a crash; ignored",
            x.zero_lines.len(),
            x.zero_lines[0]
        );
    }
    if !x.unfinished.is_empty() {
        let list: Vec<String> = x
            .unfinished
            .iter()
            .map(|(s, a)| format!("{s} (attempt {a})"))
            .collect();
        let _ = writeln!(
            out,
            "note: {} attempt(s) started and never finished ({}): {}",
            list.len(),
            if running {
                "running now, or interrupted by a crash"
            } else {
                "interrupted by a crash; they run again"
            },
            list.join(", ")
        );
    }
}

/// Why the stat cache cannot be trusted, if it exists and cannot.
fn check_cache(state: &StateDir) -> Option<String> {
    let path = state.stat_cache();
    match crate::hash::check_cache(&path) {
        Ok(_) => None,
        Err(why) => Some(format!(
            "the stat cache {} {why}; it is only a speed-up (stepwise ignores it and rehashes)",
            display_path(&path).display()
        )),
    }
}

/// Temp files of atomic rewrites: debris of a writer killed mid-rewrite
/// (harmless: the file they were to replace is whole), or one being written
/// right now.
fn note_temp_files(state: &StateDir, out: &mut String) {
    for t in state.temp_files() {
        let shown = display_path(&t.path).display().to_string();
        let _ = if t.writer_alive {
            writeln!(
                out,
                "note: temp file {shown}: process {} is writing it",
                t.pid
            )
        } else {
            writeln!(
                out,
                "note: temp file {shown} left by process {}, which died mid-rewrite; harmless, and the next run, gc or `fsck --repair` removes it",
                t.pid
            )
        };
    }
}

fn note_permissions(state: &StateDir, out: &mut String) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(state.path()) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            let _ = writeln!(
                out,
                "note: the state dir is open to other users (mode {mode:o}), and step logs may hold secrets; `chmod 700 {}` closes it",
                display_path(state.path()).display()
            );
        }
    }
}

fn run_repair(state: &StateDir, out: &mut String) -> Result<i32> {
    state.check_safe()?;
    if !state.path().is_dir() {
        let _ = writeln!(
            out,
            "no state dir at {}: nothing recorded yet, nothing to repair",
            display_path(state.path()).display()
        );
        return Ok(EXIT_OK);
    }
    // The one writer: no run may append while the journal is replaced.
    let _lock = StateLock::acquire(&state.lock(), "fsck --repair")?;
    let (_, x) = read_journal(state)?;
    let journal = state.journal();
    let shown = display_path(&journal).display().to_string();
    let mut moved: Vec<&Unreadable> = x.unreadable.iter().collect();
    moved.extend(&x.torn);
    let rewrite = !moved.is_empty() || !x.zero_lines.is_empty() || !x.zeros_in_lines.is_empty();
    if !moved.is_empty() {
        let aside = corrupt_path(state);
        let mut text = Vec::new();
        for bad in &moved {
            text.extend_from_slice(&bad.bytes);
            text.push(b'\n');
        }
        write_new_durably(&aside, &text).context(format!("cannot write {}", aside.display()))?;
        let _ = writeln!(
            out,
            "moved {} unreadable line{} of {shown} to {}:",
            moved.len(),
            if moved.len() == 1 { "" } else { "s" },
            display_path(&aside).display()
        );
        for bad in &moved {
            let _ = writeln!(
                out,
                "  line {}: {} ({})",
                bad.line,
                bad.describe(),
                bad.message
            );
        }
        let mut by_step: BTreeMap<Option<&str>, Vec<&Unreadable>> = BTreeMap::new();
        for bad in &moved {
            by_step
                .entry(bad.guess.step.as_deref())
                .or_default()
                .push(bad);
        }
        let _ = writeln!(out, "records lost, by step:");
        for (step, lost) in by_step {
            let name = step.map_or("(no step that can be told)", |s| s);
            for bad in lost {
                let _ = writeln!(
                    out,
                    "  {name}: line {}, {}: {}",
                    bad.line,
                    bad.describe(),
                    bad.consequence()
                );
            }
        }
    }
    if rewrite {
        // Only the readable lines, exactly as they were: temp file, fsync,
        // rename over the journal, fsync of the folder.
        crate::state::snapshot::remove_beside(&journal);
        crate::hash::write_atomically(&journal, &x.kept)
            .context(format!("cannot rewrite the journal {}", journal.display()))?;
        let _ = writeln!(
            out,
            "rewrote {shown} with its {} readable records{}{}",
            x.records,
            if x.zero_lines.is_empty() {
                String::new()
            } else {
                format!(" (dropped {} line(s) of zero bytes)", x.zero_lines.len())
            },
            match x.zeros_in_lines.as_slice() {
                [] => String::new(),
                lines => format!(
                    " (removed the zero bytes from among the records of line(s) {})",
                    lines
                        .iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        );
    }
    let mut left = x.inconsistencies.len();
    for i in &x.inconsistencies {
        let _ = writeln!(
            out,
            "left as is: line {}: {} (a readable record is never dropped; stepwise ignores a finish without its start)",
            i.line, i.message
        );
    }
    if let Some(cache) = check_cache(state) {
        match fs::remove_file(state.stat_cache()) {
            Ok(()) => {
                let _ = writeln!(
                    out,
                    "removed the corrupt stat cache; the next run rebuilds it"
                );
            }
            Err(e) => {
                let _ = writeln!(out, "problem: {cache}; cannot remove it: {e}");
                left += 1;
            }
        }
    }
    note_permissions(state, out);
    let removed = state.remove_dead_temp_files();
    if removed > 0 {
        let _ = writeln!(out, "removed {removed} temp file(s) left by dead processes");
    }
    note_temp_files(state, out);
    if left == 0 {
        if !rewrite {
            let _ = writeln!(out, "clean: {} records, nothing to repair", x.records);
        }
        Ok(EXIT_OK)
    } else {
        let _ = writeln!(out, "{left} problem(s) left");
        Ok(EXIT_FAILED)
    }
}

/// `journal.corrupt.20261129T172150Z` beside the journal, not yet taken.
fn corrupt_path(state: &StateDir) -> PathBuf {
    let digits: String = crate::time::format_time(journal::now())
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let stamp = format!("{}T{}Z", &digits[..8], &digits[8..14]);
    let base = state.path().join(format!("journal.corrupt.{stamp}"));
    let mut path = base.clone();
    let mut n = 1;
    while path.exists() {
        n += 1;
        path = PathBuf::from(format!("{}.{n}", base.display()));
    }
    path
}

/// Creates `path` (which must not exist) with `bytes`, durably: written,
/// fsynced, and its folder fsynced, before the journal is touched.
fn write_new_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = r#"{"v":1,"event":"run","run":1,"at":1}"#;
    const START_A1: &str = r#"{"v":1,"event":"start","run":1,"step":"a","attempt":1,"at":2}"#;
    const FINISH_A1: &str =
        r#"{"v":1,"event":"finish","run":1,"step":"a","attempt":1,"at":3,"ok":true}"#;
    const END: &str = r#"{"v":1,"event":"end","run":1,"at":4,"exit_code":0}"#;

    fn lines(lines: &[&str]) -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect()
    }

    #[test]
    fn a_clean_journal_has_no_problem_and_keeps_every_byte() {
        let bytes = lines(&[RUN, START_A1, FINISH_A1, END]);
        let x = examine(&bytes);
        assert_eq!((x.records, x.problems()), (4, 0), "{x:?}");
        assert_eq!(x.kept, bytes);
    }

    #[test]
    fn an_unfinished_attempt_is_not_a_problem() {
        let x = examine(&lines(&[RUN, START_A1]));
        assert_eq!(x.problems(), 0);
        assert_eq!(x.unfinished, [("a".to_string(), 1)]);
    }

    #[test]
    fn inconsistencies_are_found() {
        let start_a0 = r#"{"v":1,"event":"start","run":1,"step":"a","attempt":0,"at":2}"#;
        let start_other_run = r#"{"v":1,"event":"start","run":7,"step":"b","attempt":1,"at":2}"#;
        let end_unknown = r#"{"v":1,"event":"end","run":9,"at":4}"#;
        let x = examine(&lines(&[
            FINISH_A1,
            RUN,
            RUN,
            start_a0,
            START_A1,
            START_A1,
            start_other_run,
            FINISH_A1,
            FINISH_A1,
            END,
            END,
            end_unknown,
        ]));
        let found: Vec<usize> = x.inconsistencies.iter().map(|i| i.line).collect();
        // line 1: finish before start; 3: run again; 4: attempt 0; 6: attempt
        // again; 7: unknown run; 9: finished twice; 11: ended twice; 12:
        // unknown run ends.
        assert_eq!(found, [1, 3, 4, 6, 7, 9, 11, 12], "{x:#?}");
    }

    #[test]
    fn unreadable_lines_are_guessed_and_left_out_of_what_is_kept() {
        let garbled = r#"{"v":1,"event":"finish","run":1,"step":"a","attempt":1,"at":3,"ok":tr#e}"#;
        let bytes = lines(&[RUN, START_A1, garbled, END]);
        let x = examine(&bytes);
        assert_eq!(x.unreadable.len(), 1);
        let bad = &x.unreadable[0];
        assert_eq!(bad.line, 3);
        assert_eq!(
            bad.guess,
            Guess {
                event: Some("finish".into()),
                step: Some("a".into()),
                attempt: Some(1)
            }
        );
        assert_eq!(x.kept, lines(&[RUN, START_A1, END]));
    }

    #[test]
    fn a_torn_tail_and_zero_lines_are_notes_not_problems() {
        let mut bytes = lines(&[RUN]);
        bytes.extend_from_slice(b"\0\0\0\n");
        bytes.extend_from_slice(br#"{"v":1,"event":"sta"#);
        let x = examine(&bytes);
        assert_eq!(x.problems(), 0);
        assert_eq!(x.zero_lines, [2]);
        assert_eq!(x.torn.as_ref().map(|t| t.line), Some(3));
        assert_eq!(x.kept, lines(&[RUN]));
    }

    #[test]
    fn a_newer_format_is_noted() {
        let x = examine(&lines(&[RUN, r#"{"v":4,"event":"run","run":2,"at":1}"#]));
        assert_eq!(x.newer, Some((2, 4)));
    }

    #[test]
    fn zeros_among_records_are_a_problem_and_only_the_zeros_are_dropped() {
        let start = Record::AttemptStarted {
            run: 1,
            step: "a".into(),
            attempt: 1,
            at: 2,
            stamp: None,
        }
        .to_line();
        let mut bytes = lines(&[RUN]);
        bytes.extend_from_slice(&[0; 30]);
        bytes.extend_from_slice(&start);
        let x = examine(&bytes);
        assert_eq!((x.records, x.problems()), (2, 1), "{x:?}");
        assert_eq!(x.zeros_in_lines, [2]);
        assert_eq!(x.kept, [lines(&[RUN]), start].concat());
        assert_eq!(examine(&x.kept).problems(), 0);
    }
}
