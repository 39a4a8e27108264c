//! Runs the steps a plan says to run, along the dependency graph.
//!
//! One thread (the caller's) owns every decision and every journal write;
//! each running step has a small thread that only waits for its process and
//! reports back over a channel, as do signals. So records never interleave,
//! and a step's success is in the journal before anything that needs it
//! starts.
//!
//! Failure policy: after a step fails, no new step starts (steps already
//! running finish), unless `keep_going`, in which case every step that does
//! not need a failed one still runs. On SIGINT/SIGTERM no new step starts,
//! the signal is forwarded to every running step's process group, and what
//! is still running after the grace period is killed; a second signal kills
//! at once.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::error::{EXIT_FAILED, EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, IoContext, Result};
use crate::journal::Store;
use crate::journal::{Outcome, Record, now};
use crate::pipeline::{Pipeline, StepId};
use crate::plan::Plan;
use crate::process::{self, Handle};
use crate::report::Progress;
use crate::state_dir::{StateDir, Writer};

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// At most this many steps at once.
    pub jobs: usize,
    /// Keep starting steps that do not need a failed one.
    pub keep_going: bool,
    /// How long a step may take to stop after SIGTERM/SIGINT before SIGKILL.
    pub kill_grace: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            jobs: default_jobs(),
            keep_going: false,
            kill_grace: Duration::from_secs(5),
        }
    }
}

/// The number of CPUs, the default for `-j`.
pub fn default_jobs() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// Why a step that should have run did not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotRun {
    /// It needs (directly or not) this step, which failed.
    NeedsFailed(StepId),
    /// The run stopped starting steps (a failure without `--keep-going`, or
    /// a signal) before its turn.
    Stopped,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub run: u64,
    /// Steps the plan skipped because they were done.
    pub skipped: usize,
    pub succeeded: Vec<StepId>,
    pub failed: Vec<StepId>,
    pub not_run: Vec<(StepId, NotRun)>,
    /// The signal that stopped the run, if one did.
    pub interrupted: Option<Signal>,
    pub elapsed: Duration,
}

impl RunSummary {
    /// 0 when everything in scope is done, 1 when a step failed or did not
    /// run, 130/143 when interrupted by SIGINT/SIGTERM.
    pub fn exit_code(&self) -> i32 {
        match self.interrupted {
            Some(Signal::SIGINT) => EXIT_SIGINT,
            Some(Signal::SIGTERM) => EXIT_SIGTERM,
            Some(sig) => 128 + sig as i32,
            None if self.failed.is_empty() && self.not_run.is_empty() => EXIT_OK,
            None => EXIT_FAILED,
        }
    }
}

enum Msg {
    Exited {
        slot: usize,
        status: io::Result<ExitStatus>,
    },
    Signal(Signal),
}

struct Running {
    id: StepId,
    attempt: u32,
    started: Instant,
    handle: Handle,
    log: PathBuf,
}

