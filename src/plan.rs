//! The plan: for every step in scope, run it or skip it, and why.
//!
//! Two modes. [`Mode::ByName`] is the seed contract exactly:
//! [`resume_from_checkpoint`] applied to the
//! checkpoint the [`History`] holds. [`Mode::Fingerprint`] (the default)
//! starts from the same decision and only ever turns "skip" into "run": a
//! step is done when its latest successful attempt since its last forget was
//! made with the step's current fingerprint, its declared outputs exist, and
//! nothing it needs will run first.
//!
//! Pure: the facts about files come in as [`StepFacts`], gathered by
//! [`crate::workspace`].

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::checkpoint::resume_from_checkpoint;
use crate::fingerprint::Reason;
use crate::journal::Outcome;
use crate::pipeline::{Pipeline, StepId};
use crate::state::history::{Attempt, History, StepHistory};
use crate::time::{format_duration_ms, format_time};
use crate::workspace::{Memo, MissingInput, StepFacts, normalize};

/// What the plan does with a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// It is not done: it runs.
    Run,
    /// It is done: it is left alone.
    Skip,
}

/// How "done" is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Done means: succeeded with the step as it is now, outputs present,
    /// nothing upstream about to run.
    #[default]
    Fingerprint,
    /// Done means: any attempt since the last forget succeeded (the seed
    /// contract, `--by-name`).
    ByName,
}

/// Where a step stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum State {
    /// Succeeded in a run, and still describes the step.
    #[serde(rename = "done")]
    Done,
    /// Marked successful by `checkpoint import`.
    #[serde(rename = "imported")]
    Imported,
    /// Succeeded, but no longer describes the step (see the reasons).
    #[serde(rename = "stale")]
    Stale,
    /// Its latest attempt failed.
    #[serde(rename = "failed")]
    Failed,
    /// Its latest attempt started and never finished, or was stopped by a
    /// signal to the run.
    #[serde(rename = "interrupted")]
    Interrupted,
    /// Its latest attempt is running right now, in another process.
    #[serde(rename = "running")]
    Running,
    /// `stepwise forget` was asked for it after its last attempt.
    #[serde(rename = "forgotten")]
    Forgotten,
    /// No attempt recorded.
    #[serde(rename = "never run")]
    NeverRun,
}

impl State {
    /// The state in words, as `status` prints it and `--json` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Done => "done",
            State::Imported => "imported",
            State::Stale => "stale",
            State::Failed => "failed",
            State::Interrupted => "interrupted",
            State::Running => "running",
            State::Forgotten => "forgotten",
            State::NeverRun => "never run",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The decision for one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepPlan {
    /// The step.
    pub id: StepId,
    /// Whether it runs.
    pub action: Action,
    /// What the journal and the files say about it.
    pub state: State,
    /// Why it runs (empty when it is skipped).
    pub reasons: Vec<Reason>,
    /// The decision in words.
    pub reason: String,
    /// Declared inputs missing now that no step running before it declares
    /// as an output: the step will fail unless they appear.
    pub warnings: Vec<Reason>,
}

/// The decision for every step in scope, in pipeline order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// One per step in scope; steps out of scope are absent.
    pub steps: Vec<StepPlan>,
}

impl Plan {
    /// How many steps are skipped as done.
    pub fn done(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.action == Action::Skip)
            .count()
    }

    /// How many steps will run.
    pub fn remaining(&self) -> usize {
        self.steps.len() - self.done()
    }

    /// The steps that will run, in pipeline order.
    pub fn to_run(&self) -> impl Iterator<Item = StepId> + '_ {
        self.steps
            .iter()
            .filter(|s| s.action == Action::Run)
            .map(|s| s.id)
    }

    /// The plan of one step, if it is in scope.
    pub fn step(&self, id: StepId) -> Option<&StepPlan> {
        self.steps.iter().find(|s| s.id == id)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Resume plan: {} done, {} remaining",
            self.done(),
            self.remaining()
        )
    }
}

