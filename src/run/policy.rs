//! The scheduler's policy: what may start, what a finished attempt leads to,
//! and what to do about timeouts and signals, as a state machine over the
//! steps of one run.
//!
//! It owns one [`StepState`] per step and the run's stop reason, is told
//! what happened ([`Event`]) and answers with what to do ([`Action`]); the
//! poll loop in `scheduler` feeds it and carries the actions out (processes,
//! Slurm jobs, journal, display). It does no I/O and reads no clock: every
//! event comes with the instant it happened at, so it is tested without
//! processes or time passing (see `policy/tests.rs`).
//!
//! Record before act is the loop's part: it tells the policy an attempt
//! ended only once the end is in the journal, and starts a step only after
//! recording its start, so what the policy releases never runs ahead of the
//! journal.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::pipeline::StepId;

#[cfg(test)]
mod tests;

/// The longest wait between retries, unless `retry_delay` itself is longer.
const RETRY_DELAY_CAP: Duration = Duration::from_secs(60);

/// The wait before retry number `retry` (1-based) of a step.
pub fn retry_delay(base: Duration, retry: u32) -> Duration {
    let cap = RETRY_DELAY_CAP.max(base);
    base.saturating_mul(1u32 << (retry.saturating_sub(1)).min(20))
        .min(cap)
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

/// What the policy needs to know about one step.
#[derive(Clone, Debug, Default)]
pub(crate) struct Rules {
    /// The steps it needs (its `after`).
    pub after: Vec<StepId>,
    /// Whether the plan runs it in this run.
    pub planned: bool,
    /// Failed attempts retried this many times.
    pub retries: u32,
    /// The wait before the first retry (doubling after).
    pub retry_delay: Duration,
    /// How long one attempt may run as a process.
    pub timeout: Option<Duration>,
}

/// What the policy needs to know about the run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// At most this many attempts at once.
    pub jobs: usize,
    /// After a step fails for good, still start what does not need it.
    pub keep_going: bool,
    /// How long a process asked to stop may take before SIGKILL.
    pub kill_grace: Duration,
}

/// Where one step stands in this run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StepState {
    /// Not planned to run (done already, or out of scope).
    Skipped,
    /// Some steps it needs have not succeeded yet in this run.
    Waiting { needs_left: usize },
    /// May start; `tries` attempts were made in this run already.
    Ready { tries: u32 },
    /// Attempt number `tries` of this run is under way.
    Running {
        tries: u32,
        process: Option<Process>,
    },
    /// An earlier runner's Slurm job, taken over: it runs although what it
    /// needs may not have succeeded in this run.
    Adopted {
        needs_left: usize,
        blocked_by: Option<StepId>,
    },
    /// Failed; tries again at `when`.
    RetryAt { when: Instant, tries: u32 },
    /// Succeeded (or found up to date).
    Done,
    /// Failed for good.
    Failed,
    /// Needs a step that failed for good.
    Blocked { by: StepId },
    /// The run gave up on it before it settled: a retry dropped by a signal,
    /// or a Slurm job that could not be cancelled (left to the next run).
    Dropped { tries: u32 },
}

/// The timers of an attempt running as a local process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Process {
    /// When its timeout expires.
    deadline: Option<Instant>,
    /// It was sent SIGTERM for running past its timeout.
    timed_out: bool,
    /// When to SIGKILL it, once asked to stop for its timeout.
    kill_at: Option<Instant>,
}

/// Why the run starts nothing new.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// A step failed for good, without `keep_going`: retries still happen.
    Failure,
    /// A signal: nothing starts at all, not even a retry.
    Signal(Signal),
}

/// What happened, as the loop tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A Slurm job of an earlier runner is taken over for this step.
    Adopted(StepId),
    /// The step was found up to date at its turn: it is done without running.
    UpToDate(StepId),
    /// An attempt's start is recorded: it counts, whether or not its process
    /// or job comes to exist.
    Started(StepId),
    /// The started attempt runs as a process from now on (its timeout
    /// counts from here).
    Spawned(StepId),
    /// The attempt's end is recorded.
    Ended { id: StepId, ok: bool },
    /// An adopted job ended and is recorded. `rerun`: it succeeded, but what
    /// it was made from changed since, so its turn comes again.
    AdoptedEnded { id: StepId, ok: bool, rerun: bool },
    /// The attempt is no longer followed and its end will not be recorded
    /// here (a Slurm job that could not be cancelled).
    Lost(StepId),
    /// Time passed: timers due by now fire.
    Tick,
    /// The runner got a signal.
    Signal(Signal),
}

