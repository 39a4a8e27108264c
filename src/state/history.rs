//! What the journal says about each step, folded from its records.
//!
//! Pure bookkeeping, no I/O: the planner and the inspecting commands read a
//! [`History`], never the journal itself.

use std::collections::HashMap;
use std::sync::Arc;

use crate::journal::{Millis, Outcome, Record, RunCounts, Stamp, StepValue};
use crate::state::snapshot::{Dec, Enc};

/// One attempt of a step, as recorded.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// The run it belongs to; `None` for an imported attempt.
    pub run: Option<u64>,
    /// 1-based count of the step's attempts; 0 for an imported attempt.
    pub number: u32,
    /// When it started (for an imported attempt, when it was imported).
    pub started_at: Millis,
    /// `None` while running, or if the runner died while it ran.
    pub finished: Option<Finished>,
    /// What the step was when this attempt started; `None` if that could
    /// not be computed (then the attempt counts by name alone).
    pub stamp: Option<Arc<Stamp>>,
    /// Where it came in the journal, relative to other records: bookkeeping
    /// for compaction, not part of what the attempt is (equality ignores it).
    pub seq: u64,
    /// The Slurm job it was submitted as, once `sbatch` returned.
    pub job: Option<String>,
}

impl PartialEq for Attempt {
    fn eq(&self, other: &Attempt) -> bool {
        (
            self.run,
            self.number,
            self.started_at,
            &self.finished,
            &self.stamp,
            &self.job,
        ) == (
            other.run,
            other.number,
            other.started_at,
            &other.finished,
            &other.stamp,
            &other.job,
        )
    }
}

impl Eq for Attempt {}

/// How and when an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// When it ended.
    pub at: Millis,
    /// How long it ran, in milliseconds; 0 for an imported attempt.
    pub duration_ms: u64,
    /// How it ended; an imported failure reads as `Exited(-1)`.
    pub outcome: Outcome,
    /// What a successful step of a Rust program returned (see
    /// [`crate::Run`]); `None` for commands and failures.
    pub value: Option<StepValue>,
}

impl Attempt {
    /// Whether it came from `checkpoint import` rather than a run.
    pub fn imported(&self) -> bool {
        self.run.is_none()
    }

    /// Whether it finished and succeeded; `false` while it runs.
    pub fn ok(&self) -> bool {
        self.finished.as_ref().is_some_and(|f| f.outcome.ok())
    }
}

/// Everything known about one step name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepHistory {
    /// Attempts ever started (not imported): the next attempt's number is
    /// this plus one.
    pub attempts_started: u32,
    /// The latest attempt, whether or not the step was forgotten since.
    pub last: Option<Attempt>,
    /// When the step was last forgotten.
    pub forgotten_at: Option<Millis>,
    /// Where that forget came in the journal (see [`Attempt::seq`]).
    pub forgotten_seq: u64,
    /// The latest attempt after the last forget.
    pub current: Option<Attempt>,
    /// The latest successful attempt after the last forget.
    pub success: Option<Attempt>,
    /// Attempts (real and imported) after the last forget.
    pub attempts_since_forget: u32,
    /// The latest attempt that really ran (not imported), and whether the
    /// step was forgotten after it: it carries the attempt count, which a
    /// compacted journal must not lose.
    pub latest_real: Option<(Attempt, bool)>,
    /// When the journal first mentioned this step, relative to the others:
    /// the order of steps when no pipeline file gives one.
    pub first_seen: usize,
}

/// One `run` of the pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunInfo {
    /// The run's id, counting up from 1.
    pub id: u64,
    /// When it began.
    pub started_at: Millis,
    /// The runner's process id.
    pub pid: u32,
    /// When it ended and its exit code (`None`: its runner died). `None`
    /// while running, or if the runner died and no run closed it since.
    pub ended: Option<(Millis, Option<i32>)>,
    /// What it did (see [`RunCounts`]): counted from its records, or as
    /// its `end` record gives it.
    pub counts: RunCounts,
}

