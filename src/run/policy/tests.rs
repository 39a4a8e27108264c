//! The policy's stories, told without processes or clocks: each test starts
//! from `t0` and hands the policy the instants things happen at.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use proptest::prelude::*;

use super::*;

const SEC: Duration = Duration::from_secs(1);

fn id(n: u32) -> StepId {
    StepId(n)
}

/// A planned step needing `after`, with no retries and no timeout.
fn step(after: &[u32]) -> Rules {
    Rules {
        after: after.iter().copied().map(StepId).collect(),
        planned: true,
        retries: 0,
        retry_delay: SEC,
        timeout: None,
    }
}

fn retried(after: &[u32], retries: u32) -> Rules {
    Rules {
        retries,
        ..step(after)
    }
}

fn limits(jobs: usize, keep_going: bool) -> Limits {
    Limits {
        jobs,
        keep_going,
        kill_grace: 5 * SEC,
    }
}

/// Starts, as processes, every step the policy lets start now.
fn start_all(p: &mut Policy, now: Instant) -> Vec<StepId> {
    let mut started = Vec::new();
    while let Some(id) = p.next_start(&[]) {
        p.on(now, Event::Started(id));
        p.on(now, Event::Spawned(id));
        started.push(id);
    }
    started
}

fn ended(p: &mut Policy, now: Instant, n: u32, ok: bool) -> Vec<Action> {
    p.on(now, Event::Ended { id: id(n), ok })
}

#[test]
fn retry_delays_double_up_to_a_cap() {
    let delays: Vec<u64> = (1..=8).map(|n| retry_delay(SEC, n).as_secs()).collect();
    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
    assert_eq!(retry_delay(120 * SEC, 3), 120 * SEC);
    assert_eq!(retry_delay(SEC, 1000), 60 * SEC);
}

#[test]
fn ready_steps_start_in_file_order_within_the_jobs_limit() {
    let t0 = Instant::now();
    let mut p = Policy::new(vec![step(&[]); 4], limits(2, false));
    assert_eq!(start_all(&mut p, t0), [id(0), id(1)]);
    assert_eq!(p.running(), 2);
    assert_eq!(ended(&mut p, t0, 1, true), [Action::Succeeded(id(1))]);
    assert_eq!(start_all(&mut p, t0), [id(2)]);
    assert_eq!(p.next_start(&[]), None);
}

#[test]
fn a_held_step_lets_the_next_ready_one_start() {
    let t0 = Instant::now();
    let p = Policy::new(vec![step(&[]); 3], limits(1, false));
    assert_eq!(p.next_start(&[id(0)]), Some(id(1)));
    assert_eq!(p.next_start(&[id(0), id(1), id(2)]), None);
    let _ = t0;
}

#[test]
fn a_step_starts_only_once_everything_it_needs_succeeded() {
    let t0 = Instant::now();
    let mut p = Policy::new(vec![step(&[]), step(&[]), step(&[0, 1])], limits(4, false));
    assert_eq!(start_all(&mut p, t0), [id(0), id(1)]);
    assert_eq!(*p.state(id(2)), StepState::Waiting { needs_left: 2 });
    ended(&mut p, t0, 0, true);
    assert!(start_all(&mut p, t0).is_empty());
    ended(&mut p, t0, 1, true);
    assert_eq!(start_all(&mut p, t0), [id(2)]);
}

#[test]
fn a_step_not_planned_is_not_waited_for() {
    let t0 = Instant::now();
    let done = Rules {
        planned: false,
        ..step(&[])
    };
    let mut p = Policy::new(vec![done, step(&[0])], limits(1, false));
    assert!(!p.planned(id(0)));
    assert_eq!(start_all(&mut p, t0), [id(1)]);
    assert_eq!(p.unsettled(id(0)), None);
}

