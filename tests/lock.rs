//! One writer at a time: while a run goes on, a second runner (and every
//! other writer) is refused with exit code 3 and told who holds the lock;
//! readers keep working and see the run as it happens.

mod common;
use common::*;

/// `slow` appends to `ran`, then waits (at most 10 s) for the file `go`.
const WAITS_FOR_GO: &str = r#"
[[step]]
name = "quick"
run = "echo quick >> ran; echo quick says hello"

[[step]]
name = "slow"
run = "echo slow >> ran; echo slow is waiting; i=0; while ! test -f go && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; test -f go"

[[step]]
name = "last"
run = "echo last >> ran"
"#;

/// Starts a run and returns once `slow` is running.
fn first_runner(space: &Space) -> Background {
    let runner = space.spawn(&["run"]);
    space.wait_for_line("ran", "slow");
    runner
}

#[test]
fn a_second_runner_is_refused_with_exit_3_and_told_the_pid_of_the_first() {
    let space = Space::with(WAITS_FOR_GO);
    let mut first = first_runner(&space);

    let second = space.run(&["run"]);
    second
        .code(3)
        .stderr_has("already running")
        .stderr_has(&format!("process {}", first.pid()));
    assert!(
        !second.stderr.contains("Resume plan"),
        "the second runner plans nothing:\n{}",
        second.stderr
    );
    assert_eq!(
        space.ran(),
        ["quick", "slow"],
        "the second runner ran nothing"
    );

    space.write("go", "");
    first
        .wait()
        .success()
        .stderr_has("Resume plan: 0 done, 3 remaining");
    assert_eq!(space.ran(), ["quick", "slow", "last"]);
}

#[test]
fn a_second_runner_of_a_single_step_is_refused_too() {
    let space = Space::with(WAITS_FOR_GO);
    let mut first = first_runner(&space);
    space
        .run(&["run", "last"])
        .code(3)
        .stderr_has("already running");
    space.write("go", "");
    first.wait().success();
    assert_eq!(space.ran_count("last"), 1);
}

#[test]
fn plan_during_a_run_shows_the_running_step_as_running() {
    let space = Space::with(WAITS_FOR_GO);
    let mut first = first_runner(&space);

    let plan = space.run(&["plan"]);
    plan.success()
        .stdout_has("Resume plan: 1 done, 2 remaining")
        .stdout_has(&format!(
            "process {} (`stepwise run`) is working on this pipeline",
            first.pid()
        ));
    let slow = plan
        .stdout
        .lines()
        .find(|l| l.contains(" slow "))
        .expect("a line for slow");
    assert!(slow.contains("running"), "{slow}");
    assert!(!slow.contains("interrupted"), "{slow}");

    assert_eq!(
        plan_steps(&space.plan_json(&[])),
        [
            ("quick".into(), "skip".into(), "done".into()),
            ("slow".into(), "run".into(), "running".into()),
            ("last".into(), "run".into(), "never run".into()),
        ]
    );

    space.write("go", "");
    first.wait().success();
}

#[test]
fn status_export_and_log_work_during_a_run() {
    let space = Space::with(WAITS_FOR_GO);
    let mut first = first_runner(&space);

    let status = space.run(&["status", "--json"]);
    status.success();
    let status = status.json();
    assert_eq!(status["running"], first.pid());
    assert_eq!(status["steps"][1]["state"], "running");
    assert_eq!(status["steps"][1]["last_attempt"]["finished"], false);

    space.run(&["status"]).success().stdout_has(&format!(
        "process {} (`stepwise run`) is working on this pipeline",
        first.pid()
    ));

    let export = space.run(&["checkpoint", "export"]);
    export.success();
    assert_eq!(
        export.json(),
        serde_json::json!([["quick", true]]),
        "the export holds what is finished so far"
    );

    space
        .run(&["log", "quick"])
        .success()
        .stdout_has("quick says hello");
    wait_until("slow to write its log", || {
        space.read(".stepwise/logs/slow.1.log").contains("waiting")
    });
    space
        .run(&["log", "slow"])
        .success()
        .stdout_has("slow is waiting");

    space.write("go", "");
    first.wait().success();
}

#[test]
fn forget_is_refused_with_exit_3_during_a_run() {
    let space = Space::with(WAITS_FOR_GO);
    let mut first = first_runner(&space);
    let before = space.journal_bytes();
    space
        .run(&["forget", "quick"])
        .code(3)
        .stderr_has("already running");
    space
        .run(&["forget", "--all"])
        .code(3)
        .stderr_has("already running");
    assert_eq!(space.journal_bytes(), before, "forget wrote nothing");
    space.write("go", "");
    first.wait().success();
    assert_eq!(
        plan_remaining(&space.plan_json(&[])),
        Vec::<String>::new(),
        "quick was not forgotten"
    );
}

#[test]
fn checkpoint_import_is_refused_with_exit_3_during_a_run() {
    let space = Space::with(WAITS_FOR_GO);
    space.write("cp.json", r#"[["last", true]]"#);
    let mut first = first_runner(&space);
    let before = space.journal_bytes();
    space
        .run(&["checkpoint", "import", "cp.json"])
        .code(3)
        .stderr_has("already running");
    assert_eq!(space.journal_bytes(), before, "import wrote nothing");
    space.write("go", "");
    first.wait().success();
    assert_eq!(space.ran_count("last"), 1, "last was not imported as done");
}

#[test]
fn after_the_first_run_ends_a_new_run_works() {
    let space = Space::with(WAITS_FOR_GO);
    let mut first = first_runner(&space);
    space.run(&["run"]).code(3);
    space.write("go", "");
    first.wait().success();

    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 3 done, 0 remaining");
    space.run(&["forget", "last"]).success();
    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 2 done, 1 remaining");
    assert_eq!(space.ran(), ["quick", "slow", "last", "last"]);
    let status = space.run(&["status", "--json"]);
    assert_eq!(status.json()["running"], serde_json::Value::Null);
}

#[test]
fn a_step_that_leaves_a_process_behind_does_not_keep_the_pipeline_locked() {
    // setsid puts the sleeper out of the step's process group, so it
    // outlives the step on purpose; it must not hold the lock.
    let space = Space::with(
        r#"
[[step]]
name = "daemon"
run = "setsid sh -c 'echo $$ > daemon.pid; exec sleep 20' > /dev/null 2>&1 < /dev/null & i=0; while ! test -s daemon.pid && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; echo daemon >> ran"
"#,
    );
    space.run(&["run"]).success();
    let daemon: u32 = space.read("daemon.pid").trim().parse().expect("a pid");
    let _reaper = GroupReaper(Some(daemon));
    assert!(alive(daemon), "the detached process still runs");
    space.run(&["forget", "daemon"]).success();
    let status = space.run(&["status", "--json"]);
    assert_eq!(status.json()["running"], serde_json::Value::Null);
}
