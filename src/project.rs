//! A pipeline together with its state dir: the operations the command line
//! offers (plan, run, forget, import, why), as library calls.

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::fingerprint::{Digest, Reason};
use crate::hash::FileHasher;
use crate::journal::{Record, Stamp, now};
use crate::pipeline::{Pipeline, StepId};
use crate::plan::{Mode, Plan, StepPlan, plan};
use crate::run::scheduler::{RunOptions, RunSummary, execute_adopting, reattach};
use crate::state::dir::{Compaction, Loaded, StateDir};
use crate::state::history::Attempt;
use crate::view::progress::Progress;
use crate::workspace::{MissingInput, Survey};

/// A loaded pipeline and where its state lives.
pub struct Project {
    /// The validated pipeline (for a journal-only project, the step names
    /// of [`Pipeline::from_names`]).
    pub pipeline: Pipeline,
    /// Its state dir.
    pub state: StateDir,
    /// The compiled pipeline, to store on the next run, when the file was
    /// parsed rather than read from the compiled cache.
    compiled: Option<Vec<u8>>,
    /// Opened from a state dir alone ([`Project::from_state_dir`]): the
    /// steps are the names in the journal, with no definition to compare
    /// fingerprints with.
    pub journal_only: bool,
}

/// What the read-only commands look at: the journal as read, the facts
/// gathered from the disk, and the plan made from both.
pub struct Inspection {
    /// The journal, read without the lock.
    pub loaded: Loaded,
    /// The facts of the steps in scope (none when planned by name).
    pub survey: Survey,
    /// The plan of the steps in scope.
    pub plan: Plan,
}

/// What `run` did: its plan, and the run itself unless there was nothing to
/// do.
pub struct RunReport {
    /// The plan the run followed.
    pub plan: Plan,
    /// What the run did; `None` when the plan had nothing to run (then no
    /// run was recorded).
    pub summary: Option<RunSummary>,
    /// Set when the journal had grown enough to be compacted first.
    pub compaction: Option<Compaction>,
    /// How much hashing the run did (files read vs. found in the stat cache).
    pub hash_stats: crate::hash::HashStats,
}

impl RunReport {
    /// The run's exit code (see [`RunSummary::exit_code`]); 0 when there was
    /// nothing to run.
    pub fn exit_code(&self) -> i32 {
        self.summary
            .as_ref()
            .map_or(crate::error::EXIT_OK, RunSummary::exit_code)
    }
}

/// One difference between a step's recorded success and the step now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The difference, as the plan gives it.
    pub reason: Reason,
    /// The component's digest in the recorded success, when it had one.
    pub was: Option<Digest>,
    /// Its digest now, when it has one.
    pub now: Option<Digest>,
}

/// Everything `why STEP` explains.
pub struct Why {
    /// The step.
    pub id: StepId,
    /// Its decision.
    pub plan: StepPlan,
    /// The success the step was compared with, if it has one.
    pub compared_with: Option<Attempt>,
    /// Component by component, what differs.
    pub changes: Vec<Change>,
    /// The components that are the same (keys like `run`, `input:data.csv`).
    pub unchanged: Vec<String>,
    /// Declared inputs that cannot be read now.
    pub missing_inputs: Vec<MissingInput>,
    /// The plan of the whole pipeline, for the dependencies' reasons.
    pub full_plan: Plan,
}

impl Project {
    /// Loads and validates the pipeline file at `path`.
    pub fn open(path: &Path) -> Result<Project> {
        let loaded = crate::pipeline_cache::load(path)?;
        let state = StateDir::for_pipeline(&loaded.pipeline);
        Ok(Project {
            pipeline: loaded.pipeline,
            state,
            compiled: loaded.compiled,
            journal_only: false,
        })
    }

    /// Takes the lock for `command`; while holding it, stores the compiled
    /// pipeline if the file had to be parsed.
    fn writer(&self, command: &str) -> Result<crate::state::dir::Writer> {
        let writer = self.state.open_writer(self.pipeline.sync, command)?;
        if let Some(compiled) = &self.compiled {
            let cache = crate::pipeline_cache::cache_path(&self.pipeline.path, &self.pipeline.root);
            crate::pipeline_cache::store(&cache, compiled);
        }
        Ok(writer)
    }