/// The folded journal.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Per step, in the order the journal first mentioned them: a dense
    /// vector, so folding a million records touches memory in order.
    steps: Vec<StepHistory>,
    names: Vec<String>,
    index: HashMap<String, u32, foldhash::fast::RandomState>,
    runs: Vec<RunInfo>,
    /// Run id -> its position in `runs` (the latest run of that id): a
    /// compacted journal has its runs' starts before the attempts.
    run_index: HashMap<u64, usize, foldhash::fast::RandomState>,
    /// Records applied so far.
    seq: u64,
}

impl History {
    /// Folds records, oldest first.
    pub fn from_records(records: impl IntoIterator<Item = Record>) -> History {
        let mut history = History::default();
        for record in records {
            history.apply(record);
        }
        history
    }

    /// Adds one record to the fold.
    pub fn apply(&mut self, record: Record) {
        self.seq += 1;
        let seq = self.seq;
        match record {
            Record::RunStarted { run, at, pid } => {
                self.run_index.insert(run, self.runs.len());
                self.runs.push(RunInfo {
                    id: run,
                    started_at: at,
                    pid,
                    ended: None,
                    counts: RunCounts::default(),
                });
            }
            Record::RunFinished {
                run,
                at,
                exit_code,
                counts,
            } => {
                if let Some(info) = self.run_mut(run) {
                    info.ended = Some((at, exit_code));
                    // Recorded counts survive compaction; counted ones do not.
                    if let Some(counts) = counts {
                        info.counts.take_recorded(counts);
                    }
                }
            }
            Record::AttemptStarted {
                run,
                step,
                attempt,
                at,
                stamp,
            } => {
                let h = self.entry(step);
                // How the step's previous attempt in this run went, if it
                // made one: its latest attempt is of this run.
                let before = h
                    .latest_real
                    .as_ref()
                    .filter(|(a, _)| a.run == Some(run))
                    .map(|(a, _)| a.ok());
                h.attempts_started = h.attempts_started.max(attempt);
                let a = Attempt {
                    seq,
                    run: Some(run),
                    number: attempt,
                    started_at: at,
                    finished: None,
                    stamp: stamp.map(Arc::new),
                    job: None,
                };
                h.latest_real = Some((a.clone(), false));
                h.last = Some(a.clone());
                h.current = Some(a);
                h.attempts_since_forget += 1;
                if let Some(info) = self.run_mut(run) {
                    info.counts.attempt_started(before, at);
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
                let ok = outcome.ok();
                let h = self.entry(step);
                // The step's latest attempt in this run, unfinished so far:
                // how it ends is how the step did in the run.
                let decides = h.latest_real.as_ref().is_some_and(|(a, _)| {
                    a.run == Some(run) && a.number == attempt && a.finished.is_none()
                });
                let finished = Finished {
                    at,
                    duration_ms,
                    outcome,
                    value,
                };
                let matches = |a: &Option<Attempt>| {
                    a.as_ref().is_some_and(|a| {
                        a.run == Some(run) && a.number == attempt && a.finished.is_none()
                    })
                };
                if matches(&h.last)
                    && let Some(a) = &mut h.last
                {
                    a.finished = Some(finished.clone());
                }
                if let Some((a, _)) = &mut h.latest_real
                    && a.run == Some(run)
                    && a.number == attempt
                    && a.finished.is_none()
                {
                    a.finished = Some(finished.clone());
                }
                if matches(&h.current)
                    && let Some(a) = &mut h.current
                {
                    a.finished = Some(finished);
                    if a.ok() {
                        h.success = Some(a.clone());
                    }
                }
                if let Some(info) = self.run_mut(run) {
                    info.counts.attempt_finished(ok, decides, at);
                }
            }
            Record::Submitted {
                run,
                step,
                attempt,
                job,
                at,
            } => {
                if let Some(info) = self.run_mut(run) {
                    info.counts.seen(at);
                }
                let h = self.entry(step);
                let this = |a: &Attempt| a.run == Some(run) && a.number == attempt;
                for a in [&mut h.last, &mut h.current].into_iter().flatten() {
                    if this(a) {
                        a.job = Some(job.clone());
                    }
                }
                if let Some((a, _)) = &mut h.latest_real
                    && this(a)
                {
                    a.job = Some(job);
                }
            }
            Record::Forgotten { at, steps } => match steps {
                Some(steps) => {
                    for step in steps {
                        forget(self.entry(step), at, seq);
                    }
                }
                None => {
                    for h in &mut self.steps {
                        forget(h, at, seq);
                    }
                }
            },
            Record::Imported {
                at,
                attempts,
                mut stamps,
            } => {
                let stamps: HashMap<String, Arc<Stamp>> = std::mem::take(&mut stamps)
                    .into_iter()
                    .map(|(n, s)| (n, Arc::new(s)))
                    .collect();
                for (step, ok) in attempts {
                    let stamp = stamps.get(&step).cloned();
                    let h = self.entry(step);
                    let a = Attempt {
                        seq,
                        stamp,
                        job: None,
                        run: None,
                        number: 0,
                        started_at: at,
                        finished: Some(Finished {
                            at,
                            duration_ms: 0,
                            outcome: if ok {
                                Outcome::Success
                            } else {
                                Outcome::Exited(-1)
                            },
                            value: None,
                        }),
                    };
                    if ok {
                        h.success = Some(a.clone());
                    }
                    h.last = Some(a.clone());
                    h.current = Some(a);
                    h.attempts_since_forget += 1;
                }
            }
        }
    }

    fn entry(&mut self, step: String) -> &mut StepHistory {
        let i = match self.index.get(step.as_str()) {
            Some(&i) => i as usize,
            None => {
                let i = self.steps.len();
                self.index.insert(step.clone(), i as u32);
                self.names.push(step);
                self.steps.push(StepHistory {
                    first_seen: i,
                    ..StepHistory::default()
                });
                i
            }
        };
        &mut self.steps[i]
    }

    /// Every step the journal mentions, in the order it first did.
    pub fn steps(&self) -> Vec<(&str, &StepHistory)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(&self.steps)
            .collect()
    }

