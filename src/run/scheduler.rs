//! Runs the steps a plan says to run, along the dependency graph.
//!
//! One thread (the caller's) runs a poll loop, as ninja does: it waits on the
//! running steps' exit descriptors and output pipes, a pipe that signals wake
//! it through, and the nearest deadline (timeouts, grace periods, retry
//! delays); it tells the policy (`run::policy`) what happened and carries
//! out what it decides: starting steps, signalling processes, cancelling
//! jobs. It owns every journal write, so records never interleave, and it
//! records before it acts: an attempt's start before its process or job
//! exists, its end before the policy hears of it, so a step's success is in
//! the journal before anything that needs it starts.
//!
//! The policy (decided in `run::policy`, without I/O):
//! - at most `jobs` steps run at once; among ready steps, the first in file
//!   order starts first;
//! - a failed attempt is retried `retries` times, after `retry_delay`,
//!   doubling up to a minute (or `retry_delay`, if longer); a retry is part of
//!   its step, so it still happens after another step failed;
//! - after a step fails for good, no new step starts (running ones finish),
//!   unless `keep_going`: then every step that does not need a failed one runs;
//! - a step past its `timeout` gets SIGTERM, then SIGKILL after the grace
//!   period, and its attempt is recorded as timed out;
//! - on SIGINT, SIGTERM, SIGHUP or SIGQUIT nothing new starts (pending
//!   retries are dropped), the signal is forwarded to every running step's
//!   process group, what still runs after the grace period is killed, and the
//!   run ends with 128 + the signal number; a second signal kills at once.
//!
//! Steps whose executor is Slurm run as batch jobs instead (see `scheduler::jobs`):
//! the same loop submits them, and a timer asks Slurm about all of them at
//! once every `poll_interval`. They count against `jobs` like processes, go
//! through the same retry and failure policy, and a signal cancels them.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;

use crate::error::{EXIT_FAILED, EXIT_OK, IoContext, Result};
use crate::journal::{Outcome, Record, Stamp, Store, now};
use crate::pipeline::{DEFAULT_KILL_GRACE, Executor, Pipeline, StepId};
use crate::plan::{self, Mode, Plan};
use crate::run::policy::{Action, Event, Limits, Policy, Rules, Unsettled, Why};
use crate::run::process::{self, Child, LazyLog};
use crate::state::dir::{StateDir, Writer};
use crate::view::progress::{Progress, Tee};
use crate::workspace::{self, Survey};

mod jobs;
mod reattach;
mod signals;
pub use super::policy::{NotRun, retry_delay};
pub use jobs::Adopted;
pub use reattach::reattach;
use signals::SignalWatch;

/// How to run.
///
/// `RunOptions::default()` does not read the pipeline file: to honour its
/// `[pipeline] jobs` and `kill_grace` as the command line does, set
/// [`RunOptions::jobs`] and [`RunOptions::kill_grace`] from
/// [`Pipeline::jobs`] and [`Pipeline::kill_grace`].
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// At most this many steps at once.
    pub jobs: usize,
    /// Keep starting steps that do not need a failed one.
    pub keep_going: bool,
    /// How long a step may take to stop after a signal before SIGKILL.
    pub kill_grace: Duration,
    /// How "done" is decided; in [`Mode::Fingerprint`] a step planned to run
    /// is checked again when its turn comes and skipped if it turns out up to
    /// date (its dependencies reran and produced the same bytes).
    pub mode: Mode,
    /// `run --executor`: where steps that do not name an executor run,
    /// instead of `[pipeline] executor`.
    pub executor: Option<Executor>,
}

impl RunOptions {
    /// The options a pipeline file asks for: its `[pipeline] jobs` (else the
    /// number of CPUs) and `kill_grace`. What the command line starts from,
    /// and what a library caller running a [`Pipeline`] should too.
    pub fn for_pipeline(pipeline: &Pipeline) -> RunOptions {
        RunOptions {
            jobs: pipeline.jobs.unwrap_or_else(default_jobs),
            kill_grace: pipeline.kill_grace,
            ..RunOptions::default()
        }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            jobs: default_jobs(),
            keep_going: false,
            kill_grace: DEFAULT_KILL_GRACE,
            mode: Mode::Fingerprint,
            executor: None,
        }
    }
}

