//! The pipeline file, `stepwise.toml`: parsing and validation.
//!
//! A file is either turned into a [`Pipeline`] whose every step name,
//! dependency and value has been checked, or rejected with a list of
//! [`Diagnostic`]s pointing at the offending text. Nothing downstream ever
//! sees a half-valid pipeline.

use std::collections::{BTreeMap, HashMap};

/// Step names to ids: looked up for every step of every no-op run, so with
/// a fast hash rather than SipHash.
type NameIndex = HashMap<String, StepId, foldhash::fast::RandomState>;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostic::{Diagnostic, did_you_mean};

mod expand;
use crate::error::{Error, IoContext, Result};
pub use expand::{ExpansionInput, parse_selector};

/// The name of the pipeline file looked for when none is given.
pub const DEFAULT_FILE: &str = "stepwise.toml";

/// Index of a step in [`Pipeline::steps`]; the pipeline's order is the order
/// of these ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StepId(pub u32);

impl StepId {
    /// The id as an index into [`Pipeline::steps`] and the per-step vectors
    /// built from it.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// When the journal is flushed to stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SyncMode {
    /// fsync at least once a second while running and before exiting: a power
    /// cut costs at most the last second of records.
    #[default]
    Batched,
    /// fsync after every record.
    Always,
}

/// Where a step's attempts run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
pub enum Executor {
    /// A process on this machine.
    #[default]
    Local,
    /// A batch job on a Slurm cluster, submitted with `sbatch`.
    Slurm,
}

impl Executor {
    /// How the pipeline file and `--executor` write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Executor::Local => "local",
            Executor::Slurm => "slurm",
        }
    }
}