    /// A state dir on its own, without a pipeline file: one a Rust program
    /// writes through [`crate::Run`]. Its steps are the names its journal
    /// mentions, in the order it first does. The definitions of those steps
    /// live in the program, so the state dir is planned by name
    /// ([`Mode::ByName`]: done if a success is recorded since the last
    /// forget), and it cannot be run, imported into or asked `why`; it can
    /// be inspected and forgotten.
    pub fn from_state_dir(dir: &Path) -> Result<Project> {
        let state = StateDir::new(dir);
        // A folder without a journal is not a state dir (`--state-dir .` by
        // mistake): reading it as an empty history would answer "nothing
        // recorded" about the wrong folder.
        if !dir.is_dir() || !state.journal().exists() {
            return Err(Error::usage_with_help(
                format!("no state dir at {}", dir.display()),
                "--state-dir names the folder a program passes to `stepwise::Run::open`, e.g. .stepwise (it holds journal.jsonl)",
            ));
        }
        let loaded = state.load()?;
        let root = crate::state::dir::real_path(dir)
            .context(format!("cannot resolve the folder {}", dir.display()))?;
        let names = loaded.history.step_names().iter().cloned();
        Ok(Project {
            pipeline: Pipeline::from_names(dir, &root, names),
            state,
            journal_only: true,
            compiled: None,
        })
    }

    /// Refuses what needs the steps' definitions on a journal-only project.
    fn needs_pipeline(&self, command: &str, help: &str) -> Result<()> {
        if self.journal_only {
            return Err(Error::usage_with_help(
                format!(
                    "`{command}` needs a pipeline file; {} is a state dir on its own",
                    self.state.path().display()
                ),
                help,
            ));
        }
        Ok(())
    }

    fn hasher(&self) -> FileHasher {
        FileHasher::load(&self.state.stat_cache())
    }