    /// What is recorded about a step, if anything.
    pub fn step(&self, name: &str) -> Option<&StepHistory> {
        self.index.get(name).map(|&i| &self.steps[i as usize])
    }

    /// [`History::step`], trying first the step the journal mentioned
    /// `hint`-th (no hashing when it is the one): a pipeline run in file
    /// order has its steps in the journal in the same order.
    pub fn step_hinted(&self, name: &str, hint: usize) -> Option<&StepHistory> {
        match self.names.get(hint) {
            Some(n) if n == name => Some(&self.steps[hint]),
            _ => self.step(name),
        }
    }

    /// The run with this id.
    pub fn run(&self, id: u64) -> Option<&RunInfo> {
        self.run_index.get(&id).map(|&i| &self.runs[i])
    }

    fn run_mut(&mut self, id: u64) -> Option<&mut RunInfo> {
        self.run_index.get(&id).map(|&i| &mut self.runs[i])
    }

    /// Every step name the journal mentions, in the order it first does:
    /// the steps of a state dir that has no pipeline file (one written by
    /// [`crate::Run`]).
    pub fn step_names(&self) -> &[String] {
        &self.names
    }

    /// Every run, oldest first.
    pub fn runs(&self) -> &[RunInfo] {
        &self.runs
    }

    /// The id the next run gets.
    pub fn next_run(&self) -> u64 {
        self.runs.iter().map(|r| r.id).max().unwrap_or(0) + 1
    }

    /// The checkpoint as the seed contract sees it: for each step, its
    /// finished attempts after its last forget, reduced to what decides the
    /// plan (one success if there was any, else one failure). Feeding this to
    /// [`resume_from_checkpoint`](crate::resume_from_checkpoint) gives the
    /// same plan as feeding it every attempt.
    pub fn checkpoint(&self) -> impl Iterator<Item = (&str, bool)> {
        self.names.iter().zip(&self.steps).filter_map(|(name, h)| {
            if h.success.is_some() {
                Some((name.as_str(), true))
            } else {
                h.current
                    .as_ref()
                    .and_then(|a| a.finished.as_ref())
                    .map(|_| (name.as_str(), false))
            }
        })
    }
}

