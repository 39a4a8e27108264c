//! What a step sees when it runs: its environment, its folder, its stdin;
//! and what the user sees when it fails.

mod common;
use common::*;

use std::process::Stdio;

const ENV: &str = r#"
[pipeline]
env = { SHARED = "from-pipeline", OVERRIDDEN = "from-pipeline", NUMBER = 42, FLAG = true }

[[step]]
name = "first"
run = "echo \"$STEPWISE_STEP $STEPWISE_ATTEMPT $STEPWISE_RUN $SHARED $OVERRIDDEN $OWN $NUMBER $FLAG $FROM_OUTSIDE\" >> seen; echo \"$STEPWISE_STATE_DIR\" > state-dir"
env = { OVERRIDDEN = "from-step", OWN = "own" }

[[step]]
name = "second"
run = "echo \"$STEPWISE_STEP $STEPWISE_ATTEMPT $STEPWISE_RUN $SHARED $OVERRIDDEN ${OWN:-unset}\" >> seen; test -f fixed"
"#;

#[test]
fn a_step_sees_its_name_attempt_run_and_the_pipeline_and_step_env() {
    let space = Space::with(ENV);
    let out = space
        .command(&["run"])
        .env("FROM_OUTSIDE", "inherited")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "second fails the first time");
    space.write("fixed", "");
    space.run(&["run"]).success();

    assert_eq!(
        space.read("seen"),
        "first 1 1 from-pipeline from-step own 42 true inherited\n\
         second 1 1 from-pipeline from-pipeline unset\n\
         second 2 2 from-pipeline from-pipeline unset\n",
        "step env overrides the pipeline's; a step's env is its own; \
         STEPWISE_ATTEMPT counts attempts, STEPWISE_RUN counts runs"
    );
    let state_dir = space.read("state-dir");
    let state_dir = std::path::Path::new(state_dir.trim());
    assert!(state_dir.is_absolute(), "{state_dir:?}");
    assert_eq!(
        std::fs::canonicalize(state_dir).unwrap(),
        std::fs::canonicalize(space.join(".stepwise")).unwrap(),
        "STEPWISE_STATE_DIR is the absolute path of .stepwise/"
    );
}

#[test]
fn a_step_runs_in_its_dir_relative_to_the_pipeline_file() {
    let space = Space::with(
        r#"
[[step]]
name = "here"
run = "pwd > where"

[[step]]
name = "there"
dir = "sub/deeper"
run = "pwd > where"
"#,
    );
    std::fs::create_dir_all(space.join("sub/deeper")).unwrap();
    space.run(&["run"]).success();
    let canon = |p: &str| std::fs::canonicalize(p.trim()).unwrap();
    assert_eq!(
        canon(&space.read("where")),
        std::fs::canonicalize(space.path()).unwrap()
    );
    assert_eq!(
        canon(&space.read("sub/deeper/where")),
        std::fs::canonicalize(space.join("sub/deeper")).unwrap()
    );
}

#[test]
fn a_steps_stdin_is_dev_null_not_the_runners() {
    let space = Space::with(
        r#"
[[step]]
name = "reader"
run = "readlink /proc/$$/fd/0 > stdin-is; cat > got; echo reader >> ran"
"#,
    );
    // Give stepwise itself a stdin with something in it: the step must not
    // read it (nor wait on it).
    space.write("input", "typed at the terminal\n");
    let out = space
        .command(&["run"])
        .stdin(Stdio::from(
            std::fs::File::open(space.join("input")).unwrap(),
        ))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(space.read("stdin-is").trim(), "/dev/null");
    assert_eq!(space.read("got"), "", "the step read nothing");
    assert_eq!(space.ran(), ["reader"]);
}

#[test]
fn a_failed_steps_output_tail_and_log_path_appear_on_stderr() {
    let space = Space::with(
        r#"
[[step]]
name = "noisy"
run = "for i in $(seq 1 30); do echo line $i; done; echo 'the real error' >&2; exit 7"
"#,
    );
    let out = space.run(&["run"]);
    out.code(1)
        .stderr_has("FAILED noisy (exit code 7, ")
        .stderr_has("log: .stepwise/logs/noisy.1.log")
        .stderr_has("  | the real error")
        .stderr_has("  | line 30\n");
    let shown: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("  | "))
        .collect();
    assert_eq!(shown.len(), 20, "the last 20 lines:\n{}", out.stderr);
    assert_eq!(shown[0], "  | line 12");
    assert!(
        !out.stderr.contains("  | line 11\n"),
        "older lines stay in the log:\n{}",
        out.stderr
    );
    assert!(
        space
            .read(".stepwise/logs/noisy.1.log")
            .contains("line 1\n")
    );
}

#[test]
fn a_successful_steps_output_stays_in_its_log() {
    let space = Space::with(
        r#"
[[step]]
name = "quiet"
run = "echo private output"
"#,
    );
    let out = space.run(&["run"]);
    out.success();
    assert!(!out.stdout.contains("private output"), "{}", out.stdout);
    assert!(!out.stderr.contains("private output"), "{}", out.stderr);
    assert_eq!(space.read(".stepwise/logs/quiet.1.log"), "private output\n");
}

#[test]
fn the_pipeline_shell_runs_each_step() {
    let space = Space::with(
        r#"
[pipeline]
shell = ["bash", "-eu", "-c"]

[[step]]
name = "strict"
run = "echo $BASH_VERSION > bash; echo $UNSET_VARIABLE; echo after >> ran"
"#,
    );
    space.run(&["run"]).code(1).stderr_has("UNSET_VARIABLE");
    assert!(!space.read("bash").trim().is_empty(), "bash ran the step");
    assert!(space.ran().is_empty(), "-u stopped the step");
}

#[test]
fn a_step_that_is_over_takes_its_leftover_processes_with_it() {
    // README: "When its command exits, anything it left running in that
    // group is killed".
    let space = Space::with(
        r#"
[[step]]
name = "leaky"
run = "sleep 20 & echo $! > leftover.pid"
"#,
    );
    space.run(&["run"]).success();
    let leftover: u32 = space.read("leftover.pid").trim().parse().unwrap();
    let _reaper = GroupReaper(Some(leftover));
    wait_until("the leftover sleep to be killed", || !alive(leftover));
}

#[test]
fn a_step_killed_by_a_signal_is_reported_as_killed() {
    let space = Space::with(
        r#"
[[step]]
name = "victim"
run = "echo victim >> ran; kill -KILL $$"

[[step]]
name = "next"
run = "echo next >> ran"
"#,
    );
    space
        .run(&["run"])
        .code(1)
        .stderr_has("FAILED victim (killed by SIGKILL")
        .stderr_has("not run: next (needs victim, which failed)");
    let status = space.run(&["status", "--json"]).json();
    let last = &status["steps"][0]["last_attempt"];
    assert_eq!(last["signal"], 9);
    assert_eq!(last["exit_code"], serde_json::Value::Null);
    assert_eq!(last["ok"], false);
    assert_eq!(space.ran(), ["victim"]);
}