#[test]
fn a_step_found_up_to_date_releases_what_needs_it_without_running() {
    let t0 = Instant::now();
    let mut p = Policy::new(vec![step(&[]), step(&[0])], limits(1, false));
    assert_eq!(p.next_start(&[]), Some(id(0)));
    assert!(p.first_try(id(0)));
    assert!(p.on(t0, Event::UpToDate(id(0))).is_empty());
    assert_eq!(*p.state(id(0)), StepState::Done);
    assert_eq!(start_all(&mut p, t0), [id(1)]);
}

#[test]
fn a_failed_attempt_is_retried_after_a_doubling_delay_then_fails_for_good() {
    let t0 = Instant::now();
    let mut p = Policy::new(vec![retried(&[], 2), step(&[0])], limits(1, false));
    start_all(&mut p, t0);
    let retry = |retry, delay| Action::Retry {
        id: id(0),
        retry,
        delay,
    };
    assert_eq!(ended(&mut p, t0, 0, false), [retry(1, SEC)]);
    assert_eq!(p.next_wake(), Some(t0 + SEC));
    assert!(!p.is_idle());
    assert!(start_all(&mut p, t0).is_empty(), "not before its delay");
    p.on(t0 + SEC, Event::Tick);
    assert!(!p.first_try(id(0)));
    assert_eq!(start_all(&mut p, t0 + SEC), [id(0)]);
    assert_eq!(ended(&mut p, t0 + SEC, 0, false), [retry(2, 2 * SEC)]);
    p.on(t0 + 3 * SEC, Event::Tick);
    start_all(&mut p, t0 + 3 * SEC);
    assert_eq!(
        ended(&mut p, t0 + 3 * SEC, 0, false),
        [Action::Failed(id(0))]
    );
    assert_eq!(*p.state(id(1)), StepState::Blocked { by: id(0) });
    assert!(p.is_idle());
    assert_eq!(p.unsettled(id(0)), None);
    assert_eq!(
        p.unsettled(id(1)),
        Some(Unsettled::NotRun(NotRun::NeedsFailed(id(0))))
    );
}

#[test]
fn a_retry_that_succeeds_releases_what_needs_it() {
    let t0 = Instant::now();
    let mut p = Policy::new(vec![retried(&[], 1), step(&[0])], limits(1, false));
    start_all(&mut p, t0);
    ended(&mut p, t0, 0, false);
    p.on(t0 + SEC, Event::Tick);
    start_all(&mut p, t0 + SEC);
    assert_eq!(ended(&mut p, t0 + SEC, 0, true), [Action::Succeeded(id(0))]);
    assert_eq!(start_all(&mut p, t0 + SEC), [id(1)]);
}

#[test]
fn a_retry_still_happens_after_another_step_failed_for_good() {
    let t0 = Instant::now();
    let rules = vec![retried(&[], 1), step(&[]), step(&[])];
    let mut p = Policy::new(rules, limits(2, false));
    assert_eq!(start_all(&mut p, t0), [id(0), id(1)]);
    assert_eq!(ended(&mut p, t0, 1, false), [Action::Failed(id(1))]);
    assert_eq!(p.stop(), Some(Stop::Failure));
    assert!(start_all(&mut p, t0).is_empty(), "nothing new starts");
    ended(&mut p, t0, 0, false);
    p.on(t0 + SEC, Event::Tick);
    assert_eq!(start_all(&mut p, t0 + SEC), [id(0)], "but the retry does");
    ended(&mut p, t0 + SEC, 0, true);
    assert!(p.is_idle());
    assert_eq!(p.unsettled(id(2)), Some(Unsettled::NotRun(NotRun::Stopped)));
}

#[test]
fn without_keep_going_nothing_new_starts_after_a_failure() {
    let t0 = Instant::now();
    let mut p = Policy::new(vec![step(&[]), step(&[]), step(&[1])], limits(1, false));
    start_all(&mut p, t0);
    ended(&mut p, t0, 0, false);
    assert!(start_all(&mut p, t0).is_empty());
    assert!(p.is_idle());
    assert_eq!(p.unsettled(id(1)), Some(Unsettled::NotRun(NotRun::Stopped)));
    assert_eq!(p.unsettled(id(2)), Some(Unsettled::NotRun(NotRun::Stopped)));
}

