//! The commands around running: init, completions, man, history,
//! status --run, report.

mod common;
use common::ui::normalize_table;
use common::*;

#[test]
fn init_writes_a_starter_that_runs_and_never_overwrites() {
    let space = Space::new();
    space
        .run(&["init"])
        .success()
        .stderr_has("wrote stepwise.toml");
    let written = space.read("stepwise.toml");
    assert!(written.starts_with("# stepwise.toml"), "{written}");
    assert!(
        written.contains("\n# timeout = \"10m\""),
        "it shows the optional keys"
    );
    // It runs as it is, offline, and resumes.
    space.run(&["run"]).success().stderr_has("3 ran, 0 skipped");
    assert!(space.read("out/report.txt").contains("pear 7"));
    space.run(&["run"]).success().stderr_has("nothing to do");

    // A second init is refused and changes nothing.
    space.write("stepwise.toml", "# mine\n");
    space
        .run(&["init"])
        .code(2)
        .stderr_has("stepwise.toml already exists")
        .stderr_has("never overwrites");
    assert_eq!(space.read("stepwise.toml"), "# mine\n");

    // -f names another file.
    space
        .run(&["-f", "other.toml", "init"])
        .success()
        .stderr_has("`stepwise -f other.toml run` runs it");
    assert!(space.read("other.toml").starts_with("# stepwise.toml"));
    space
        .run(&["-f", "other.toml", "run"])
        .success()
        .stderr_has("0 done");
}

#[test]
fn completions_for_each_shell() {
    let space = Space::new();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef stepwise"),
        ("fish", "complete -c stepwise"),
    ] {
        let out = space.run(&["completions", shell]);
        out.success();
        out.stdout_has(marker);
        for command in ["history", "graph", "report", "init", "completions"] {
            out.stdout_has(command);
        }
    }
    // fish sees the values of --format.
    space.run(&["completions", "fish"]).stdout_has("mermaid");
    space.run(&["completions", "tcsh"]).code(2);
}

#[test]
fn the_man_page_documents_every_command() {
    let space = Space::new();
    let out = space.run(&["man"]);
    out.success();
    assert!(out.stdout.starts_with(".ie"), "roff: {}", &out.stdout[..40]);
    out.stdout_has(".TH stepwise 1");
    for command in [
        "run",
        "plan",
        "why",
        "status",
        "history",
        "graph",
        "report",
        "log",
        "forget",
        "checkpoint",
        "init",
        "completions",
        "man",
    ] {
        out.stdout_has(&format!("stepwise\\-{command}("));
    }
    out.stdout_has("NO_COLOR");

    space.run(&["man", "--dir", "man"]).success();
    for page in [
        "stepwise.1",
        "stepwise-run.1",
        "stepwise-report.1",
        "stepwise-checkpoint-import.1",
    ] {
        assert!(space.exists(&format!("man/{page}")), "{page}");
    }
    let run_page = space.read("man/stepwise-run.1");
    for flag in [
        "\\-\\-output",
        "\\-\\-events",
        "\\-\\-keep\\-going",
        "\\-\\-jobs",
    ] {
        assert!(run_page.contains(flag), "{flag} in stepwise-run.1");
    }
}

#[test]
fn every_command_and_flag_has_help() {
    let space = Space::new();
    let top = space.run(&["--help"]);
    top.success();
    for command in ["history", "graph", "report", "init", "completions", "man"] {
        top.stdout_has(command);
    }
    for flag in ["--color", "--quiet", "--verbose", "--file"] {
        top.stdout_has(flag);
    }
    let run = space.run(&["run", "--help"]);
    for flag in ["--output", "--events", "stream", "failed", "none"] {
        run.stdout_has(flag);
    }
    for (command, flags) in [
        ("plan", &["--json", "--format"][..]),
        ("why", &["--json", "--format"]),
        ("status", &["--json", "--format", "--run"]),
        ("history", &["--json", "--format", "--limit"]),
        ("graph", &["--json", "--format", "dot", "mermaid"]),
        ("report", &["--output", "--runs"]),
    ] {
        let out = space.run(&[command, "--help"]);
        out.success();
        for flag in flags {
            out.stdout_has(flag);
        }
    }
}

const THREE_RUNS: &str = r#"
[[step]]
name = "a"
run = "echo a >> ran"

[[step]]
name = "b"
retries = 1
retry_delay = "10ms"
run = "echo b >> ran; test -f fixed"
"#;

/// Run 1: a ok, b fails twice. Run 2: b fails twice. Run 3: b succeeds.
fn three_runs() -> Space {
    let space = Space::with(THREE_RUNS);
    space.run(&["run"]).code(1);
    space.run(&["run"]).code(1);
    space.write("fixed", "");
    space.run(&["run"]).success();
    space
}