    fn facts_for<'s>(
        &self,
        survey: &'s mut Survey,
        scope: &[bool],
        mode: Mode,
    ) -> Option<&'s [Option<crate::workspace::StepFacts>]> {
        match mode {
            Mode::ByName => None,
            Mode::Fingerprint => {
                survey.survey(&self.pipeline, scope);
                Some(survey.facts())
            }
        }
    }

    /// The plan for `steps` (all when empty) without taking the lock or
    /// writing anything.
    pub fn inspect(&self, steps: &[String], mode: Mode) -> Result<Inspection> {
        let selected = self.pipeline.resolve(steps)?;
        let scope = self.pipeline.scope(&selected);
        // Without the steps' definitions there is nothing to fingerprint.
        let mode = if self.journal_only {
            Mode::ByName
        } else {
            mode
        };
        let loaded = self.state.load()?;
        let mut survey = Survey::new(&self.pipeline, self.hasher());
        let facts = self.facts_for(&mut survey, &scope, mode);
        let plan = plan(
            &self.pipeline,
            &loaded.history,
            &scope,
            loaded.live_run,
            facts,
        );
        Ok(Inspection {
            loaded,
            survey,
            plan,
        })
    }

    /// Runs what is not done among `steps` (all when empty) and what they
    /// need. Takes the lock for its whole duration.
    pub fn run(
        &self,
        steps: &[String],
        options: &RunOptions,
        progress: &mut dyn Progress,
    ) -> Result<RunReport> {
        self.needs_pipeline(
            "run",
            "the steps of a state dir written through the library run when their program runs again",
        )?;
        let selected = self.pipeline.resolve(steps)?;
        let scope = self.pipeline.scope(&selected);
        let mut writer = self.writer("run")?;
        for w in &writer.warnings {
            progress.warning(w);
        }
        let compaction = if writer.compaction_due() {
            Some(writer.compact()?)
        } else {
            None
        };
        // Slurm jobs of a runner that died are asked about before planning:
        // one that ended meanwhile is recorded as it ended, one still in
        // flight is waited for below rather than submitted again.
        let adopted = reattach(&self.state, &mut writer, progress)?;
        let mut survey = Survey::new(&self.pipeline, self.hasher());
        let facts = self.facts_for(&mut survey, &scope, options.mode);
        progress.history(&self.pipeline, &writer.history);
        let the_plan = plan(&self.pipeline, &writer.history, &scope, None, facts);
        progress.plan(&self.pipeline, &the_plan);
        for step in &the_plan.steps {
            for w in &step.warnings {
                progress.warning(&format!(
                    "step `{}`: {w}; it will fail unless the input appears",
                    self.pipeline.step(step.id).name
                ));
            }
        }
        let summary = if the_plan.remaining() == 0 {
            None
        } else {
            Some(execute_adopting(
                &self.pipeline,
                &the_plan,
                &self.state,
                &mut writer,
                &mut survey,
                progress,
                options,
                adopted,
            )?)
        };
        // Only an optimisation: failing to save it costs speed next time.
        let _ = survey.hasher.save(&self.state.stat_cache());
        let hash_stats = survey.hasher.stats;
        crate::dispose(survey);
        writer.close_saving_snapshot()?;
        Ok(RunReport {
            plan: the_plan,
            summary,
            compaction,
            hash_stats,
        })
    }

    /// Compacts the journal (see [`crate::state::compact`]): keeps per step its
    /// latest success and latest attempt, and every run's summary.
    pub fn gc(&self) -> Result<Compaction> {
        let mut writer = self.writer("gc")?;
        let compaction = writer.compact()?;
        writer.close_saving_snapshot()?;
        Ok(compaction)
    }

    /// The steps `forget` would forget: the named ones (every step with
    /// `all`), and with `downstream` everything that needs them.
    pub fn forget_targets(
        &self,
        steps: &[String],
        all: bool,
        downstream: bool,
    ) -> Result<Vec<StepId>> {
        if all {
            return Ok(self.pipeline.ids().collect());
        }
        let mut chosen = vec![false; self.pipeline.steps.len()];
        let mut stack = self.pipeline.resolve(steps)?;
        let dependents = self.pipeline.dependents();
        while let Some(id) = stack.pop() {
            if !std::mem::replace(&mut chosen[id.index()], true) && downstream {
                stack.extend(&dependents[id.index()]);
            }
        }
        Ok(self
            .pipeline
            .ids()
            .filter(|id| chosen[id.index()])
            .collect())
    }

    /// Records that these steps must run again (every step recorded so far
    /// with `all`).
    pub fn forget(&self, steps: &[String], all: bool, downstream: bool) -> Result<Vec<StepId>> {
        let ids = self.forget_targets(steps, all, downstream)?;
        let mut writer = self.writer("forget")?;
        let names = ids
            .iter()
            .map(|&id| self.pipeline.step(id).name.clone())
            .collect();
        writer.record(Record::Forgotten {
            at: now(),
            steps: if all { None } else { Some(names) },
        })?;
        writer.close_saving_snapshot()?;
        Ok(ids)
    }

    /// Records imported attempts, stamped with each step's fingerprint as
    /// the pipeline stands now (so a later change to a step invalidates its
    /// imported success like any other); a step whose fingerprint cannot be
    /// computed (an input missing) is recorded without one and counts by
    /// name. Returns the names that are not steps of the pipeline (recorded
    /// all the same), then the steps recorded without a fingerprint, each
    /// sorted and without duplicates.
    pub fn import(&self, attempts: Vec<(String, bool)>) -> Result<(Vec<String>, Vec<String>)> {
        self.needs_pipeline(
            "checkpoint import",
            "an imported success has no value for a program's step to return",
        )?;
        let mut unknown: Vec<String> = attempts
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| self.pipeline.find(n).is_none())
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        let mut writer = self.writer("checkpoint import")?;
        let mut survey = Survey::new(&self.pipeline, self.hasher());
        survey.survey(&self.pipeline, &self.pipeline.scope(&[]));
        // A fingerprint cannot be computed for a step with a missing input,
        // nor for anything downstream of it, since theirs include it.
        let mut unstampable = vec![false; self.pipeline.steps.len()];
        for id in self.pipeline.topological_order() {
            let missing = survey.get(id).is_none_or(|f| !f.missing_inputs.is_empty());
            let upstream = self
                .pipeline
                .step(id)
                .after
                .iter()
                .any(|d| unstampable[d.index()]);
            unstampable[id.index()] = missing || upstream;
        }
        let mut stamps = std::collections::BTreeMap::new();
        let mut by_name = Vec::new();
        for (name, _) in &attempts {
            let Some(id) = self.pipeline.find(name) else {
                continue;
            };
            match survey.get(id) {
                Some(f) if !unstampable[id.index()] => {
                    stamps.insert(
                        name.clone(),
                        Stamp::new(f.fingerprint, f.components.clone()),
                    );
                }
                _ => by_name.push(name.clone()),
            }
        }
        by_name.sort_unstable();
        by_name.dedup();
        writer.record(Record::Imported {
            at: now(),
            attempts,
            stamps,
        })?;
        let _ = survey.hasher.save(&self.state.stat_cache());
        writer.close_saving_snapshot()?;
        Ok((unknown, by_name))
    }

    /// Explains the decision for one step, component by component, with
    /// the warnings reading the journal gave.
    pub fn why(&self, step: &str, mode: Mode) -> Result<(Why, Vec<String>)> {
        self.needs_pipeline(
            "why",
            "only the program knows its steps' inputs now (its `Run::summary` says why each step ran); `plan` and `status` with --state-dir show what is recorded",
        )?;
        let id = self.pipeline.resolve_one(step)?;
        let inspection = self.inspect(&[], mode)?;
        let step_plan = inspection
            .plan
            .step(id)
            .cloned()
            .ok_or_else(|| Error::usage(format!("step `{step}` is not in scope")))?;
        let explained = self.explain(&inspection, &step_plan);
        let why = Why {
            id,
            plan: step_plan,
            compared_with: explained.compared_with,
            changes: explained.changes,
            unchanged: explained.unchanged,
            missing_inputs: explained.missing_inputs,
            full_plan: inspection.plan,
        };
        Ok((why, inspection.loaded.warnings))
    }

    /// What [`Project::why`] says about one planned step, from an
    /// inspection already made (so a report of every step inspects once).
    pub fn explain(&self, inspection: &Inspection, step_plan: &StepPlan) -> Explained {
        let id = step_plan.id;
        let name = &self.pipeline.step(id).name;
        let success = inspection
            .loaded
            .history
            .step(name)
            .and_then(|h| h.success.clone());
        let facts = inspection.survey.get(id).cloned();
        let mut changes = Vec::new();
        let mut unchanged = Vec::new();
        if let (Some(stamp), Some(facts)) = (success.as_ref().and_then(|s| s.stamp.clone()), &facts)
        {
            let parts = stamp.parts();
            let keys: std::collections::BTreeSet<&String> =
                parts.0.keys().chain(facts.components.0.keys()).collect();
            for key in keys {
                let (was, now) = (parts.get(key).copied(), facts.components.get(key).copied());
                if was == now {
                    unchanged.push(key.clone());
                }
            }
            for reason in &step_plan.reasons {
                let key = component_key(reason);
                let (was, now) = match &key {
                    Some(k) => (parts.get(k).copied(), facts.components.get(k).copied()),
                    None => (None, None),
                };
                changes.push(Change {
                    reason: reason.clone(),
                    was,
                    now,
                });
            }
        } else {
            changes = step_plan
                .reasons
                .iter()
                .map(|r| Change {
                    reason: r.clone(),
                    was: None,
                    now: None,
                })
                .collect();
        }
        Explained {
            compared_with: success,
            changes,
            unchanged,
            missing_inputs: facts.map(|f| f.missing_inputs).unwrap_or_default(),
        }
    }
}