/// Runs every step the plan marks `Run`, recording each attempt in the
/// journal. Returns when nothing more can run.
pub fn execute(
    pipeline: &Pipeline,
    plan: &Plan,
    state: &StateDir,
    writer: &mut Writer,
    progress: &mut dyn Progress,
    options: &RunOptions,
) -> Result<RunSummary> {
    let started = Instant::now();
    let run = writer.history.next_run();
    writer.record(Record::RunStarted {
        run,
        at: now(),
        pid: std::process::id(),
    })?;
    std::fs::create_dir_all(state.logs())
        .context(format!("cannot create {}", state.logs().display()))?;

    let n = pipeline.steps.len();
    let mut to_run = vec![false; n];
    for id in plan.to_run() {
        to_run[id.index()] = true;
    }
    let dependents = pipeline.dependents();
    let mut waiting = vec![0usize; n];
    let mut ready: BTreeSet<StepId> = BTreeSet::new();
    for id in plan.to_run() {
        waiting[id.index()] = pipeline
            .step(id)
            .after
            .iter()
            .filter(|d| to_run[d.index()])
            .count();
        if waiting[id.index()] == 0 {
            ready.insert(id);
        }
    }

    let mut summary = RunSummary {
        run,
        skipped: plan.done(),
        succeeded: Vec::new(),
        failed: Vec::new(),
        not_run: Vec::new(),
        interrupted: None,
        elapsed: Duration::ZERO,
    };
    let mut finished = vec![false; n];
    let mut blocked: Vec<Option<StepId>> = vec![None; n];
    let (tx, rx) = mpsc::channel::<Msg>();
    let signals = SignalForwarder::start(tx.clone())?;
    let mut slots: Vec<Option<Running>> = Vec::new();
    let mut running = 0usize;
    let mut stopping = false;
    let mut kill_at: Option<Instant> = None;
    let jobs = options.jobs.max(1);

    let result: Result<()> = (|| {
        loop {
            while !stopping && running < jobs {
                let Some(id) = ready.pop_first() else { break };
                let step = pipeline.step(id);
                let attempt = writer
                    .history
                    .step(&step.name)
                    .map_or(0, |h| h.attempts_started)
                    + 1;
                let log = state.log(&step.name, attempt);
                writer.record(Record::AttemptStarted {
                    run,
                    step: step.name.clone(),
                    attempt,
                    at: now(),
                })?;
                progress.step_started(pipeline, id, attempt, &log);
                let t0 = Instant::now();
                match start(pipeline, id, attempt, run, &log) {
                    Ok(proc) => {
                        let handle = proc.handle();
                        let slot = slots.iter().position(Option::is_none).unwrap_or_else(|| {
                            slots.push(None);
                            slots.len() - 1
                        });
                        slots[slot] = Some(Running {
                            id,
                            attempt,
                            started: t0,
                            handle,
                            log,
                        });
                        running += 1;
                        let tx = tx.clone();
                        thread::spawn(move || {
                            let status = proc.wait();
                            let _ = tx.send(Msg::Exited { slot, status });
                        });
                    }
                    Err(e) => {
                        let outcome = Outcome::NotStarted(e.to_string());
                        let _ = std::fs::write(
                            &log,
                            format!("stepwise: could not start the step: {e}\n"),
                        );
                        finish(
                            pipeline, writer, progress, run, id, attempt, outcome, 0, &log,
                        )?;
                        on_failure(
                            id,
                            &mut summary,
                            &mut blocked,
                            &to_run,
                            &dependents,
                            options,
                            &mut stopping,
                        );
                        finished[id.index()] = true;
                    }
                }
            }
            if running == 0 {
                break;
            }
            let msg = match kill_at {
                Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(msg) => Some(msg),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => unreachable!("we hold a sender"),
                },
                None => Some(rx.recv().expect("we hold a sender")),
            };
            match msg {
                None => {
                    // The grace period is over.
                    for r in slots.iter().flatten() {
                        r.handle.signal(Signal::SIGKILL);
                    }
                    kill_at = None;
                }
                Some(Msg::Signal(sig)) => {
                    if summary.interrupted.is_some() {
                        // A second signal: no more patience.
                        for r in slots.iter().flatten() {
                            r.handle.signal(Signal::SIGKILL);
                        }
                    } else {
                        summary.interrupted = Some(sig);
                        stopping = true;
                        progress.interrupted(sig, running);
                        for r in slots.iter().flatten() {
                            r.handle.signal(sig);
                        }
                        kill_at = Some(Instant::now() + options.kill_grace);
                    }
                }
                Some(Msg::Exited { slot, status }) => {
                    let r = slots[slot].take().expect("a running slot");
                    running -= 1;
                    let duration_ms = r.started.elapsed().as_millis() as u64;
                    let outcome = match status {
                        Ok(status) => match process::status_parts(status) {
                            (Some(0), _) => Outcome::Success,
                            _ if summary.interrupted.is_some() => {
                                Outcome::Interrupted(summary.interrupted.map_or(0, |s| s as i32))
                            }
                            (Some(code), _) => Outcome::Exited(code),
                            (None, Some(sig)) => Outcome::Signaled(sig),
                            (None, None) => Outcome::Exited(-1),
                        },
                        Err(e) => Outcome::NotStarted(format!("lost track of the process: {e}")),
                    };
                    let ok = outcome.ok();
                    finish(
                        pipeline,
                        writer,
                        progress,
                        run,
                        r.id,
                        r.attempt,
                        outcome,
                        duration_ms,
                        &r.log,
                    )?;
                    finished[r.id.index()] = true;
                    if ok {
                        summary.succeeded.push(r.id);
                        for &d in &dependents[r.id.index()] {
                            if to_run[d.index()] {
                                waiting[d.index()] -= 1;
                                if waiting[d.index()] == 0 && blocked[d.index()].is_none() {
                                    ready.insert(d);
                                }
                            }
                        }
                    } else {
                        on_failure(
                            r.id,
                            &mut summary,
                            &mut blocked,
                            &to_run,
                            &dependents,
                            options,
                            &mut stopping,
                        );
                    }
                }
            }
        }
        Ok(())
    })();

    if result.is_err() {
        // The journal cannot be written: stop everything we started, since
        // we could not record how it ends.
        for r in slots.iter().flatten() {
            r.handle.signal(Signal::SIGKILL);
        }
        while running > 0 {
            if let Ok(Msg::Exited { .. }) = rx.recv() {
                running -= 1;
            }
        }
    }
    signals.stop();
    result?;

    for id in plan.to_run() {
        if !finished[id.index()] {
            let why = blocked[id.index()].map_or(NotRun::Stopped, NotRun::NeedsFailed);
            summary.not_run.push((id, why));
        }
    }
    summary.elapsed = started.elapsed();
    writer.record(Record::RunFinished {
        run,
        at: now(),
        exit_code: summary.exit_code(),
    })?;
    writer.store.sync()?;
    Ok(summary)
}