/// The number of CPUs, the default for `-j`.
pub fn default_jobs() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// The run's id in the journal.
    pub run: u64,
    /// Steps the plan skipped because they were done.
    pub skipped: usize,
    /// Steps that succeeded (perhaps after retries), in the order they did.
    pub succeeded: Vec<StepId>,
    /// Planned to run, but found up to date at their turn (early cutoff).
    pub up_to_date: Vec<StepId>,
    /// Steps whose last attempt in this run did not succeed (retries used
    /// up, or the run was stopped by a signal), in the order they ended.
    pub failed: Vec<StepId>,
    /// Steps planned to run that never started, and why, in pipeline order.
    pub not_run: Vec<(StepId, NotRun)>,
    /// The signal that stopped the run, if one did.
    pub interrupted: Option<Signal>,
    /// Processes left over by a killed earlier run, killed before starting.
    pub leftovers_killed: Vec<u32>,
    /// Wall-clock time spent running the steps.
    pub elapsed: Duration,
}

impl RunSummary {
    /// 0 when everything in scope is done, 1 when a step failed or did not
    /// run, 128 + the signal number when interrupted (130 for SIGINT, 143 for
    /// SIGTERM).
    pub fn exit_code(&self) -> i32 {
        match self.interrupted {
            Some(sig) => 128 + sig as i32,
            None if self.failed.is_empty() && self.not_run.is_empty() => EXIT_OK,
            None => EXIT_FAILED,
        }
    }
}

struct Running {
    id: StepId,
    attempt: u32,
    started: Instant,
    child: Child,
    log: LazyLog,
    /// It was sent SIGTERM for running past its timeout.
    timed_out: bool,
    /// The run's stop signal was forwarded to it: however it exits, it did
    /// not finish its work (many programs exit 0 when asked to stop).
    signalled: bool,
}

/// Runs every step the plan marks `Run`, recording each attempt in the
/// journal. Returns when nothing more can run.
pub fn execute(
    pipeline: &Pipeline,
    plan: &Plan,
    state: &StateDir,
    writer: &mut Writer,
    survey: &mut Survey,
    progress: &mut dyn Progress,
    options: &RunOptions,
) -> Result<RunSummary> {
    execute_adopting(
        pipeline,
        plan,
        state,
        writer,
        survey,
        progress,
        options,
        Vec::new(),
    )
}

/// [`execute`], first taking over Slurm jobs an earlier run submitted that
/// are still in flight (found by [`reattach`]): their steps count as
/// running, and are not submitted again.
#[allow(clippy::too_many_arguments)]
pub fn execute_adopting(
    pipeline: &Pipeline,
    plan: &Plan,
    state: &StateDir,
    writer: &mut Writer,
    survey: &mut Survey,
    progress: &mut dyn Progress,
    options: &RunOptions,
    adopted: Vec<Adopted>,
) -> Result<RunSummary> {
    let leftovers_killed = writer.close_dead_runs()?;
    if !leftovers_killed.is_empty() {
        progress.leftovers_killed(&leftovers_killed);
    }
    let run = writer.history.next_run();
    writer.record(Record::RunStarted {
        run,
        at: now(),
        pid: std::process::id(),
    })?;
    crate::state::dir::create_private_dir(&state.logs())
        .context(format!("cannot create {}", state.logs().display()))?;

    // Waiting for steps needs SIGCHLD at its default: a parent that ran us
    // with it ignored would make every exit status vanish.
    // SAFETY: setting a signal to its default disposition is always sound.
    let _ =
        unsafe { nix::sys::signal::signal(Signal::SIGCHLD, nix::sys::signal::SigHandler::SigDfl) };
    let signals = SignalWatch::start()?;
    let mut s = Scheduler::new(
        pipeline, plan, state, writer, survey, progress, options, run, signals,
    );
    s.summary.leftovers_killed = leftovers_killed;
    s.adopt(adopted);
    let result = s.run();
    if result.is_err() {
        s.abandon();
    }
    s.signals.stop();
    result?;
    let mut summary = s.finish();
    summary.elapsed = s.started.elapsed();
    writer.record(Record::RunFinished {
        run,
        at: now(),
        exit_code: Some(summary.exit_code()),
        counts: writer.history.run(run).map(|r| r.counts),
    })?;
    writer.store.sync()?;
    Ok(summary)
}

