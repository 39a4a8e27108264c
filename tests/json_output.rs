//! The JSON documents of the inspecting commands and of `run --events
//! json`, as snapshots: their schemas are documented in the README, and a
//! change to one shows up here.

mod common;
use common::ui::{json_snapshot, normalize};
use common::*;

/// After one run: `gen` and `count` done, `flaky` done on its retry,
/// `broken` failed, `never` not run; then an input of `count` changes, so
/// it is stale.
fn story() -> Space {
    let space = Space::with(
        r#"
[[step]]
name = "gen"
run = "printf 'a\nb\n' > data.txt"
outputs = ["data.txt"]

[[step]]
name = "count"
run = "wc -l < data.txt > count.txt"
inputs = ["data.txt", "config.txt"]
outputs = ["count.txt"]

[[step]]
name = "flaky"
retries = 1
retry_delay = "10ms"
run = "test $STEPWISE_ATTEMPT -ge 2 || { echo 'first try fails' >&2; exit 4; }"

[[step]]
name = "broken"
run = "echo nope >&2; exit 2"

[[step]]
name = "never"
run = "true"
"#,
    );
    space.write("config.txt", "v1\n");
    space.run(&["run", "-j1"]).code(1);
    space.write("config.txt", "v2\n");
    space
}

fn snapshot_of(space: &Space, args: &[&str]) -> String {
    let out = space.run(args);
    out.success();
    assert_eq!(
        out.stdout.lines().count(),
        1,
        "one line of JSON:\n{}",
        out.stdout
    );
    json_snapshot(&out.stdout, space.path())
}

#[test]
fn plan_json() {
    let space = story();
    insta::assert_snapshot!(snapshot_of(&space, &["plan", "--json"]));
    // --format json is the same document.
    assert_eq!(
        space.run(&["plan", "--format", "json"]).stdout,
        space.run(&["plan", "--json"]).stdout
    );
}

#[test]
fn status_json() {
    let space = story();
    insta::assert_snapshot!(snapshot_of(&space, &["status", "--format=json"]));
}

#[test]
fn why_json() {
    let space = story();
    insta::assert_snapshot!(snapshot_of(&space, &["why", "count", "--json"]));
}

#[test]
fn history_json() {
    let space = story();
    insta::assert_snapshot!(snapshot_of(&space, &["history", "--json"]));
}

#[test]
fn status_of_one_run_json() {
    let space = story();
    insta::assert_snapshot!(snapshot_of(&space, &["status", "--run", "1", "--json"]));
}

#[test]
fn graph_json() {
    let space = story();
    insta::assert_snapshot!(snapshot_of(&space, &["graph", "--json"]));
    assert_eq!(
        space.run(&["graph", "--format", "json"]).stdout,
        space.run(&["graph", "--json"]).stdout
    );
}

#[test]
fn graph_dot_and_mermaid() {
    let space = story();
    let dot = space.run(&["graph"]);
    dot.success();
    insta::assert_snapshot!("graph_dot", normalize(&dot.stdout, space.path()));
    let mermaid = space.run(&["graph", "--format", "mermaid"]);
    mermaid.success();
    insta::assert_snapshot!("graph_mermaid", normalize(&mermaid.stdout, space.path()));
    // Only the named steps and what they need.
    let part = space.run(&["graph", "count"]);
    part.success();
    assert!(part.stdout.contains("\"gen\" -> \"count\""));
    assert!(!part.stdout.contains("broken"), "{}", part.stdout);
}

#[test]
fn run_events_json_one_per_line() {
    let space = story();
    let out = space.run(&["run", "-j1", "--events", "json"]);
    out.code(1);
    // The console still speaks on stderr.
    out.stderr_has("FAILED broken");
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for e in &events {
        assert_eq!(e["version"], 1, "{e}");
        assert!(e["at"].as_u64().is_some(), "{e}");
    }
    let kinds: Vec<String> = events
        .iter()
        .map(|e| {
            let step = e["step"]
                .as_str()
                .map_or(String::new(), |s| format!(" {s}"));
            format!("{}{step}", e["event"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "run_started",
            "step_skipped gen",
            "step_started count",
            "step_finished count",
            // Planned (count would run first), then up to date: count wrote
            // the same bytes (early cutoff).
            "step_skipped flaky",
            "step_started broken",
            "step_finished broken",
            "run_finished",
        ]
    );
    let lines: Vec<String> = out
        .stdout
        .lines()
        .map(|l| {
            json_snapshot(l, space.path())
                .replace('\n', " ")
                .replace("  ", "")
        })
        .collect();
    insta::assert_snapshot!("run_events", lines.join("\n"));

    // Nothing to do is an event too.
    let space = Space::with("[[step]]\nname = \"a\"\nrun = \"true\"\n");
    space.run(&["run"]).success();
    let out = space.run(&["run", "--events=json"]);
    out.success();
    let last: serde_json::Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "run_finished");
    assert_eq!(last["exit_code"], 0);
    assert_eq!(last["run"], serde_json::Value::Null);
}

#[test]
fn retries_are_events() {
    let space = Space::with(
        "[[step]]\nname = \"f\"\nretries = 1\nretry_delay = \"10ms\"\nrun = \"test $STEPWISE_ATTEMPT -ge 2\"\n",
    );
    let out = space.run(&["run", "--events", "json"]);
    out.success();
    let kinds: Vec<String> = out
        .stdout
        .lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).unwrap();
            e["event"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "run_started",
            "step_started",
            "step_finished",
            "step_retry",
            "step_started",
            "step_finished",
            "run_finished"
        ]
    );
    let retry: serde_json::Value =
        serde_json::from_str(out.stdout.lines().nth(3).unwrap()).unwrap();
    assert_eq!(retry["retry"], 1);
    assert_eq!(retry["retries"], 1);
    assert_eq!(retry["delay_ms"], 10);
}