/// Why a process gets a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    /// Past its timeout: its attempt is recorded as timed out.
    Timeout,
    /// The run's own stop signal, forwarded: whatever it exits with, it did
    /// not finish its work.
    Stop,
    /// It did not stop within the grace period, or a second signal came.
    Kill,
}

/// What to do, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// The step succeeded: count it (what needs it may start now).
    Succeeded(StepId),
    /// Its attempt failed and is retried (number `retry`) after `delay`.
    Retry {
        id: StepId,
        retry: u32,
        delay: Duration,
    },
    /// The step failed for good.
    Failed(StepId),
    /// Send `signal` to the step's process group.
    Signal {
        id: StepId,
        signal: Signal,
        why: Why,
    },
    /// The run is interrupted by `signal` with `running` attempts under way.
    Interrupted { signal: Signal, running: usize },
    /// Cancel every Slurm job in flight (and record each).
    CancelJobs(Signal),
}

/// How a step the plan meant to run ended up, once the run is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unsettled {
    /// It ran in this run and its last attempt did not succeed.
    Failed,
    /// It never started.
    NotRun(NotRun),
}

/// The policy of one run.
pub(crate) struct Policy {
    rules: Vec<Rules>,
    dependents: Vec<Vec<StepId>>,
    limits: Limits,
    steps: Vec<StepState>,
    /// The `Ready` steps, so the first in file order is found at once.
    ready: BTreeSet<StepId>,
    /// The `RetryAt` steps.
    retrying: Vec<StepId>,
    /// The `Running` and `Adopted` steps, in the order they started.
    running: Vec<StepId>,
    stop: Option<Stop>,
    /// SIGKILL every process still running at this instant (after a signal).
    kill_all_at: Option<Instant>,
}