/// The checkpoint as `stepwise checkpoint export` prints it: one `(name, ok)`
/// per finished attempt (imported ones included) in the order they happened,
/// leaving out what a later `forget` cleared, so that importing it elsewhere
/// gives the same plan.
pub fn export_checkpoint(records: impl IntoIterator<Item = Record>) -> Vec<(String, bool)> {
    let mut entries: Vec<Option<(String, bool)>> = Vec::new();
    // Where each step's still-standing entries are, so a forget clears them
    // without scanning: every entry is cleared at most once.
    let mut by_step: HashMap<String, Vec<usize>> = HashMap::new();
    let push = |entries: &mut Vec<Option<(String, bool)>>,
                by_step: &mut HashMap<String, Vec<usize>>,
                step: String,
                ok: bool| {
        by_step.entry(step.clone()).or_default().push(entries.len());
        entries.push(Some((step, ok)));
    };
    for record in records {
        match record {
            Record::AttemptFinished { step, outcome, .. } => {
                push(&mut entries, &mut by_step, step, outcome.ok())
            }
            Record::Imported { attempts, .. } => {
                for (step, ok) in attempts {
                    push(&mut entries, &mut by_step, step, ok);
                }
            }
            Record::Forgotten {
                steps: Some(steps), ..
            } => {
                for step in steps {
                    for i in by_step.remove(&step).unwrap_or_default() {
                        entries[i] = None;
                    }
                }
            }
            Record::Forgotten { steps: None, .. } => {
                for (_, ix) in by_step.drain() {
                    for i in ix {
                        entries[i] = None;
                    }
                }
            }
            _ => {}
        }
    }
    entries.into_iter().flatten().collect()
}

/// The snapshot encoding (see [`crate::state::snapshot`]): every field, so that a
/// history read back is the one encoded, `seq`s included. Stamps shared
/// between a step's attempts are written once.
impl History {
    pub(crate) fn encode(&self, e: &mut Enc) {
        e.u64(self.seq);
        e.u64(self.runs.len() as u64);
        for r in &self.runs {
            e.u64(r.id);
            e.u64(r.started_at);
            e.u64(u64::from(r.pid));
            match r.ended {
                None => e.u64(0),
                Some((at, None)) => {
                    e.u64(1);
                    e.u64(at);
                }
                Some((at, Some(code))) => {
                    e.u64(2);
                    e.u64(at);
                    e.i64(i64::from(code));
                }
            }
            e.u64(u64::from(r.counts.ran));
            e.u64(u64::from(r.counts.failed));
            for n in [r.counts.steps, r.counts.steps_failed] {
                match n {
                    None => e.u64(0),
                    Some(n) => e.u64(1 + u64::from(n)),
                }
            }
            match r.counts.last_at {
                None => e.u64(0),
                Some(at) => {
                    e.u64(1);
                    e.u64(at);
                }
            }
        }
        e.u64(self.steps.len() as u64);
        for (name, h) in self.names.iter().zip(&self.steps) {
            e.str(name);
            e.u64(u64::from(h.attempts_started));
            match h.forgotten_at {
                None => e.u64(0),
                Some(at) => {
                    e.u64(1);
                    e.u64(at);
                }
            }
            e.u64(h.forgotten_seq);
            e.u64(u64::from(h.attempts_since_forget));
            e.u64(h.first_seen as u64);
            // `last` in full; the others, when they are the same attempt
            // (as they mostly are), by reference to it.
            let last = h.last.as_ref();
            encode_attempt(e, last, None);
            encode_attempt(e, h.current.as_ref(), last);
            encode_attempt(e, h.success.as_ref(), last);
            match &h.latest_real {
                None => e.u64(0),
                Some((a, forgotten)) => {
                    e.u64(1 + u64::from(*forgotten));
                    encode_attempt(e, Some(a), last);
                }
            }
        }
    }