/// Plans the steps of `pipeline` that `scope` marks (see
/// [`Pipeline::scope`]). `live_run` is the id of a run in progress in another
/// process, if any: its unfinished attempts are running, not interrupted.
/// `facts` are the surveyed facts per step for [`Mode::Fingerprint`]; `None`
/// plans [`Mode::ByName`].
pub fn plan(
    pipeline: &Pipeline,
    history: &History,
    scope: &[bool],
    live_run: Option<u64>,
    facts: Option<&[Option<StepFacts>]>,
) -> Plan {
    let in_scope: Vec<&str> = pipeline
        .ids()
        .filter(|id| scope[id.index()])
        .map(|id| pipeline.step(id).name.as_str())
        .collect();
    // The seed contract decides first; fingerprints can only add work.
    let seed = resume_from_checkpoint(&in_scope, history.checkpoint());
    let mut seed_done = vec![false; pipeline.steps.len()];
    for name in seed.done {
        if let Some(id) = pipeline.find(name) {
            seed_done[id.index()] = true;
        }
    }

    let mut decided: Vec<Option<StepPlan>> = vec![None; pipeline.steps.len()];
    // Built at the first missing input of a step that runs.
    let mut upstream: Option<Upstream> = None;
    for id in pipeline.topological_order() {
        if !scope[id.index()] {
            continue;
        }
        let h = history.step_hinted(&pipeline.step(id).name, id.index());
        let success = h.and_then(|h| h.success.as_ref().map(|s| (h, s)));
        let mut step_plan = match (seed_done[id.index()], success) {
            (true, Some((h, success))) => {
                let mut reasons = Vec::new();
                if let Some(facts) = facts {
                    let current = facts[id.index()].as_ref();
                    let declares_outputs = !pipeline.step(id).outputs.is_empty();
                    reasons = staleness(h, success, current, declares_outputs);
                    for &dep in &pipeline.step(id).after {
                        let dep_runs = decided[dep.index()]
                            .as_ref()
                            .is_some_and(|p| p.action == Action::Run);
                        let name = &pipeline.step(dep).name;
                        let named = reasons.iter().any(
                            |r| matches!(r, Reason::DependencyChanged { step } if step == name),
                        );
                        if dep_runs && !named {
                            reasons.push(Reason::DependencyWillRun { step: name.clone() });
                        }
                    }
                }
                if reasons.is_empty() {
                    let (state, reason) = describe_success(success);
                    StepPlan {
                        id,
                        action: Action::Skip,
                        state,
                        reasons,
                        reason,
                        warnings: Vec::new(),
                    }
                } else {
                    let reason = reasons
                        .iter()
                        .map(Reason::to_string)
                        .collect::<Vec<_>>()
                        .join("; ");
                    StepPlan {
                        id,
                        action: Action::Run,
                        state: State::Stale,
                        reasons,
                        reason,
                        warnings: Vec::new(),
                    }
                }
            }
            _ => {
                let (state, reason, why) = describe_not_done(h, live_run);
                StepPlan {
                    id,
                    action: Action::Run,
                    state,
                    reasons: vec![why],
                    reason,
                    warnings: Vec::new(),
                }
            }
        };
        if step_plan.action == Action::Run
            && let Some(facts) = facts.and_then(|f| f[id.index()].as_ref())
            && !facts.missing_inputs.is_empty()
        {
            let upstream = upstream.get_or_insert_with(|| Upstream::new(pipeline));
            step_plan.warnings = upstream.unprovided(
                pipeline,
                id,
                pipeline.step_dir(id),
                &facts.missing_inputs,
                &decided,
            );
        }
        decided[id.index()] = Some(step_plan);
    }
    // `decided` is indexed by step id, so flattening it is pipeline order.
    Plan {
        steps: decided.into_iter().flatten().collect(),
    }
}

/// Why a success no longer describes the step, compared with the facts now.
/// Empty when it still does. A success without a stamp (imported while an
/// input was missing) counts by name.
///
/// For a step that declares outputs, the success must also be the step's
/// latest attempt: a later attempt (interrupted by a crash, or failed with
/// `keep_failed_outputs`) may have left its outputs half rewritten.
pub fn staleness(
    h: &StepHistory,
    success: &Attempt,
    now: Option<&StepFacts>,
    declares_outputs: bool,
) -> Vec<Reason> {
    let (Some(stamp), Some(now)) = (success.stamp.as_deref(), now) else {
        return Vec::new();
    };
    let mut reasons = Vec::new();
    // An attempt that never started, or an imported one, wrote nothing.
    let could_write = |a: &Attempt| {
        !a.imported()
            && !matches!(
                a.finished.as_ref().map(|f| &f.outcome),
                Some(Outcome::NotStarted(_))
            )
    };
    if declares_outputs
        && let Some(later) = h
            .current
            .as_ref()
            .filter(|c| *c != success && could_write(c))
    {
        reasons.push(Reason::OutputsTouched {
            attempt: later.number,
        });
    }
    if stamp.fingerprint != now.fingerprint {
        let changes = now.components.changes_since(&stamp.parts());
        if changes.is_empty() {
            reasons.push(Reason::DefinitionChanged {
                part: "fingerprint".into(),
            });
        }
        reasons.extend(changes);
    }
    reasons.extend(
        now.missing_outputs
            .iter()
            .map(|path| Reason::OutputMissing { path: path.clone() }),
    );
    reasons
}