fn start(
    pipeline: &Pipeline,
    id: StepId,
    attempt: u32,
    run: u64,
    log: &Path,
) -> io::Result<process::Started> {
    let step = pipeline.step(id);
    let file = std::fs::File::create(log)?;
    let attempt = attempt.to_string();
    let run = run.to_string();
    let mut env: Vec<(&str, &str)> = Vec::with_capacity(pipeline.env.len() + step.env.len() + 3);
    env.extend(pipeline.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    env.extend(step.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    env.push(("STEPWISE_STEP", &step.name));
    env.push(("STEPWISE_ATTEMPT", &attempt));
    env.push(("STEPWISE_RUN", &run));
    let dir = pipeline.step_dir(id);
    process::spawn(process::Spec {
        shell: &pipeline.shell,
        run: &step.run,
        dir: &dir,
        env,
        log: file,
    })
}

#[allow(clippy::too_many_arguments)]
fn finish(
    pipeline: &Pipeline,
    writer: &mut Writer,
    progress: &mut dyn Progress,
    run: u64,
    id: StepId,
    attempt: u32,
    outcome: Outcome,
    duration_ms: u64,
    log: &Path,
) -> Result<()> {
    writer.record(Record::AttemptFinished {
        run,
        step: pipeline.step(id).name.clone(),
        attempt,
        at: now(),
        duration_ms,
        outcome: outcome.clone(),
    })?;
    progress.step_finished(pipeline, id, attempt, &outcome, duration_ms, log);
    Ok(())
}

fn on_failure(
    id: StepId,
    summary: &mut RunSummary,
    blocked: &mut [Option<StepId>],
    to_run: &[bool],
    dependents: &[Vec<StepId>],
    options: &RunOptions,
    stopping: &mut bool,
) {
    summary.failed.push(id);
    if !options.keep_going {
        *stopping = true;
    }
    let mut stack = vec![id];
    while let Some(s) = stack.pop() {
        for &d in &dependents[s.index()] {
            if to_run[d.index()] && blocked[d.index()].is_none() {
                blocked[d.index()] = Some(id);
                stack.push(d);
            }
        }
    }
}

/// Turns SIGINT and SIGTERM into messages for the scheduler while a run is
/// going on.
struct SignalForwarder {
    handle: signal_hook::iterator::Handle,
    thread: thread::JoinHandle<()>,
}

impl SignalForwarder {
    fn start(tx: mpsc::Sender<Msg>) -> Result<SignalForwarder> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
            .context("cannot install signal handlers")?;
        let handle = signals.handle();
        let thread = thread::spawn(move || {
            for sig in signals.forever() {
                if let Ok(sig) = Signal::try_from(sig)
                    && tx.send(Msg::Signal(sig)).is_err()
                {
                    return;
                }
            }
        });
        Ok(SignalForwarder { handle, thread })
    }

    fn stop(self) {
        self.handle.close();
        let _ = self.thread.join();
    }
}
