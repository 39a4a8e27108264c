//! The pipelines in `examples/` run, offline, and do what their READMEs
//! say. Each is copied into a temp dir first, so the tests leave the
//! repository alone.

mod common;
use common::*;

use std::path::Path;

/// A copy of `examples/NAME` (without its state dir and outputs).
fn example(name: &str) -> Space {
    let space = Space::new();
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    copy(&from, space.path());
    space
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == ".stepwise" || name == "out" {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

/// How many attempts of `step` the journal records.
fn attempts(space: &Space, step: &str) -> usize {
    let needle = "\"event\":\"start\",\"run\"";
    space
        .journal()
        .lines()
        .filter(|l| l.contains(needle) && l.contains(&format!("\"step\":\"{step}\"")))
        .count()
}

#[test]
fn every_example_has_a_readme() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.join("stepwise.toml").is_file() {
            assert!(
                path.join("README.md").is_file(),
                "{} has no README.md",
                path.display()
            );
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    names.sort();
    for wanted in ["branches", "etl", "long", "wordfreq"] {
        assert!(names.iter().any(|n| n == wanted), "{wanted} in {names:?}");
    }
}

#[test]
fn etl_runs_and_reruns_only_what_changed() {
    let space = example("etl");
    space.run(&["run"]).success().stderr_has("4 ran");
    let report = space.read("out/report.md");
    assert!(report.contains("# Sales report"), "{report}");
    assert!(report.contains("dropped 208 rows: duplicate"), "{report}");
    assert!(report.contains("| north |"), "{report}");
    space.run(&["run"]).success().stderr_has("nothing to do");

    // touch: nothing runs.
    let script = space.join("scripts/clean.awk");
    let text = std::fs::read(&script).unwrap();
    std::fs::write(&script, &text).unwrap();
    space.run(&["run"]).success().stderr_has("nothing to do");

    // A lost output: its step reruns, and what follows is up to date.
    std::fs::remove_file(space.join("out/totals.csv")).unwrap();
    let out = space.run(&["run"]);
    out.success();
    out.stderr_has("ok     aggregate");
    out.stderr_has("skip   report (up to date");

    // A changed script: its step and what follows.
    let agg = space
        .read("scripts/aggregate.awk")
        .replace("$5 * $6", "$5 * $6 * 2");
    space.write("scripts/aggregate.awk", &agg);
    let plan = space.run(&["plan"]);
    plan.stdout_has("input changed: scripts/aggregate.awk");
    let out = space.run(&["run"]);
    out.success();
    out.stderr_has("2 ran, 2 skipped as done");
}

#[test]
fn branches_run_side_by_side_and_the_flaky_step_is_retried() {
    let space = example("branches");
    let out = space.run(&["run", "-j", "4"]);
    out.success();
    out.stderr_has("FAILED upload (exit code 75");
    out.stderr_has("  | error: connection reset by peer");
    out.stderr_has("retry  upload in 500ms (retry 1 of 3)");
    out.stderr_has("6 ran, 0 skipped as done");
    assert_eq!(attempts(&space, "upload"), 2);
    assert!(space.read("out/published.txt").starts_with("published "));

    // The three branches overlapped in time.
    let status = space.run(&["status", "--run", "1", "--json"]).json();
    let window = |name: &str| {
        let step = status["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap();
        let a = &step["last_attempt"];
        (
            a["started_at"].as_u64().unwrap(),
            a["finished_at"].as_u64().unwrap(),
        )
    };
    let (t0, t1) = window("thumbnails");
    let (i0, i1) = window("index");
    let (c0, c1) = window("checksums");
    let latest_start = t0.max(i0).max(c0);
    let earliest_end = t1.min(i1).min(c1);
    assert!(
        latest_start < earliest_end,
        "the branches ran at the same time"
    );

    space.run(&["forget", "index", "--downstream"]).success();
    let out = space.run(&["run", "-j", "4"]);
    out.success();
    out.stderr_has("Resume plan: 3 done, 3 remaining");
}

#[test]
fn long_stops_on_sigint_and_resumes() {
    let space = example("long");
    let mut cmd = space.command(&["run"]);
    cmd.env("TICK", "0.2")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut bg = Background::from_child(cmd.spawn().unwrap());
    // Wait until `train` has done a unit of work (so its shell has set its
    // trap), then Ctrl-C.
    wait_until("train to work", || {
        space
            .read(".stepwise/logs/train.1.log")
            .contains("unit 1 of 20")
    });
    let pid = nix::unistd::Pid::from_raw(bg.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = bg.wait();
    out.code(130);
    out.stderr_has("interrupted by SIGINT");
    out.stderr_has("stopped at unit");
    assert!(!space.exists("out/model.dat"), "no half-made output");

    let plan = space.run(&["plan"]);
    plan.stdout_has("Resume plan: 3 done, 3 remaining");
    plan.stdout_has("interrupted");
    let mut cmd = space.command(&["run"]);
    cmd.env("TICK", "0.01");
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in ["download-a", "download-b", "prepare"] {
        assert_eq!(attempts(&space, step), 1, "{step} ran once");
    }
    assert_eq!(attempts(&space, "train"), 2);
    assert!(space.exists("out/release.tar"));
}