/// The component-by-component part of [`Why`].
pub struct Explained {
    /// As [`Why::compared_with`].
    pub compared_with: Option<Attempt>,
    /// As [`Why::changes`].
    pub changes: Vec<Change>,
    /// As [`Why::unchanged`].
    pub unchanged: Vec<String>,
    /// As [`Why::missing_inputs`].
    pub missing_inputs: Vec<MissingInput>,
}

/// The fingerprint component a reason is about, if it is about one.
fn component_key(reason: &Reason) -> Option<String> {
    Some(match reason {
        Reason::CommandChanged => "run".into(),
        Reason::ShellChanged => "shell".into(),
        Reason::DirChanged => "dir".into(),
        Reason::EnvChanged { key } => format!("env:{key}"),
        Reason::InputChanged { path }
        | Reason::InputAdded { path }
        | Reason::InputRemoved { path } => {
            format!("input:{path}")
        }
        Reason::DependencyChanged { step }
        | Reason::DependencyAdded { step }
        | Reason::DependencyRemoved { step } => {
            format!("dep:{step}")
        }
        Reason::DefinitionChanged { part } => part.clone(),
        _ => return None,
    })
}

impl StateDir {
    /// The stat cache file.
    pub fn stat_cache(&self) -> PathBuf {
        self.path().join("stat-cache")
    }
}
