//! The HTML report, rendered by a real browser: headless Chromium loads the
//! file, runs its script, and dumps the DOM, in which the steps, their
//! states and every attempt of the timeline must be.
//!
//! Every test here is `#[ignore]`d, so a plain `cargo test` reports them
//! as ignored, never as passed; `.ci/run` installs Chromium and runs them
//! with `--include-ignored`. Run by hand without Chromium, a test fails,
//! saying how to install it.

mod common;
use common::*;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use regex::Regex;

/// Chromium's path: `$STEPWISE_CHROMIUM`, or the first of the usual names
/// on `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("STEPWISE_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in [
            "chromium",
            "chromium-browser",
            "google-chrome",
            "google-chrome-stable",
        ] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Chromium, or a failure saying how to install it.
#[track_caller]
fn need_chromium() -> PathBuf {
    chromium().unwrap_or_else(|| {
        panic!("Chromium not found: `apt-get install chromium`, or set STEPWISE_CHROMIUM to a Chromium or Chrome binary")
    })
}

/// Runs headless Chromium on `page` with `args`, killed after a minute.
fn headless(chromium: &Path, page: &Path, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

/// The start tags of `dom` named `tag`, each as its attributes.
fn elements(dom: &str, tag: &str) -> Vec<HashMap<String, String>> {
    let start = Regex::new(&format!(r"<{tag}\b([^>]*)>")).unwrap();
    let attr = Regex::new(r#"([\w:-]+)="([^"]*)""#).unwrap();
    start
        .captures_iter(dom)
        .map(|c| {
            attr.captures_iter(&c[1])
                .map(|a| (a[1].to_string(), a[2].to_string()))
                .collect()
        })
        .collect()
}

fn find<'a>(
    all: &'a [HashMap<String, String>],
    wanted: &[(&str, &str)],
) -> Option<&'a HashMap<String, String>> {
    all.iter().find(|e| {
        wanted
            .iter()
            .all(|(k, v)| e.get(*k).is_some_and(|x| x == v))
    })
}

/// A pipeline with every kind of step: done, done after a retry, failed
/// twice (over two runs), stale, and never run.
fn pipeline() -> Space {
    let space = Space::with(
        r#"
[[step]]
name = "load"
run = "echo 'loading'; printf 'x\n' > data.txt"
outputs = ["data.txt"]

[[step]]
name = "flaky"
after = ["load"]
retries = 1
retry_delay = "10ms"
run = "test $STEPWISE_ATTEMPT -ge 2 || { echo 'connection reset' >&2; exit 75; }"

[[step]]
name = "transform"
after = ["load"]
inputs = ["data.txt", "settings.txt"]
run = "cat data.txt settings.txt > out.txt"

[[step]]
name = "check"
after = ["flaky", "transform"]
run = "echo 'check: 3 rows do not add up' >&2; exit 3"

[[step]]
name = "publish"
run = "true"
"#,
    );
    space.write("settings.txt", "a\n");
    space.run(&["run", "-j1"]).code(1);
    space.run(&["run", "-j1"]).code(1);
    space.write("settings.txt", "b\n");
    space
}