/// Answers, for every step of one plan, whether a step that will run first,
/// upstream of it, declares an output that provides a missing input: as
/// [`output_provides`](crate::workspace::output_provides) says, for every
/// upstream output. Checking each input against each upstream output, a
/// glob compiled for each, cost N³ for a fan-in of N outputs into N steps,
/// and N² for a chain whose inputs no step makes. Instead, the outputs are
/// indexed once, so an input's providers are a lookup (and none means no
/// walk at all); and the walk upstream of a step is made once for all its
/// inputs, only as far as needed.
struct Upstream<'p> {
    outputs: Outputs<'p>,
    /// The providers of each input already asked about, by folder and
    /// pattern (N expansions reading the same N outputs ask N times).
    memo: Memo<Vec<StepId>>,
    walk: Walk,
}

/// Every declared output of a pipeline, indexed.
struct Outputs<'p> {
    /// By path: an input names it or lies in it.
    by_path: HashMap<&'p Path, Vec<StepId>, foldhash::fast::RandomState>,
    /// The same as text, sorted: what a glob matches starts with the glob's
    /// literal prefix. (A glob never matches a path that is not UTF-8.)
    sorted: Vec<(&'p str, StepId)>,
}

/// The steps upstream of one step, found so far.
struct Walk {
    of: Option<StepId>,
    /// `epoch` for the steps found upstream of `of`.
    seen: Vec<u32>,
    epoch: u32,
    /// Found, and their own dependencies not looked at yet.
    stack: Vec<StepId>,
    /// `query` for the steps that provide the input asked about.
    wanted: Vec<u32>,
    query: u32,
}

