//! The seed's promise, end to end: what succeeded is skipped, what failed or
//! never ran runs, in the pipeline's order. Also: a runner killed with
//! kill -9 mid-step, `forget`, `run STEP`, and a step whose folder is missing.

mod common;
use common::*;

#[test]
fn a_succeeds_b_fails_c_never_runs_then_after_the_fix_only_b_and_c_run() {
    let space = Space::with(&chain(&["a", "b", "c"], &["b"]));

    let first = space.run(&["run"]);
    first
        .code(1)
        .stderr_has("Resume plan: 0 done, 3 remaining")
        .stderr_has("FAILED b");
    first
        .stderr_has("b is broken")
        .stderr_has("not run: c (needs b, which failed)");
    assert_eq!(space.ran(), ["a", "b"]);

    space.write("fixed", "");
    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 1 done, 2 remaining");
    assert_eq!(space.ran(), ["a", "b", "b", "c"]);
    assert_eq!(space.ran_count("a"), 1);

    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 3 done, 0 remaining");
    assert_eq!(space.ran().len(), 4, "nothing runs once everything is done");
}

#[test]
fn between_the_failure_and_the_fix_plan_says_what_will_run_and_why() {
    let space = Space::with(&chain(&["a", "b", "c"], &["b"]));
    space.run(&["run"]).code(1);

    let plan = space.run(&["plan"]);
    plan.success()
        .stdout_has("Resume plan: 1 done, 2 remaining");
    let lines: Vec<&str> = plan.stdout.lines().skip(1).collect();
    assert_eq!(lines.len(), 3, "one line per step:\n{}", plan.stdout);
    assert!(lines[0].contains("skip") && lines[0].contains(" a ") && lines[0].contains("done"));
    assert!(lines[0].contains("(attempt 1)"), "{}", lines[0]);
    assert!(lines[1].contains("run") && lines[1].contains(" b ") && lines[1].contains("failed"));
    assert!(lines[1].contains("exit code 3"), "{}", lines[1]);
    assert!(lines[2].contains("run") && lines[2].contains(" c ") && lines[2].contains("never run"));

    let json = space.plan_json(&[]);
    assert_eq!(json["done"], 1);
    assert_eq!(json["remaining"], 2);
    assert_eq!(
        plan_steps(&json),
        [
            ("a".into(), "skip".into(), "done".into()),
            ("b".into(), "run".into(), "failed".into()),
            ("c".into(), "run".into(), "never run".into()),
        ]
    );
    assert_eq!(space.ran(), ["a", "b"], "plan runs nothing");
}

