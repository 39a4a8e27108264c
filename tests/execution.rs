//! The execution engine: parallelism, failure policy, timeouts, retries,
//! signals, and crash safety under random kills.

mod common;
use common::*;

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

fn wait_for_file(space: &Space, rel: &str) {
    wait_until(rel, || !space.read(rel).trim().is_empty());
}

/// Whether `pid` ends within a few seconds.
fn wait_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

fn pid_in(space: &Space, rel: &str) -> u32 {
    space.read(rel).trim().parse().expect("a pid")
}

fn signal(process: &Background, sig: Signal) {
    kill(Pid::from_raw(process.pid() as i32), sig).unwrap();
}

fn journal_lines(space: &Space) -> Vec<serde_json::Value> {
    journal_records(&space.journal())
}

#[test]
fn two_independent_one_second_steps_take_one_second_with_j2_and_two_with_j1() {
    let toml = "[[step]]\nname = \"a\"\nrun = \"sleep 1\"\n\n[[step]]\nname = \"b\"\nrun = \"sleep 1\"\nafter = []\n";
    let parallel = Space::with(toml);
    let t = Instant::now();
    parallel.run(&["run", "-j2"]).success();
    let j2 = t.elapsed();

    let serial = Space::with(toml);
    let t = Instant::now();
    serial.run(&["run", "-j1"]).success();
    let j1 = t.elapsed();

    assert!(j2 < Duration::from_millis(1800), "-j2 took {j2:?}");
    assert!(j1 >= Duration::from_secs(2), "-j1 took {j1:?}");
}

/// A small deterministic generator, so a failure can be replayed from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random graph of `n` steps; each records `S name` when it starts and
/// `E name` when it ends in `events`, with `sleep` in between.
fn random_graph(rng: &mut Rng, n: usize, max_sleep_ms: u64) -> (String, Vec<Vec<usize>>) {
    let mut toml = String::new();
    let mut deps = Vec::new();
    for i in 0..n {
        let mut after: Vec<usize> = (0..i).filter(|_| rng.below(4) == 0).collect();
        after.truncate(3);
        let sleep = rng.below(max_sleep_ms + 1);
        let names: Vec<String> = after.iter().map(|d| format!("\"s{d}\"")).collect();
        toml.push_str(&format!(
            "[[step]]\nname = \"s{i}\"\nafter = [{}]\nrun = \"echo S s{i} >> events; sleep 0.{sleep:03}; echo s{i} >> ran; echo E s{i} >> events\"\n\n",
            names.join(", ")
        ));
        deps.push(after);
    }
    (toml, deps)
}

#[test]
fn dependencies_are_never_violated_under_j8_with_random_sleeps() {
    let mut rng = Rng(0x5eed_0001);
    let (toml, deps) = random_graph(&mut rng, 24, 60);
    let space = Space::with(&toml);
    space.run(&["run", "-j8"]).success();
    let events = space.read("events");
    let position = |what: &str| {
        events
            .lines()
            .position(|l| l == what)
            .unwrap_or_else(|| panic!("{what} missing from events:\n{events}"))
    };
    let mut overlapped = false;
    for (i, after) in deps.iter().enumerate() {
        let start = position(&format!("S s{i}"));
        for d in after {
            assert!(
                position(&format!("E s{d}")) < start,
                "s{i} started before s{d} ended:\n{events}"
            );
        }
        // Some step started while another was still running: -j8 did run in parallel.
        overlapped |= events
            .lines()
            .take(start)
            .filter(|l| l.starts_with('S'))
            .count()
            > events
                .lines()
                .take(start)
                .filter(|l| l.starts_with('E'))
                .count();
    }
    assert!(overlapped, "no two steps ever ran at once:\n{events}");
    assert_eq!(space.ran().len(), 24);
}

const POLICY: &str = r#"
[[step]]
name = "bad"
after = []
run = "echo bad >> ran; exit 4"