fn state_dir_abs(state: &StateDir) -> PathBuf {
    crate::state::dir::real_path(state.path()).unwrap_or_else(|_| state.path().to_path_buf())
}

struct Scheduler<'a> {
    pipeline: &'a Pipeline,
    plan: &'a Plan,
    state: &'a StateDir,
    state_dir_var: String,
    writer: &'a mut Writer,
    survey: &'a mut Survey,
    progress: &'a mut dyn Progress,
    options: &'a RunOptions,
    run: u64,
    started: Instant,
    /// The shell program resolved once per `PATH`, not at every spawn.
    programs: HashMap<Option<OsString>, PathBuf>,
    /// Every name in some step's `secret_env`: withheld from the steps that
    /// do not declare it.
    secrets: Vec<String>,

    /// What starts when, and what an attempt's end leads to.
    policy: Policy,
    /// Attempts running as local processes.
    running: Vec<Running>,
    /// Attempts running as Slurm jobs.
    jobs: jobs::Jobs,
    signals: SignalWatch,
    summary: RunSummary,
}

impl<'a> Scheduler<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        pipeline: &'a Pipeline,
        plan: &'a Plan,
        state: &'a StateDir,
        writer: &'a mut Writer,
        survey: &'a mut Survey,
        progress: &'a mut dyn Progress,
        options: &'a RunOptions,
        run: u64,
        signals: SignalWatch,
    ) -> Scheduler<'a> {
        let mut rules: Vec<Rules> = pipeline
            .steps
            .iter()
            .map(|step| Rules {
                after: step.after.clone(),
                planned: false,
                retries: step.retries,
                retry_delay: step.retry_delay,
                timeout: step.timeout,
            })
            .collect();
        for id in plan.to_run() {
            rules[id.index()].planned = true;
        }
        let limits = Limits {
            jobs: options.jobs,
            keep_going: options.keep_going,
            kill_grace: options.kill_grace,
        };
        Scheduler {
            pipeline,
            plan,
            state,
            state_dir_var: state_dir_abs(state).display().to_string(),
            writer,
            survey,
            progress,
            options,
            run,
            started: Instant::now(),
            programs: HashMap::new(),
            secrets: {
                let mut all: Vec<String> = pipeline
                    .steps
                    .iter()
                    .flat_map(|s| s.secret_env.clone())
                    .collect();
                all.sort();
                all.dedup();
                all
            },
            policy: Policy::new(rules, limits),
            running: Vec::new(),
            jobs: jobs::Jobs::new(pipeline.slurm_poll),
            signals,
            summary: RunSummary {
                run,
                skipped: plan.done(),
                succeeded: Vec::new(),
                up_to_date: Vec::new(),
                failed: Vec::new(),
                not_run: Vec::new(),
                interrupted: None,
                leftovers_killed: Vec::new(),
                elapsed: Duration::ZERO,
            },
        }
    }

    fn run(&mut self) -> Result<()> {
        loop {
            self.start_ready()?;
            if self.policy.is_idle() && self.jobs.is_idle() {
                return Ok(());
            }
            let (exited, readable, woken) = self.wait()?;
            if woken {
                for sig in self.signals.take() {
                    self.signalled(sig)?;
                }
            }
            for i in readable {
                let r = &mut self.running[i];
                let mut sink = Tee::new(&mut r.log, &mut *self.progress, self.pipeline, r.id);
                r.child.read_output(&mut sink);
            }
            // Highest index first, so removing one does not shift the others.
            for i in exited.into_iter().rev() {
                let r = self.running.swap_remove(i);
                self.exited(r)?;
            }
            self.fire_timers()?;
            // Checked first so a run of local steps reads no clock for it.
            if !self.jobs.is_idle() && self.jobs.due(Instant::now()) {
                self.poll_jobs()?;
            }
        }
    }

    /// Blocks until something happens: a step exits or prints, a signal
    /// arrives, or the nearest deadline passes. Returns the indexes (into
    /// `running`) of exited steps and of steps with output to read, and
    /// whether a signal woke us.
    fn wait(&mut self) -> Result<(Vec<usize>, Vec<usize>, bool)> {
        let timeout = match self.next_wake() {
            None => PollTimeout::NONE,
            Some(at) => {
                let ms = at.saturating_duration_since(Instant::now()).as_millis();
                // Round up, or we would spin until the deadline.
                PollTimeout::try_from(ms.saturating_add(1).min(i32::MAX as u128) as i32)
                    .unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(1 + 2 * self.running.len());
        fds.push(PollFd::new(self.signals.fd(), PollFlags::POLLIN));
        // (index into `running`, is it the exit descriptor)
        let mut owners: Vec<(usize, bool)> = Vec::with_capacity(2 * self.running.len());
        for (i, r) in self.running.iter().enumerate() {
            fds.push(PollFd::new(r.child.exit_fd(), PollFlags::POLLIN));
            owners.push((i, true));
            if let Some(out) = r.child.output_fd() {
                fds.push(PollFd::new(out, PollFlags::POLLIN));
                owners.push((i, false));
            }
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(std::io::Error::from(e)).context("cannot wait for the steps"),
        }
        let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
        let woken = ready(&fds[0]);
        let mut exited = Vec::new();
        let mut readable = Vec::new();
        for (fd, &(i, is_exit)) in fds[1..].iter().zip(&owners) {
            if ready(fd) {
                if is_exit {
                    exited.push(i)
                } else {
                    readable.push(i)
                }
            }
        }
        exited.dedup();
        Ok((exited, readable, woken))
    }

    fn start_ready(&mut self) -> Result<()> {
        // Slurm steps waiting for the check that jobs see the state dir.
        let mut held = Vec::new();
        while let Some(id) = self.policy.next_start(&held) {
            if self.executor(id) == Executor::Slurm && !self.slurm_ready(id)? {
                held.push(id);
                continue;
            }
            self.start(id)?;
        }
        Ok(())
    }

    fn executor(&self, id: StepId) -> Executor {
        self.pipeline.executor_of(id, self.options.executor)
    }

    fn start(&mut self, id: StepId) -> Result<()> {
        let step = self.pipeline.step(id);
        // The files as they are now, after everything this step needs ran.
        let facts = self.survey.refresh(self.pipeline, id).clone();
        if self.options.mode == Mode::Fingerprint && self.policy.first_try(id) {
            let h = self.writer.history.step(&step.name);
            if let Some(h) = h
                && let Some(success) = &h.success
                && success.stamp.is_some()
                && plan::staleness(h, success, Some(&facts), !step.outputs.is_empty()).is_empty()
            {
                // Early cutoff: what it needs reran and came out the same.
                self.progress.step_up_to_date(self.pipeline, id);
                self.summary.up_to_date.push(id);
                let actions = self.policy.on(Instant::now(), Event::UpToDate(id));
                return self.act(actions);
            }
        }
        let attempt = self
            .writer
            .history
            .step(&step.name)
            .map_or(0, |h| h.attempts_started)
            + 1;
        self.policy.on(Instant::now(), Event::Started(id));
        let mut log = LazyLog::new(self.state.log(&step.name, attempt));
        let stamp = facts
            .missing_inputs
            .is_empty()
            .then(|| Stamp::new(facts.fingerprint, facts.components.clone()));
        self.writer.record(Record::AttemptStarted {
            run: self.run,
            step: step.name.clone(),
            attempt,
            at: now(),
            stamp,
        })?;
        self.progress
            .step_started(self.pipeline, id, attempt, log.path());
        if let Some(missing) = facts.missing_inputs.first() {
            let why = format!("input `{}` {}", missing.pattern, missing.why);
            let _ = writeln!(log, "stepwise: not started: {why}");
            return self.ended(id, attempt, Outcome::NotStarted(why), 0, &log);
        }
        if let Some(name) = step
            .secret_env
            .iter()
            .find(|name| std::env::var_os(name).is_none())
        {
            let why =
                format!("`{name}` (in its `secret_env`) is not set in stepwise's environment");
            let _ = writeln!(log, "stepwise: not started: {why}");
            return self.ended(id, attempt, Outcome::NotStarted(why), 0, &log);
        }
        // The log is created on the step's first byte of output, but whether
        // it can be is checked now: a step whose output would have nowhere
        // to go is not started at all.
        if let Err(e) = log.check() {
            let why = format!("cannot create its log {}: {e}", log.path().display());
            return self.ended(id, attempt, Outcome::NotStarted(why), 0, &log);
        }
        if self.executor(id) == Executor::Slurm {
            return self.submit(id, attempt, log.path().to_path_buf());
        }
        let started = Instant::now();
        match self.spawn(id, attempt) {
            Ok(child) => {
                self.policy.on(started, Event::Spawned(id));
                self.running.push(Running {
                    id,
                    attempt,
                    started,
                    child,
                    log,
                    timed_out: false,
                    signalled: false,
                });
                Ok(())
            }
            Err(e) => {
                let _ = writeln!(log, "stepwise: could not start the step: {e}");
                self.ended(id, attempt, Outcome::NotStarted(e.to_string()), 0, &log)
            }
        }
    }

    fn spawn(&mut self, id: StepId, attempt: u32) -> std::io::Result<Child> {
        let pipeline = self.pipeline;
        let step = pipeline.step(id);
        let path = step
            .env
            .get("PATH")
            .or(pipeline.env.get("PATH"))
            .map(OsString::from);
        let program = self
            .programs
            .entry(path.clone())
            .or_insert_with(|| process::resolve_program(&pipeline.shell[0], path.as_ref()))
            .clone();
        let attempt = attempt.to_string();
        let run = self.run.to_string();
        let mut env: Vec<(&str, &str)> =
            Vec::with_capacity(pipeline.env.len() + step.env.len() + 4);
        env.extend(pipeline.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        env.extend(step.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        env.push((process::STEP_VAR, &step.name));
        env.push((process::ATTEMPT_VAR, &attempt));
        env.push((process::RUN_VAR, &run));
        env.push((process::STATE_DIR_VAR, &self.state_dir_var));
        let dir = pipeline.step_dir(id);
        let withheld = self
            .secrets
            .iter()
            .filter(|name| !step.secret_env.contains(name))
            .map(String::as_str)
            .collect();
        process::spawn(process::Spec {
            program: &program,
            args: &pipeline.shell[1..],
            run: &step.run,
            dir: &dir,
            env,
            withheld,
        })
    }

    fn exited(&mut self, r: Running) -> Result<()> {
        let Running {
            id,
            attempt,
            started,
            child,
            mut log,
            timed_out,
            signalled,
            ..
        } = r;
        let mut sink = Tee::new(&mut log, &mut *self.progress, self.pipeline, id);
        let status = child.finish(&mut sink);
        let duration_ms = started.elapsed().as_millis() as u64;
        let outcome = match status {
            Ok(exit) => match exit {
                _ if timed_out => Outcome::TimedOut,
                _ if signalled => {
                    Outcome::Interrupted(self.summary.interrupted.map_or(0, |s| s as i32))
                }
                process::Exit::Code(0) => {
                    // Verify before recording success: every declared output
                    // must exist.
                    self.survey.refresh_product_settled(self.pipeline, id);
                    match self.survey.get(id).map(|f| f.missing_outputs.clone()) {
                        Some(missing) if !missing.is_empty() => Outcome::OutputsMissing(missing),
                        _ => Outcome::Success,
                    }
                }
                process::Exit::Code(code) => Outcome::Exited(code),
                process::Exit::Signal(sig) => Outcome::Signaled(sig),
            },
            // It did run: recorded as a failure that may have written its
            // outputs (unlike "not started"), so they are cleaned up.
            Err(e) => Outcome::Error(format!("lost track of the step's process: {e}")),
        };
        if let Some(e) = log.error.take() {
            self.progress.warning(&format!(
                "could not write the log {}: {e}",
                log.path().display()
            ));
        }
        self.ended(id, attempt, outcome, duration_ms, &log)
    }

    /// Records how an attempt ended and decides what follows from it.
    fn ended(
        &mut self,
        id: StepId,
        attempt: u32,
        outcome: Outcome,
        duration_ms: u64,
        log: &LazyLog,
    ) -> Result<()> {
        let log_path = log.exists().then(|| log.path());
        self.record_end(self.run, id, attempt, &outcome, duration_ms, log_path)?;
        self.follow_up(id, outcome)
    }

    /// Records how an attempt of run `run` ended, and shows it.
    fn record_end(
        &mut self,
        run: u64,
        id: StepId,
        attempt: u32,
        outcome: &Outcome,
        duration_ms: u64,
        log: Option<&std::path::Path>,
    ) -> Result<()> {
        let step = self.pipeline.step(id);
        self.writer.record(Record::AttemptFinished {
            run,
            step: step.name.clone(),
            attempt,
            at: now(),
            duration_ms,
            outcome: outcome.clone(),
            value: None,
        })?;
        self.progress
            .step_finished(self.pipeline, id, attempt, outcome, duration_ms, log);
        Ok(())
    }

    /// What follows from a recorded outcome: dependents released, a retry,
    /// or the step failed for good.
    fn follow_up(&mut self, id: StepId, outcome: Outcome) -> Result<()> {
        let step = self.pipeline.step(id);
        // A failed attempt leaves no output that could pass for complete. One
        // that never started wrote nothing, so has nothing to clean.
        if !outcome.ok() && !step.keep_failed_outputs && !matches!(outcome, Outcome::NotStarted(_))
        {
            for (path, e) in workspace::remove_outputs(self.pipeline, id) {
                self.progress.warning(&format!(
                    "{} was not removed after `{}` failed: {e}",
                    path.display(),
                    step.name
                ));
            }
            self.survey.refresh_product(self.pipeline, id);
        }
        let actions = self.policy.on(
            Instant::now(),
            Event::Ended {
                id,
                ok: outcome.ok(),
            },
        );
        self.act(actions)
    }

    /// Carries out what the policy decided, in its order.
    fn act(&mut self, actions: Vec<Action>) -> Result<()> {
        for action in actions {
            match action {
                Action::Succeeded(id) => self.summary.succeeded.push(id),
                Action::Retry { id, retry, delay } => {
                    let of = self.pipeline.step(id).retries;
                    self.progress
                        .retry_scheduled(self.pipeline, id, retry, of, delay);
                }
                Action::Failed(id) => self.summary.failed.push(id),
                Action::Signal { id, signal, why } => {
                    let Some(r) = self.running.iter_mut().find(|r| r.id == id) else {
                        continue;
                    };
                    match why {
                        Why::Timeout => r.timed_out = true,
                        Why::Stop => r.signalled = true,
                        Why::Kill => {}
                    }
                    r.child.signal(signal);
                }
                Action::Interrupted { signal, running } => {
                    self.summary.interrupted = Some(signal);
                    self.progress.interrupted(signal, running);
                }
                Action::CancelJobs(signal) => self.cancel_jobs(signal)?,
            }
        }
        Ok(())
    }

    fn signalled(&mut self, sig: Signal) -> Result<()> {
        let actions = self.policy.on(Instant::now(), Event::Signal(sig));
        self.act(actions)
    }

    fn next_wake(&self) -> Option<Instant> {
        [self.policy.next_wake(), self.jobs.next_wake()]
            .into_iter()
            .flatten()
            .min()
    }

    fn fire_timers(&mut self) -> Result<()> {
        let actions = self.policy.on(Instant::now(), Event::Tick);
        self.act(actions)?;
        if self.jobs.len() > 0 {
            self.fire_job_timers();
        }
        Ok(())
    }

    /// The journal cannot be written: stop everything we started, since we
    /// could not record how it ends.
    fn abandon(&mut self) {
        for r in self.running.drain(..) {
            r.child.signal(Signal::SIGKILL);
            let mut log = r.log;
            let _ = r.child.finish(&mut log);
        }
        self.jobs.abandon();
    }

    fn finish(&mut self) -> RunSummary {
        // The run ended before the check that jobs see the state dir did.
        self.jobs.abandon();
        for id in self.plan.to_run() {
            match self.policy.unsettled(id) {
                // It ran and failed; a signal dropped the retry it waited for.
                Some(Unsettled::Failed) => self.summary.failed.push(id),
                Some(Unsettled::NotRun(why)) => self.summary.not_run.push((id, why)),
                None => {}
            }
        }
        self.summary.clone()
    }
}