#[test]
fn the_console_tells_the_story_of_each_run() {
    let space = Space::with(&chain(&["a", "b", "c"], &["b"]));
    let first = space.run(&["run"]);
    first
        .code(1)
        .stderr_has("start  a\n")
        .stderr_has("ok     a (")
        .stderr_has("start  b\n")
        .stderr_has("FAILED b (exit code 3, ")
        .stderr_has("- log: .stepwise/logs/b.1.log")
        .stderr_has("  | b is broken")
        .stderr_has("2 ran (1 failed), 0 skipped as done, 1 not run in ")
        .stderr_has("failed: b");

    space.write("fixed", "");
    space
        .run(&["run"])
        .success()
        .stderr_has("start  b (attempt 2)")
        .stderr_has("ok     b (")
        .stderr_has("start  c\n")
        .stderr_has("2 ran, 1 skipped as done in ");
    assert!(space.exists(".stepwise/logs/b.1.log"));
    assert!(
        !space.exists(".stepwise/logs/b.2.log"),
        "attempt 2 printed nothing, so it has no log file"
    );
    assert_eq!(
        space.journal().matches(r#""step":"a","attempt":2"#).count(),
        0,
        "a never ran twice"
    );
}

#[test]
fn a_step_that_fails_twice_then_succeeds_is_done_and_runs_no_more() {
    let space = Space::with(&chain(&["a", "b"], &["b"]));
    space.run(&["run"]).code(1);
    space
        .run(&["run"])
        .code(1)
        .stderr_has("start  b (attempt 2)");
    space.write("fixed", "");
    space
        .run(&["run"])
        .success()
        .stderr_has("start  b (attempt 3)");
    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 2 done, 0 remaining");
    assert_eq!(space.ran(), ["a", "b", "b", "b"]);
}

// --- Order -----------------------------------------------------------------

/// `report` is first in the file but needs two steps written after it;
/// `archive` needs nothing.
const FORWARD: &str = r#"
[[step]]
name = "report"
run = "echo report >> ran"
after = ["load", "clean"]

[[step]]
name = "load"
run = "echo load >> ran"
after = []

[[step]]
name = "clean"
run = "echo clean >> ran; test -f fixed"

[[step]]
name = "archive"
run = "echo archive >> ran"
after = []
"#;

#[test]
fn remaining_keeps_file_order_even_when_after_points_forward() {
    let space = Space::with(FORWARD);
    let fresh = space.plan_json(&[]);
    assert_eq!(
        plan_remaining(&fresh),
        ["report", "load", "clean", "archive"],
        "the plan lists steps in file order, not in dependency order"
    );

    // clean fails: load ran, report and archive did not (nothing new starts).
    space.run(&["run", "-j1"]).code(1);
    assert_eq!(space.ran(), ["load", "clean"]);
    let after_failure = space.plan_json(&[]);
    assert_eq!(after_failure["done"], 1);
    assert_eq!(
        plan_remaining(&after_failure),
        ["report", "clean", "archive"]
    );
}

#[test]
fn with_one_job_steps_start_in_file_order_among_those_ready() {
    let space = Space::with(FORWARD);
    space.write("fixed", "");
    space.run(&["run", "-j1"]).success();
    // load and archive are ready at once: load is first in the file. Then
    // clean (ready) beats archive, and report (ready after clean) beats
    // archive too, being earlier in the file.
    assert_eq!(space.ran(), ["load", "clean", "report", "archive"]);
}

#[test]
fn a_resumed_run_starts_the_remaining_steps_in_file_order() {
    let space = Space::with(FORWARD);
    space.run(&["run", "-j1"]).code(1);
    space.write("fixed", "");
    space
        .run(&["run", "-j1"])
        .success()
        .stderr_has("Resume plan: 1 done, 3 remaining");
    assert_eq!(
        space.ran(),
        ["load", "clean", "clean", "report", "archive"],
        "load is not run again; the rest in file order among ready steps"
    );
}

const INDEPENDENT: &str = r#"
[[step]]
name = "zulu"
run = "echo zulu >> ran; test -f fixed"
after = []

[[step]]
name = "alpha"
run = "echo alpha >> ran"
after = []

[[step]]
name = "mike"
run = "echo mike >> ran"
after = []
"#;

#[test]
fn independent_steps_keep_file_order_not_alphabetical_order() {
    let space = Space::with(INDEPENDENT);
    space.run(&["run", "-j1"]).code(1);
    assert_eq!(
        space.ran(),
        ["zulu"],
        "after zulu fails, nothing new starts"
    );
    assert_eq!(
        plan_remaining(&space.plan_json(&[])),
        ["zulu", "alpha", "mike"]
    );

    space.write("fixed", "");
    space.run(&["run", "-j1"]).success();
    assert_eq!(space.ran(), ["zulu", "zulu", "alpha", "mike"]);
}

#[test]
fn with_keep_going_independent_steps_run_past_a_failure_and_only_it_remains() {
    let space = Space::with(INDEPENDENT);
    space.run(&["run", "-j1", "-k"]).code(1);
    assert_eq!(space.ran(), ["zulu", "alpha", "mike"]);
    let plan = space.plan_json(&[]);
    assert_eq!(plan_remaining(&plan), ["zulu"]);
    assert_eq!(plan["done"], 2);
}

// --- A runner killed with kill -9 ------------------------------------------

/// Five steps; s3 writes its shell's pid to `s3.pid`, then its name to
/// `ran`, then sleeps while the file `slow` exists.
const FIVE: &str = r#"
[[step]]
name = "s1"
run = "echo s1 >> ran"

[[step]]
name = "s2"
run = "echo s2 >> ran"

[[step]]
name = "s3"
run = "echo $$ > s3.pid; echo s3 >> ran; if test -f slow; then sleep 30; fi"

[[step]]
name = "s4"
run = "echo s4 >> ran"

[[step]]
name = "s5"
run = "echo s5 >> ran"
"#;

/// Starts a run of [`FIVE`] with `slow` present and kills it with SIGKILL
/// while s3 runs; returns the pid of s3's shell (its process group too).
fn kill_the_runner_during_s3(space: &Space) -> u32 {
    space.write("slow", "");
    let mut runner = space.spawn(&["run", "-j1"]);
    space.wait_for_line("ran", "s3");
    let step = space
        .read("s3.pid")
        .trim()
        .parse()
        .expect("s3 wrote its pid");
    assert!(alive(step), "s3 is running when the runner is killed");
    let killed = runner.kill9();
    assert_eq!(killed.code, 137, "the runner died of SIGKILL");
    step
}

#[test]
fn a_crash_while_step_3_runs_then_resume_reruns_only_3_to_5() {
    let space = Space::with(FIVE);
    let step = kill_the_runner_during_s3(&space);
    let _reaper = GroupReaper(Some(step));
    assert_eq!(space.ran(), ["s1", "s2", "s3"]);

    wait_until("s3's process to die with the runner", || !alive(step));

    let plan = space.run(&["plan"]);
    plan.success()
        .stdout_has("Resume plan: 2 done, 3 remaining");
    let s3 = plan
        .stdout
        .lines()
        .find(|l| l.contains(" s3 "))
        .expect("a line for s3");
    assert!(s3.contains("interrupted"), "{s3}");
    assert_eq!(
        plan_steps(&space.plan_json(&[])),
        [
            ("s1".into(), "skip".into(), "done".into()),
            ("s2".into(), "skip".into(), "done".into()),
            ("s3".into(), "run".into(), "interrupted".into()),
            ("s4".into(), "run".into(), "never run".into()),
            ("s5".into(), "run".into(), "never run".into()),
        ]
    );

    let status = space.run(&["status", "--json"]);
    status.success();
    let s3 = &status.json()["steps"][2];
    assert_eq!(s3["state"], "interrupted");
    assert_eq!(s3["last_attempt"]["finished"], false);
    space.run(&["status"]).success().stdout_has("interrupted");

    // The fix: s3 no longer hangs.
    std::fs::remove_file(space.join("slow")).unwrap();
    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 2 done, 3 remaining")
        .stderr_has("start  s3 (attempt 2)");
    assert_eq!(space.ran(), ["s1", "s2", "s3", "s3", "s4", "s5"]);
    assert_eq!(space.ran_count("s1"), 1);
    assert_eq!(space.ran_count("s2"), 1);
}

#[test]
fn a_crash_of_the_runner_leaves_no_lock_and_status_shows_no_run_in_progress() {
    let space = Space::with(FIVE);
    let step = kill_the_runner_during_s3(&space);
    let _reaper = GroupReaper(Some(step));
    let status = space.run(&["status", "--json"]);
    status.success();
    assert_eq!(status.json()["running"], serde_json::Value::Null);
    // A writer gets the lock at once: no stale lock to delete by hand.
    space
        .run(&["forget", "s1"])
        .success()
        .stderr_has("forgot s1");
}

#[test]
fn what_a_step_of_a_killed_runner_started_is_killed_by_the_next_run() {
    // README: the kernel kills the step's main process with the runner; what
    // it started (here s3's `sleep 30`) may live on until the next `run`
    // finds it and kills it.
    let space = Space::with(FIVE);
    let step = kill_the_runner_during_s3(&space);
    let _reaper = GroupReaper(Some(step));
    wait_until("s3's shell to die with the runner", || !alive(step));

    std::fs::remove_file(space.join("slow")).unwrap();
    let resumed = space.run(&["run"]);
    resumed
        .success()
        .stderr_has("killed 1 process that steps of a killed earlier run had left running");
    wait_until("the processes s3 left to be gone", || {
        group_members(step).is_empty()
    });
    assert_eq!(space.ran(), ["s1", "s2", "s3", "s3", "s4", "s5"]);
}

// --- forget ----------------------------------------------------------------

const ATTEMPTS: &str = r#"
[[step]]
name = "a"
run = "echo a >> ran; echo a attempt $STEPWISE_ATTEMPT"

[[step]]
name = "b"
run = "echo b >> ran; echo b attempt $STEPWISE_ATTEMPT"

[[step]]
name = "c"
run = "echo c >> ran; echo c attempt $STEPWISE_ATTEMPT"
"#;

#[test]
fn forget_b_makes_only_b_run_again_and_its_attempts_keep_counting() {
    let space = Space::with(ATTEMPTS);
    space.run(&["run"]).success();

    space.run(&["forget", "b"]).success().stderr_has("forgot b");
    assert_eq!(
        plan_steps(&space.plan_json(&[])),
        [
            ("a".into(), "skip".into(), "done".into()),
            ("b".into(), "run".into(), "forgotten".into()),
            // c needs b, which will run: planned, then skipped at its turn
            // because b's rerun changes nothing c depends on.
            ("c".into(), "run".into(), "stale".into()),
        ]
    );
    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 1 done, 2 remaining")
        .stderr_has("start  b (attempt 2)")
        .stderr_has("skip   c (up to date");
    assert_eq!(space.ran(), ["a", "b", "c", "b"], "only b ran again");
    assert!(space.exists(".stepwise/logs/b.2.log"));
    assert!(
        space.exists(".stepwise/logs/b.1.log"),
        "history is kept: the first attempt's log is still there"
    );
    assert_eq!(space.read(".stepwise/logs/b.2.log"), "b attempt 2\n");
    space.run(&["log", "b"]).success().stdout_has("b attempt 2");
}

#[test]
fn forget_all_makes_every_step_run_again() {
    let space = Space::with(ATTEMPTS);
    space.run(&["run"]).success();
    space
        .run(&["forget", "--all"])
        .success()
        .stderr_has("forgot every step");
    let plan = space.plan_json(&[]);
    assert_eq!(plan["done"], 0);
    assert_eq!(plan_remaining(&plan), ["a", "b", "c"]);
    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 0 done, 3 remaining");
    assert_eq!(space.ran(), ["a", "b", "c", "a", "b", "c"]);
    for step in ["a", "b", "c"] {
        assert!(
            space.exists(&format!(".stepwise/logs/{step}.2.log")),
            "{step}"
        );
    }
}

#[test]
fn forget_of_an_unknown_step_is_refused_with_a_suggestion() {
    let space = Space::with(ATTEMPTS);
    space.run(&["run"]).success();
    let before = space.journal_bytes();
    space
        .run(&["forget", "bb"])
        .code(2)
        .stderr_has("no step named `bb`")
        .stderr_has("did you mean `b`?");
    assert_eq!(space.journal_bytes(), before, "the journal is unchanged");
    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 3 done, 0 remaining");
}

#[test]
fn forget_without_a_step_is_a_usage_error() {
    let space = Space::with(ATTEMPTS);
    space.run(&["run"]).success();
    let before = space.journal_bytes();
    let out = space.run(&["forget"]);
    out.code(2);
    assert!(
        out.stderr.contains("STEP") || out.stderr.contains("--all"),
        "the usage error says what is missing:\n{}",
        out.stderr
    );
    assert_eq!(space.journal_bytes(), before);
}

// --- run STEP --------------------------------------------------------------

/// fetch -> parse -> report is a sequence; lint and docs are a second chain.
const TWO_CHAINS: &str = r#"
[[step]]
name = "fetch"
run = "echo fetch >> ran"

[[step]]
name = "parse"
run = "echo parse >> ran"

[[step]]
name = "report"
run = "echo report >> ran"

[[step]]
name = "lint"
run = "echo lint >> ran"
after = []

[[step]]
name = "docs"
run = "echo docs >> ran"
after = ["lint"]
"#;

#[test]
fn run_step_runs_only_that_step_and_what_it_needs() {
    let space = Space::with(TWO_CHAINS);
    space
        .run(&["run", "report"])
        .success()
        .stderr_has("Resume plan: 0 done, 3 remaining");
    assert_eq!(space.ran(), ["fetch", "parse", "report"]);
    let plan = space.plan_json(&[]);
    assert_eq!(plan_remaining(&plan), ["lint", "docs"]);
}

#[test]
fn run_step_counts_only_its_scope_in_the_resume_plan() {
    let space = Space::with(TWO_CHAINS);
    space
        .run(&["run", "parse"])
        .success()
        .stderr_has("Resume plan: 0 done, 2 remaining");
    assert_eq!(space.ran(), ["fetch", "parse"]);

    space
        .run(&["run", "report"])
        .success()
        .stderr_has("Resume plan: 2 done, 1 remaining");
    assert_eq!(space.ran(), ["fetch", "parse", "report"]);

    space
        .run(&["run", "docs"])
        .success()
        .stderr_has("Resume plan: 0 done, 2 remaining");
    assert_eq!(space.ran(), ["fetch", "parse", "report", "lint", "docs"]);

    let plan = space.plan_json(&["parse"]);
    assert_eq!(
        plan_steps(&plan)
            .into_iter()
            .map(|(n, _, _)| n)
            .collect::<Vec<_>>(),
        ["fetch", "parse"],
        "plan STEP shows the same scope"
    );
}

#[test]
fn run_of_an_unknown_step_is_refused_with_a_suggestion_and_runs_nothing() {
    let space = Space::with(TWO_CHAINS);
    space
        .run(&["run", "reprot"])
        .code(2)
        .stderr_has("no step named `reprot`")
        .stderr_has("did you mean `report`?");
    assert!(space.ran().is_empty());
    assert!(!space.exists(".stepwise"), "nothing was created");
}

// --- A step whose dir is missing -------------------------------------------

#[test]
fn a_step_whose_dir_is_missing_fails_that_attempt_and_runs_once_the_dir_exists() {
    let space = Space::with(
        r#"
[[step]]
name = "prepare"
run = "echo prepare >> ran"

[[step]]
name = "build"
dir = "out"
run = "echo build >> ../ran"

[[step]]
name = "ship"
run = "echo ship >> ran"
"#,
    );
    let first = space.run(&["run"]);
    first
        .code(1)
        .stderr_has("FAILED build")
        .stderr_has("working dir")
        .stderr_has("does not exist")
        .stderr_has("not run: ship (needs build, which failed)");
    assert!(
        first.stderr.contains("/out"),
        "the message names the folder:\n{}",
        first.stderr
    );
    assert!(!first.stderr.contains("panicked"), "{}", first.stderr);
    assert_eq!(space.ran(), ["prepare"]);
    let plan = space.plan_json(&[]);
    assert_eq!(plan["steps"][1]["state"], "failed");
    assert!(
        plan["steps"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{plan}"
    );

    std::fs::create_dir(space.join("out")).unwrap();
    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 1 done, 2 remaining")
        .stderr_has("start  build (attempt 2)");
    assert_eq!(space.ran(), ["prepare", "build", "ship"]);
}

#[test]
fn two_pipeline_files_in_one_folder_keep_separate_state() {
    let space = Space::new();
    space.write(
        "a.toml",
        "[[step]]\nname = \"build\"\nrun = \"echo a >> ran\"\n",
    );
    space.write(
        "b.toml",
        "[[step]]\nname = \"build\"\nrun = \"echo b >> ran\"\n",
    );
    space.run(&["-f", "a.toml", "run"]).success();
    space
        .run(&["-f", "b.toml", "run"])
        .success()
        .stderr_has("Resume plan: 0 done, 1 remaining");
    assert_eq!(space.ran(), ["a", "b"]);
    assert!(space.exists(".stepwise-a/journal.jsonl") && space.exists(".stepwise-b/journal.jsonl"));
}