[[step]]
name = "slow"
after = []
run = "sleep 0.5; echo slow >> ran"

[[step]]
name = "child"
after = ["bad"]
run = "echo child >> ran"

[[step]]
name = "late"
after = []
run = "echo late >> ran"
"#;

#[test]
fn after_a_failure_running_steps_finish_and_no_new_step_starts() {
    let space = Space::with(POLICY);
    let out = space.run(&["run", "-j2"]);
    out.code(1)
        .stderr_has("failed: bad")
        .stderr_has("not run: child (needs bad, which failed)")
        .stderr_has("not run: late (stopped after a failure");
    let mut ran = space.ran();
    ran.sort();
    assert_eq!(
        ran,
        ["bad", "slow"],
        "slow was running and finished; late never started"
    );
}

#[test]
fn keep_going_runs_everything_that_does_not_need_the_failed_step() {
    let space = Space::with(POLICY);
    let out = space.run(&["run", "-j2", "--keep-going"]);
    out.code(1)
        .stderr_has("not run: child (needs bad, which failed)");
    let mut ran = space.ran();
    ran.sort();
    assert_eq!(ran, ["bad", "late", "slow"]);
}

#[test]
fn a_step_sees_a_closed_pipe_as_a_shell_does_yes_into_head_ends_by_sigpipe() {
    // The runner (like every Rust program) ignores SIGPIPE; a step must not
    // inherit that, or `yes` would get EPIPE, print "Broken pipe" and exit 1
    // instead of being ended by the signal (status 141), as under any shell.
    let space = Space::with(
        "[pipeline]\nshell = [\"bash\", \"-eu\", \"-c\"]\n\n\
         [[step]]\nname = \"head\"\n\
         run = \"yes 2> err | head -n1 > first; echo ${PIPESTATUS[0]} > status; grep SigIgn /proc/self/status > ignored; grep SigBlk /proc/self/status > blocked\"\n",
    );
    space.run(&["run"]).success();
    assert_eq!(space.read("first"), "y\n");
    assert_eq!(
        space.read("status"),
        "141\n",
        "yes said: {}",
        space.read("err")
    );
    let mask = space.read("ignored");
    let mask = u64::from_str_radix(mask.trim().trim_start_matches("SigIgn:").trim(), 16).unwrap();
    assert_eq!(
        mask & (1 << (nix::libc::SIGPIPE - 1)),
        0,
        "SIGPIPE ignored in the step: {mask:x}"
    );
    // The runner blocks every signal around the clone: none stays blocked.
    assert_eq!(space.read("blocked").trim(), "SigBlk:\t0000000000000000");
}

#[test]
fn a_timeout_kills_the_step_and_the_grandchild_it_started() {
    let space = Space::with(
        r#"
[pipeline]
kill_grace = "300ms"

[[step]]
name = "hang"
timeout = "300ms"
run = "sleep 60 & echo $! > grandchild; trap '' TERM; sleep 60"
"#,
    );
    let t = Instant::now();
    space
        .run(&["run"])
        .code(1)
        .stderr_has("FAILED hang (timed out");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        wait_gone(pid_in(&space, "grandchild")),
        "the grandchild outlived its step"
    );
    let finish = journal_lines(&space)
        .into_iter()
        .find(|r| r["event"] == "finish")
        .unwrap();
    assert_eq!(finish["reason"], "timeout");
    assert_eq!(finish["ok"], false);
    space.run(&["plan"]).success().stdout_has("timed out");
}