    pub(crate) fn decode(d: &mut Dec<'_>) -> Option<History> {
        let mut h = History {
            seq: d.u64()?,
            ..History::default()
        };
        let runs = d.usize()?;
        h.runs.reserve(runs.min(1 << 20));
        for _ in 0..runs {
            let id = d.u64()?;
            let started_at = d.u64()?;
            let pid = d.u32()?;
            let ended = match d.u64()? {
                0 => None,
                1 => Some((d.u64()?, None)),
                2 => Some((d.u64()?, Some(d.i32()?))),
                _ => return None,
            };
            let ran = d.u32()?;
            let failed = d.u32()?;
            let mut count = || -> Option<Option<u32>> {
                match d.u64()? {
                    0 => Some(None),
                    n => Some(Some(u32::try_from(n - 1).ok()?)),
                }
            };
            let (steps, steps_failed) = (count()?, count()?);
            let last_at = match d.u64()? {
                0 => None,
                1 => Some(d.u64()?),
                _ => return None,
            };
            let counts = RunCounts {
                ran,
                failed,
                steps,
                steps_failed,
                last_at,
            };
            h.run_index.insert(id, h.runs.len());
            h.runs.push(RunInfo {
                id,
                started_at,
                pid,
                ended,
                counts,
            });
        }
        let steps = d.usize()?;
        h.steps.reserve(steps.min(1 << 24));
        h.names.reserve(steps.min(1 << 24));
        h.index.reserve(steps.min(1 << 24));
        for i in 0..steps {
            let name = d.str()?.to_string();
            let attempts_started = d.u32()?;
            let forgotten_at = match d.u64()? {
                0 => None,
                1 => Some(d.u64()?),
                _ => return None,
            };
            let forgotten_seq = d.u64()?;
            let attempts_since_forget = d.u32()?;
            let first_seen = d.usize()?;
            let last = decode_attempt(d, None)?;
            let current = decode_attempt(d, last.as_ref())?;
            let success = decode_attempt(d, last.as_ref())?;
            let latest_real = match d.u64()? {
                0 => None,
                tag @ (1 | 2) => Some((decode_attempt(d, last.as_ref())??, tag == 2)),
                _ => return None,
            };
            if h.index.insert(name.clone(), i as u32).is_some() {
                return None;
            }
            h.names.push(name);
            h.steps.push(StepHistory {
                attempts_started,
                last,
                forgotten_at,
                forgotten_seq,
                current,
                success,
                attempts_since_forget,
                latest_real,
                first_seen,
            });
        }
        Some(h)
    }
}

/// Whether two attempts are one: every field, `seq` and the stamp's
/// identity included.
fn same_attempt(a: &Attempt, b: &Attempt) -> bool {
    a.seq == b.seq
        && a.run == b.run
        && a.number == b.number
        && a.started_at == b.started_at
        && a.finished == b.finished
        && a.job == b.job
        && match (&a.stamp, &b.stamp) {
            (None, None) => true,
            (Some(x), Some(y)) => Arc::ptr_eq(x, y),
            _ => false,
        }
}

fn encode_attempt(e: &mut Enc, a: Option<&Attempt>, last: Option<&Attempt>) {
    let Some(a) = a else {
        e.u64(0);
        return;
    };
    if let Some(last) = last
        && same_attempt(a, last)
    {
        e.u64(1);
        return;
    }
    e.u64(2);
    e.u64(a.seq);
    match a.run {
        None => e.u64(0),
        Some(run) => {
            e.u64(1);
            e.u64(run);
        }
    }
    e.u64(u64::from(a.number));
    e.u64(a.started_at);
    match &a.stamp {
        None => e.u64(0),
        Some(stamp) => {
            e.u64(1);
            e.bytes(&stamp.fingerprint.0);
            e.str(&stamp.parts_text());
        }
    }
    match &a.finished {
        None => e.u64(0),
        Some(f) => {
            e.u64(1);
            e.u64(f.at);
            e.u64(f.duration_ms);
            match &f.outcome {
                Outcome::Success => e.u64(0),
                Outcome::Exited(c) => {
                    e.u64(1);
                    e.i64(i64::from(*c));
                }
                Outcome::Signaled(c) => {
                    e.u64(2);
                    e.i64(i64::from(*c));
                }
                Outcome::TimedOut => e.u64(3),
                Outcome::Interrupted(c) => {
                    e.u64(4);
                    e.i64(i64::from(*c));
                }
                Outcome::NotStarted(m) => {
                    e.u64(5);
                    e.str(m);
                }
                Outcome::OutputsMissing(v) => {
                    e.u64(6);
                    e.u64(v.len() as u64);
                    for m in v {
                        e.str(m);
                    }
                }
                Outcome::Error(m) => {
                    e.u64(7);
                    e.str(m);
                }
                Outcome::Job(state) => {
                    e.u64(8);
                    e.str(state);
                }
            }
            match &f.value {
                None => e.u64(0),
                Some(StepValue::Inline(json)) => {
                    e.u64(1);
                    e.str(json.get());
                }
                Some(StepValue::File(digest)) => {
                    e.u64(2);
                    e.bytes(&digest.0);
                }
            }
        }
    }
    match &a.job {
        None => e.u64(0),
        Some(job) => {
            e.u64(1);
            e.str(job);
        }
    }
}

