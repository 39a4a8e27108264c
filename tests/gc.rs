//! Compaction: the journal shrinks to what the state needs, and nothing a
//! user can see changes.

mod common;
use common::*;

const FLAKY: &str = r#"
[[step]]
name = "a"
run = "echo a >> ran; echo output of a"

[[step]]
name = "b"
run = "echo b >> ran; echo output of b; test -f fixed || exit 3"

[[step]]
name = "c"
run = "echo c >> ran"
"#;

fn status_without_times(space: &Space) -> serde_json::Value {
    let mut status = space.run(&["status", "--json"]).json();
    for step in status["steps"].as_array_mut().unwrap() {
        if let Some(last) = step["last_attempt"].as_object_mut() {
            last.remove("duration_ms");
        }
    }
    status
}

#[test]
fn gc_keeps_what_decides_and_what_status_shows_and_attempt_numbers_go_on() {
    let space = Space::with(FLAKY);
    for _ in 0..5 {
        space.run(&["run"]).code(1);
    }
    space.write("fixed", "");
    space.run(&["run"]).success();
    space.run(&["forget", "a"]).success();
    let records_before = space.journal().lines().count();
    let plan_before = space.plan_json(&[]);
    let status_before = status_without_times(&space);

    let out = space.run(&["gc"]);
    out.success()
        .stderr_has(&format!("journal: {records_before} records"));
    let records_after = space.journal().lines().count();
    assert!(
        records_after < records_before,
        "{records_before} -> {records_after}"
    );
    assert_eq!(space.plan_json(&[]), plan_before);
    assert_eq!(status_without_times(&space), status_before);

    // Logs of dropped attempts are gone, the kept ones stay.
    for dropped in 1..=5 {
        assert!(
            !space.exists(&format!(".stepwise/logs/b.{dropped}.log")),
            "b's failure {dropped} is no longer in the journal, nor its log"
        );
    }
    assert!(
        space.exists(".stepwise/logs/b.6.log"),
        "b's success is kept, with its log"
    );
    assert!(
        space.exists(".stepwise/logs/a.1.log"),
        "a's only attempt is kept (before its forget)"
    );

    // The next attempt of b continues the numbering.
    space.run(&["forget", "b"]).success();
    space
        .run(&["run", "b"])
        .success()
        .stderr_has("start  b (attempt 7)");
    // A second gc changes nothing more.
    space.run(&["gc"]).success();
    let again = space.journal().lines().count();
    space.run(&["gc"]).success();
    assert_eq!(space.journal().lines().count(), again);
}

#[test]
fn a_run_compacts_a_journal_that_grew_far_past_its_state() {
    let space = Space::with(&chain(&["a", "b"], &[]));
    space.run(&["run"]).success();
    // Make it look like thousands of runs happened: the same run's records
    // repeated under older run numbers.
    let journal = space.journal();
    let mut big = String::new();
    for r in 1..=3000 {
        for line in journal.lines() {
            big += &line
                .replacen("\"run\":1,", &format!("\"run\":{r},"), 1)
                .replacen("\"run\":1}", &format!("\"run\":{r}}}"), 1);
            big.push('\n');
        }
    }
    space.write(".stepwise/journal.jsonl", &big);
    let plan_before = space.plan_json(&[]);
    let lines_before = big.lines().count();
    assert!(lines_before >= 10_000);

    space
        .run(&["run"])
        .success()
        .stderr_has("compacted the journal first: journal:");
    let lines_after = space.journal().lines().count();
    assert!(
        lines_after < lines_before / 5,
        "{lines_before} -> {lines_after}"
    );
    assert_eq!(space.plan_json(&[]), plan_before);
    let history: Vec<_> = space
        .journal()
        .lines()
        .filter(|l| l.contains("\"event\":\"end\""))
        .map(String::from)
        .collect();
    assert_eq!(
        history.len(),
        1000,
        "the newest 1000 runs' summaries are kept"
    );
    assert!(
        history.last().unwrap().contains("\"run\":3000"),
        "{:?}",
        history.last()
    );
    assert_eq!(space.ran(), ["a", "b"], "nothing ran again");
}

#[test]
fn gc_is_refused_while_a_run_holds_the_lock() {
    let space = Space::with(
        "[[step]]\nname = \"wait\"\nrun = \"touch started; while [ ! -f go ]; do sleep 0.02; done\"\n",
    );
    let mut runner = space.spawn(&["run"]);
    wait_until("the step to start", || space.exists("started"));
    space.run(&["gc"]).code(3).stderr_has("already running");
    space.write("go", "");
    runner.wait().success();
    space.run(&["gc"]).success();
}