#[test]
fn retries_record_every_attempt_and_any_success_makes_the_step_done() {
    let space = Space::with(
        r#"
[[step]]
name = "flaky"
retries = 3
retry_delay = "10ms"
run = "echo flaky >> ran; [ $STEPWISE_ATTEMPT -ge 3 ]"

[[step]]
name = "next"
run = "echo next >> ran"
"#,
    );
    let out = space.run(&["run"]);
    out.success()
        .stderr_has("retry  flaky")
        .stderr_has("(retry 2 of 3)");
    assert_eq!(space.ran(), ["flaky", "flaky", "flaky", "next"]);
    let finishes: Vec<bool> = journal_lines(&space)
        .iter()
        .filter(|r| r["event"] == "finish" && r["step"] == "flaky")
        .map(|r| r["ok"].as_bool().unwrap())
        .collect();
    assert_eq!(finishes, [false, false, true]);
    let status = space.run(&["status", "--json"]).json();
    assert_eq!(status["steps"][0]["attempts"], 3);
    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 2 done, 0 remaining");
}

#[test]
fn a_step_out_of_retries_fails_the_run() {
    let space = Space::with(
        "[[step]]\nname = \"a\"\nretries = 1\nretry_delay = \"10ms\"\nrun = \"echo a >> ran; exit 1\"\n",
    );
    space.run(&["run"]).code(1).stderr_has("failed: a");
    assert_eq!(space.ran(), ["a", "a"]);
}

#[test]
fn a_retry_still_happens_after_another_step_failed_and_only_new_steps_are_held_back() {
    // `flaky` fails once and is waiting for its retry when `bad` fails: the
    // run stops starting new steps, but the retry belongs to a step that
    // already started, so it runs (and succeeds); `after` never starts.
    let space = Space::with(
        r#"
[[step]]
name = "bad"
run = "sleep 0.1; exit 1"

[[step]]
name = "flaky"
after = []
retries = 2
retry_delay = "300ms"
run = "echo flaky >> ran; [ $STEPWISE_ATTEMPT -ge 2 ]"

[[step]]
name = "after"
after = ["flaky"]
run = "echo after >> ran"
"#,
    );
    space
        .run(&["run", "-j2"])
        .code(1)
        .stderr_has("retry  flaky")
        .stderr_has("ok     flaky")
        .stderr_has("failed: bad")
        .stderr_has("not run: after (stopped after a failure");
    assert_eq!(space.ran(), ["flaky", "flaky"]);
    space
        .run(&["plan"])
        .success()
        .stdout_has("1 done, 2 remaining");
}

#[test]
fn a_step_whose_retry_a_signal_cancelled_is_reported_failed_not_as_never_run() {
    let space = Space::with(
        "[[step]]\nname = \"f\"\nretries = 1\nretry_delay = \"60s\"\n\
         run = \"echo f >> ran; exit 1\"\n",
    );
    let mut runner = space.spawn(&["run"]);
    wait_for_file(&space, "ran");
    wait_until("the retry is scheduled", || {
        journal_lines(&space).iter().any(|r| r["event"] == "finish")
    });
    signal(&runner, Signal::SIGINT);
    let out = runner.wait();
    out.code(130).stderr_has("failed: f");
    assert!(!out.stderr.contains("not run: f"), "{}", out.stderr);
}

fn interrupt_with(sig: Signal, expected_code: i32) {
    let space = Space::with(
        r#"
[[step]]
name = "long"
run = "sleep 60 & echo $! > grandchild; echo $$ > shell; sleep 60"

[[step]]
name = "after"
run = "echo after >> ran"
"#,
    );
    let mut runner = space.spawn(&["run"]);
    wait_for_file(&space, "shell");
    wait_for_file(&space, "grandchild");
    let t = Instant::now();
    signal(&runner, sig);
    let out = runner.wait();
    out.code(expected_code)
        .stderr_has(&format!("{sig}: stopping 1 running step"))
        .stderr_has("not run: after (the run was interrupted)");
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "took {:?}",
        t.elapsed()
    );
    assert!(wait_gone(pid_in(&space, "shell")), "the step survived");
    assert!(
        wait_gone(pid_in(&space, "grandchild")),
        "the step's grandchild survived"
    );
    assert!(space.ran().is_empty());
    let finish = journal_lines(&space)
        .into_iter()
        .find(|r| r["event"] == "finish")
        .unwrap();
    assert_eq!(finish["reason"], "interrupted");
    space.run(&["plan"]).success().stdout_has("interrupted");
}