#[test]
fn with_keep_going_every_step_not_needing_a_failed_one_runs() {
    let t0 = Instant::now();
    // 0 <- 1 <- 2, and 3 <- 4 beside them.
    let rules = vec![step(&[]), step(&[0]), step(&[1]), step(&[]), step(&[3])];
    let mut p = Policy::new(rules, limits(1, true));
    assert_eq!(start_all(&mut p, t0), [id(0)]);
    ended(&mut p, t0, 0, false);
    assert_eq!(p.stop(), None);
    assert_eq!(start_all(&mut p, t0), [id(3)]);
    ended(&mut p, t0, 3, true);
    assert_eq!(start_all(&mut p, t0), [id(4)]);
    ended(&mut p, t0, 4, true);
    assert!(p.is_idle());
    for n in [1, 2] {
        assert_eq!(*p.state(id(n)), StepState::Blocked { by: id(0) });
        assert_eq!(
            p.unsettled(id(n)),
            Some(Unsettled::NotRun(NotRun::NeedsFailed(id(0))))
        );
    }
}

#[test]
fn a_timed_out_step_gets_term_then_kill_after_grace() {
    let t0 = Instant::now();
    let rules = vec![Rules {
        timeout: Some(10 * SEC),
        ..step(&[])
    }];
    let mut p = Policy::new(rules, limits(1, false));
    start_all(&mut p, t0);
    assert_eq!(p.next_wake(), Some(t0 + 10 * SEC));
    assert!(p.on(t0 + 9 * SEC, Event::Tick).is_empty());
    let signal = |signal, why| Action::Signal {
        id: id(0),
        signal,
        why,
    };
    assert_eq!(
        p.on(t0 + 10 * SEC, Event::Tick),
        [signal(Signal::SIGTERM, Why::Timeout)]
    );
    assert_eq!(p.next_wake(), Some(t0 + 15 * SEC));
    assert!(p.on(t0 + 12 * SEC, Event::Tick).is_empty());
    assert_eq!(
        p.on(t0 + 15 * SEC, Event::Tick),
        [signal(Signal::SIGKILL, Why::Kill)]
    );
    assert_eq!(p.next_wake(), None);
    assert!(p.on(t0 + 20 * SEC, Event::Tick).is_empty());
}

#[test]
fn a_job_has_no_process_timers() {
    let t0 = Instant::now();
    let rules = vec![Rules {
        timeout: Some(SEC),
        ..step(&[])
    }];
    let mut p = Policy::new(rules, limits(1, false));
    p.on(t0, Event::Started(id(0)));
    assert_eq!(p.next_wake(), None, "Slurm's side follows a job's timeout");
    assert!(p.on(t0 + 2 * SEC, Event::Tick).is_empty());
}

/// Step 0 runs as a process, 1 as a job, 2 waits for its retry, 3 has not
/// started: then SIGINT comes.
fn interrupted_run(t0: Instant) -> (Policy, Vec<Action>) {
    let rules = vec![retried(&[], 3), step(&[]), retried(&[], 1), step(&[])];
    let mut p = Policy::new(rules, limits(3, false));
    p.on(t0, Event::Started(id(0)));
    p.on(t0, Event::Spawned(id(0)));
    p.on(t0, Event::Started(id(1)));
    p.on(t0, Event::Started(id(2)));
    p.on(t0, Event::Spawned(id(2)));
    ended(&mut p, t0, 2, false);
    let actions = p.on(t0, Event::Signal(Signal::SIGINT));
    (p, actions)
}