/// What a step asks of Slurm: `[step.slurm]` over `[pipeline.slurm]`.
/// Each value is already in the form `sbatch` takes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmResources {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--cpus-per-task`.
    pub cpus: Option<u32>,
    /// `--mem`: a number of megabytes, or with a unit (`4G`).
    pub mem: Option<String>,
    /// `--time`; without it, the step's `timeout` (rounded up to Slurm's
    /// whole minutes) is used.
    pub time: Option<Duration>,
    /// `--gpus`: a count, or `type:count`.
    pub gpus: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--qos`.
    pub qos: Option<String>,
    /// Anything else, passed to `sbatch` as written, after the options
    /// above (the pipeline's before the step's).
    pub sbatch_args: Vec<String>,
}

impl SlurmResources {
    /// These settings, falling back to `defaults` for what they leave out;
    /// `sbatch_args` add up.
    pub fn over(&self, defaults: &SlurmResources) -> SlurmResources {
        SlurmResources {
            partition: self
                .partition
                .clone()
                .or_else(|| defaults.partition.clone()),
            cpus: self.cpus.or(defaults.cpus),
            mem: self.mem.clone().or_else(|| defaults.mem.clone()),
            time: self.time.or(defaults.time),
            gpus: self.gpus.clone().or_else(|| defaults.gpus.clone()),
            account: self.account.clone().or_else(|| defaults.account.clone()),
            qos: self.qos.clone().or_else(|| defaults.qos.clone()),
            sbatch_args: defaults
                .sbatch_args
                .iter()
                .chain(&self.sbatch_args)
                .cloned()
                .collect(),
        }
    }
}

/// The default of `[pipeline.slurm] poll_interval`.
pub const DEFAULT_SLURM_POLL: Duration = Duration::from_secs(1);

/// A validated pipeline.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pipeline {
    /// The pipeline file, as the user named it (for messages).
    pub path: PathBuf,
    /// The absolute folder of the pipeline file: steps run here by default
    /// and the state dir lives here.
    pub root: PathBuf,
    /// The command line a step's `run` string is appended to.
    pub shell: Vec<String>,
    /// Added to every step's environment.
    pub env: BTreeMap<String, String>,
    /// `[pipeline] sync`: how often the journal is fsynced.
    pub sync: SyncMode,
    /// `[pipeline] jobs`, when given.
    pub jobs: Option<usize>,
    /// How long a step may take to stop after SIGTERM/SIGINT before it is
    /// killed.
    pub kill_grace: Duration,
    /// `[pipeline] executor`: where steps that do not name one run.
    pub executor: Executor,
    /// `[pipeline.slurm]`: what every Slurm step asks for unless it says
    /// otherwise.
    pub slurm: SlurmResources,
    /// `[pipeline.slurm] poll_interval`: how often Slurm is asked about the
    /// jobs in flight (one command for all of them).
    pub slurm_poll: Duration,
    /// Every step, expansions of templates included, in file order; a step's
    /// [`StepId`] is its index here.
    pub steps: Vec<Step>,
    /// Rebuilt, not stored, when loaded from the compiled cache.
    #[serde(skip)]
    index: NameIndex,
    /// `matrix` and `for_each` templates, by name, with their expansions.
    pub templates: Vec<(String, Vec<StepId>)>,
    /// The files and globs the expansion read: the compiled cache is valid
    /// only while they are unchanged.
    pub expansion_inputs: Vec<ExpansionInput>,
}

/// One step of a pipeline.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    /// Unique in the pipeline; what the journal records it under.
    pub name: String,
    /// The shell command string.
    pub run: String,
    /// Working dir, relative to the pipeline's root.
    pub dir: Option<String>,
    /// The step's own variables, set over the pipeline's (its value wins).
    pub env: BTreeMap<String, String>,
    /// Variables passed from stepwise's own environment to this step only,
    /// by name: their values never enter the fingerprint, the journal or any
    /// output, and steps that do not declare them do not get them.
    pub secret_env: Vec<String>,
    /// Direct dependencies, without duplicates, in the order listed.
    pub after: Vec<StepId>,
    /// Files, folders or glob patterns whose content the step reads,
    /// relative to its dir.
    pub inputs: Vec<String>,
    /// Files or folders the step writes, relative to its dir; checked to stay
    /// inside the pipeline's folder.
    pub outputs: Vec<String>,
    /// Keep the outputs of a failed attempt instead of removing them.
    pub keep_failed_outputs: bool,
    /// `outputs` as absolute paths, checked once when the file is read.
    output_paths: Vec<PathBuf>,
    /// Stop the attempt after this long.
    pub timeout: Option<Duration>,
    /// Extra attempts after a failure, within one run.
    pub retries: u32,
    /// Wait before the first retry; doubles for each next one.
    pub retry_delay: Duration,
    /// `executor`, when the step names one.
    pub executor: Option<Executor>,
    /// `[step.slurm]`, as written (see [`Pipeline::slurm_resources`]).
    pub slurm: SlurmResources,
    /// 1-based line of the step's table in the file (0 for a step of
    /// [`Pipeline::from_names`]).
    pub line: usize,
    /// For an expansion of a `matrix` or `for_each` step: the template's
    /// name and the values this expansion was made with.
    pub template: Option<String>,
    /// The `(variable, value)` pairs of the expansion; empty for a plain
    /// step.
    pub values: Vec<(String, String)>,
}

impl Pipeline {
    /// Reads and validates a pipeline file.
    pub fn load(path: &Path) -> Result<Pipeline> {
        let (source, root) = Pipeline::read_source(path)?;
        Pipeline::parse(path, &root, &source)
    }

    /// The text of a pipeline file and the absolute folder it is in.
    pub fn read_source(path: &Path) -> Result<(String, PathBuf)> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::usage_with_help(
                    format!("no pipeline file at {}", path.display()),
                    format!(
                        "create a {DEFAULT_FILE} there (see the README), or pass another with -f PATH"
                    ),
                ));
            }
            Err(e) => return Err(e).context(format!("cannot read {}", path.display())),
        };
        let source = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
                return Err(Error::invalid(
                    Diagnostic::new("the pipeline file is not valid UTF-8")
                        .at(path, &lossy, at..at + 1)
                        .help("save the file as UTF-8"),
                ));
            }
        };
        let root = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."));
        let root = crate::state::dir::real_path(root)
            .context(format!("cannot resolve the folder of {}", path.display()))?;
        Ok((source, root))
    }

    /// Rebuilds what is not stored in the compiled form.
    pub(crate) fn rebuild_index(&mut self) {
        self.index = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), StepId(i as u32)))
            .collect();
    }

    /// Validates the text of a pipeline file. `path` is only used in messages,
    /// `root` becomes [`Pipeline::root`].
    ///
    /// ```
    /// let p = stepwise::Pipeline::parse(
    ///     "stepwise.toml".as_ref(),
    ///     "/tmp".as_ref(),
    ///     "[[step]]\nname = \"a\"\nrun = \"true\"\n[[step]]\nname = \"b\"\nrun = \"true\"\n",
    /// ).unwrap();
    /// // Without `after`, a step depends on the one before it.
    /// assert_eq!(p.steps[1].after, [p.find("a").unwrap()]);
    /// ```
    pub fn parse(path: &Path, root: &Path, source: &str) -> Result<Pipeline> {
        let document = match DeTable::parse(source) {
            Ok(doc) => doc,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let message = e.message().trim_end();
                return Err(Error::invalid(
                    Diagnostic::new(format!("invalid TOML: {message}"))
                        .at(path, source, span)
                        .help(toml_help(message)),
                ));
            }
        };
        let mut cx = Cx {
            path,
            source,
            errors: Vec::new(),
            unexpanded: Vec::new(),
        };
        let raw = cx.document(document.get_ref());
        let (raw, expansion_inputs) = expand::expand(&mut cx, raw, root);
        let mut pipeline = cx.validate(raw, root);
        pipeline.expansion_inputs = expansion_inputs;
        if cx.errors.is_empty() && pipeline.steps.is_empty() {
            // As make says "No targets": an empty file (or `-f` naming the
            // wrong one) is a mistake, not a pipeline that is done.
            cx.error_help(
                0..0,
                "the pipeline has no steps",
                "add a step: a `[[step]]` table with a `name` and a `run` command; `stepwise init` writes a starter file",
            );
        }
        if cx.errors.is_empty() {
            Ok(pipeline)
        } else {
            cx.errors
                .sort_by_key(|d| d.location.as_ref().map(|l| (l.line, l.column)));
            Err(Error::Invalid(cx.errors))
        }
    }

    /// A pipeline of bare step names, for a state dir without a pipeline
    /// file (one a Rust program writes through [`crate::Run`]): one step per
    /// distinct name, in the order given, without a command, dependencies,
    /// inputs or outputs. `path` names it in messages; `root` is its folder.
    pub fn from_names(
        path: &Path,
        root: &Path,
        names: impl IntoIterator<Item = String>,
    ) -> Pipeline {
        let mut index = NameIndex::default();
        let mut steps = Vec::new();
        for name in names {
            if index.contains_key(&name) {
                continue;
            }
            index.insert(name.clone(), StepId(steps.len() as u32));
            steps.push(Step {
                name,
                run: String::new(),
                dir: None,
                env: BTreeMap::new(),
                secret_env: Vec::new(),
                after: Vec::new(),
                inputs: Vec::new(),
                outputs: Vec::new(),
                keep_failed_outputs: false,
                output_paths: Vec::new(),
                timeout: None,
                retries: 0,
                retry_delay: DEFAULT_RETRY_DELAY,
                executor: None,
                slurm: SlurmResources::default(),
                line: 0,
                template: None,
                values: Vec::new(),
            });
        }
        Pipeline {
            path: path.to_path_buf(),
            root: root.to_path_buf(),
            shell: vec!["sh".into(), "-c".into()],
            env: BTreeMap::new(),
            sync: SyncMode::default(),
            jobs: None,
            templates: Vec::new(),
            expansion_inputs: Vec::new(),
            kill_grace: DEFAULT_KILL_GRACE,
            executor: Executor::Local,
            slurm: SlurmResources::default(),
            slurm_poll: DEFAULT_SLURM_POLL,
            steps,
            index,
        }
    }

    /// The step with this id, which must come from this pipeline (an id out
    /// of range panics).
    pub fn step(&self, id: StepId) -> &Step {
        &self.steps[id.index()]
    }

    /// The step with this name.
    pub fn find(&self, name: &str) -> Option<StepId> {
        self.index.get(name).copied()
    }

    /// Every step id, in pipeline order.
    pub fn ids(&self) -> impl ExactSizeIterator<Item = StepId> + use<> {
        (0..self.steps.len() as u32).map(StepId)
    }

    /// The names of every step, in pipeline order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().map(|s| s.name.as_str())
    }

    /// Resolves names given on the command line; an unknown name is a usage
    /// error with the closest existing name as a suggestion.
    ///
    /// A name can also be a template's (every expansion of it), or select
    /// expansions by value: `align[sample=s1]`.
    pub fn resolve(&self, names: &[String]) -> Result<Vec<StepId>> {
        let mut out = Vec::new();
        for name in names {
            for id in self.resolve_name(name)? {
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    /// One step, for commands about a single step (`log`, `why`).
    pub fn resolve_one(&self, name: &str) -> Result<StepId> {
        let ids = self.resolve_name(name)?;
        match ids.as_slice() {
            [id] => Ok(*id),
            _ => {
                let example = &self.step(ids[0]).name;
                Err(Error::usage_with_help(
                    format!(
                        "`{name}` names {} steps (expansions of a template); this command is about one",
                        ids.len()
                    ),
                    format!("name one of them, for example `{example}`"),
                ))
            }
        }
    }

    /// The expansions of a template, if `name` is one.
    pub fn template(&self, name: &str) -> Option<&[StepId]> {
        self.templates
            .iter()
            .find(|(t, _)| t == name)
            .map(|(_, ids)| ids.as_slice())
    }

    fn resolve_name(&self, name: &str) -> Result<Vec<StepId>> {
        if let Some(id) = self.find(name) {
            return Ok(vec![id]);
        }
        if let Some(ids) = self.template(name) {
            return Ok(ids.to_vec());
        }
        if let Some((template, pairs)) = expand::parse_selector(name)
            && let Some(ids) = self.template(&template)
        {
            let matching: Vec<StepId> = ids
                .iter()
                .copied()
                .filter(|&id| {
                    let values = &self.step(id).values;
                    pairs
                        .iter()
                        .all(|(k, v)| values.iter().any(|(vk, vv)| vk == k && vv == v))
                })
                .collect();
            if matching.is_empty() {
                return Err(Error::usage_with_help(
                    format!("no expansion of `{template}` matches `{name}`"),
                    format!("`stepwise plan {template}` lists them"),
                ));
            }
            return Ok(matching);
        }
        Err({
            {
                {
                    let candidates = self
                        .names()
                        .chain(self.templates.iter().map(|(t, _)| t.as_str()));
                    let help = match did_you_mean(name, candidates) {
                        Some(close) => format!("did you mean `{close}`?"),
                        None => {
                            format!("`stepwise plan` lists the steps of {}", self.path.display())
                        }
                    };
                    Error::usage_with_help(
                        format!("no step named `{name}` in {}", self.path.display()),
                        help,
                    )
                }
            }
        })
    }

    /// The given steps and every step they need, transitively, as a mask
    /// indexed by step id. An empty selection means the whole pipeline.
    pub fn scope(&self, selected: &[StepId]) -> Vec<bool> {
        if selected.is_empty() {
            return vec![true; self.steps.len()];
        }
        let mut in_scope = vec![false; self.steps.len()];
        let mut stack: Vec<StepId> = selected.to_vec();
        while let Some(id) = stack.pop() {
            if !std::mem::replace(&mut in_scope[id.index()], true) {
                stack.extend(&self.step(id).after);
            }
        }
        in_scope
    }

    /// Every step, each after all the steps it needs; among steps free to go
    /// at the same time, file order.
    pub fn topological_order(&self) -> Vec<StepId> {
        use std::cmp::Reverse;
        // The dependents of step i are flat[start[i]..start[i + 1]]: two
        // allocations, not one per step.
        let n = self.steps.len();
        let mut start = vec![0u32; n + 1];
        for step in &self.steps {
            for dep in &step.after {
                start[dep.index() + 1] += 1;
            }
        }
        for i in 0..n {
            start[i + 1] += start[i];
        }
        let mut fill: Vec<u32> = start[..n].to_vec();
        let mut flat = vec![StepId(0); start[n] as usize];
        for id in self.ids() {
            for dep in &self.step(id).after {
                flat[fill[dep.index()] as usize] = id;
                fill[dep.index()] += 1;
            }
        }
        let mut waiting: Vec<usize> = self.steps.iter().map(|s| s.after.len()).collect();
        // The lowest ready id first, as before: a min-heap.
        let mut ready: std::collections::BinaryHeap<Reverse<StepId>> = self
            .ids()
            .filter(|id| waiting[id.index()] == 0)
            .map(Reverse)
            .collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(id)) = ready.pop() {
            order.push(id);
            let i = id.index();
            for &d in &flat[start[i] as usize..start[i + 1] as usize] {
                waiting[d.index()] -= 1;
                if waiting[d.index()] == 0 {
                    ready.push(Reverse(d));
                }
            }
        }
        order
    }

    /// For each step, the steps that depend on it directly.
    pub fn dependents(&self) -> Vec<Vec<StepId>> {
        let mut out = vec![Vec::new(); self.steps.len()];
        for id in self.ids() {
            for dep in &self.step(id).after {
                out[dep.index()].push(id);
            }
        }
        out
    }

    /// The absolute paths of a step's declared outputs (validated to lie
    /// inside [`Pipeline::root`]).
    pub fn output_paths(&self, id: StepId) -> &[PathBuf] {
        &self.step(id).output_paths
    }

    /// Where a step runs: its own `executor`, else `default` (the run's
    /// `--executor`, if given), else `[pipeline] executor`.
    pub fn executor_of(&self, id: StepId, default: Option<Executor>) -> Executor {
        self.step(id).executor.or(default).unwrap_or(self.executor)
    }

    /// What a step asks of Slurm: its `[step.slurm]` over
    /// `[pipeline.slurm]`.
    pub fn slurm_resources(&self, id: StepId) -> SlurmResources {
        self.step(id).slurm.over(&self.slurm)
    }

    /// The folder a step runs in.
    pub fn step_dir(&self, id: StepId) -> PathBuf {
        match &self.step(id).dir {
            Some(dir) => self.root.join(dir),
            None => self.root.clone(),
        }
    }
}

const TOP_KEYS: &[&str] = &["pipeline", "step"];
const PIPELINE_KEYS: &[&str] = &[
    "shell",
    "env",
    "sync",
    "jobs",
    "kill_grace",
    "executor",
    "slurm",
    "max_expansions",
];
/// The keys of `[step.slurm]`; `[pipeline.slurm]` also takes
/// `poll_interval`.
const SLURM_KEYS: &[&str] = &[
    "partition",
    "cpus",
    "mem",
    "time",
    "gpus",
    "account",
    "qos",
    "sbatch_args",
];
const PIPELINE_SLURM_KEYS: &[&str] = &[
    "partition",
    "cpus",
    "mem",
    "time",
    "gpus",
    "account",
    "qos",
    "sbatch_args",
    "poll_interval",
];
/// `sbatch` options stepwise sets itself (or that would break how it
/// follows a job), refused in `sbatch_args`, with what to do instead.
const RESERVED_SBATCH_ARGS: &[(&str, &str)] = &[
    ("--parsable", "stepwise reads the job id with it already"),
    ("-J", "the job is named `stepwise:<pipeline folder>:<step>`"),
    (
        "--job-name",
        "the job is named `stepwise:<pipeline folder>:<step>`",
    ),
    (
        "-o",
        "the job's output goes to the attempt's log under .stepwise/logs/",
    ),
    (
        "--output",
        "the job's output goes to the attempt's log under .stepwise/logs/",
    ),
    (
        "-e",
        "the job's output goes to the attempt's log under .stepwise/logs/",
    ),
    (
        "--error",
        "the job's output goes to the attempt's log under .stepwise/logs/",
    ),
    (
        "--wrap",
        "stepwise submits a script that runs the step's `run`",
    ),
    ("-D", "the job runs in the step's `dir`; set `dir` instead"),
    (
        "--chdir",
        "the job runs in the step's `dir`; set `dir` instead",
    ),
    (
        "-W",
        "stepwise follows the job itself; waiting in sbatch would stall every other step",
    ),
    (
        "--wait",
        "stepwise follows the job itself; waiting in sbatch would stall every other step",
    ),
    (
        "-a",
        "one attempt is one job; use `matrix` for many similar steps",
    ),
    (
        "--array",
        "one attempt is one job; use `matrix` for many similar steps",
    ),
];
const STEP_KEYS: &[&str] = &[
    "name",
    "run",
    "dir",
    "env",
    "secret_env",
    "after",
    "inputs",
    "outputs",
    "keep_failed_outputs",
    "timeout",
    "retries",
    "retry_delay",
    "executor",
    "slurm",
    "matrix",
    "matrix_from",
    "for_each",
];

/// The default of `[pipeline] max_expansions`: how many steps `matrix`,
/// `matrix_from` and `for_each` may make in all. Each costs a few KiB to
/// plan; a matrix of ten short lists would otherwise make ten billion.
pub const DEFAULT_MAX_EXPANSIONS: usize = 1_000_000;
/// The default of `[pipeline] kill_grace`.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);
/// The default of a step's `retry_delay`.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);

type Value<'i> = Spanned<DeValue<'i>>;

/// Each step's dependencies, with the span of the `after` entry naming it
/// (`None` for the implicit "the step before").
type Edges = Vec<Vec<(StepId, Option<Range<usize>>)>>;

/// A step as written, before names are resolved.
#[derive(Clone)]
struct RawStep {
    name: Option<Spanned<String>>,
    run: Option<String>,
    dir: Option<String>,
    env: BTreeMap<String, String>,
    secret_env: Vec<Spanned<String>>,
    after: Option<Vec<Spanned<String>>>,
    inputs: Vec<String>,
    outputs: Vec<Spanned<String>>,
    keep_failed_outputs: bool,
    timeout: Option<Duration>,
    retries: u32,
    retry_delay: Duration,
    executor: Option<Executor>,
    slurm: SlurmResources,
    span: Range<usize>,
    /// Which `[[step]]` entry of the file it comes from (expansions share it).
    entry: usize,
    /// Where each string was written, for messages about placeholders.
    spans: FieldSpans,
    /// `matrix`, `matrix_from` and `for_each`, when the step is a template.
    template: Option<expand::TemplateSpec>,
    /// For an expansion: its template and the values it was made with.
    expanded_from: Option<expand::Expanded>,
}

#[derive(Clone, Default)]
struct FieldSpans {
    run: Range<usize>,
    dir: Range<usize>,
    env: BTreeMap<String, Range<usize>>,
    inputs: Vec<Range<usize>>,
}

#[derive(Default)]
struct RawPipeline {
    shell: Option<Vec<String>>,
    env: BTreeMap<String, String>,
    sync: SyncMode,
    jobs: Option<usize>,
    kill_grace: Option<Duration>,
    executor: Executor,
    slurm: SlurmResources,
    slurm_poll: Option<Duration>,
    /// `[pipeline] max_expansions`, when given.
    max_expansions: Option<usize>,
    steps: Vec<RawStep>,
}

/// Collects every problem of a file so the user fixes them in one go.
struct Cx<'a> {
    path: &'a Path,
    source: &'a str,
    errors: Vec<Diagnostic>,
    /// Templates that expanded to nothing, each for a reason already
    /// reported: an `after` naming one is not reported again as unknown.
    unexpanded: Vec<String>,
}