#[test]
fn sigint_stops_the_run_with_130_and_leaves_no_process_behind() {
    interrupt_with(Signal::SIGINT, 130);
}

#[test]
fn sigterm_stops_the_run_with_143_and_leaves_no_process_behind() {
    interrupt_with(Signal::SIGTERM, 143);
}

#[test]
fn a_second_ctrl_c_kills_at_once() {
    let space = Space::with(
        r#"
[pipeline]
kill_grace = "60s"

[[step]]
name = "stubborn"
run = "trap '' INT; echo $$ > shell; sleep 60"
"#,
    );
    let mut runner = space.spawn(&["run"]);
    wait_for_file(&space, "shell");
    let t = Instant::now();
    signal(&runner, Signal::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        alive(pid_in(&space, "shell")),
        "the step ignores SIGINT and has 60s of grace"
    );
    signal(&runner, Signal::SIGINT);
    runner.wait().code(130);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert!(wait_gone(pid_in(&space, "shell")));
}

#[test]
fn a_killed_runner_takes_its_step_with_it_and_the_next_run_kills_what_the_step_left() {
    let space = Space::with(
        r#"
[[step]]
name = "a"
run = "echo a >> ran"

[[step]]
name = "b"
run = "sleep 60 & echo $! > grandchild; echo $$ > shell; test -f fixed || sleep 60; echo b >> ran"
"#,
    );
    let mut runner = space.spawn(&["run"]);
    wait_for_file(&space, "grandchild");
    wait_for_file(&space, "shell");
    runner.kill9(); // no chance to clean up
    assert!(
        wait_gone(pid_in(&space, "shell")),
        "the step's shell outlived a kill -9 of the runner"
    );
    // The kernel kills only the direct child; the background `sleep 60` and
    // the foreground one the shell was waiting for live on, until:
    let grandchild = pid_in(&space, "grandchild");
    assert!(alive(grandchild), "the kernel only kills the direct child");

    space.write("fixed", "");
    std::fs::remove_file(space.join("grandchild")).unwrap();
    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 1 done, 1 remaining")
        .stderr_has("killed 2 processes that steps of a killed earlier run had left running");
    assert!(
        wait_gone(grandchild),
        "the next run cleans up what the killed run left"
    );
    assert_eq!(space.ran(), ["a", "b"]);
}

