//! Looking at a pipeline: `status` (text and JSON) and `log`.

mod common;
use common::*;

use std::time::{SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// a succeeds, b fails with exit code 3 (until `fixed` exists), c never runs.
fn half_done() -> Space {
    let space = Space::with(&chain(&["a", "b", "c"], &["b"]));
    space.run(&["run"]).code(1);
    space
}

const ATTEMPT_FIELDS: [&str; 12] = [
    "number",
    "run",
    "imported",
    "ok",
    "finished",
    "outcome",
    "exit_code",
    "signal",
    "started_at",
    "finished_at",
    "duration_ms",
    "log",
];

#[test]
fn status_json_has_every_documented_field() {
    let t0 = now_ms();
    let space = half_done();
    let t1 = now_ms();
    let out = space.run(&["status", "--json"]);
    out.success();
    let doc = out.json();
    assert_eq!(doc["version"], 1);
    assert_eq!(
        doc["running"],
        serde_json::Value::Null,
        "no run in progress"
    );
    let steps = doc["steps"].as_array().expect("a list of steps");
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "b", "c"], "pipeline order");

    for step in &steps[..2] {
        let last = step["last_attempt"]
            .as_object()
            .unwrap_or_else(|| panic!("a last attempt: {step}"));
        let mut keys: Vec<&str> = last.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = ATTEMPT_FIELDS.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected, "the README's fields, no more, no less");
        let started = last["started_at"].as_u64().expect("ms since the epoch");
        let finished = last["finished_at"].as_u64().expect("ms since the epoch");
        assert!(
            t0 <= started && started <= finished && finished <= t1,
            "{t0} <= {started} <= {finished} <= {t1}"
        );
        assert!(last["duration_ms"].as_u64().is_some());
        assert_eq!(last["number"], 1);
        assert_eq!(last["run"], 1);
        assert_eq!(last["imported"], false);
        assert_eq!(last["finished"], true);
    }

    let a = &steps[0];
    assert_eq!(a["state"], "done");
    assert_eq!(a["attempts"], 1);
    let a_last = &a["last_attempt"];
    assert_eq!(a_last["ok"], true);
    assert_eq!(a_last["exit_code"], 0);
    assert_eq!(a_last["signal"], serde_json::Value::Null);
    // a printed nothing, so it has no log file; b complained, so it has one.
    assert_eq!(a_last["log"], serde_json::Value::Null);
    let log = steps[1]["last_attempt"]["log"]
        .as_str()
        .expect("a log path");
    assert!(log.ends_with(".stepwise/logs/b.1.log"), "{log}");
    assert!(
        std::path::Path::new(log).exists(),
        "the log is where it says"
    );

    let b = &steps[1];
    assert_eq!(b["state"], "failed");
    let b_last = &b["last_attempt"];
    assert_eq!(b_last["ok"], false);
    assert_eq!(b_last["exit_code"], 3);
    assert_eq!(b_last["outcome"], "exit code 3");
    assert!(b_last["log"].as_str().unwrap().ends_with("b.1.log"));

    let c = &steps[2];
    assert_eq!(c["state"], "never run");
    assert_eq!(c["attempts"], 0);
    assert_eq!(c["last_attempt"], serde_json::Value::Null);
}

#[test]
fn status_json_counts_attempts_across_runs() {
    let space = half_done();
    space.run(&["run"]).code(1);
    space.write("fixed", "");
    space.run(&["run"]).success();
    let doc = space.run(&["status", "--json"]).json();
    let b = &doc["steps"][1];
    assert_eq!(b["state"], "done");
    assert_eq!(b["attempts"], 3);
    assert_eq!(b["last_attempt"]["number"], 3);
    assert_eq!(b["last_attempt"]["run"], 3);
    assert_eq!(b["last_attempt"]["ok"], true);
    // The successful attempt printed nothing: no log file was made for it.
    assert_eq!(b["last_attempt"]["log"], serde_json::Value::Null);
    assert!(!space.exists(".stepwise/logs/b.3.log"));
    assert!(
        space.exists(".stepwise/logs/b.2.log"),
        "the failed one complained"
    );
    assert_eq!(doc["steps"][0]["attempts"], 1, "a ran once");
}

#[test]
fn status_shows_each_steps_latest_attempt_in_a_table() {
    let space = half_done();
    let out = space.run(&["status"]);
    out.success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        4,
        "a header and one row per step:\n{}",
        out.stdout
    );
    for column in ["STEP", "LAST RESULT", "WHEN", "TOOK", "ATTEMPTS", "LOG"] {
        assert!(lines[0].contains(column), "{column} in {}", lines[0]);
    }
    assert!(lines[1].starts_with("a "), "{}", lines[1]);
    assert!(lines[1].contains("ok"), "{}", lines[1]);
    assert!(lines[1].contains("(no output)"), "{}", lines[1]);
    assert!(lines[2].starts_with("b "), "{}", lines[2]);
    assert!(lines[2].contains("exit code 3"), "{}", lines[2]);
    assert!(lines[2].contains(".stepwise/logs/b.1.log"), "{}", lines[2]);
    assert!(lines[3].starts_with("c "), "{}", lines[3]);
    assert!(lines[3].contains("never run"), "{}", lines[3]);
}

#[test]
fn status_and_plan_of_a_fresh_pipeline_change_nothing() {
    let space = Space::with(&chain(&["a", "b"], &[]));
    space.run(&["status"]).success().stdout_has("never run");
    space.run(&["status", "--json"]).success();
    space
        .run(&["plan"])
        .success()
        .stdout_has("Resume plan: 0 done, 2 remaining");
    assert!(!space.exists(".stepwise"), "readers create nothing");
    assert!(space.ran().is_empty());
}

#[test]
fn log_prints_the_latest_attempts_output() {
    let space = Space::with(
        r#"
[[step]]
name = "talk"
run = "echo out $STEPWISE_ATTEMPT; echo err $STEPWISE_ATTEMPT >&2; test -f fixed"
"#,
    );
    space.run(&["run"]).code(1);
    let first = space.run(&["log", "talk"]);
    first.success();
    assert_eq!(
        first.stdout, "out 1\nerr 1\n",
        "stdout and stderr, as written"
    );

    space.write("fixed", "");
    space.run(&["run"]).success();
    let second = space.run(&["log", "talk"]);
    second.success();
    assert_eq!(second.stdout, "out 2\nerr 2\n", "the latest attempt only");
    assert_eq!(
        space.read(".stepwise/logs/talk.1.log"),
        "out 1\nerr 1\n",
        "the first attempt's log is kept"
    );
}

#[test]
fn log_of_a_step_that_never_ran_is_an_error() {
    let space = half_done();
    space
        .run(&["log", "c"])
        .code(2)
        .stderr_has("`c` has no recorded attempt");
}

#[test]
fn log_of_an_unknown_step_suggests_the_closest() {
    let space = half_done();
    space
        .run(&["log", "bb"])
        .code(2)
        .stderr_has("no step named `bb`")
        .stderr_has("did you mean `b`?");
}