impl<'p> Upstream<'p> {
    fn new(pipeline: &'p Pipeline) -> Upstream<'p> {
        let n = pipeline.steps.len();
        Upstream {
            outputs: Outputs::new(pipeline),
            memo: Memo::default(),
            walk: Walk {
                of: None,
                seen: vec![0; n],
                epoch: 0,
                stack: Vec::new(),
                wanted: vec![0; n],
                query: 0,
            },
        }
    }

    /// Warnings for the inputs of `missing` that no step upstream of `id`
    /// that runs declares as an output. `dir` is where `id` runs.
    fn unprovided(
        &mut self,
        pipeline: &Pipeline,
        id: StepId,
        dir: PathBuf,
        missing: &[MissingInput],
        decided: &[Option<StepPlan>],
    ) -> Vec<Reason> {
        let known = match self.memo.get_mut(dir.as_path()) {
            Some(known) => known,
            None => self.memo.entry(dir.clone()).or_default(),
        };
        // Steps not decided yet come later in the order: not upstream.
        let runs = |p: &&StepId| {
            decided[p.index()]
                .as_ref()
                .is_some_and(|d| d.action == Action::Run)
        };
        let mut warnings = Vec::new();
        for m in missing {
            let pattern = m.pattern.as_str();
            if !known.contains_key(pattern) {
                let found = self.outputs.providers(&dir, pattern);
                known.insert(pattern.to_string(), found);
            }
            let providers = known[pattern].iter().filter(runs);
            if !self.walk.reaches(pipeline, id, providers) {
                warnings.push(Reason::InputMissing {
                    pattern: m.pattern.clone(),
                });
            }
        }
        warnings
    }
}

impl<'p> Outputs<'p> {
    fn new(pipeline: &'p Pipeline) -> Outputs<'p> {
        let mut by_path: HashMap<&Path, Vec<StepId>, _> = HashMap::default();
        let mut sorted = Vec::new();
        for id in pipeline.ids() {
            for output in pipeline.output_paths(id) {
                count_check();
                by_path.entry(output.as_path()).or_default().push(id);
                if let Some(text) = output.to_str() {
                    sorted.push((text, id));
                }
            }
        }
        sorted.sort_unstable();
        Outputs { by_path, sorted }
    }

    /// The steps with an output that provides `pattern` in `dir`, as
    /// [`output_provides`](crate::workspace::output_provides) decides.
    fn providers(&self, dir: &Path, pattern: &str) -> Vec<StepId> {
        count_check();
        let mut found = Vec::new();
        // The input is the output, or lies in an output folder.
        let wanted = normalize(&dir.join(pattern));
        for path in wanted.ancestors() {
            found.extend(self.by_path.get(path).into_iter().flatten());
        }
        // The pattern matches the output; the folder part is literal.
        let escaped = format!(
            "{}/{}",
            glob::Pattern::escape(&dir.to_string_lossy()),
            pattern
        );
        let text = normalize(Path::new(&escaped))
            .to_string_lossy()
            .into_owned();
        if pattern.contains(['*', '?', '[']) {
            if let Ok(glob) = glob::Pattern::new(&text) {
                let literal = &text[..text.find(['*', '?', '[']).unwrap_or(text.len())];
                let from = self.sorted.partition_point(|(p, _)| *p < literal);
                for (path, up) in self.sorted[from..]
                    .iter()
                    .take_while(|(p, _)| p.starts_with(literal))
                {
                    count_check();
                    if glob.matches(path) {
                        found.push(*up);
                    }
                }
            }
        } else {
            // Without glob characters the pattern matches its own text: the
            // folder's as written, unescaped, then the pattern.
            let plain = normalize(Path::new(&format!("{}/{pattern}", dir.to_string_lossy())));
            if plain != wanted {
                found.extend(self.by_path.get(plain.as_path()).into_iter().flatten());
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }
}

impl Walk {
    /// Whether one of `targets` is upstream of `id`. The walk goes on from
    /// where the last question about `id` left it.
    fn reaches<'a>(
        &mut self,
        pipeline: &Pipeline,
        id: StepId,
        targets: impl Iterator<Item = &'a StepId>,
    ) -> bool {
        if self.of != Some(id) {
            self.of = Some(id);
            self.epoch += 1;
            self.stack.clear();
            self.discover(pipeline, id);
        }
        self.query += 1;
        let mut any = false;
        for t in targets {
            any = true;
            if self.seen[t.index()] == self.epoch {
                return true;
            }
            self.wanted[t.index()] = self.query;
        }
        if !any {
            return false;
        }
        while let Some(up) = self.stack.pop() {
            if self.discover(pipeline, up) {
                return true;
            }
        }
        false
    }

    /// Finds the dependencies of `step`; whether one is wanted.
    fn discover(&mut self, pipeline: &Pipeline, step: StepId) -> bool {
        let mut hit = false;
        for &dep in &pipeline.step(step).after {
            count_check();
            if self.seen[dep.index()] != self.epoch {
                self.seen[dep.index()] = self.epoch;
                self.stack.push(dep);
                hit |= self.wanted[dep.index()] == self.query;
            }
        }
        hit
    }
}

thread_local! {
    static CHECKS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count_check() {
    CHECKS.with(|c| c.set(c.get() + 1));
}

/// How much work this thread's plans did to decide whether missing inputs
/// are provided upstream: outputs indexed, inputs looked up, outputs a glob
/// was matched against, dependencies walked. It must grow with the number of (input, output) paths, not
/// their product (a test holds it to that).
pub fn provider_checks() -> u64 {
    CHECKS.with(std::cell::Cell::get)
}

/// A small number's digits, without `format!`.
fn itoa_u32(n: u32) -> String {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    String::from_utf8_lossy(&digits[i..]).into_owned()
}

pub(crate) fn describe_success(success: &Attempt) -> (State, String) {
    let when = success
        .finished
        .as_ref()
        .map_or(success.started_at, |f| f.at);
    // Once per done step of every no-op: no `format!`.
    let mut text = String::with_capacity(48);
    if success.imported() {
        text.push_str("imported as successful on ");
        crate::time::push_time(&mut text, when);
        (State::Imported, text)
    } else {
        text.push_str("succeeded on ");
        crate::time::push_time(&mut text, when);
        text.push_str(" (attempt ");
        text.push_str(itoa_u32(success.number).as_str());
        text.push(')');
        (State::Done, text)
    }
}

pub(crate) fn describe_not_done(
    h: Option<&StepHistory>,
    live_run: Option<u64>,
) -> (State, String, Reason) {
    let Some(h) = h else {
        return (
            State::NeverRun,
            "no attempt recorded".into(),
            Reason::NeverRun,
        );
    };
    match &h.current {
        None if h.forgotten_at.is_some() && h.last.is_some() => (
            State::Forgotten,
            format!("forgotten on {}", format_time(h.forgotten_at.unwrap_or(0))),
            Reason::Forgotten,
        ),
        None => (
            State::NeverRun,
            "no attempt recorded".into(),
            Reason::NeverRun,
        ),
        Some(a) => match &a.finished {
            None if a.run.is_some() && a.run == live_run => (
                State::Running,
                format!(
                    "attempt {} is running now (run {})",
                    a.number,
                    a.run.unwrap_or(0)
                ),
                Reason::Running { attempt: a.number },
            ),
            None => (
                State::Interrupted,
                match &a.job {
                    // The job may well run on: `run` asks Slurm first.
                    Some(job) => format!(
                        "attempt {} (Slurm job {job}) started on {} and its runner was stopped; the next run asks Slurm how it went",
                        a.number,
                        format_time(a.started_at)
                    ),
                    None => format!(
                        "attempt {} started on {} and never finished: the runner was stopped",
                        a.number,
                        format_time(a.started_at)
                    ),
                },
                Reason::Interrupted { attempt: a.number },
            ),
            Some(f) if matches!(f.outcome, Outcome::Interrupted(_)) => (
                State::Interrupted,
                format!(
                    "attempt {} was {} on {}",
                    a.number,
                    describe_outcome(&f.outcome),
                    format_time(f.at)
                ),
                Reason::Interrupted { attempt: a.number },
            ),
            Some(_) => (
                State::Failed,
                failure_reason(a),
                Reason::Failed { attempt: a.number },
            ),
        },
    }
}

/// "attempt 2 failed on …: exit code 1", for messages.
pub fn failure_reason(a: &Attempt) -> String {
    let Some(f) = &a.finished else {
        return "never finished".into();
    };
    let what = describe_outcome(&f.outcome);
    if a.imported() {
        return format!("imported as failed on {}", format_time(f.at));
    }
    format!(
        "attempt {} failed on {}: {what}",
        a.number,
        format_time(f.at)
    )
}

/// An outcome in a few words: `exit code 3`, `killed by signal 9`, ….
pub fn describe_outcome(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Success => "succeeded".into(),
        Outcome::Exited(code) => format!("exit code {code}"),
        Outcome::Signaled(sig) => format!("killed by {}", signal_name(*sig)),
        Outcome::TimedOut => "timed out".into(),
        Outcome::Interrupted(sig) => format!("interrupted by {}", signal_name(*sig)),
        Outcome::NotStarted(why) => format!("could not start: {why}"),
        Outcome::OutputsMissing(paths) => {
            format!("exited 0 but did not create {}", paths.join(", "))
        }
        Outcome::Error(message) => format!("error: {message}"),
        Outcome::Job(state) => format!("Slurm job {}", state.to_lowercase().replace('_', " ")),
    }
}

/// `SIGKILL` for 9, or `signal 64` when unnamed.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string())
}

/// "1.2s" for how long an attempt took.
pub fn attempt_duration(a: &Attempt) -> Option<String> {
    a.finished
        .as_ref()
        .map(|f| format_duration_ms(f.duration_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Record;
    use std::path::Path;

    /// The index finds exactly the steps whose outputs `output_provides`
    /// says provide an input: names, folders, globs, `..`, absolute
    /// patterns, glob characters in folder names, invalid globs.
    #[test]
    fn the_output_index_agrees_with_output_provides() {
        let outputs = [
            "a/1.txt",
            "a/2.txt",
            "a",
            "b/c/d.csv",
            "x v2/y.txt",
            "data/x.csv",
            "out/",
            "deep/a/b/c",
            "w/local.txt",
            "sub/dir/f",
            "a1",
        ];
        let dirs = ["", "w", "x [v2]", "sub/dir", "deep/a"];
        let patterns = [
            "a/1.txt",
            "a/*.txt",
            "a",
            "a/3.txt",
            "../a/1.txt",
            "*",
            "*/*",
            "**/*.csv",
            "b/c/d.csv",
            "b/?/d.csv",
            "b/[cd]/d.csv",
            "[",
            "y.txt",
            "*.txt",
            "/p/a/1.txt",
            "/q [r]/a/1.txt",
            "p/a/1.txt",
            "./a/../a/2.txt",
            "deep/a/b/c/e",
            "a*",
            "nothing",
            "x [v2]/y.txt",
            "x [v2]/*.txt",
            "x [[]v2]/y.txt",
            "x v2/y.txt",
            "x ?v2/*",
            "z/q",
            "../x [v2]/z",
            "local.txt",
            "../../a",
            "f",
            "../*",
            "b/c",
            "*/c",
            "out",
            "out/x",
            "[!a]/1.txt",
            "a/[12].txt",
            "**",
        ];
        let mut provided = 0;
        for root in ["/p", "/q [r]"] {
            let mut toml = String::new();
            for (i, dir) in dirs.iter().enumerate() {
                let dir_key = if dir.is_empty() {
                    String::new()
                } else {
                    format!("dir = \"{dir}\"\n")
                };
                let outs: Vec<String> = outputs
                    .iter()
                    .skip(i)
                    .step_by(2)
                    .map(|o| {
                        format!(
                            "\"{}{o}\"",
                            "../".repeat(dir.matches('/').count() + usize::from(!dir.is_empty()))
                        )
                    })
                    .collect();
                toml += &format!(
                    "[[step]]\nname = \"s{i}\"\n{dir_key}run = \"true\"\noutputs = [{}]\n\n",
                    outs.join(", ")
                );
            }
            // Outputs cannot hold glob characters, but the folders they are
            // in can.
            toml += "[[step]]\nname = \"odd\"\ndir = \"x [v2]\"\nrun = \"true\"\noutputs = [\"y.txt\", \"z/\"]\n";
            let pipeline =
                Pipeline::parse(Path::new("stepwise.toml"), Path::new(root), &toml).unwrap();
            let upstream = Outputs::new(&pipeline);
            for id in pipeline.ids() {
                let dir = pipeline.step_dir(id);
                for pattern in patterns {
                    let expected: Vec<StepId> = pipeline
                        .ids()
                        .filter(|&s| {
                            pipeline
                                .output_paths(s)
                                .iter()
                                .any(|o| crate::workspace::output_provides(o, &dir, pattern))
                        })
                        .collect();
                    provided += usize::from(!expected.is_empty());
                    assert_eq!(
                        upstream.providers(&dir, pattern),
                        expected,
                        "{pattern} in {}",
                        dir.display()
                    );
                }
            }
        }
        // Both answers are well represented (130 of 528 cases provide).
        assert!(provided > 100, "{provided}");
    }

    fn pipeline(n: usize) -> Pipeline {
        let mut src = String::new();
        for i in 0..n {
            src.push_str(&format!("[[step]]\nname = \"s{i}\"\nrun = \"true\"\n"));
        }
        Pipeline::parse(Path::new("p.toml"), Path::new("/"), &src).unwrap()
    }

    fn finish(step: &str, attempt: u32, outcome: Outcome) -> [Record; 2] {
        [
            Record::AttemptStarted {
                run: 1,
                step: step.into(),
                attempt,
                at: 0,
                stamp: None,
            },
            Record::AttemptFinished {
                run: 1,
                step: step.into(),
                attempt,
                at: 1,
                duration_ms: 1,
                outcome,
                value: None,
            },
        ]
    }

    #[test]
    fn the_seed_table_in_words() {
        let p = pipeline(4);
        let mut records: Vec<Record> = Vec::new();
        records.extend(finish("s0", 1, Outcome::Success));
        records.extend(finish("s1", 1, Outcome::Exited(3)));
        records.push(Record::AttemptStarted {
            run: 1,
            step: "s2".into(),
            attempt: 1,
            at: 0,
            stamp: None,
        });
        let plan = plan(
            &p,
            &History::from_records(records),
            &p.scope(&[]),
            None,
            None,
        );
        let states: Vec<_> = plan.steps.iter().map(|s| (s.action, s.state)).collect();
        assert_eq!(
            states,
            [
                (Action::Skip, State::Done),
                (Action::Run, State::Failed),
                (Action::Run, State::Interrupted),
                (Action::Run, State::NeverRun)
            ]
        );
        assert!(
            plan.steps[1].reason.contains("exit code 3"),
            "{}",
            plan.steps[1].reason
        );
        assert_eq!(plan.to_string(), "Resume plan: 1 done, 3 remaining");
    }

    #[test]
    fn a_live_run_is_running_not_interrupted() {
        let p = pipeline(1);
        let h = History::from_records([Record::AttemptStarted {
            run: 7,
            step: "s0".into(),
            attempt: 1,
            at: 0,
            stamp: None,
        }]);
        assert_eq!(
            plan(&p, &h, &[true], Some(7), None).steps[0].state,
            State::Running
        );
    }
}