#[test]
fn a_run_killed_while_started_from_a_subfolder_is_cleaned_up_by_a_run_from_the_folder() {
    // The killed run was started as `stepwise -f ../stepwise.toml` from
    // `sub/`; the next one from the pipeline's folder must recognise what it
    // left, though the two spell the folder differently.
    let space = Space::with(
        "[[step]]\nname = \"b\"\nrun = \"sleep 60 & echo $! > grandchild; test -f fixed || sleep 60\"\n",
    );
    std::fs::create_dir(space.join("sub")).unwrap();
    let mut cmd = space.command(&["-f", "../stepwise.toml", "run"]);
    cmd.current_dir(space.join("sub"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut runner = Background::from_child(cmd.spawn().unwrap());
    wait_for_file(&space, "grandchild");
    runner.kill9();
    let grandchild = pid_in(&space, "grandchild");
    assert!(alive(grandchild), "the kernel only kills the direct child");

    space.write("fixed", "");
    space
        .run(&["run"])
        .success()
        .stderr_has("killed 2 processes that steps of a killed earlier run had left running");
    assert!(wait_gone(grandchild), "the grandchild outlived the cleanup");
}

/// The crash-safety harness: a pipeline of many short steps on -j4, the
/// runner's whole process group SIGKILLed at random instants, dozens of
/// times. After every kill the journal must load, and no step recorded
/// successful may ever run again; a final run must complete everything.
#[test]
fn random_kills_never_lose_a_success_nor_rerun_one() {
    let seed: u64 = std::env::var("STEPWISE_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x2026_1129);
    let mut rng = Rng(seed);
    let mut kills = 0;
    let mut round = 0;
    while kills < 36 {
        round += 1;
        let (toml, _) = random_graph(&mut rng, 30, 30);
        let space = Space::with(&format!("[pipeline]\nsync = \"batched\"\n\n{toml}"));
        let mut done: Vec<String> = Vec::new();
        let mut seen = 0;
        loop {
            let mut cmd = space.command(&["run", "-j4"]);
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            let mut child = cmd
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let after = Duration::from_millis(5 + rng.below(150));
            let t = Instant::now();
            let mut completed = false;
            while t.elapsed() < after {
                if child.try_wait().unwrap().is_some() {
                    completed = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            if !completed {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                kills += 1;
            }
            let status = child.wait().unwrap();
            let context = format!("seed {seed}, round {round}, kill {kills}");

            // No step recorded successful before this segment ran again in it.
            let ran = space.ran();
            for line in &ran[seen..] {
                assert!(
                    !done.contains(line),
                    "{line} ran again after it was recorded done ({context})"
                );
            }
            seen = ran.len();

            // The journal is whole lines, but at most a torn last one, and loads.
            let journal = space.journal();
            let whole = journal.rfind('\n').map_or("", |i| &journal[..=i]);
            for line in whole.lines() {
                let _: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("bad line {line:?}: {e} ({context})"));
            }
            let plan = space.run(&["plan", "--json"]);
            plan.success();
            done = plan.json()["steps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["action"] == "skip")
                .map(|s| s["name"].as_str().unwrap().to_string())
                .collect();
            if completed {
                assert_eq!(status.code(), Some(0), "{context}");
                assert_eq!(done.len(), 30, "{context}");
                break;
            }
        }
        // Give the steps the kernel killed time to be gone before the temp dir is.
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_step_that_exits_0_when_asked_to_stop_is_recorded_interrupted_not_done() {
    let space = Space::with(
        r#"
[[step]]
name = "train"
run = "trap 'echo saved > checkpoint; exit 0' INT; echo $$ > shell; while true; do sleep 0.05; done"

[[step]]
name = "report"
run = "echo report >> ran"
"#,
    );
    let mut runner = space.spawn(&["run"]);
    wait_for_file(&space, "shell");
    signal(&runner, Signal::SIGINT);
    runner
        .wait()
        .code(130)
        .stderr_has("FAILED train (interrupted by SIGINT");
    assert_eq!(
        space.read("checkpoint").trim(),
        "saved",
        "the step saw the signal and exited 0"
    );
    let plan = space.run(&["plan", "--json"]).json();
    assert_eq!(
        plan["steps"][0]["action"], "run",
        "an interrupted step is not done"
    );
    assert_eq!(plan["steps"][0]["state"], "interrupted");
}

#[test]
fn steps_still_report_their_status_when_stepwise_inherits_an_ignored_sigchld() {
    let space = Space::with(&chain(&["a", "b"], &[]));
    let mut cmd = space.command(&["run"]);
    // SAFETY: only `signal` between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            nix::sys::signal::signal(Signal::SIGCHLD, nix::sys::signal::SigHandler::SigIgn)
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut runner = Background::from_child(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    runner.wait().success();
    assert_eq!(space.ran(), ["a", "b"]);
}

#[test]
fn a_step_that_wants_a_terminal_fails_instead_of_hanging() {
    let space = Space::with("[[step]]\nname = \"ask\"\nrun = \"read answer < /dev/tty\"\n");
    let t = Instant::now();
    space.run(&["run"]).code(1).stderr_has("FAILED ask");
    assert!(t.elapsed() < Duration::from_secs(10));
}