#[test]
fn a_signal_is_forwarded_drops_retries_and_cancels_jobs() {
    let t0 = Instant::now();
    let (mut p, actions) = interrupted_run(t0);
    assert_eq!(
        actions,
        [
            Action::Interrupted {
                signal: Signal::SIGINT,
                running: 2
            },
            Action::Signal {
                id: id(0),
                signal: Signal::SIGINT,
                why: Why::Stop
            },
            Action::CancelJobs(Signal::SIGINT),
        ]
    );
    assert_eq!(p.stop(), Some(Stop::Signal(Signal::SIGINT)));
    assert_eq!(*p.state(id(2)), StepState::Dropped { tries: 1 });
    assert_eq!(p.next_start(&[]), None, "nothing starts, not even a retry");
    // The job, cancelled, is recorded: an interrupted attempt is not retried.
    assert_eq!(ended(&mut p, t0, 1, false), [Action::Failed(id(1))]);
    assert_eq!(p.next_wake(), Some(t0 + 5 * SEC));
    assert_eq!(
        p.on(t0 + 5 * SEC, Event::Tick),
        [Action::Signal {
            id: id(0),
            signal: Signal::SIGKILL,
            why: Why::Kill
        }]
    );
    assert_eq!(
        ended(&mut p, t0 + 5 * SEC, 0, false),
        [Action::Failed(id(0))]
    );
    assert!(p.is_idle());
    assert_eq!(p.unsettled(id(2)), Some(Unsettled::Failed));
    assert_eq!(p.unsettled(id(3)), Some(Unsettled::NotRun(NotRun::Stopped)));
}

#[test]
fn a_second_signal_kills_at_once() {
    let t0 = Instant::now();
    let (mut p, _) = interrupted_run(t0);
    assert_eq!(
        p.on(t0 + SEC, Event::Signal(Signal::SIGTERM)),
        [Action::Signal {
            id: id(0),
            signal: Signal::SIGKILL,
            why: Why::Kill
        }]
    );
    assert_eq!(
        p.stop(),
        Some(Stop::Signal(Signal::SIGINT)),
        "the first one"
    );
}

#[test]
fn a_signal_after_a_failure_still_stops_the_retries() {
    let t0 = Instant::now();
    let mut p = Policy::new(vec![retried(&[], 1), step(&[])], limits(2, false));
    start_all(&mut p, t0);
    ended(&mut p, t0, 1, false);
    ended(&mut p, t0, 0, false);
    p.on(t0, Event::Signal(Signal::SIGTERM));
    assert_eq!(p.stop(), Some(Stop::Signal(Signal::SIGTERM)));
    assert!(p.is_idle());
    p.on(t0 + SEC, Event::Tick);
    assert_eq!(p.next_start(&[]), None);
    assert_eq!(p.unsettled(id(0)), Some(Unsettled::Failed));
}

#[test]
fn a_job_that_could_not_be_cancelled_is_left_to_the_next_run() {
    let t0 = Instant::now();
    let mut p = Policy::new(vec![step(&[]), step(&[0])], limits(1, false));
    p.on(t0, Event::Started(id(0)));
    p.on(t0, Event::Signal(Signal::SIGINT));
    p.on(t0, Event::Lost(id(0)));
    assert!(p.is_idle());
    assert_eq!(p.unsettled(id(0)), Some(Unsettled::Failed));
    assert_eq!(p.unsettled(id(1)), Some(Unsettled::NotRun(NotRun::Stopped)));
}