/// `None`: not a valid encoding; `Some(None)`: no attempt.
fn decode_attempt(d: &mut Dec<'_>, last: Option<&Attempt>) -> Option<Option<Attempt>> {
    match d.u64()? {
        0 => return Some(None),
        1 => return Some(Some(last?.clone())),
        2 => {}
        _ => return None,
    }
    let seq = d.u64()?;
    let run = match d.u64()? {
        0 => None,
        1 => Some(d.u64()?),
        _ => return None,
    };
    let number = d.u32()?;
    let started_at = d.u64()?;
    let stamp = match d.u64()? {
        0 => None,
        1 => {
            let fingerprint = d.digest()?;
            let (snapshot, range) = d.shared_str()?;
            Some(Arc::new(Stamp::from_text(fingerprint, snapshot, range)))
        }
        _ => return None,
    };
    let finished = match d.u64()? {
        0 => None,
        1 => {
            let at = d.u64()?;
            let duration_ms = d.u64()?;
            let outcome = match d.u64()? {
                0 => Outcome::Success,
                1 => Outcome::Exited(d.i32()?),
                2 => Outcome::Signaled(d.i32()?),
                3 => Outcome::TimedOut,
                4 => Outcome::Interrupted(d.i32()?),
                5 => Outcome::NotStarted(d.str()?.to_string()),
                6 => Outcome::OutputsMissing(
                    (0..d.usize()?)
                        .map(|_| d.str().map(str::to_string))
                        .collect::<Option<_>>()?,
                ),
                7 => Outcome::Error(d.str()?.to_string()),
                8 => Outcome::Job(d.str()?.to_string()),
                _ => return None,
            };
            let value = match d.u64()? {
                0 => None,
                1 => Some(StepValue::Inline(Arc::from(
                    serde_json::value::RawValue::from_string(d.str()?.to_string()).ok()?,
                ))),
                2 => Some(StepValue::File(d.digest()?)),
                _ => return None,
            };
            Some(Finished {
                at,
                duration_ms,
                outcome,
                value,
            })
        }
        _ => return None,
    };
    let job = match d.u64()? {
        0 => None,
        1 => Some(d.str()?.to_string()),
        _ => return None,
    };
    Some(Some(Attempt {
        run,
        number,
        started_at,
        finished,
        stamp,
        seq,
        job,
    }))
}

#[cfg(test)]
impl History {
    /// Equal in every field, `seq`s included (for tests of the snapshot).
    pub(crate) fn same_as(&self, other: &History) -> bool {
        let attempts = |a: &Option<Attempt>, b: &Option<Attempt>| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => a == b && a.seq == b.seq,
            _ => false,
        };
        self.seq == other.seq
            && self.runs == other.runs
            && self.run_index == other.run_index
            && self.names == other.names
            && self.steps.len() == other.steps.len()
            && self.steps.iter().zip(&other.steps).all(|(a, b)| {
                a == b
                    && attempts(&a.last, &b.last)
                    && attempts(&a.current, &b.current)
                    && attempts(&a.success, &b.success)
                    && attempts(
                        &a.latest_real.as_ref().map(|x| x.0.clone()),
                        &b.latest_real.as_ref().map(|x| x.0.clone()),
                    )
            })
            && self
                .names
                .iter()
                .all(|n| self.index.get(n) == other.index.get(n))
    }
}