impl Cx<'_> {
    fn error_help(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        let d = Diagnostic::new(message)
            .at(self.path, self.source, span)
            .help(help);
        self.errors.push(d);
    }

    /// Reports an unknown key; returns the known key it is probably a typo of.
    fn unknown_key(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        allowed: &[&'static str],
        place: &str,
    ) -> Option<&'static str> {
        let name = key.get_ref();
        let close = did_you_mean(name, allowed.iter().copied());
        let help = match close {
            Some(close) => format!("did you mean `{close}`?"),
            None => format!("the keys allowed here are: {}", allowed.join(", ")),
        };
        self.error_help(key.span(), format!("unknown key `{name}` {place}"), help);
        close
    }

    fn document(&mut self, doc: &DeTable<'_>) -> RawPipeline {
        let mut raw = RawPipeline::default();
        for (key, value) in doc.iter() {
            match key.get_ref().as_ref() {
                "pipeline" => match value.get_ref() {
                    DeValue::Table(t) => self.pipeline_table(t, &mut raw),
                    other => self.error_help(
                        value.span(),
                        format!("`pipeline` must be a table, found {}", other.type_str()),
                        "write the settings under a `[pipeline]` header",
                    ),
                },
                "step" => match value.get_ref() {
                    DeValue::Array(steps) => {
                        for (i, step) in steps.iter().enumerate() {
                            match step.get_ref() {
                                DeValue::Table(t) => {
                                    let s = self.step_table(i + 1, step.span(), t);
                                    raw.steps.push(s);
                                }
                                other => self.error_help(
                                    step.span(),
                                    format!(
                                        "step #{} must be a table, found {}",
                                        i + 1,
                                        other.type_str()
                                    ),
                                    "start each step with a `[[step]]` header (two brackets)",
                                ),
                            }
                        }
                    }
                    _ => self.error_help(
                        key.span(),
                        "`step` must be an array of tables",
                        "start each step with a `[[step]]` header (two brackets)",
                    ),
                },
                _ => {
                    self.unknown_key(key, TOP_KEYS, "at the top level");
                }
            }
        }
        raw
    }

    fn pipeline_table(&mut self, table: &DeTable<'_>, raw: &mut RawPipeline) {
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "shell" => {
                    let Some(list) = self.string_list(value, "`shell`") else { continue };
                    let list: Vec<String> = list.into_iter().map(Spanned::into_inner).collect();
                    if list.first().is_none_or(|program| program.is_empty()) {
                        self.error_help(
                            value.span(),
                            "`shell` must name a program",
                            "for example: shell = [\"bash\", \"-eu\", \"-c\"]",
                        );
                    } else {
                        raw.shell = Some(list);
                    }
                }
                "env" => raw.env = self.env_table(value, "`[pipeline] env`"),
                "sync" => match value.get_ref().as_str() {
                    Some("always") => raw.sync = SyncMode::Always,
                    Some("batched") => raw.sync = SyncMode::Batched,
                    _ => self.error_help(
                        value.span(),
                        "`sync` must be \"always\" or \"batched\"",
                        "\"batched\" (the default) fsyncs the journal at least once a second; \"always\" after every record",
                    ),
                },
                "jobs" => {
                    if let Some(n) = self.positive_integer(value, "`jobs`") {
                        raw.jobs = Some(n);
                    }
                }
                "kill_grace" => raw.kill_grace = self.duration(value, "`kill_grace`"),
                "max_expansions" => {
                    raw.max_expansions = self.positive_integer(value, "`max_expansions`")
                }
                "executor" => {
                    if let Some(e) = self.executor(value, "in [pipeline]") {
                        raw.executor = e;
                    }
                }
                "slurm" => {
                    raw.slurm_poll = self.slurm_table(value, "[pipeline.slurm]", &mut raw.slurm, true)
                }
                _ => {
                    self.unknown_key(key, PIPELINE_KEYS, "in [pipeline]");
                }
            }
        }
    }

    fn step_table(&mut self, number: usize, span: Range<usize>, table: &DeTable<'_>) -> RawStep {
        let mut step = RawStep {
            name: None,
            run: None,
            dir: None,
            env: BTreeMap::new(),
            secret_env: Vec::new(),
            after: None,
            inputs: Vec::new(),
            outputs: Vec::new(),
            keep_failed_outputs: false,
            timeout: None,
            retries: 0,
            retry_delay: DEFAULT_RETRY_DELAY,
            executor: None,
            slurm: SlurmResources::default(),
            span: header_span(self.source, span),
            spans: FieldSpans::default(),
            template: None,
            expanded_from: None,
            entry: number - 1,
        };
        let is_template = ["matrix", "matrix_from", "for_each"]
            .iter()
            .any(|k| table.contains_key(*k));
        let mut matrix: Option<Vec<(Spanned<String>, Vec<String>)>> = None;
        let mut matrix_from: Option<expand::MatrixFrom> = None;
        let mut for_each: Option<Spanned<String>> = None;
        let mut template_span = step.span.clone();
        // The name first, so every other message can say which step it is about.
        let place = match table.get("name").map(|v| v.get_ref()) {
            Some(DeValue::String(name)) if !name.is_empty() => format!("in step `{name}`"),
            _ => format!("in step #{number}"),
        };
        let mut misspelt: Vec<&'static str> = Vec::new();
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "name" => match value.get_ref() {
                    // A template's name may hold placeholders; the names it
                    // expands to are checked once they are known.
                    DeValue::String(name) if is_template && name.contains('{') => {
                        step.name = Some(Spanned::new(value.span(), name.to_string()));
                    }
                    DeValue::String(name) => {
                        if let Some(problem) = name_problem(name) {
                            self.error_help(
                                value.span(),
                                format!("invalid step name `{name}`: {problem}"),
                                NAME_RULE,
                            );
                        } else {
                            step.name = Some(Spanned::new(value.span(), name.to_string()));
                        }
                    }
                    other => self.type_error(value.span(), &format!("`name` {place}"), "a string", other),
                },
                "run" => match value.get_ref() {
                    DeValue::String(run) if run.trim().is_empty() => self.error_help(
                        value.span(),
                        format!("`run` is empty {place}"),
                        "give the shell command the step runs, for example: run = \"make all\"",
                    ),
                    DeValue::String(run) if run.contains('\0') => {
                        self.error_help(value.span(), format!("`run` contains a NUL character {place}"), NUL_HELP)
                    }
                    DeValue::String(run) => {
                        step.run = Some(run.to_string());
                        step.spans.run = value.span();
                    }
                    other => self.type_error(value.span(), &format!("`run` {place}"), "a string", other),
                },
                "dir" => match value.get_ref() {
                    DeValue::String(dir) if dir.is_empty() || dir.contains('\0') => self.error_help(
                        value.span(),
                        format!("`dir` is not a usable path {place}"),
                        "give a folder relative to the pipeline file's folder, or leave `dir` out",
                    ),
                    DeValue::String(dir) => {
                        step.dir = Some(dir.to_string());
                        step.spans.dir = value.span();
                    }
                    other => self.type_error(value.span(), &format!("`dir` {place}"), "a string", other),
                },
                "env" => {
                    step.env = self.env_table(value, &format!("`env` {place}"));
                    if let DeValue::Table(t) = value.get_ref() {
                        step.spans.env = t.iter().map(|(k, v)| (k.get_ref().to_string(), v.span())).collect();
                    }
                }
                "secret_env" => {
                    for var in self.string_list(value, &format!("`secret_env` {place}")).unwrap_or_default() {
                        let name = var.get_ref();
                        if name.is_empty() || name.contains('=') {
                            self.error_help(
                                var.span(),
                                format!("`{name}` in `secret_env` {place} is not a valid environment variable name"),
                                "list the names of variables from stepwise's own environment, for example secret_env = [\"API_TOKEN\"]",
                            );
                        } else if !step.secret_env.iter().any(|s| s.get_ref() == name) {
                            step.secret_env.push(var);
                        }
                    }
                }
                "after" => step.after = self.string_list(value, &format!("`after` {place}")),
                "inputs" => {
                    for input in self.string_list(value, &format!("`inputs` {place}")).unwrap_or_default() {
                        match input_problem(input.get_ref()) {
                            Some(problem) => self.error_help(
                                input.span(),
                                format!("invalid input `{}` {place}: {problem}", input.get_ref()),
                                "an input is a file, a folder or a glob pattern such as \"data/*.csv\", relative to the step's dir",
                            ),
                            None => {
                                step.spans.inputs.push(input.span());
                                step.inputs.push(input.into_inner());
                            }
                        }
                    }
                }
                "outputs" => {
                    for output in self.string_list(value, &format!("`outputs` {place}")).unwrap_or_default() {
                        match output_problem(output.get_ref()) {
                            Some(problem) => self.error_help(
                                output.span(),
                                format!("invalid output `{}` {place}: {problem}", output.get_ref()),
                                "an output is a file or folder inside the pipeline's folder, relative to the step's dir; stepwise removes it when an attempt fails",
                            ),
                            None => step.outputs.push(Spanned::new(output.span(), output.into_inner())),
                        }
                    }
                }
                "keep_failed_outputs" => match value.get_ref() {
                    DeValue::Boolean(b) => step.keep_failed_outputs = *b,
                    other => self.type_error(value.span(), &format!("`keep_failed_outputs` {place}"), "true or false", other),
                },
                "timeout" => match self.duration(value, &format!("`timeout` {place}")) {
                    // Below a millisecond is a typo, not a time limit: it would fail every attempt at once.
                    Some(d) if d < Duration::from_millis(1) => self.error_help(value.span(), format!("`timeout` must be at least 1ms {place}"), "leave `timeout` out for no time limit"),
                    d => step.timeout = d,
                },
                "retries" => {
                    if let Some(n) = self.count(value, &format!("`retries` {place}")) {
                        step.retries = n;
                    }
                }
                "retry_delay" => {
                    if let Some(d) = self.duration(value, &format!("`retry_delay` {place}")) {
                        step.retry_delay = d;
                    }
                }
                "executor" => step.executor = self.executor(value, &place),
                "slurm" => {
                    let what = format!("[step.slurm] {}", place.replacen("in ", "of ", 1));
                    self.slurm_table(value, &what, &mut step.slurm, false);
                }
                "matrix" => {
                    template_span = key.span();
                    matrix = self.matrix_table(value, &place);
                }
                "matrix_from" => {
                    template_span = key.span();
                    matrix_from = self.matrix_from(value, &place);
                }
                "for_each" => match value.get_ref() {
                    DeValue::String(pattern) => match glob::Pattern::new(pattern) {
                        Ok(_) => {
                            template_span = key.span();
                            for_each = Some(Spanned::new(value.span(), pattern.to_string()));
                        }
                        Err(e) => self.error_help(
                            value.span(),
                            format!("`for_each` {place} is not a valid glob pattern ({})", e.msg),
                            "for example: for_each = \"raw/*.jpg\"",
                        ),
                    },
                    other => self.type_error(value.span(), &format!("`for_each` {place}"), "a glob pattern string", other),
                },
                _ => misspelt.extend(self.unknown_key(key, STEP_KEYS, &place)),
            }
        }
        if for_each.is_some() && (matrix.is_some() || matrix_from.is_some()) {
            self.error_help(
                template_span.clone(),
                format!("`for_each` cannot be combined with `matrix` or `matrix_from` {place}"),
                "a step expands over files or over values, not both; split it in two steps",
            );
        } else if is_template {
            let refused = |key: &str, parsed: bool| table.contains_key(key) && !parsed;
            let broken = refused("matrix", matrix.is_some())
                || refused("matrix_from", matrix_from.is_some())
                || refused("for_each", for_each.is_some());
            step.template = Some(expand::TemplateSpec {
                broken,
                matrix: matrix.unwrap_or_default(),
                matrix_from,
                for_each,
                span: template_span,
            });
        }
        // A misspelt `name` was already reported as such; "no name" would be noise.
        if step.name.is_none() && !table.contains_key("name") && !misspelt.contains(&"name") {
            self.error_help(
                step.span.clone(),
                format!("step #{number} has no `name`"),
                "add a line such as: name = \"build\"",
            );
        }
        if step.run.is_none() && !table.contains_key("run") && !misspelt.contains(&"run") {
            self.error_help(
                step.span.clone(),
                format!("step #{number} has no `run`"),
                "add the shell command the step runs, for example: run = \"make all\"",
            );
        }
        step
    }

    fn type_error(&mut self, span: Range<usize>, what: &str, expected: &str, found: &DeValue<'_>) {
        let help = match expected {
            "a string" => "put the text in double quotes, for example \"text\"",
            "an array of strings" => "write a list in brackets, for example [\"a\", \"b\"]",
            "true or false" => "write true or false, without quotes",
            _ => "for example KEY = \"value\", KEY = 3 or KEY = true",
        };
        self.error_help(
            span,
            format!("{what} must be {expected}, found {}", found.type_str()),
            help,
        );
    }

    /// `executor = "local"` or `"slurm"`.
    fn executor(&mut self, value: &Value<'_>, place: &str) -> Option<Executor> {
        match value.get_ref().as_str() {
            Some("local") => Some(Executor::Local),
            Some("slurm") => Some(Executor::Slurm),
            _ => {
                self.error_help(
                    value.span(),
                    format!("`executor` {place} must be \"local\" or \"slurm\""),
                    "\"local\" runs steps as processes here (the default); \"slurm\" submits each attempt to a Slurm cluster with sbatch",
                );
                None
            }
        }
    }

    /// `[pipeline.slurm]` (with `poll_interval`, returned) or `[step.slurm]`,
    /// into `out`.
    fn slurm_table(
        &mut self,
        value: &Value<'_>,
        what: &str,
        out: &mut SlurmResources,
        pipeline: bool,
    ) -> Option<Duration> {
        let DeValue::Table(table) = value.get_ref() else {
            self.error_help(
                value.span(),
                format!("{what} must be a table, found {}", value.get_ref().type_str()),
                "write the settings under a header, for example [step.slurm] after the step's other keys, then partition = \"short\"",
            );
            return None;
        };
        let mut poll = None;
        for (key, v) in table.iter() {
            let name = key.get_ref().as_ref();
            let field = format!("`{name}` in {what}");
            match name {
                "partition" | "account" | "qos" => {
                    let Some(text) = self.slurm_word(v, &field, name) else { continue };
                    match name {
                        "partition" => out.partition = Some(text),
                        "account" => out.account = Some(text),
                        _ => out.qos = Some(text),
                    }
                }
                "cpus" => {
                    if let Some(n) = self.positive_integer(v, &field) {
                        match u32::try_from(n) {
                            Ok(n) => out.cpus = Some(n),
                            Err(_) => self.error_help(v.span(), format!("{field} is too large"), "give the CPUs one task needs, for example 4"),
                        }
                    }
                }
                "mem" => out.mem = self.slurm_mem(v, &field),
                "time" => match self.duration(v, &field) {
                    Some(d) if d.is_zero() => self.error_help(v.span(), format!("{field} must be longer than 0"), "leave `time` out to use the step's `timeout`, or the partition's limit"),
                    d => out.time = d,
                },
                "gpus" => out.gpus = self.slurm_gpus(v, &field),
                "sbatch_args" => {
                    for arg in self.string_list(v, &field).unwrap_or_default() {
                        match sbatch_arg_problem(arg.get_ref()) {
                            Some(help) => self.error_help(
                                arg.span(),
                                format!("`{}` in {what} is not allowed", arg.get_ref()),
                                help,
                            ),
                            None if !arg.get_ref().starts_with('-') => self.error_help(
                                arg.span(),
                                format!("`{}` in {what} is not an sbatch option", arg.get_ref()),
                                "write each option with its value in one string, for example \"--constraint=avx2\"",
                            ),
                            None => out.sbatch_args.push(arg.into_inner()),
                        }
                    }
                }
                "poll_interval" if pipeline => match self.duration(v, &field) {
                    Some(d) if d < Duration::from_millis(100) => self.error_help(
                        v.span(),
                        format!("{field} must be at least 100ms"),
                        "each poll is one squeue command for all jobs; \"1s\" (the default) is plenty",
                    ),
                    d => poll = d,
                },
                _ => {
                    let allowed = if pipeline { PIPELINE_SLURM_KEYS } else { SLURM_KEYS };
                    self.unknown_key(key, allowed, &format!("in {what}"));
                }
            }
        }
        poll
    }

    /// A partition, account or QOS name: one word.
    fn slurm_word(&mut self, v: &Value<'_>, what: &str, key: &str) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s)
                if !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c == '\0') =>
            {
                Some(s.to_string())
            }
            DeValue::String(_) => {
                self.error_help(
                    v.span(),
                    format!("{what} must be a name without spaces"),
                    format!("write the name Slurm knows it by (`sacctmgr show assoc` and `sinfo` list them), for example {key} = \"short\""),
                );
                None
            }
            other => {
                self.type_error(v.span(), what, "a string", other);
                None
            }
        }
    }

    /// `mem = 4096` (megabytes) or `"4G"`, `"500M"`, `"1T"`.
    fn slurm_mem(&mut self, v: &Value<'_>, what: &str) -> Option<String> {
        let text = match v.get_ref() {
            DeValue::Integer(_) => self.positive_integer(v, what)?.to_string(),
            DeValue::String(s) => s.trim().to_ascii_uppercase(),
            other => {
                self.type_error(v.span(), what, "a size such as \"4G\"", other);
                return None;
            }
        };
        let digits = text.trim_end_matches(['K', 'M', 'G', 'T']);
        let unit_len = text.len() - digits.len();
        if unit_len <= 1
            && !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && digits.bytes().any(|b| b != b'0')
        {
            Some(text)
        } else {
            self.error_help(
                v.span(),
                format!("{what} must be a size: a whole number and a unit K, M, G or T"),
                "for example mem = \"4G\" or mem = \"500M\" (a bare number means megabytes)",
            );
            None
        }
    }

    /// `gpus = 2` or `"a100:2"`.
    fn slurm_gpus(&mut self, v: &Value<'_>, what: &str) -> Option<String> {
        let text = match v.get_ref() {
            DeValue::Integer(_) => return self.positive_integer(v, what).map(|n| n.to_string()),
            DeValue::String(s) => s.to_string(),
            other => {
                self.type_error(v.span(), what, "a count or \"type:count\"", other);
                return None;
            }
        };
        let (kind, count) = match text.rsplit_once(':') {
            Some((kind, count)) => (Some(kind), count),
            None => (None, text.as_str()),
        };
        let kind_ok = kind.is_none_or(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        });
        let count_ok = !count.is_empty()
            && count.bytes().all(|b| b.is_ascii_digit())
            && count.bytes().any(|b| b != b'0');
        if kind_ok && count_ok {
            Some(text)
        } else {
            self.error_help(
                v.span(),
                format!("{what} must be a number of GPUs, or \"type:count\""),
                "for example gpus = 1 or gpus = \"a100:2\"",
            );
            None
        }
    }

    fn string_list(&mut self, value: &Value<'_>, what: &str) -> Option<Vec<Spanned<String>>> {
        let DeValue::Array(items) = value.get_ref() else {
            self.type_error(value.span(), what, "an array of strings", value.get_ref());
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) if s.contains('\0') => {
                    self.error_help(
                        item.span(),
                        format!("{what} contains a NUL character"),
                        NUL_HELP,
                    );
                    ok = false;
                }
                DeValue::String(s) => out.push(Spanned::new(item.span(), s.to_string())),
                other => {
                    self.type_error(
                        item.span(),
                        &format!("each entry of {what}"),
                        "a string",
                        other,
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// `matrix = { sample = ["s1", "s2"], fold = [1, 2] }`.
    fn matrix_table(
        &mut self,
        value: &Value<'_>,
        place: &str,
    ) -> Option<Vec<(Spanned<String>, Vec<String>)>> {
        let DeValue::Table(table) = value.get_ref() else {
            self.error_help(
                value.span(),
                format!(
                    "`matrix` {place} must be a table, found {}",
                    value.get_ref().type_str()
                ),
                "for example: matrix = { sample = [\"s1\", \"s2\"], fold = [1, 2, 3] }",
            );
            return None;
        };
        let mut vars = Vec::new();
        let mut ok = true;
        for (key, v) in table.iter() {
            let name = key.get_ref();
            if !expand::is_variable(name) {
                self.error_help(
                    key.span(),
                    format!("`{name}` is not a usable matrix variable name {place}"),
                    "a variable name uses letters, digits and `_`, and does not start with a digit",
                );
                ok = false;
                continue;
            }
            let DeValue::Array(items) = v.get_ref() else {
                self.type_error(
                    v.span(),
                    &format!("`matrix.{name}` {place}"),
                    "a list of values",
                    v.get_ref(),
                );
                ok = false;
                continue;
            };
            if items.is_empty() {
                self.error_help(
                    v.span(),
                    format!(
                        "`matrix.{name}` {place} is empty, so the step would expand to nothing"
                    ),
                    "give it at least one value, or remove the step",
                );
                ok = false;
                continue;
            }
            let mut values = Vec::with_capacity(items.len());
            for item in items.iter() {
                match self.scalar_text(item, &format!("a value of `matrix.{name}` {place}")) {
                    Some(text) => values.push(text),
                    None => ok = false,
                }
            }
            vars.push((Spanned::new(key.span(), name.to_string()), values));
        }
        ok.then_some(vars)
    }

    /// `matrix_from = "samples.txt"` or `{ file = "samples.csv", column = "sample" }`.
    fn matrix_from(&mut self, value: &Value<'_>, place: &str) -> Option<expand::MatrixFrom> {
        match value.get_ref() {
            DeValue::String(file) => Some(expand::MatrixFrom {
                file: Spanned::new(value.span(), file.to_string()),
                column: None,
                var: "item".into(),
            }),
            DeValue::Table(t) => {
                let mut file = None;
                let mut column = None;
                let mut var = None;
                for (key, v) in t.iter() {
                    match (key.get_ref().as_ref(), v.get_ref()) {
                        ("file", DeValue::String(s)) => {
                            file = Some(Spanned::new(v.span(), s.to_string()))
                        }
                        ("column", DeValue::String(s)) => column = Some(s.to_string()),
                        ("name", DeValue::String(s)) if expand::is_variable(s) => {
                            var = Some(s.to_string())
                        }
                        ("file" | "column" | "name", other) => {
                            self.type_error(
                                v.span(),
                                &format!("`matrix_from.{}` {place}", key.get_ref()),
                                "a string (a name: letters, digits, `_`)",
                                other,
                            );
                            return None;
                        }
                        _ => {
                            self.unknown_key(
                                key,
                                &["file", "column", "name"],
                                &format!("in `matrix_from` {place}"),
                            );
                            return None;
                        }
                    }
                }
                let Some(file) = file else {
                    self.error_help(value.span(), format!("`matrix_from` {place} has no `file`"), "for example: matrix_from = { file = \"samples.csv\", column = \"sample\" }");
                    return None;
                };
                let var = var
                    .or_else(|| column.clone().filter(|c| expand::is_variable(c)))
                    .unwrap_or_else(|| "item".into());
                Some(expand::MatrixFrom { file, column, var })
            }
            other => {
                self.type_error(
                    value.span(),
                    &format!("`matrix_from` {place}"),
                    "a file name or a table",
                    other,
                );
                None
            }
        }
    }

    /// A string, number or boolean as text (numbers in decimal).
    fn scalar_text(&mut self, v: &Value<'_>, what: &str) -> Option<String> {
        let text = match v.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(i) => {
                match i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()) {
                    Ok(n) => n.to_string(),
                    Err(_) => {
                        self.error_help(
                            v.span(),
                            format!("{what} is too large a number"),
                            "write it as a string",
                        );
                        return None;
                    }
                }
            }
            DeValue::Float(f) => f.as_str().to_string(),
            DeValue::Boolean(b) => b.to_string(),
            other => {
                self.type_error(v.span(), what, "a string, number or boolean", other);
                return None;
            }
        };
        if text.contains('\0') {
            self.error_help(
                v.span(),
                format!("{what} contains a NUL character"),
                "remove the NUL byte",
            );
            return None;
        }
        Some(text)
    }

    fn env_table(&mut self, value: &Value<'_>, what: &str) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let DeValue::Table(table) = value.get_ref() else {
            self.error_help(
                value.span(),
                format!(
                    "{what} must be a table, found {}",
                    value.get_ref().type_str()
                ),
                "for example: env = { LANG = \"C\" }",
            );
            return env;
        };
        for (key, v) in table.iter() {
            let name = key.get_ref();
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                self.error_help(
                    key.span(),
                    format!("`{name}` in {what} is not a valid environment variable name"),
                    "a variable name is not empty and contains no `=`",
                );
                continue;
            }
            let text = match v.get_ref() {
                DeValue::String(s) => s.to_string(),
                DeValue::Integer(i) => {
                    match i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()) {
                        Ok(n) => n.to_string(),
                        Err(_) => {
                            self.error_help(
                                v.span(),
                                format!("`{name}` in {what} is too large a number"),
                                "write it as a string, in double quotes",
                            );
                            continue;
                        }
                    }
                }
                DeValue::Float(f) => f.as_str().to_string(),
                DeValue::Boolean(b) => b.to_string(),
                other => {
                    self.type_error(
                        v.span(),
                        &format!("`{name}` in {what}"),
                        "a string, number or boolean",
                        other,
                    );
                    continue;
                }
            };
            if text.contains('\0') {
                self.error_help(
                    v.span(),
                    format!("`{name}` in {what} contains a NUL character"),
                    NUL_HELP,
                );
                continue;
            }
            env.insert(name.to_string(), text);
        }
        env
    }

    fn duration(&mut self, value: &Value<'_>, what: &str) -> Option<Duration> {
        let parsed = match value.get_ref() {
            DeValue::String(text) => parse_duration(text),
            DeValue::Integer(i) => Err(format!(
                "a duration needs a unit, for example \"{}s\"",
                i.as_str()
            )),
            other => Err(format!("found {}", other.type_str())),
        };
        match parsed {
            Ok(d) => Some(d),
            Err(why) => {
                self.error_help(
                    value.span(),
                    format!("{what} must be a duration: {why}"),
                    "write a number and a unit (ms, s, m, h), for example \"90s\", \"1.5m\" or \"1h30m\"",
                );
                None
            }
        }
    }

    fn count(&mut self, value: &Value<'_>, what: &str) -> Option<u32> {
        let n = match value.get_ref() {
            DeValue::Integer(i) => {
                i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok()
            }
            _ => None,
        };
        match n.and_then(|n| u32::try_from(n).ok()).filter(|&n| n <= 1000) {
            Some(n) => Some(n),
            None => {
                self.error_help(
                    value.span(),
                    format!("{what} must be a whole number from 0 to 1000"),
                    "write a number without quotes, for example 2",
                );
                None
            }
        }
    }

    fn positive_integer(&mut self, value: &Value<'_>, what: &str) -> Option<usize> {
        let n = match value.get_ref() {
            DeValue::Integer(i) => {
                i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok()
            }
            _ => None,
        };
        match n {
            Some(n) if n >= 1 => usize::try_from(n).ok(),
            _ => {
                self.error_help(
                    value.span(),
                    format!("{what} must be a positive integer"),
                    "write a number of 1 or more without quotes, for example 4",
                );
                None
            }
        }
    }

    /// Resolves names and dependencies; reports duplicates, unknown names and
    /// cycles.
    fn validate(&mut self, raw: RawPipeline, root: &Path) -> Pipeline {
        let mut index = NameIndex::with_capacity_and_hasher(raw.steps.len(), Default::default());
        for (i, step) in raw.steps.iter().enumerate() {
            if let Some(name) = &step.name {
                index
                    .entry(name.get_ref().clone())
                    .or_insert(StepId(i as u32));
            }
        }
        self.check_unique_names(&raw.steps);
        let mut names: Vec<&str> = raw
            .steps
            .iter()
            .filter_map(|s| s.name.as_ref().map(|n| n.get_ref().as_str()))
            .collect();
        // Templates, by name, with their expansions in file order.
        let mut templates: Vec<(String, Vec<StepId>)> = Vec::new();
        for (i, step) in raw.steps.iter().enumerate() {
            if let Some(expand::Expanded { template, .. }) = &step.expanded_from {
                match templates.iter_mut().find(|(t, _)| t == template) {
                    Some((_, ids)) => ids.push(StepId(i as u32)),
                    None => templates.push((template.clone(), vec![StepId(i as u32)])),
                }
            }
        }
        names.extend(templates.iter().map(|(t, _)| t.as_str()));
        // The steps of each entry of the file: one, or a template's expansions.
        let mut by_entry: Vec<Vec<StepId>> = Vec::new();
        for (i, step) in raw.steps.iter().enumerate() {
            if by_entry.len() <= step.entry {
                by_entry.resize(step.entry + 1, Vec::new());
            }
            by_entry[step.entry].push(StepId(i as u32));
        }

        // Edges, with the span of the `after` entry that made each explicit one.
        let mut edges: Vec<Vec<(StepId, Option<Range<usize>>)>> =
            Vec::with_capacity(raw.steps.len());
        for (i, step) in raw.steps.iter().enumerate() {
            let mut deps: Vec<(StepId, Option<Range<usize>>)> = Vec::new();
            // What `deps` holds, for a step that needs every one of a
            // template's N expansions: a scan of `deps` made that N².
            let mut listed: std::collections::HashSet<StepId, foldhash::fast::RandomState> =
                Default::default();
            match &step.after {
                // Without `after`: every step of the entry just before it in
                // the file (all of a template's expansions, if it is one).
                None if step.entry > 0 => {
                    for &id in &by_entry[step.entry - 1] {
                        deps.push((id, None));
                    }
                }
                None => {}
                Some(after) => {
                    for dep in after {
                        match resolve_after(dep.get_ref(), &index, &templates, &raw.steps) {
                            Ok(ids) => {
                                for id in ids {
                                    if id.index() != i && listed.insert(id) {
                                        deps.push((id, Some(dep.span())));
                                    } else if id.index() == i {
                                        // A self-reference is a cycle, reported as one.
                                        deps.push((id, Some(dep.span())));
                                    }
                                }
                            }
                            Err(Some(why)) => self.error_help(
                                dep.span(),
                                format!("`after` names `{}`, but {why}", dep.get_ref()),
                                "`[...]` selects expansions of a template by their values, for example after = [\"align[sample={sample}]\"]",
                            ),
                            Err(None)
                                if self.unexpanded.iter().any(|t| {
                                    *t == *dep.get_ref()
                                        || parse_selector(dep.get_ref())
                                            .is_some_and(|(template, _)| template == *t)
                                }) => {}
                            Err(None) => {
                                let help = match did_you_mean(dep.get_ref(), names.iter().copied())
                                {
                                    Some(close) => format!("did you mean `{close}`?"),
                                    None => "`after` lists the names of other steps in this file"
                                        .to_string(),
                                };
                                self.error_help(
                                    dep.span(),
                                    format!("`after` names an unknown step `{}`", dep.get_ref()),
                                    help,
                                );
                            }
                        }
                    }
                }
            }
            edges.push(deps);
        }
        for (number, step) in raw.steps.iter().enumerate() {
            // A value written in the file is hashed into the fingerprint: a
            // secret there would be both in clear in the file and guessable
            // from the journal. One name cannot be both.
            for var in &step.secret_env {
                let name = var.get_ref();
                let place = if step.env.contains_key(name) {
                    "this step's `env`"
                } else if raw.env.contains_key(name) {
                    "`[pipeline] env`"
                } else {
                    continue;
                };
                self.error_help(
                    var.span(),
                    format!("`{name}` is in `secret_env` and also set in {place}"),
                    "a secret comes from stepwise's own environment (export it before `stepwise run`); remove it from `env`",
                );
            }
            for output in &step.outputs {
                if let Err(problem) = inside_root(root, step.dir.as_deref(), output.get_ref()) {
                    let place = match &step.name {
                        Some(name) => format!("in step `{}`", name.get_ref()),
                        None => format!("in step #{}", number + 1),
                    };
                    self.error_help(
                        output.span(),
                        format!("invalid output `{}` {place}: {problem}", output.get_ref()),
                        "stepwise removes the outputs of a failed attempt, so they must lie inside the pipeline's folder",
                    );
                }
            }
        }
        // The edges known so far are real ones, so a cycle among them is
        // worth reporting alongside the other problems.
        self.check_cycles(&raw.steps, &edges);

        // Line numbers for every step from one pass over the text, not one
        // scan per step (a 10,000-step file would take quadratic time).
        let line_starts: Vec<usize> = std::iter::once(0)
            .chain(self.source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let mut steps: Vec<Step> = raw
            .steps
            .into_iter()
            .zip(edges)
            .map(|(s, deps)| Step {
                // The values moved, not copied: a million expansions hold a
                // million of them.
                template: s.expanded_from.as_ref().map(|e| e.template.clone()),
                values: s.expanded_from.map(|e| e.values).unwrap_or_default(),
                output_paths: s
                    .outputs
                    .iter()
                    .filter_map(|o| inside_root(root, s.dir.as_deref(), o.get_ref()).ok())
                    .collect(),
                line: line_of(&line_starts, s.span.start),
                name: s.name.map(Spanned::into_inner).unwrap_or_default(),
                run: s.run.unwrap_or_default(),
                dir: s.dir,
                env: s.env,
                secret_env: s.secret_env.into_iter().map(Spanned::into_inner).collect(),
                after: deps.into_iter().map(|(d, _)| d).collect(),
                inputs: s.inputs,
                outputs: s.outputs.into_iter().map(Spanned::into_inner).collect(),
                keep_failed_outputs: s.keep_failed_outputs,
                timeout: s.timeout,
                retries: s.retries,
                retry_delay: s.retry_delay,
                executor: s.executor,
                slurm: s.slurm,
            })
            .collect();
        // Collected in place, the steps would keep the allocation of the
        // larger steps as written for as long as the pipeline lives.
        steps.shrink_to_fit();
        Pipeline {
            path: self.path.to_path_buf(),
            root: root.to_path_buf(),
            shell: raw.shell.unwrap_or_else(|| vec!["sh".into(), "-c".into()]),
            env: raw.env,
            sync: raw.sync,
            jobs: raw.jobs,
            templates,
            expansion_inputs: Vec::new(),
            kill_grace: raw.kill_grace.unwrap_or(DEFAULT_KILL_GRACE),
            executor: raw.executor,
            slurm: raw.slurm,
            slurm_poll: raw.slurm_poll.unwrap_or(DEFAULT_SLURM_POLL),
            steps,
            index,
        }
    }

    /// Reports names given twice. Steps, expansions and templates share one
    /// namespace: `after = ["call"]` and `stepwise run call` must mean one
    /// thing, so a template's name (`call` for `call-{sample}`) can be no
    /// step's name, nor another template's. One message per `[[step]]`
    /// entry, at its `name`, naming the line of the first definition.
    fn check_unique_names(&mut self, steps: &[RawStep]) {
        /// What holds a name.
        #[derive(Clone, Copy)]
        enum Holder<'s> {
            Step,
            Template(&'s str),
            Expansion(&'s str),
        }
        impl Holder<'_> {
            /// How the message about a second holder ends.
            fn told(self, name: &str) -> String {
                match self {
                    Holder::Step => String::new(),
                    Holder::Template(written) if written == name => String::new(),
                    Holder::Template(written) => {
                        format!(": the template `{written}` is called `{name}`")
                    }
                    Holder::Expansion(written) => {
                        format!(": an expansion of `{written}` is named `{name}`")
                    }
                }
            }
            /// The first holder, for the help.
            fn first(self, name: &str, line: usize) -> String {
                match self {
                    Holder::Step => {
                        format!("a step with this name is already defined on line {line}")
                    }
                    Holder::Template(written) if written == name => {
                        format!("the template `{name}` on line {line} has this name already")
                    }
                    Holder::Template(written) => {
                        format!(
                            "the template `{written}` on line {line} is called `{name}` already"
                        )
                    }
                    Holder::Expansion(written) => {
                        format!(
                            "an expansion of `{written}` on line {line} is named `{name}` already"
                        )
                    }
                }
            }
        }
        let mut first: HashMap<&str, (Holder<'_>, Range<usize>)> = HashMap::new();
        // The entries whose template name is in `first` already.
        let mut entries_seen: std::collections::HashSet<usize> = Default::default();
        let mut reported: std::collections::HashSet<usize> = Default::default();
        for step in steps {
            let Some(name) = &step.name else { continue };
            let mut holders = Vec::with_capacity(2);
            if let Some(e) = &step.expanded_from
                && entries_seen.insert(step.entry)
            {
                holders.push((e.template.as_str(), Holder::Template(&e.written)));
            }
            holders.push((
                name.get_ref().as_str(),
                match &step.expanded_from {
                    Some(e) => Holder::Expansion(&e.written),
                    None => Holder::Step,
                },
            ));
            for (held, holder) in holders {
                match first.get(held) {
                    None => {
                        first.insert(held, (holder, name.span()));
                    }
                    Some((earlier, span)) => {
                        if !reported.insert(step.entry) {
                            continue;
                        }
                        let at = Diagnostic::new("").at(self.path, self.source, span.clone());
                        let line = at.location.map_or(0, |l| l.line);
                        let template = matches!(earlier, Holder::Template(_))
                            || matches!(holder, Holder::Template(_));
                        let why = if !template {
                            ""
                        } else {
                            " (a template's name is how `after` and `stepwise run` name all of its expansions)"
                        };
                        self.error_help(
                            name.span(),
                            format!("duplicate step name `{held}`{}", holder.told(held)),
                            format!("{}; names must be unique{why}", earlier.first(held, line)),
                        );
                    }
                }
            }
        }
    }

    /// Finds one cycle, if any, with an iterative depth-first search, and
    /// reports it as `a -> b -> a` at the `after` entry that closes it.
    fn check_cycles(&mut self, steps: &[RawStep], edges: &Edges) {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Finished,
        }
        let mut mark = vec![Mark::New; steps.len()];
        for start in 0..steps.len() {
            if mark[start] != Mark::New {
                continue;
            }
            // (step, index of the next edge to follow)
            let mut path: Vec<(usize, usize)> = vec![(start, 0)];
            mark[start] = Mark::OnPath;
            while let Some(&mut (node, ref mut next)) = path.last_mut() {
                if let Some((dep, _)) = edges[node].get(*next) {
                    *next += 1;
                    let dep = dep.index();
                    match mark[dep] {
                        Mark::New => {
                            mark[dep] = Mark::OnPath;
                            path.push((dep, 0));
                        }
                        Mark::OnPath => {
                            let from = path.iter().position(|&(n, _)| n == dep).unwrap_or(0);
                            // In the direction of `after`: each step needs the next.
                            let mut cycle: Vec<usize> =
                                path[from..].iter().map(|&(n, _)| n).collect();
                            let first = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap_or(0);
                            cycle.rotate_left(first);
                            let text = cycle
                                .iter()
                                .chain(std::iter::once(&cycle[0]))
                                .map(|&n| {
                                    steps[n].name.as_ref().map_or("?", |s| s.get_ref().as_str())
                                })
                                .collect::<Vec<_>>()
                                .join(" -> ");
                            // Point at an explicit `after` entry of the cycle: that is
                            // what the user can change.
                            let span = (0..cycle.len())
                                .find_map(|i| {
                                    let (a, b) = (cycle[i], cycle[(i + 1) % cycle.len()]);
                                    edges[a]
                                        .iter()
                                        .find(|(d, _)| d.index() == b)
                                        .and_then(|(_, s)| s.clone())
                                })
                                .unwrap_or_else(|| steps[cycle[0]].span.clone());
                            self.error_help(
                                span,
                                format!("dependency cycle: {text}"),
                                "`x -> y` means x runs after y, so no step here can ever start; remove one of these dependencies",
                            );
                            return;
                        }
                        Mark::Finished => {}
                    }
                } else {
                    mark[node] = Mark::Finished;
                    path.pop();
                }
            }
        }
    }
}