#[test]
fn an_adopted_job_counts_against_jobs_and_waits_for_its_turn() {
    let t0 = Instant::now();
    let mut p = Policy::new(vec![step(&[]), step(&[0])], limits(2, false));
    p.on(t0, Event::Adopted(id(1)));
    assert_eq!(p.running(), 1);
    assert!(!p.adopted_turn(id(1)));
    assert_eq!(start_all(&mut p, t0), [id(0)]);
    assert_eq!(p.next_start(&[]), None, "the job takes the second slot");
    // It ends before what it needs reran: its turn comes again afterwards.
    let event = Event::AdoptedEnded {
        id: id(1),
        ok: true,
        rerun: false,
    };
    assert!(p.on(t0, event).is_empty());
    assert_eq!(*p.state(id(1)), StepState::Waiting { needs_left: 1 });
    ended(&mut p, t0, 0, true);
    assert_eq!(p.next_start(&[]), Some(id(1)));
    assert!(p.first_try(id(1)));
}

#[test]
fn an_adopted_job_whose_turn_came_is_this_runs_first_attempt() {
    let t0 = Instant::now();
    let mut p = Policy::new(vec![retried(&[], 1), step(&[0])], limits(2, false));
    p.on(t0, Event::Adopted(id(0)));
    assert!(p.adopted_turn(id(0)));
    assert_eq!(p.next_start(&[]), None);
    assert_eq!(
        ended(&mut p, t0, 0, false),
        [Action::Retry {
            id: id(0),
            retry: 1,
            delay: SEC
        }]
    );
    p.on(t0 + SEC, Event::Tick);
    assert!(!p.first_try(id(0)));
    assert_eq!(start_all(&mut p, t0 + SEC), [id(0)]);
    ended(&mut p, t0 + SEC, 0, true);
    assert_eq!(start_all(&mut p, t0 + SEC), [id(1)]);
}

#[test]
fn an_adopted_job_made_from_what_changed_runs_again() {
    let t0 = Instant::now();
    let mut p = Policy::new(vec![step(&[])], limits(1, false));
    p.on(t0, Event::Adopted(id(0)));
    let event = Event::AdoptedEnded {
        id: id(0),
        ok: true,
        rerun: true,
    };
    assert!(p.on(t0, event).is_empty());
    assert!(p.first_try(id(0)));
    assert_eq!(start_all(&mut p, t0), [id(0)]);
}

#[test]
fn an_adopted_job_whose_need_failed_is_blocked_once_over() {
    let t0 = Instant::now();
    let mut p = Policy::new(vec![step(&[]), step(&[0]), step(&[1])], limits(2, true));
    p.on(t0, Event::Adopted(id(1)));
    start_all(&mut p, t0);
    ended(&mut p, t0, 0, false);
    assert_eq!(*p.state(id(2)), StepState::Blocked { by: id(0) });
    let event = Event::AdoptedEnded {
        id: id(1),
        ok: true,
        rerun: false,
    };
    p.on(t0, event);
    assert!(p.is_idle());
    assert_eq!(
        p.unsettled(id(1)),
        Some(Unsettled::NotRun(NotRun::NeedsFailed(id(0))))
    );
}

/// A small pipeline: each step needs some earlier ones; some are not
/// planned; each may be retried up to twice.
fn pipelines() -> impl Strategy<Value = Vec<Rules>> {
    (1usize..8).prop_flat_map(|n| {
        let step = |i: usize| {
            (
                proptest::collection::vec(0..i.max(1) as u32, 0..=i.min(3)),
                proptest::bool::weighted(0.85),
                0u32..3,
                proptest::option::of(1u64..4),
            )
                .prop_map(move |(after, planned, retries, timeout)| Rules {
                    after: if i == 0 {
                        Vec::new()
                    } else {
                        let mut a: Vec<StepId> = after.into_iter().map(StepId).collect();
                        a.sort();
                        a.dedup();
                        a
                    },
                    planned,
                    retries,
                    retry_delay: SEC,
                    timeout: timeout.map(Duration::from_secs),
                })
        };
        (0..n).map(step).collect::<Vec<_>>()
    })
}

/// Attempts under way: processes, jobs and adopted jobs.
fn under_way(p: &Policy, n: usize) -> Vec<StepId> {
    (0..n as u32)
        .map(StepId)
        .filter(|&s| {
            matches!(
                p.state(s),
                StepState::Running { .. } | StepState::Adopted { .. }
            )
        })
        .collect()
}