#[test]
fn history_lists_runs_newest_first() {
    let space = three_runs();
    let out = space.run(&["history"]);
    out.success();
    insta::assert_snapshot!(normalize_table(&out.stdout, space.path()));
    let limited = space.run(&["history", "-n", "1"]);
    limited.success();
    assert_eq!(limited.stdout.lines().count(), 3, "{}", limited.stdout);
    limited.stdout_has("(2 older runs not shown; -n 0 shows all)");
    let doc = space.run(&["history", "--limit", "2", "--json"]).json();
    assert_eq!(doc["total"], 3);
    let ids: Vec<u64> = doc["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [3, 2]);

    let empty = Space::with(THREE_RUNS);
    empty
        .run(&["history"])
        .success()
        .stdout_has("no run recorded yet");
    let doc = empty.run(&["history", "--json"]).json();
    assert_eq!(doc["runs"], serde_json::json!([]));
}

#[test]
fn status_of_one_run() {
    let space = three_runs();
    let out = space.run(&["status", "--run", "1"]);
    out.success();
    insta::assert_snapshot!(normalize_table(&out.stdout, space.path()));
    // The latest state of the pipeline is still what plain status shows.
    space.run(&["status"]).success().stdout_has("b ");
}

#[test]
fn a_killed_run_shows_as_killed_in_history() {
    let space = Space::with("[[step]]\nname = \"slow\"\nrun = \"echo slow >> ran; sleep 30\"\n");
    let mut bg = space.spawn(&["run"]);
    space.wait_for_line("ran", "slow");
    bg.kill9();
    let doc = space.run(&["history", "--json"]).json();
    assert_eq!(doc["runs"][0]["result"], "killed");
    assert_eq!(
        doc["runs"][0]["steps_failed"], 1,
        "its attempt never finished"
    );
    space
        .run(&["status", "--run", "1"])
        .success()
        .stdout_has("never finished");
}

#[test]
fn a_run_in_progress_shows_its_running_step_as_running_not_failed() {
    let space = Space::with(
        "[[step]]\nname = \"a\"\nrun = \"true\"\n\n[[step]]\nname = \"slow\"\nrun = \"echo slow >> ran; sleep 30\"\n",
    );
    let mut bg = space.spawn(&["run"]);
    space.wait_for_line("ran", "slow");
    let doc = space.run(&["history", "--json"]).json();
    let run = &doc["runs"][0];
    assert_eq!(run["result"], "running");
    assert_eq!(run["steps_failed"], 0, "{run}");
    assert_eq!(run["failed"], serde_json::json!([]));
    assert_eq!(run["running"], serde_json::json!(["slow"]));
    let text = space.run(&["history"]);
    text.success();
    assert!(
        !text.stdout.contains("slow"),
        "not under FAILED STEPS:\n{}",
        text.stdout
    );
    space
        .run(&["status", "--run", "1"])
        .success()
        .stdout_has("running for")
        .stdout_has("slow  running");
    bg.kill9();
}

#[test]
fn report_writes_one_self_contained_file() {
    let space = three_runs();
    let out = space.run(&["report"]);
    out.success();
    out.stderr_has("wrote .stepwise/report.html");
    let html = space.read(".stepwise/report.html");
    assert!(html.starts_with("<!doctype html>"));
    // Nothing from the network: no external scripts, styles, fonts or images.
    for external in ["http://", "https://", "src=\"", "<link"] {
        let allowed = "xmlns=\"http://www.w3.org/2000/svg\"";
        let stray = html
            .replace(allowed, "")
            .replace("\"http://www.w3.org/2000/svg\"", "");
        assert!(!stray.contains(external), "{external} in the report");
    }
    for step in ["a", "b"] {
        assert!(html.contains(&format!(
            "<tr id=\"step-{step}\" data-step=\"{step}\" data-state=\"done\""
        )));
    }
    // Every failed attempt of the shown runs has its log's tail.
    for attempt in 1..=4 {
        assert!(
            html.contains(&format!("data-step=\"b\" data-attempt=\"{attempt}\"")),
            "attempt {attempt} of b"
        );
    }

    space
        .run(&["report", "-o", "sub/page.html", "--runs", "1"])
        .success();
    let one = space.read("sub/page.html");
    assert!(one.contains("\"id\":3"), "the latest run");
    assert!(!one.contains("\"id\":2"), "only the last run");

    let out = space.run(&["report", "-o", "-"]);
    out.success();
    assert!(out.stdout.starts_with("<!doctype html>"));
}

#[test]
fn a_report_escapes_what_steps_print() {
    let space = Space::with(
        "[[step]]\nname = \"x\"\nrun = \"echo '<script>alert(1)</script> & more'; exit 1\"\n",
    );
    space.run(&["run"]).code(1);
    let html = space.run(&["report", "-o", "-"]).stdout;
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"));
    assert!(!html.contains("<script>alert(1)"));
}