/// How to fix common TOML mistakes, from the parser's message.
fn toml_help(message: &str) -> &'static str {
    if message.contains("must be quoted") {
        "put text values in double quotes, for example name = \"build\""
    } else if message.contains("table") {
        "a step starts with the header `[[step]]`, two brackets on each side; the settings with `[pipeline]`"
    } else if message.contains("string") {
        "close the string with the quote it opened with, on the same line; a string over several lines goes in triple quotes \"\"\"...\"\"\""
    } else if message.contains("duplicate key") {
        "each key appears once per table; a second step starts with its own `[[step]]` header"
    } else if message.contains("key") {
        "a line is `key = value`; text values go in double quotes"
    } else {
        "check the quotes, brackets and commas around here; the README shows a complete pipeline file"
    }
}

const NUL_HELP: &str = "remove the NUL character (\\u0000); no command or variable can hold one";

/// Parses a humane duration: one or more `<number><unit>` with units `ms`,
/// `s`, `m`, `h`, e.g. `90s`, `1.5m`, `1h30m`, `250ms`.
///
/// ```
/// use std::time::Duration;
/// use stepwise::pipeline::parse_duration;
/// assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert!(parse_duration("90").is_err());
/// ```
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("it is empty".into());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("`{text}` does not start with a number"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match rest[..unit_len].trim() {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("`{text}` has no unit")),
            unit => return Err(format!("unknown unit `{unit}`")),
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    if !total.is_finite() || total > 365.0 * 86_400.0 {
        return Err(format!("`{text}` is longer than a year"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// The steps an `after` entry names: a step, every expansion of a template,
/// or the expansions of a template whose values include `key=value` pairs
/// (`align[sample=s1]`). `Err(None)`: no such name; `Err(Some(why))`: the
/// pattern matches nothing.
fn resolve_after(
    entry: &str,
    index: &NameIndex,
    templates: &[(String, Vec<StepId>)],
    steps: &[RawStep],
) -> std::result::Result<Vec<StepId>, Option<String>> {
    if let Some(&id) = index.get(entry) {
        return Ok(vec![id]);
    }
    if let Some((_, ids)) = templates.iter().find(|(t, _)| t == entry) {
        return Ok(ids.clone());
    }
    let Some((template, pairs)) = expand::parse_selector(entry) else {
        return Err(None);
    };
    let Some((_, ids)) = templates.iter().find(|(t, _)| *t == template) else {
        return Err(None);
    };
    let matching: Vec<StepId> = ids
        .iter()
        .copied()
        .filter(|id| {
            let values = steps[id.index()]
                .expanded_from
                .as_ref()
                .map(|e| e.values.as_slice())
                .unwrap_or(&[]);
            pairs
                .iter()
                .all(|(k, v)| values.iter().any(|(vk, vv)| vk == k && vv == v))
        })
        .collect();
    if matching.is_empty() {
        Err(Some(format!(
            "no expansion of `{template}` has those values"
        )))
    } else {
        Ok(matching)
    }
}

/// The 1-based line of a byte offset, given where each line starts.
fn line_of(line_starts: &[usize], offset: usize) -> usize {
    line_starts.partition_point(|&start| start <= offset).max(1)
}

/// Why an input pattern is not acceptable, if it is not.
fn input_problem(input: &str) -> Option<String> {
    if input.trim().is_empty() {
        return Some("it is empty".into());
    }
    glob::Pattern::new(input)
        .err()
        .map(|e| format!("not a valid glob pattern ({})", e.msg))
}

/// Why an output path is not acceptable on its own, if it is not. Where it
/// points is checked once the step's dir is known ([`inside_root`]).
fn output_problem(output: &str) -> Option<String> {
    if output.trim().is_empty() {
        return Some("it is empty".into());
    }
    if Path::new(output).is_absolute() {
        return Some("it is an absolute path; outputs live inside the pipeline's folder".into());
    }
    if output.contains(['*', '?', '[']) {
        return Some(
            "outputs cannot be glob patterns; declare the folder they are written to".into(),
        );
    }
    None
}

/// `root/dir/output`, normalised without touching the disk, if it lies
/// strictly inside `root` and outside the state dir: outputs are removed when
/// an attempt fails, so they must never point anywhere else.
fn inside_root(
    root: &Path,
    dir: Option<&str>,
    output: &str,
) -> std::result::Result<PathBuf, String> {
    let normal = crate::workspace::normalize(&root.join(dir.unwrap_or(".")).join(output));
    match normal.strip_prefix(root) {
        Ok(rel) if rel.as_os_str().is_empty() => Err("it is the pipeline's folder itself".into()),
        Ok(rel)
            if rel
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .is_some_and(crate::state::dir::is_state_dir_name) =>
        {
            Err("it is inside stepwise's state dir".into())
        }
        Ok(_) => Ok(normal),
        Err(_) => Err(format!(
            "it is outside the pipeline's folder {}",
            root.display()
        )),
    }
}

/// Why an `sbatch_args` entry is refused, if it is: the hint to give.
fn sbatch_arg_problem(arg: &str) -> Option<&'static str> {
    let option = arg.split_once('=').map_or(arg, |(o, _)| o);
    RESERVED_SBATCH_ARGS
        .iter()
        .find(|(reserved, _)| {
            // `-ofile` is `-o file`: a short option takes its value glued on.
            option == *reserved
                || (reserved.len() == 2
                    && !reserved.starts_with("--")
                    && option.starts_with(reserved))
        })
        .map(|(_, why)| *why)
}

/// What a step name may be, for messages.
pub(crate) const NAME_RULE: &str =
    "a name uses letters, digits, `_`, `-` and `.`, and does not start with `.` or `-`";

/// Why a step name is not acceptable, if it is not.
pub(crate) fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Some("it starts with `.` or `-`");
    }
    if name.len() > 200 {
        return Some("it is longer than 200 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Some("it contains a character other than letters, digits, `_`, `-` and `.`");
    }
    None
}

/// The span of a `[[step]]` header for a table span, so "missing key"
/// messages point at the header line rather than the whole table.
fn header_span(source: &str, span: Range<usize>) -> Range<usize> {
    let start = span.start.min(source.len());
    let end = source[start..]
        .find('\n')
        .map_or(source.len(), |i| start + i)
        .min(span.end.max(start + 1));
    start..end.max(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> std::result::Result<Pipeline, Vec<Diagnostic>> {
        match Pipeline::parse(Path::new("stepwise.toml"), Path::new("/p"), src) {
            Ok(p) => Ok(p),
            Err(Error::Invalid(d)) => Err(d),
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    fn first_error(src: &str) -> String {
        parse(src).expect_err("should be invalid")[0].to_string()
    }

    #[test]
    fn a_plain_list_is_a_sequence() {
        let p = parse(
            r#"
            [[step]]
            name = "a"
            run = "x"
            [[step]]
            name = "b"
            run = "y"
            [[step]]
            name = "c"
            run = "z"
            after = []
            "#,
        )
        .unwrap();
        assert_eq!(p.steps[0].after, []);
        assert_eq!(p.steps[1].after, [StepId(0)]);
        assert_eq!(p.steps[2].after, []);
        assert_eq!(p.shell, ["sh", "-c"]);
    }

    #[test]
    fn pipeline_settings() {
        let p = parse(
            r#"
            [pipeline]
            shell = ["bash", "-eu", "-c"]
            env = { LANG = "C", PORT = 8080, DEBUG = true, HEX = 0x1F, OCT = 0o17, PLUS = +5, BIG = 1_000 }
            sync = "always"
            jobs = 4
            [[step]]
            name = "a"
            run = "x"
            dir = "work"
            "#,
        )
        .unwrap();
        assert_eq!(p.shell, ["bash", "-eu", "-c"]);
        assert_eq!(p.env["PORT"], "8080");
        assert_eq!(p.env["DEBUG"], "true");
        assert_eq!(
            [&p.env["HEX"], &p.env["OCT"], &p.env["PLUS"], &p.env["BIG"]],
            ["31", "15", "5", "1000"]
        );
        assert_eq!(p.sync, SyncMode::Always);
        assert_eq!(p.jobs, Some(4));
        assert_eq!(p.step_dir(StepId(0)), Path::new("/p/work"));
    }

    #[test]
    fn execution_settings() {
        let p = parse(
            r#"
            [pipeline]
            kill_grace = "2s"
            [[step]]
            name = "a"
            run = "x"
            timeout = "1m30s"
            retries = 2
            retry_delay = "250ms"
            "#,
        )
        .unwrap();
        assert_eq!(p.kill_grace, Duration::from_secs(2));
        assert_eq!(p.steps[0].timeout, Some(Duration::from_secs(90)));
        assert_eq!(p.steps[0].retries, 2);
        assert_eq!(p.steps[0].retry_delay, Duration::from_millis(250));
        let e = first_error("[[step]]\nname = \"a\"\nrun = \"x\"\ntimeout = 90\n");
        assert!(e.contains("needs a unit"), "{e}");
        let e = first_error("[[step]]\nname = \"a\"\nrun = \"x\"\nretries = -1\n");
        assert!(e.contains("whole number"), "{e}");
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("1.5.2s").is_err());
    }

    #[test]
    fn slurm_settings_fall_back_to_the_pipelines() {
        let p = parse(
            r#"
            [pipeline]
            executor = "slurm"
            [pipeline.slurm]
            partition = "short"
            account = "lab"
            mem = 2048
            sbatch_args = ["--constraint=avx2"]
            poll_interval = "250ms"
            [[step]]
            name = "a"
            run = "x"
            [step.slurm]
            partition = "long"
            cpus = 8
            mem = "32g"
            gpus = "a100:2"
            time = "1h30m"
            sbatch_args = ["--exclusive"]
            [[step]]
            name = "b"
            run = "x"
            executor = "local"
            "#,
        )
        .unwrap();
        assert_eq!(p.executor, Executor::Slurm);
        assert_eq!(p.slurm_poll, Duration::from_millis(250));
        let a = p.slurm_resources(StepId(0));
        assert_eq!(a.partition.as_deref(), Some("long"));
        assert_eq!(a.account.as_deref(), Some("lab"));
        assert_eq!(a.cpus, Some(8));
        assert_eq!(a.mem.as_deref(), Some("32G"));
        assert_eq!(a.gpus.as_deref(), Some("a100:2"));
        assert_eq!(a.time, Some(Duration::from_secs(5400)));
        assert_eq!(a.sbatch_args, ["--constraint=avx2", "--exclusive"]);
        assert_eq!(p.slurm_resources(StepId(1)).mem.as_deref(), Some("2048"));
        assert_eq!(p.executor_of(StepId(0), None), Executor::Slurm);
        assert_eq!(p.executor_of(StepId(1), None), Executor::Local);
        // `--executor` changes the default, not what a step asks for.
        assert_eq!(
            p.executor_of(StepId(0), Some(Executor::Local)),
            Executor::Local
        );
        assert_eq!(
            p.executor_of(StepId(1), Some(Executor::Slurm)),
            Executor::Local
        );
        let plain = parse("[[step]]\nname = \"a\"\nrun = \"x\"\n").unwrap();
        assert_eq!(plain.executor_of(StepId(0), None), Executor::Local);
        assert_eq!(plain.slurm_poll, DEFAULT_SLURM_POLL);
    }

    #[test]
    fn sbatch_options_stepwise_sets_are_refused() {
        for (arg, why) in [
            ("--output=x", "log"),
            ("-ox", "log"),
            ("--job-name=x", "named"),
            ("--wait", "stall"),
            ("--array=1-4", "matrix"),
            ("--chdir=/x", "`dir`"),
            ("--parsable", "job id"),
        ] {
            let e = first_error(&format!(
                "[[step]]\nname = \"a\"\nrun = \"x\"\n[step.slurm]\nsbatch_args = [\"{arg}\"]\n"
            ));
            assert!(
                e.contains("is not allowed") && e.contains(why),
                "{arg}: {e}"
            );
        }
        for ok in [
            "--account=x",
            "-A",
            "--exclusive",
            "--hold",
            "--requeue",
            "--export=NONE",
        ] {
            assert_eq!(sbatch_arg_problem(ok), None, "{ok}");
        }
    }

    #[test]
    fn outputs_must_stay_inside_the_pipeline_folder() {
        let ok = parse(
            "[[step]]\nname = \"a\"\nrun = \"x\"\ndir = \"w\"\noutputs = [\"out.csv\", \"../plots/\"]\ninputs = [\"data/*.csv\"]\n",
        )
        .unwrap();
        assert_eq!(
            ok.output_paths(StepId(0)),
            [Path::new("/p/w/out.csv"), Path::new("/p/plots")]
        );
        for (bad, why) in [
            ("/etc/passwd", "absolute"),
            ("../../x", "outside the pipeline's folder"),
            (".", "folder itself"),
            ("..", "outside"),
            (".stepwise/x", "state dir"),
            ("*.png", "glob"),
        ] {
            let e = first_error(&format!(
                "[[step]]\nname = \"a\"\nrun = \"x\"\noutputs = [\"{bad}\"]\n"
            ));
            assert!(e.contains(why), "{bad}: {e}");
        }
        let e = first_error("[[step]]\nname = \"a\"\nrun = \"x\"\ninputs = [\"a[\"]\n");
        assert!(e.contains("not a valid glob pattern"), "{e}");
    }

    #[test]
    fn secret_env_names_are_kept_once_and_checked() {
        let p = parse(
            "[[step]]\nname = \"a\"\nrun = \"x\"\nsecret_env = [\"TOKEN\", \"KEY\", \"TOKEN\"]\n",
        )
        .unwrap();
        assert_eq!(p.steps[0].secret_env, ["TOKEN", "KEY"]);
        let e = first_error("[[step]]\nname = \"a\"\nrun = \"x\"\nsecret_env = [\"A=B\"]\n");
        assert!(e.contains("not a valid environment variable name"), "{e}");
        let e = first_error(
            "[[step]]\nname = \"a\"\nrun = \"x\"\nenv = { K = \"v\" }\nsecret_env = [\"K\"]\n",
        );
        assert!(
            e.contains("`K` is in `secret_env` and also set in this step's `env`"),
            "{e}"
        );
        assert!(e.contains("stepwise.toml:5:15"), "{e}");
    }

    #[test]
    fn unknown_key_suggests() {
        let e = first_error("[[step]]\nnmae = \"a\"\nrun = \"x\"\n");
        assert!(e.contains("unknown key `nmae` in step #1"), "{e}");
        assert!(e.contains("stepwise.toml:2:1"), "{e}");
        assert!(e.contains("did you mean `name`?"), "{e}");
    }

    #[test]
    fn missing_name_points_at_header() {
        let e = first_error("\n[[step]]\nrun = \"x\"\n");
        assert!(e.contains("step #1 has no `name`"), "{e}");
        assert!(e.contains("stepwise.toml:2:1"), "{e}");
    }

    #[test]
    fn cycle_is_printed() {
        let e = first_error(
            "[[step]]\nname = \"a\"\nrun = \"x\"\nafter = [\"b\"]\n[[step]]\nname = \"b\"\nrun = \"y\"\n",
        );
        assert!(e.contains("dependency cycle: a -> b -> a"), "{e}");
        assert!(e.contains("stepwise.toml:4:10"), "{e}");
    }

    #[test]
    fn self_cycle() {
        let e = first_error("[[step]]\nname = \"a\"\nrun = \"x\"\nafter = [\"a\"]\n");
        assert!(e.contains("dependency cycle: a -> a"), "{e}");
    }

    #[test]
    fn reports_every_problem() {
        let errors =
            parse("[[step]]\nname = \"a\"\n[[step]]\nname = \"a\"\nrun = 3\n").unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
    }

    #[test]
    fn scope_includes_what_is_needed() {
        let p = parse(
            "[[step]]\nname = \"a\"\nrun = \"x\"\n[[step]]\nname = \"b\"\nrun = \"x\"\n[[step]]\nname = \"c\"\nrun = \"x\"\nafter = []\n",
        )
        .unwrap();
        assert_eq!(p.scope(&[StepId(1)]), [true, true, false]);
        assert_eq!(p.scope(&[]), [true, true, true]);
    }
}
