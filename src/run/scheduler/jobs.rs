//! The Slurm side of the scheduler: submitting attempts as batch jobs,
//! following them all with one `squeue` per tick, cancelling them, and
//! taking over the jobs of a runner that died (found by `reattach.rs`).
//!
//! The order of events for one attempt, each step recorded before the next:
//! 1. `start` in the journal (as for a process);
//! 2. the batch script written under `.stepwise/slurm/`;
//! 3. `sbatch --parsable`, then at once a `submit` record with the job id,
//!    fsynced whatever `[pipeline] sync` says: a runner killed from here on
//!    leaves a journal that names the job, and the next run finds it;
//! 4. when Slurm says the job is over, its outcome from the status file the
//!    script wrote (or from Slurm's state), recorded as `finish`.
//!
//! A runner killed between 2 and 3 leaves an attempt without a job id but
//! with a script: the next run looks for a job of the user's running that
//! script before deciding the attempt never ran.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::Scheduler;
use crate::error::{Error, IoContext, Result};
use crate::journal::{Millis, Outcome, Record, Store, now};
use crate::pipeline::StepId;
use crate::plan::{self, Mode};
use crate::run::policy::Event;
use crate::run::slurm::{self, AttemptFiles, SlurmError};
use crate::state::dir::StateDir;

/// How long a job Slurm calls over may take to show its status file (a
/// shared filesystem can be that slow to show another node's writes)
/// before its outcome is taken from Slurm's state alone.
const STATUS_GRACE: Duration = Duration::from_secs(5);

/// How often Slurm is asked about the check job: it stands between the run
/// and its first submission, so it is worth asking more often.
const PROBE_POLL: Duration = Duration::from_millis(250);

/// One attempt running as a Slurm job.
pub(super) struct Job {
    id: StepId,
    /// The run the attempt belongs to: an earlier one for an adopted job.
    run: u64,
    attempt: u32,
    job: String,
    files: AttemptFiles,
    log: PathBuf,
    /// When the attempt started, as recorded.
    started_at: Millis,
    /// When a poll first saw it running: its `timeout` counts from here.
    running_since: Option<Instant>,
    timeout: Option<Duration>,
    /// Cancelled by stepwise for running past its `timeout`.
    timed_out: bool,
    /// When a poll first saw it over without a status file.
    over_since: Option<Instant>,
    /// Submitted by a runner that died, and taken over by this run.
    adopted: bool,
}

/// A job an earlier runner submitted that is still queued or running, to
/// be waited for instead of submitted again (see [`reattach`](super::reattach)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adopted {
    /// The step's name.
    pub step: String,
    /// The run that submitted it (whose runner died).
    pub run: u64,
    /// The attempt's number.
    pub attempt: u32,
    /// The Slurm job id.
    pub job: String,
    /// When the attempt started, as recorded.
    pub started_at: Millis,
}

/// Whether jobs have been seen to reach the state dir.
enum Probe {
    Unchecked,
    /// The check job is in flight.
    Pending {
        job: String,
        over_since: Option<Instant>,
    },
    Passed,
}

/// The jobs in flight and when to next ask Slurm about them.
pub(super) struct Jobs {
    list: Vec<Job>,
    interval: Duration,
    next_poll: Option<Instant>,
    probe: Probe,
    /// A failed poll was reported; reported again only after one worked.
    poll_failing: bool,
}

impl Jobs {
    pub(super) fn new(interval: Duration) -> Jobs {
        Jobs {
            list: Vec::new(),
            interval,
            next_poll: None,
            probe: Probe::Unchecked,
            poll_failing: false,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    /// Nothing in flight: the run may end.
    pub(super) fn is_idle(&self) -> bool {
        self.list.is_empty() && !matches!(self.probe, Probe::Pending { .. })
    }

    /// Whether it is time to ask Slurm.
    pub(super) fn due(&self, now: Instant) -> bool {
        !self.is_idle() && self.next_poll.is_some_and(|at| at <= now)
    }

    /// The next instant something is due: a poll, or a job's timeout.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        if self.is_idle() {
            return None;
        }
        let timeouts = self.list.iter().filter(|j| !j.timed_out).filter_map(|j| {
            j.running_since
                .zip(j.timeout)
                .map(|(since, limit)| since + limit)
        });
        timeouts.chain(self.next_poll).min()
    }

    fn schedule_poll(&mut self) {
        let interval = match self.probe {
            Probe::Pending { .. } => PROBE_POLL.min(self.interval),
            _ => self.interval,
        };
        let at = Instant::now() + interval;
        self.next_poll = Some(self.next_poll.map_or(at, |next| next.min(at)));
    }

    fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.list.iter().map(|j| j.job.as_str()).collect();
        if let Probe::Pending { job, .. } = &self.probe {
            ids.push(job);
        }
        ids
    }

    /// The run cannot go on (the journal failed, or it ended early): cancel
    /// everything, as a process would be killed. Best effort, since nothing
    /// more can be recorded anyway.
    pub(super) fn abandon(&mut self) {
        let ids = self.ids();
        let _ = slurm::cancel(&ids);
        self.list.clear();
        if let Probe::Pending { .. } = self.probe {
            self.probe = Probe::Unchecked;
        }
    }
}

impl Scheduler<'_> {
    fn state_abs(&self) -> StateDir {
        StateDir::new(&self.state_dir_var)
    }

    /// Whether a Slurm step may be submitted now: once a job has been seen
    /// to write into the state dir. The first time, this submits the job
    /// that checks it, and the step waits for it.
    pub(super) fn slurm_ready(&mut self, id: StepId) -> Result<bool> {
        match self.jobs.probe {
            Probe::Passed => return Ok(true),
            Probe::Pending { .. } => return Ok(false),
            Probe::Unchecked => {}
        }
        let state = self.state_abs();
        let marker = state.slurm_shared_marker();
        if marker.exists() {
            self.jobs.probe = Probe::Passed;
            return Ok(true);
        }
        let tmp = marker.with_extension("tmp");
        let script = state.slurm().join("check-shared.sh");
        let text = format!(
            "#!/bin/sh\n\
             # Written by stepwise: proves that jobs see the state dir, by writing\n\
             # into it from the node the job runs on.\n\
             hostname >{tmp} 2>/dev/null || printf 'a node\\n' >{tmp}\n\
             mv -f -- {tmp} {marker}\n",
            tmp = slurm::quote(&tmp.display().to_string()),
            marker = slurm::quote(&marker.display().to_string()),
        );
        slurm::write_script(&script, &text)
            .context(format!("cannot write {}", script.display()))?;
        // Where the step would run, for a minute at most: a check that
        // waits in the queue as its first job would.
        let mut resources = self.pipeline.slurm_resources(id);
        resources.time = Some(Duration::from_secs(60));
        resources.mem = None;
        resources.gpus = None;
        let name = slurm::job_name(&self.pipeline.root, "(check shared state dir)");
        // The output goes nowhere: the state dir may be what is missing.
        let args = slurm::sbatch_args(
            &resources,
            None,
            &name,
            std::path::Path::new("/dev/null"),
            &script,
        );
        let job = slurm::submit(&args, &self.pipeline.root).map_err(|e| {
            Error::usage_with_help(
                format!("cannot submit to Slurm: {e}"),
                match e {
                    SlurmError::Missing(_) => "steps with executor = \"slurm\" are submitted with sbatch: run stepwise on a machine of the cluster (a login node), or set executor = \"local\"".to_string(),
                    SlurmError::Failed(_) => format!(
                        "check the [slurm] settings of step `{}` and [pipeline.slurm] (partition, account, qos, sbatch_args)",
                        self.pipeline.step(id).name
                    ),
                },
            )
        })?;
        self.jobs.probe = Probe::Pending {
            job,
            over_since: None,
        };
        self.jobs.schedule_poll();
        Ok(false)
    }

    /// Submits an attempt whose `start` is recorded.
    pub(super) fn submit(&mut self, id: StepId, attempt: u32, log: PathBuf) -> Result<()> {
        let pipeline = self.pipeline;
        let step = pipeline.step(id);
        let state = self.state_abs();
        let files = AttemptFiles::new(&state, &step.name, attempt);
        let attempt_text = attempt.to_string();
        let run = self.run.to_string();
        let dir = pipeline.step_dir(id);
        let mut env: Vec<(&str, &str)> =
            Vec::with_capacity(pipeline.env.len() + step.env.len() + 5);
        env.extend(pipeline.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        env.extend(step.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        env.push((crate::run::process::STEP_VAR, &step.name));
        env.push((crate::run::process::ATTEMPT_VAR, &attempt_text));
        env.push((crate::run::process::RUN_VAR, &run));
        env.push((crate::run::process::STATE_DIR_VAR, &self.state_dir_var));
        // Tells a later run's clean-up of a dead runner's processes that
        // this one belongs to Slurm (on a node that is also this machine).
        env.push((crate::run::process::EXECUTOR_VAR, "slurm"));
        let script = slurm::Script {
            step: &step.name,
            attempt,
            run: self.run,
            shell: &pipeline.shell,
            command: &step.run,
            dir: &dir,
            env,
            withheld: self
                .secrets
                .iter()
                .filter(|name| !step.secret_env.contains(name))
                .map(String::as_str)
                .collect(),
            status: &files.status,
        };
        let started_at = now();
        if let Err(e) = slurm::write_script(&files.script, &script.text()) {
            let why = format!(
                "cannot write the batch script {}: {e}",
                files.script.display()
            );
            return self.not_submitted(id, attempt, why, &log);
        }
        let log = std::path::absolute(&log).unwrap_or(log);
        let args = slurm::sbatch_args(
            &pipeline.slurm_resources(id),
            step.timeout,
            &slurm::job_name(&pipeline.root, &step.name),
            &log,
            &files.script,
        );
        let job = match slurm::submit(&args, &pipeline.root) {
            Ok(job) => job,
            Err(e) => return self.not_submitted(id, attempt, e.to_string(), &log),
        };
        // In the list first: if the journal cannot take the record below,
        // the run is abandoned, which cancels what is in the list.
        self.jobs.list.push(Job {
            id,
            run: self.run,
            attempt,
            job: job.clone(),
            files,
            log,
            started_at,
            running_since: None,
            timeout: step.timeout,
            timed_out: false,
            over_since: None,
            adopted: false,
        });
        self.jobs.schedule_poll();
        // Before anything else, and durable: from here on the job exists,
        // and only the journal can tell a later run about it.
        self.writer.record(Record::Submitted {
            run: self.run,
            step: step.name.clone(),
            attempt,
            at: now(),
            job: job.clone(),
        })?;
        self.writer.store.sync()?;
        self.progress.job_submitted(pipeline, id, attempt, &job);
        Ok(())
    }

    /// `sbatch` (or writing its script) failed: the attempt never ran.
    fn not_submitted(
        &mut self,
        id: StepId,
        attempt: u32,
        why: String,
        log: &std::path::Path,
    ) -> Result<()> {
        let _ = std::fs::write(log, format!("stepwise: could not submit the job: {why}\n"));
        let log = log.exists().then_some(log);
        let outcome = Outcome::NotStarted(why);
        self.record_end(self.run, id, attempt, &outcome, 0, log)?;
        self.follow_up(id, outcome)
    }

    /// Takes over the jobs [`reattach`](super::reattach) found in flight, for the steps this
    /// run is to run: they run already, so they are waited for, not started.
    pub(super) fn adopt(&mut self, adopted: Vec<Adopted>) {
        for a in adopted {
            let Some(id) = self.pipeline.find(&a.step) else {
                continue;
            };
            if !self.policy.planned(id) {
                self.progress.warning(&format!(
                    "Slurm job {} (step `{}`, attempt {}) is still in flight but not part of this run; the next run that includes it waits for it",
                    a.job, a.step, a.attempt
                ));
                continue;
            }
            self.policy.on(Instant::now(), Event::Adopted(id));
            self.progress.job_adopted(self.pipeline, id, a.attempt);
            let state = self.state_abs();
            self.jobs.list.push(Job {
                id,
                run: a.run,
                attempt: a.attempt,
                files: AttemptFiles::new(&state, &a.step, a.attempt),
                log: std::path::absolute(self.state.log(&a.step, a.attempt))
                    .unwrap_or_else(|_| self.state.log(&a.step, a.attempt)),
                job: a.job,
                started_at: a.started_at,
                running_since: None,
                timeout: self.pipeline.step(id).timeout,
                timed_out: false,
                over_since: None,
                adopted: true,
            });
            // Jobs already in flight need no check that they see the
            // state dir: they are the proof, or will be.
            self.jobs.schedule_poll();
        }
    }

    /// Asks Slurm about every job in flight (one `squeue`), and ends those
    /// that are over.
    pub(super) fn poll_jobs(&mut self) -> Result<()> {
        self.jobs.next_poll = None;
        let ids: Vec<String> = self.jobs.ids().into_iter().map(String::from).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let states = match slurm::states(&ids) {
            Ok(states) => {
                self.jobs.poll_failing = false;
                states
            }
            Err(e) => {
                if !std::mem::replace(&mut self.jobs.poll_failing, true) {
                    self.progress.warning(&format!(
                        "cannot ask Slurm about the jobs in flight ({e}); asking again"
                    ));
                }
                self.jobs.schedule_poll();
                return Ok(());
            }
        };
        let now_instant = Instant::now();
        self.check_probe(&states, now_instant)?;
        let mut over = Vec::new();
        let mut i = 0;
        while i < self.jobs.list.len() {
            let job = &mut self.jobs.list[i];
            let state = states.get(&job.job).map(String::as_str);
            if state == Some("RUNNING") && job.running_since.is_none() {
                job.running_since = Some(now_instant);
            }
            let known_over = state.is_none_or(slurm::is_over);
            if !known_over {
                i += 1;
                continue;
            }
            let status = slurm::read_status(&job.files.status);
            let outcome = if job.timed_out {
                Some(Outcome::TimedOut)
            } else if status.is_none() && state.is_none() {
                // Forgotten by Slurm before we saw it end (a restarted
                // controller): the accounting database may still know.
                let accounted = slurm::accounting(&[job.job.as_str()]);
                match accounted.get(&job.job) {
                    Some((state, Some(code))) if state == "COMPLETED" || state == "FAILED" => {
                        Some(if *code == 0 {
                            Outcome::Success
                        } else {
                            Outcome::Exited(*code)
                        })
                    }
                    Some((state, _)) => slurm::outcome(None, Some(state)),
                    None => Some(Outcome::Job("UNKNOWN".into())),
                }
            } else {
                slurm::outcome(status.clone(), state)
            };
            // Over, but the status file is not there (yet): a shared
            // filesystem may show another node's write late.
            let wait_for_status =
                status.is_none() && matches!(state, Some("COMPLETED" | "FAILED")) && !job.timed_out;
            if wait_for_status {
                let since = *job.over_since.get_or_insert(now_instant);
                if now_instant.duration_since(since) < STATUS_GRACE {
                    i += 1;
                    continue;
                }
            }
            let job = self.jobs.list.swap_remove(i);
            over.push((
                job,
                outcome.unwrap_or_else(|| Outcome::Job("UNKNOWN".into())),
            ));
        }
        if !self.jobs.is_idle() {
            self.jobs.schedule_poll();
        }
        for (job, outcome) in over {
            self.job_over(job, outcome)?;
        }
        Ok(())
    }

    /// Settles the check that jobs see the state dir, once its job is over.
    fn check_probe(
        &mut self,
        states: &std::collections::HashMap<String, String>,
        now_instant: Instant,
    ) -> Result<()> {
        let marker = self.state_abs().slurm_shared_marker();
        let Probe::Pending { job, over_since } = &mut self.jobs.probe else {
            return Ok(());
        };
        let state = states.get(job.as_str()).map(String::as_str);
        if !state.is_none_or(slurm::is_over) {
            return Ok(());
        }
        if marker.exists() {
            self.jobs.probe = Probe::Passed;
            return Ok(());
        }
        let since = *over_since.get_or_insert(now_instant);
        if now_instant.duration_since(since) < STATUS_GRACE {
            return Ok(());
        }
        let job = job.clone();
        let state = state.unwrap_or("gone").to_string();
        self.jobs.probe = Probe::Unchecked;
        Err(Error::usage_with_help(
            format!(
                "a Slurm job cannot write to the state dir {}: job {job} ({state}) was to create {} and did not",
                self.state_dir_var,
                marker.display()
            ),
            "the state dir (.stepwise beside the pipeline file) must be on a filesystem the compute nodes share with this machine, at the same path: move the pipeline under your home or project folder (not /tmp or a local disk); `sacct -j JOB` or the node's slurmd log says more if the job itself failed",
        ))
    }

    /// A job is over: records its outcome and decides what follows.
    fn job_over(&mut self, job: Job, outcome: Outcome) -> Result<()> {
        let id = job.id;
        let outcome = match outcome {
            Outcome::Success => {
                // As for a process: every declared output must exist.
                self.survey.refresh_product_settled(self.pipeline, id);
                match self.survey.get(id).map(|f| f.missing_outputs.clone()) {
                    Some(missing) if !missing.is_empty() => Outcome::OutputsMissing(missing),
                    _ => Outcome::Success,
                }
            }
            other => other,
        };
        let duration_ms = ended_at(&job.files).saturating_sub(job.started_at);
        let log = shown_log(&job.log);
        self.record_end(
            job.run,
            id,
            job.attempt,
            &outcome,
            duration_ms,
            log.as_deref(),
        )?;
        // The journal holds the outcome now; a failed attempt keeps its
        // script, to resubmit by hand when debugging.
        let _ = std::fs::remove_file(&job.files.status);
        if outcome.ok() {
            let _ = std::fs::remove_file(&job.files.script);
        }
        if !job.adopted {
            return self.follow_up(id, outcome);
        }
        // An earlier run's job: what it needs may have been planned to run
        // again meanwhile, or the step changed since it was submitted. Then
        // its turn comes again as for any step, checked afresh.
        let ended = |rerun| Event::AdoptedEnded {
            id,
            ok: outcome.ok(),
            rerun,
        };
        if !self.policy.adopted_turn(id) {
            self.policy.on(Instant::now(), ended(false));
            return Ok(());
        }
        if outcome.ok() && self.options.mode == Mode::Fingerprint {
            let step = self.pipeline.step(id);
            let facts = self.survey.refresh(self.pipeline, id).clone();
            let stale = self.writer.history.step(&step.name).is_some_and(|h| {
                h.success.as_ref().is_some_and(|s| {
                    !plan::staleness(h, s, Some(&facts), !step.outputs.is_empty()).is_empty()
                })
            });
            if stale {
                self.policy.on(Instant::now(), ended(true));
                return Ok(());
            }
        }
        // Its turn: the job counts as this run's first attempt.
        self.follow_up(id, outcome)
    }

    /// Stops the jobs whose `timeout` has passed since they started
    /// running, all with one `scancel`; the next poll records them.
    pub(super) fn fire_job_timers(&mut self) {
        let now_instant = Instant::now();
        let mut expired = Vec::new();
        for job in &mut self.jobs.list {
            if !job.timed_out
                && let (Some(since), Some(limit)) = (job.running_since, job.timeout)
                && since + limit <= now_instant
            {
                job.timed_out = true;
                expired.push(job.job.clone());
            }
        }
        if expired.is_empty() {
            return;
        }
        let ids: Vec<&str> = expired.iter().map(String::as_str).collect();
        if let Err(e) = slurm::cancel(&ids) {
            self.progress.warning(&format!(
                "could not cancel Slurm job(s) {} past their timeout: {e}",
                expired.join(", ")
            ));
        }
        self.jobs.schedule_poll();
    }

    /// The run was interrupted: cancels every job in flight with one
    /// `scancel`, and records each as interrupted (or as it ended, if its
    /// status file shows it finished first).
    pub(super) fn cancel_jobs(&mut self, sig: Signal) -> Result<()> {
        let ids: Vec<String> = self.jobs.ids().into_iter().map(String::from).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        if let Probe::Pending { .. } = self.jobs.probe {
            self.jobs.probe = Probe::Unchecked;
        }
        let jobs = std::mem::take(&mut self.jobs.list);
        // A status file there before the cancel is a job that finished on
        // its own; after it, it would only say how the cancel killed it.
        let statuses: Vec<_> = jobs
            .iter()
            .map(|j| slurm::read_status(&j.files.status))
            .collect();
        if let Err(e) = slurm::cancel(&id_refs) {
            // Not recorded: they may run on, and the next run must ask
            // Slurm about them rather than submit them again.
            self.progress.warning(&format!(
                "could not cancel Slurm job(s) {}: {e}; they may still run, and the next run asks Slurm about them",
                ids.join(", ")
            ));
            for job in &jobs {
                self.policy.on(Instant::now(), Event::Lost(job.id));
            }
            return Ok(());
        }
        for (job, status) in jobs.into_iter().zip(statuses) {
            let outcome = match status {
                Some(status) => {
                    slurm::outcome(Some(status), None).unwrap_or(Outcome::Interrupted(sig as i32))
                }
                None => Outcome::Interrupted(sig as i32),
            };
            let duration_ms = now().saturating_sub(job.started_at);
            let log = shown_log(&job.log);
            self.record_end(
                job.run,
                job.id,
                job.attempt,
                &outcome,
                duration_ms,
                log.as_deref(),
            )?;
            let _ = std::fs::remove_file(&job.files.status);
            // Interrupted: no retry, as for a process.
            self.follow_up(job.id, outcome)?;
        }
        Ok(())
    }
}

/// The log of a job, for messages: `None` when it printed nothing. Slurm
/// creates the file whatever the job prints; an empty one is removed, as a
/// local attempt that prints nothing leaves none.
fn shown_log(log: &std::path::Path) -> Option<PathBuf> {
    match std::fs::metadata(log) {
        Ok(m) if m.len() > 0 => Some(log.to_path_buf()),
        Ok(_) => {
            let _ = std::fs::remove_file(log);
            None
        }
        Err(_) => None,
    }
}

/// When a job's command ended: its status file's mtime, since the batch
/// script writes it right then (and polling, or a runner that was dead at
/// the time, notices later); now if there is none. Never later than now,
/// whatever the node's clock says.
pub(super) fn ended_at(files: &AttemptFiles) -> Millis {
    let written = std::fs::metadata(&files.status)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as Millis);
    let now = now();
    written.map_or(now, |w| w.min(now))
}