#[test]
#[ignore = "needs Chromium: apt-get install chromium, then cargo test -- --include-ignored"]
fn the_report_renders_in_chromium_with_every_step_and_attempt() {
    let chromium = need_chromium();
    let space = pipeline();
    space.run(&["report", "-o", "report.html"]).success();
    let page = space.join("report.html");
    let dom = headless(&chromium, &page, &["--dump-dom"]);
    assert!(dom.contains("<html"), "a DOM: {dom}");

    let body = elements(&dom, "body");
    assert_eq!(
        body[0].get("data-rendered").map(String::as_str),
        Some("ok"),
        "the page's script ran to its end"
    );

    // The table: each step with its state.
    let rows = elements(&dom, "tr");
    for (step, state) in [
        ("load", "done"),
        ("flaky", "done"),
        ("transform", "stale"),
        ("check", "failed"),
        ("publish", "never run"),
    ] {
        assert!(
            find(&rows, &[("data-step", step), ("data-state", state)]).is_some(),
            "a row for {step}, {state}"
        );
        // And its node in the graph.
        let nodes = elements(&dom, "g");
        assert!(
            find(&nodes, &[("data-step", step), ("data-state", state)]).is_some(),
            "a graph node for {step}, {state}"
        );
    }

    // The timeline, drawn by the script: one chart per run, each attempt a
    // bar, retries and failures visible.
    let charts = elements(&dom, "svg");
    for run in ["1", "2"] {
        assert!(
            find(&charts, &[("data-run", run)]).is_some(),
            "a chart of run {run}"
        );
    }
    let bars = elements(&dom, "rect");
    let bar = |step: &str, attempt: &str, outcome: &str| {
        find(
            &bars,
            &[
                ("data-step", step),
                ("data-attempt", attempt),
                ("data-outcome", outcome),
            ],
        )
        .is_some()
    };
    assert!(bar("load", "1", "ok"));
    assert!(bar("flaky", "1", "failed"), "the failed first try");
    assert!(bar("flaky", "2", "ok"), "the retry that succeeded");
    assert!(bar("transform", "1", "ok"));
    assert!(bar("check", "1", "failed"), "run 1");
    assert!(bar("check", "2", "failed"), "run 2");
    let drawn = bars
        .iter()
        .filter(|b| b.contains_key("data-attempt"))
        .count();
    assert_eq!(drawn, 6, "every attempt, no more");

    // The failed attempts, with their logs' last lines.
    let logs = elements(&dom, "details");
    for (step, attempt) in [("check", "2"), ("check", "1"), ("flaky", "1")] {
        assert!(
            find(&logs, &[("data-step", step), ("data-attempt", attempt)]).is_some(),
            "the log of {step} attempt {attempt}"
        );
    }
    assert!(dom.contains("check: 3 rows do not add up"));
    assert!(dom.contains("connection reset"));
}

#[test]
#[ignore = "needs Chromium: apt-get install chromium, then cargo test -- --include-ignored"]
fn the_report_renders_in_chromium_before_any_run() {
    let chromium = need_chromium();
    let space = Space::with("[[step]]\nname = \"only\"\nrun = \"true\"\n");
    space.run(&["report", "-o", "report.html"]).success();
    let dom = headless(&chromium, &space.join("report.html"), &["--dump-dom"]);
    let body = elements(&dom, "body");
    assert_eq!(body[0].get("data-rendered").map(String::as_str), Some("ok"));
    assert!(dom.contains("No run recorded yet"));
    let rows = elements(&dom, "tr");
    assert!(find(&rows, &[("data-step", "only"), ("data-state", "never run")]).is_some());
}

#[test]
#[ignore = "needs Chromium: apt-get install chromium, then cargo test -- --include-ignored"]
fn a_step_name_that_looks_like_markup_cannot_stop_the_report_s_script() {
    let chromium = need_chromium();
    // Inside a script element `<!--<script>` makes the parser run past the
    // data block's end, so the page's own script became part of the data.
    let space = Space::with(
        "[[step]]\nname = \"t\"\nmatrix = { v = [\"<!--<script>\", \"</script>\"] }\nrun = \"exit 1\"\n",
    );
    space.run(&["run", "-k"]).code(1);
    space.run(&["report", "-o", "report.html"]).success();
    let html = space.read("report.html");
    let data = html.split("id=\"report-data\">").nth(1).unwrap();
    let data = &data[..data.find("</script>").unwrap()];
    assert!(!data.contains('<'), "no `<` in the data block: {data}");
    let dom = headless(&chromium, &space.join("report.html"), &["--dump-dom"]);
    let body = elements(&dom, "body");
    assert_eq!(body[0].get("data-rendered").map(String::as_str), Some("ok"));
    assert!(dom.contains("data-run=\"1\""), "the timeline is drawn");
}