impl Policy {
    pub(crate) fn new(rules: Vec<Rules>, limits: Limits) -> Policy {
        let mut dependents = vec![Vec::new(); rules.len()];
        for (i, r) in rules.iter().enumerate() {
            for dep in &r.after {
                dependents[dep.index()].push(StepId(i as u32));
            }
        }
        let mut ready = BTreeSet::new();
        let steps = rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                if !r.planned {
                    return StepState::Skipped;
                }
                let needs_left = r.after.iter().filter(|d| rules[d.index()].planned).count();
                if needs_left == 0 {
                    ready.insert(StepId(i as u32));
                    StepState::Ready { tries: 0 }
                } else {
                    StepState::Waiting { needs_left }
                }
            })
            .collect();
        Policy {
            rules,
            dependents,
            limits,
            steps,
            ready,
            retrying: Vec::new(),
            running: Vec::new(),
            stop: None,
            kill_all_at: None,
        }
    }

    /// Where a step stands.
    #[cfg(test)]
    pub(crate) fn state(&self, id: StepId) -> &StepState {
        &self.steps[id.index()]
    }

    /// Whether the plan runs the step in this run.
    pub(crate) fn planned(&self, id: StepId) -> bool {
        self.steps[id.index()] != StepState::Skipped
    }

    /// Why the run starts nothing new, if it does not.
    #[cfg(test)]
    pub(crate) fn stop(&self) -> Option<Stop> {
        self.stop
    }

    /// Attempts under way (processes and jobs, adopted ones too).
    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        self.running.len()
    }

    /// Nothing runs and no retry is pending: the run is over.
    pub(crate) fn is_idle(&self) -> bool {
        self.running.is_empty() && self.retrying.is_empty()
    }

    /// Whether the step has not been tried in this run (so it may turn out
    /// up to date at its turn).
    pub(crate) fn first_try(&self, id: StepId) -> bool {
        self.tries(id) == 0
    }

    /// Whether an adopted step's turn has come: everything it needs
    /// succeeded in this run.
    pub(crate) fn adopted_turn(&self, id: StepId) -> bool {
        matches!(
            self.steps[id.index()],
            StepState::Adopted { needs_left: 0, .. }
        )
    }

    fn tries(&self, id: StepId) -> u32 {
        match self.steps[id.index()] {
            StepState::Ready { tries }
            | StepState::Running { tries, .. }
            | StepState::RetryAt { tries, .. }
            | StepState::Dropped { tries } => tries,
            StepState::Adopted { .. } => 1,
            _ => 0,
        }
    }

    /// The step to start now, if any: within the `jobs` limit, the first
    /// ready one in file order, but not one of `held` (waiting on something
    /// outside the policy). After a failure (without `keep_going`) only a
    /// retry starts, since it belongs to a step that already started; after
    /// a signal nothing does.
    pub(crate) fn next_start(&self, held: &[StepId]) -> Option<StepId> {
        if self.running.len() >= self.limits.jobs.max(1) {
            return None;
        }
        let mut candidates = self.ready.iter().copied().filter(|id| !held.contains(id));
        match self.stop {
            None => candidates.next(),
            Some(Stop::Failure) => candidates.find(|&id| self.tries(id) > 0),
            Some(Stop::Signal(_)) => None,
        }
    }

    /// The nearest instant a timer is due: a process's timeout or kill, a
    /// retry, or the kill after a signal's grace period.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        let processes = self
            .running
            .iter()
            .flat_map(|id| match &self.steps[id.index()] {
                StepState::Running {
                    process: Some(p), ..
                } => [p.kill_at, if p.timed_out { None } else { p.deadline }],
                _ => [None, None],
            });
        let retries = self.retrying.iter().map(|id| match self.steps[id.index()] {
            StepState::RetryAt { when, .. } => Some(when),
            _ => None,
        });
        processes
            .chain(retries)
            .chain([self.kill_all_at])
            .flatten()
            .min()
    }

    /// Once the run is over: how a planned step that did not succeed or fail
    /// for good ended up (`None` for one that did).
    pub(crate) fn unsettled(&self, id: StepId) -> Option<Unsettled> {
        match self.steps[id.index()] {
            StepState::Skipped | StepState::Done | StepState::Failed => None,
            StepState::Blocked { by } => Some(Unsettled::NotRun(NotRun::NeedsFailed(by))),
            StepState::Waiting { .. } => Some(Unsettled::NotRun(NotRun::Stopped)),
            _ if self.tries(id) > 0 => Some(Unsettled::Failed),
            _ => Some(Unsettled::NotRun(NotRun::Stopped)),
        }
    }

    /// Takes in what happened at `now`, and says what to do about it.
    pub(crate) fn on(&mut self, now: Instant, event: Event) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Adopted(id) => self.adopted(id),
            Event::UpToDate(id) => {
                self.ready.remove(&id);
                self.release(id);
            }
            Event::Started(id) => {
                let tries = self.tries(id) + 1;
                self.ready.remove(&id);
                self.set(
                    id,
                    StepState::Running {
                        tries,
                        process: None,
                    },
                );
                self.running.push(id);
            }
            Event::Spawned(id) => {
                let timeout = self.rules[id.index()].timeout;
                if let StepState::Running { process, .. } = &mut self.steps[id.index()] {
                    *process = Some(Process {
                        deadline: timeout.map(|t| now + t),
                        timed_out: false,
                        kill_at: None,
                    });
                }
            }
            Event::Ended { id, ok } => self.ended(now, id, ok, &mut actions),
            Event::AdoptedEnded { id, ok, rerun } => {
                let StepState::Adopted {
                    needs_left,
                    blocked_by,
                } = self.steps[id.index()]
                else {
                    return actions;
                };
                if needs_left > 0 {
                    // Not its turn yet: it comes again, checked afresh.
                    self.running.retain(|&r| r != id);
                    self.set(
                        id,
                        match blocked_by {
                            Some(by) => StepState::Blocked { by },
                            None => StepState::Waiting { needs_left },
                        },
                    );
                } else if ok && rerun {
                    self.running.retain(|&r| r != id);
                    self.ready.insert(id);
                    self.set(id, StepState::Ready { tries: 0 });
                } else {
                    // Counts as this run's first attempt.
                    self.ended(now, id, ok, &mut actions);
                }
            }
            Event::Lost(id) => {
                let tries = self.tries(id);
                self.running.retain(|&r| r != id);
                self.set(id, StepState::Dropped { tries });
            }
            Event::Tick => self.tick(now, &mut actions),
            Event::Signal(signal) => self.signal(now, signal, &mut actions),
        }
        actions
    }

    fn set(&mut self, id: StepId, state: StepState) {
        self.steps[id.index()] = state;
    }

    fn adopted(&mut self, id: StepId) {
        let needs_left = match self.steps[id.index()] {
            StepState::Waiting { needs_left } => needs_left,
            StepState::Ready { .. } => 0,
            // Not planned, or adopted twice: nothing to take over.
            _ => return,
        };
        self.ready.remove(&id);
        self.set(
            id,
            StepState::Adopted {
                needs_left,
                blocked_by: None,
            },
        );
        self.running.push(id);
    }

    /// A step is done for this run: the steps waiting for it may go.
    fn release(&mut self, id: StepId) {
        self.set(id, StepState::Done);
        for i in 0..self.dependents[id.index()].len() {
            let d = self.dependents[id.index()][i];
            match &mut self.steps[d.index()] {
                StepState::Waiting { needs_left } => {
                    *needs_left -= 1;
                    if *needs_left == 0 {
                        self.steps[d.index()] = StepState::Ready { tries: 0 };
                        self.ready.insert(d);
                    }
                }
                StepState::Adopted { needs_left, .. } => *needs_left -= 1,
                _ => {}
            }
        }
    }

    /// What follows from an attempt's recorded end: dependents released, a
    /// retry, or the step failed for good.
    fn ended(&mut self, now: Instant, id: StepId, ok: bool, actions: &mut Vec<Action>) {
        let tries = self.tries(id);
        self.running.retain(|&r| r != id);
        if ok {
            self.release(id);
            actions.push(Action::Succeeded(id));
            return;
        }
        let rules = &self.rules[id.index()];
        // A retry is part of its step: only a signal cancels it.
        if tries <= rules.retries && !matches!(self.stop, Some(Stop::Signal(_))) {
            let delay = retry_delay(rules.retry_delay, tries);
            self.set(
                id,
                StepState::RetryAt {
                    when: now + delay,
                    tries,
                },
            );
            self.retrying.push(id);
            actions.push(Action::Retry {
                id,
                retry: tries,
                delay,
            });
            return;
        }
        self.set(id, StepState::Failed);
        actions.push(Action::Failed(id));
        if !self.limits.keep_going && self.stop.is_none() {
            self.stop = Some(Stop::Failure);
        }
        let mut stack = vec![id];
        while let Some(s) = stack.pop() {
            for i in 0..self.dependents[s.index()].len() {
                let d = self.dependents[s.index()][i];
                match &mut self.steps[d.index()] {
                    StepState::Waiting { .. } => {
                        self.steps[d.index()] = StepState::Blocked { by: id };
                    }
                    // Its job runs on; its turn will not come.
                    StepState::Adopted { blocked_by, .. } if blocked_by.is_none() => {
                        *blocked_by = Some(id);
                    }
                    // Already blocked, with all it leads to; or not planned.
                    _ => continue,
                }
                stack.push(d);
            }
        }
    }

    fn tick(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let grace = self.limits.kill_grace;
        for &id in &self.running {
            let StepState::Running {
                process: Some(p), ..
            } = &mut self.steps[id.index()]
            else {
                continue;
            };
            if !p.timed_out && p.deadline.is_some_and(|d| d <= now) {
                p.timed_out = true;
                p.kill_at = Some(now + grace);
                actions.push(Action::Signal {
                    id,
                    signal: Signal::SIGTERM,
                    why: Why::Timeout,
                });
            } else if p.kill_at.is_some_and(|k| k <= now) {
                p.kill_at = None;
                actions.push(Action::Signal {
                    id,
                    signal: Signal::SIGKILL,
                    why: Why::Kill,
                });
            }
        }
        if self.kill_all_at.is_some_and(|k| k <= now) {
            self.kill_all_at = None;
            self.kill_processes(actions);
        }
        let mut i = 0;
        while i < self.retrying.len() {
            let id = self.retrying[i];
            match self.steps[id.index()] {
                StepState::RetryAt { when, tries } if when <= now => {
                    self.retrying.swap_remove(i);
                    self.set(id, StepState::Ready { tries });
                    self.ready.insert(id);
                }
                _ => i += 1,
            }
        }
    }

    fn kill_processes(&self, actions: &mut Vec<Action>) {
        for &id in &self.running {
            if let StepState::Running {
                process: Some(_), ..
            } = self.steps[id.index()]
            {
                actions.push(Action::Signal {
                    id,
                    signal: Signal::SIGKILL,
                    why: Why::Kill,
                });
            }
        }
    }

    fn signal(&mut self, now: Instant, signal: Signal, actions: &mut Vec<Action>) {
        if let Some(Stop::Signal(_)) = self.stop {
            // A second signal: no more patience.
            self.kill_processes(actions);
            return;
        }
        self.stop = Some(Stop::Signal(signal));
        for id in std::mem::take(&mut self.retrying) {
            let tries = self.tries(id);
            self.set(id, StepState::Dropped { tries });
        }
        actions.push(Action::Interrupted {
            signal,
            running: self.running.len(),
        });
        for &id in &self.running {
            if let StepState::Running {
                process: Some(_), ..
            } = self.steps[id.index()]
            {
                actions.push(Action::Signal {
                    id,
                    signal,
                    why: Why::Stop,
                });
            }
        }
        self.kill_all_at = Some(now + self.limits.kill_grace);
        actions.push(Action::CancelJobs(signal));
    }
}