fn forget(h: &mut StepHistory, at: Millis, seq: u64) {
    h.forgotten_seq = seq;
    if let Some((_, forgotten)) = &mut h.latest_real {
        *forgotten = true;
    }
    h.forgotten_at = Some(at);
    h.current = None;
    h.success = None;
    h.attempts_since_forget = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(step: &str, attempt: u32) -> Record {
        Record::AttemptStarted {
            run: 1,
            step: step.into(),
            attempt,
            at: 0,
            stamp: None,
        }
    }
    fn finish(step: &str, attempt: u32, ok: bool) -> Record {
        Record::AttemptFinished {
            run: 1,
            step: step.into(),
            attempt,
            at: 0,
            duration_ms: 0,
            outcome: if ok {
                Outcome::Success
            } else {
                Outcome::Exited(1)
            },
            value: None,
        }
    }

    #[test]
    fn retried_then_succeeded_is_done() {
        let h = History::from_records([
            start("a", 1),
            finish("a", 1, false),
            start("a", 2),
            finish("a", 2, true),
        ]);
        assert_eq!(h.checkpoint().collect::<Vec<_>>(), [("a", true)]);
        assert_eq!(h.step("a").unwrap().attempts_started, 2);
    }

    #[test]
    fn an_unfinished_attempt_is_not_in_the_checkpoint() {
        let h = History::from_records([start("a", 1)]);
        assert_eq!(h.checkpoint().count(), 0);
        assert!(
            h.step("a")
                .unwrap()
                .current
                .as_ref()
                .unwrap()
                .finished
                .is_none()
        );
    }

    #[test]
    fn forget_clears_success_but_keeps_the_count() {
        let h = History::from_records([
            start("a", 1),
            finish("a", 1, true),
            Record::Forgotten { at: 1, steps: None },
        ]);
        assert_eq!(h.checkpoint().count(), 0);
        let a = h.step("a").unwrap();
        assert_eq!(a.attempts_started, 1);
        assert!(a.last.as_ref().unwrap().ok());
    }

    #[test]
    fn export_leaves_out_what_was_forgotten() {
        let cp = export_checkpoint([
            start("a", 1),
            finish("a", 1, true),
            start("b", 1),
            finish("b", 1, false),
            Record::Forgotten {
                at: 1,
                steps: Some(vec!["a".into()]),
            },
            Record::Imported {
                at: 2,
                attempts: vec![("c".into(), true)],
                stamps: Default::default(),
            },
            start("a", 2),
            finish("a", 2, false),
        ]);
        assert_eq!(
            cp,
            [
                ("b".to_string(), false),
                ("c".to_string(), true),
                ("a".to_string(), false)
            ]
        );
    }

    #[test]
    fn the_success_keeps_its_value_and_names_keep_their_first_order() {
        let value = StepValue::File(crate::fingerprint::Digest::of(b"1"));
        let h = History::from_records([
            start("z", 1),
            finish("z", 1, false),
            start("a", 1),
            Record::AttemptFinished {
                run: 1,
                step: "a".into(),
                attempt: 1,
                at: 0,
                duration_ms: 0,
                outcome: Outcome::Success,
                value: Some(value.clone()),
            },
            start("z", 2),
            Record::Forgotten {
                at: 1,
                steps: Some(vec!["m".into()]),
            },
        ]);
        let success = h.step("a").unwrap().success.as_ref().unwrap();
        assert_eq!(success.finished.as_ref().unwrap().value, Some(value));
        assert_eq!(h.step_names(), ["z", "a", "m"]);
    }

    #[test]
    fn a_submission_names_the_job_of_its_attempt() {
        let h = History::from_records([
            start("a", 1),
            finish("a", 1, false),
            start("a", 2),
            Record::Submitted {
                run: 1,
                step: "a".into(),
                attempt: 2,
                at: 0,
                job: "77".into(),
            },
        ]);
        let a = h.step("a").unwrap();
        assert_eq!(a.last.as_ref().unwrap().job.as_deref(), Some("77"));
        assert_eq!(a.current.as_ref().unwrap().job.as_deref(), Some("77"));
        assert_eq!(a.latest_real.as_ref().unwrap().0.job.as_deref(), Some("77"));
    }

    #[test]
    fn an_imported_success_counts() {
        let h = History::from_records([Record::Imported {
            at: 1,
            attempts: vec![("a".into(), false), ("a".into(), true)],
            stamps: Default::default(),
        }]);
        assert_eq!(h.checkpoint().collect::<Vec<_>>(), [("a", true)]);
        assert_eq!(h.step("a").unwrap().attempts_started, 0);
    }
}
