//! A pipeline together with its state dir: the operations the command line
//! offers (plan, run, forget, import, why), as library calls.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fingerprint::{Digest, Reason};
use crate::hash::FileHasher;
use crate::history::Attempt;
use crate::journal::{Record, Stamp, now};
use crate::pipeline::{Pipeline, StepId};
use crate::plan::{Mode, Plan, StepPlan, plan};
use crate::report::Progress;
use crate::scheduler::{RunOptions, RunSummary, execute};
use crate::state_dir::{Loaded, StateDir};
use crate::workspace::{MissingInput, Survey};

/// A loaded pipeline and where its state lives.
pub struct Project {
    pub pipeline: Pipeline,
    pub state: StateDir,
}

/// What the read-only commands look at: the journal as read, the facts
/// gathered from the disk, and the plan made from both.
pub struct Inspection {
    pub loaded: Loaded,
    pub survey: Survey,
    pub plan: Plan,
}

/// What `run` did: its plan, and the run itself unless there was nothing to
/// do.
pub struct RunReport {
    pub plan: Plan,
    pub summary: Option<RunSummary>,
}

impl RunReport {
    pub fn exit_code(&self) -> i32 {
        self.summary
            .as_ref()
            .map_or(crate::error::EXIT_OK, RunSummary::exit_code)
    }
}

/// One difference between a step's recorded success and the step now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub reason: Reason,
    /// The component's digest in the recorded success, when it had one.
    pub was: Option<Digest>,
    /// Its digest now, when it has one.
    pub now: Option<Digest>,
}

/// Everything `why STEP` explains.
pub struct Why {
    pub id: StepId,
    pub plan: StepPlan,
    /// The success the step was compared with, if it has one.
    pub compared_with: Option<Attempt>,
    /// Component by component, what differs.
    pub changes: Vec<Change>,
    /// The components that are the same (keys like `run`, `input:data.csv`).
    pub unchanged: Vec<String>,
    pub missing_inputs: Vec<MissingInput>,
    /// The plan of the whole pipeline, for the dependencies' reasons.
    pub full_plan: Plan,
}

impl Project {
    /// Loads and validates the pipeline file at `path`.
    pub fn open(path: &Path) -> Result<Project> {
        let pipeline = Pipeline::load(path)?;
        let state = StateDir::for_pipeline(&pipeline);
        Ok(Project { pipeline, state })
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
        let selected = self.pipeline.resolve(steps)?;
        let scope = self.pipeline.scope(&selected);
        let mut writer = self.state.open_writer(self.pipeline.sync, "run")?;
        for w in &writer.warnings {
            progress.warning(w);
        }
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
            Some(execute(
                &self.pipeline,
                &the_plan,
                &self.state,
                &mut writer,
                &mut survey,
                progress,
                options,
            )?)
        };
        // Only an optimisation: failing to save it costs speed next time.
        let _ = survey.hasher.save(&self.state.stat_cache());
        writer.store.close()?;
        Ok(RunReport {
            plan: the_plan,
            summary,
        })
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
        let mut writer = self.state.open_writer(self.pipeline.sync, "forget")?;
        let names = ids
            .iter()
            .map(|&id| self.pipeline.step(id).name.clone())
            .collect();
        writer.record(Record::Forgotten {
            at: now(),
            steps: if all { None } else { Some(names) },
        })?;
        writer.store.close()?;
        Ok(ids)
    }

    /// Records imported attempts, stamped with each step's fingerprint as
    /// the pipeline stands now (so a later change to a step invalidates its
    /// imported success like any other); a step whose fingerprint cannot be
    /// computed (an input missing) is recorded without one and counts by
    /// name. Returns the names that are not steps of the pipeline.
    pub fn import(&self, attempts: Vec<(String, bool)>) -> Result<(Vec<String>, Vec<String>)> {
        let mut unknown: Vec<String> = attempts
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| self.pipeline.find(n).is_none())
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        let mut writer = self
            .state
            .open_writer(self.pipeline.sync, "checkpoint import")?;
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
        writer.store.close()?;
        Ok((unknown, by_name))
    }

    /// Explains the decision for one step, component by component.
    pub fn why(&self, step: &str, mode: Mode) -> Result<(Why, Vec<String>)> {
        let id = self.pipeline.resolve(&[step.to_string()])?[0];
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
    pub compared_with: Option<Attempt>,
    pub changes: Vec<Change>,
    pub unchanged: Vec<String>,
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