/// Jobs (not processes) under way, as `CancelJobs` finds them.
fn jobs_under_way(p: &Policy, n: usize) -> Vec<StepId> {
    under_way(p, n)
        .into_iter()
        .filter(|&s| {
            matches!(
                p.state(s),
                StepState::Running { process: None, .. } | StepState::Adopted { .. }
            )
        })
        .collect()
}

/// A run driven by random choices, as the loop would drive it, checking the
/// policy's promises at every turn.
struct Story {
    rules: Vec<Rules>,
    jobs: usize,
    keep_going: bool,
    p: Policy,
    now: Instant,
    choices: std::vec::IntoIter<u8>,
    done: Vec<bool>,
    failed_for_good: bool,
    signalled: bool,
}

impl Story {
    fn choice(&mut self) -> u8 {
        self.choices.next().unwrap_or(0)
    }

    fn on(&mut self, event: Event) -> Result<(), TestCaseError> {
        let actions = self.p.on(self.now, event);
        for action in actions {
            match action {
                Action::Failed(_) => self.failed_for_good = true,
                Action::Succeeded(s) => prop_assert_eq!(self.p.state(s), &StepState::Done),
                Action::Retry { id, retry, .. } => {
                    prop_assert!(retry >= 1 && retry <= self.rules[id.index()].retries);
                    prop_assert!(!self.signalled, "no retry after a signal");
                }
                Action::Signal { id, .. } => prop_assert!(
                    matches!(
                        self.p.state(id),
                        StepState::Running {
                            process: Some(_),
                            ..
                        }
                    ),
                    "only a running process is signalled"
                ),
                Action::Interrupted { .. } => {}
                // The loop cancels every job, and records each (or, if
                // Slurm cannot be reached, gives up on them all).
                Action::CancelJobs(_) => {
                    let lose = self.choice().is_multiple_of(4);
                    for s in jobs_under_way(&self.p, self.rules.len()) {
                        let event = if lose {
                            Event::Lost(s)
                        } else {
                            Event::Ended { id: s, ok: false }
                        };
                        let actions = self.p.on(self.now, event);
                        self.failed_for_good |= actions.contains(&Action::Failed(s));
                        let retried = actions.iter().any(|a| matches!(a, Action::Retry { .. }));
                        prop_assert!(!retried, "a cancelled job is not retried");
                    }
                }
            }
        }
        Ok(())
    }

    fn start_what_may(&mut self) -> Result<(), TestCaseError> {
        while let Some(s) = self.p.next_start(&[]) {
            let retry = !self.p.first_try(s);
            prop_assert!(
                self.p.running() < self.jobs,
                "a start within the jobs limit"
            );
            prop_assert!(!self.signalled, "nothing starts after a signal");
            prop_assert!(
                retry || self.keep_going || !self.failed_for_good,
                "nothing new starts after a failure without keep_going"
            );
            for d in &self.rules[s.index()].after {
                prop_assert!(
                    !self.rules[d.index()].planned || *self.p.state(*d) == StepState::Done,
                    "{:?} started before {:?} succeeded",
                    s,
                    d
                );
            }
            let how = self.choice() % 4;
            if how == 0 && !retry {
                self.on(Event::UpToDate(s))?;
                continue;
            }
            self.on(Event::Started(s))?;
            match how {
                // It could not start at all.
                1 => self.on(Event::Ended { id: s, ok: false })?,
                // A Slurm job: no process.
                2 => {}
                _ => self.on(Event::Spawned(s))?,
            }
        }
        Ok(())
    }

    fn check_done_stays_done(&mut self) -> Result<(), TestCaseError> {
        for (i, d) in self.done.iter_mut().enumerate() {
            let is_done = *self.p.state(StepId(i as u32)) == StepState::Done;
            prop_assert!(is_done || !*d, "step {} was done and is not", i);
            *d = is_done;
        }
        Ok(())
    }

    /// Something happens: an attempt ends, time passes, or a signal comes.
    fn next_event(&mut self) -> Result<(), TestCaseError> {
        let under_way = under_way(&self.p, self.rules.len());
        prop_assert_eq!(under_way.len(), self.p.running());
        let choice = self.choice();
        if choice == 255 {
            self.signalled = true;
            return self.on(Event::Signal(Signal::SIGTERM));
        }
        if under_way.is_empty() || choice % 5 == 4 {
            let Some(wake) = self.p.next_wake() else {
                prop_assert!(!under_way.is_empty(), "waiting for nothing");
                let s = under_way[0];
                return self.end(s, true, false);
            };
            prop_assert!(wake >= self.now, "a timer in the past");
            self.now = wake;
            return self.on(Event::Tick);
        }
        let s = under_way[choice as usize % under_way.len()];
        self.end(s, !choice.is_multiple_of(3), choice.is_multiple_of(7))
    }

    fn end(&mut self, s: StepId, ok: bool, rerun: bool) -> Result<(), TestCaseError> {
        match self.p.state(s) {
            // As `job_over` tells an adopted job's end.
            StepState::Adopted { .. } if !self.p.adopted_turn(s) => {
                self.on(Event::AdoptedEnded { id: s, ok, rerun })
            }
            StepState::Adopted { .. } if ok && rerun => {
                self.on(Event::AdoptedEnded { id: s, ok, rerun })
            }
            _ => self.on(Event::Ended { id: s, ok }),
        }
    }
}

proptest! {
    /// Whatever the pipeline, the jobs adopted and however attempts end,
    /// the policy keeps its promises.
    #[test]
    fn the_policy_keeps_its_invariants(
        rules in pipelines(),
        jobs in 1usize..4,
        keep_going: bool,
        adopted in proptest::collection::vec(any::<bool>(), 8),
        choices in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let n = rules.len();
        let mut story = Story {
            p: Policy::new(rules.clone(), limits(jobs, keep_going)),
            rules,
            jobs,
            keep_going,
            now: Instant::now(),
            choices: choices.into_iter(),
            done: vec![false; n],
            failed_for_good: false,
            signalled: false,
        };
        for s in (0..n as u32).map(StepId) {
            if adopted[s.index()] && story.p.planned(s) && story.choice().is_multiple_of(3) {
                story.on(Event::Adopted(s))?;
            }
        }
        let mut turns = 0;
        loop {
            turns += 1;
            prop_assert!(turns < 10_000, "the run never ends");
            story.start_what_may()?;
            story.check_done_stays_done()?;
            if story.p.is_idle() {
                break;
            }
            story.next_event()?;
        }
        let Story { rules, p, keep_going, failed_for_good, signalled, .. } = story;
        for (i, r) in rules.iter().enumerate() {
            let s = StepId(i as u32);
            let state = p.state(s).clone();
            if !r.planned {
                prop_assert_eq!(state, StepState::Skipped);
                continue;
            }
            match state {
                StepState::Done | StepState::Failed => prop_assert_eq!(p.unsettled(s), None),
                StepState::Blocked { by } => {
                    prop_assert_eq!(p.state(by), &StepState::Failed);
                    prop_assert!(keep_going || failed_for_good);
                    prop_assert_eq!(
                        p.unsettled(s),
                        Some(Unsettled::NotRun(NotRun::NeedsFailed(by)))
                    );
                }
                StepState::Waiting { .. } | StepState::Ready { .. } | StepState::Dropped { .. } => {
                    prop_assert!(signalled || failed_for_good, "{:?} left as {:?}", s, state);
                    prop_assert!(p.unsettled(s).is_some());
                }
                other => prop_assert!(false, "{:?} still {:?} at the end", s, other),
            }
        }
    }
}
