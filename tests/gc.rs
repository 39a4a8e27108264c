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
    space.write_journal_resealed(&big);
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

const RETRIED_THEN_KILLED: &str = r#"
[[step]]
name = "a"
run = "echo a >> ran"

[[step]]
name = "b"
run = "echo b >> ran; test -f fixed || exit 3; sleep 0.2"
retries = 1

[[step]]
name = "c"
run = "echo c >> ran; touch started; while [ -f hang ]; do sleep 0.02; done"
"#;

/// `history`'s rows as words, without the FAILED STEPS column: RUN,
/// STARTED (3 words), TOOK, RESULT, STEPS, FAILED, ATTEMPTS.
fn history_columns(space: &Space) -> Vec<Vec<String>> {
    let out = space.run(&["history"]);
    out.success();
    out.stdout
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().take(9).map(String::from).collect())
        .collect()
}

/// `history --json`'s runs, each without its list of failed steps' names,
/// and those lists.
fn history_json(space: &Space, args: &[&str]) -> (Vec<serde_json::Value>, Vec<Vec<String>>) {
    let mut all = vec!["history", "--json", "-n", "0"];
    all.extend_from_slice(args);
    let mut doc = space.run(&all).json();
    let runs = doc["runs"].as_array_mut().unwrap();
    let failed = runs
        .iter_mut()
        .map(|run| {
            let names = run.as_object_mut().unwrap().remove("failed").unwrap();
            serde_json::from_value(names).unwrap()
        })
        .collect();
    (runs.clone(), failed)
}

#[test]
fn after_gc_fsck_finds_the_journal_clean_and_history_shows_every_run_as_before() {
    let space = Space::with(RETRIED_THEN_KILLED);
    // Run 1: b fails twice (a retry). Run 2: b succeeds, then the runner is
    // killed while c runs. Run 3 finishes c. Run 4 reruns a forgotten b.
    space.run(&["run"]).code(1);
    space.write("fixed", "");
    space.write("hang", "");
    let mut runner = space.spawn(&["run"]);
    wait_until("c to start", || space.exists("started"));
    runner.kill9();
    std::fs::remove_file(space.join("hang")).unwrap();
    space.run(&["run"]).success();
    space.run(&["forget", "b"]).success();
    space.run(&["run"]).success();
    space.run(&["fsck"]).success().stdout_has("clean");
    let rows_before = history_columns(&space);
    let (runs_before, failed_before) = history_json(&space, &[]);
    let results: Vec<&str> = rows_before.iter().map(|r| r[5].as_str()).collect();
    assert_eq!(results, ["ok", "ok", "killed", "failed"], "{rows_before:?}");
    assert_eq!(
        rows_before[3][6..],
        ["2", "1", "3"],
        "run 1: a, and b twice, failed"
    );
    assert!(
        runs_before[2]["duration_ms"].as_u64().unwrap() >= 200,
        "{:?}",
        runs_before[2]
    );

    space.run(&["gc"]).success();

    space
        .run(&["fsck"])
        .success()
        .stdout_has("clean: ")
        .stdout_has("no problem");
    // Every run as before: when, how long (the killed one up to its last
    // sign of life, c's start, 0.2 s in, whose record gc dropped), how it
    // ended, steps, failed steps, attempts.
    assert_eq!(history_columns(&space), rows_before);
    let (runs_after, failed_after) = history_json(&space, &[]);
    assert_eq!(runs_after, runs_before);
    // Names of failed steps whose attempts gc dropped are gone (counted,
    // not named); none is made up.
    for (before, after) in failed_before.iter().zip(&failed_after) {
        assert!(
            after.iter().all(|name| before.contains(name)),
            "{before:?} {after:?}"
        );
    }
    let history = space.run(&["history"]);
    history.stdout_has("+1 more");
    // Run 2 ran b and c; gc kept neither attempt, and says so.
    space
        .run(&["status", "--run", "2"])
        .success()
        .stdout_has("the 2 steps it ran are no longer in the journal");
    // And the state goes on from there.
    space.run(&["forget", "c"]).success();
    space.run(&["run"]).success();
    space.run(&["fsck"]).success();
}

#[test]
fn a_run_that_compacts_the_journal_leaves_it_clean_and_history_as_it_was() {
    let space = Space::with(&chain(&["a", "b"], &[]));
    space.run(&["run"]).success();
    // Thousands of runs of b, as thousands of `forget b; run` would leave:
    // run 1 as it happened, then runs 2 to 3000, each making b's next
    // attempt. Their `end` records carry no counts, as an older stepwise
    // wrote them: the counts come from the attempts.
    let records = journal_records(&space.journal());
    let of = |event: &str, step: Option<&str>| {
        records
            .iter()
            .find(|r| r["event"] == event && step.is_none_or(|s| r["step"] == s))
            .unwrap()
            .clone()
    };
    let mut big = space.journal();
    for run in 2..=3000u64 {
        let mut end = of("end", None);
        for field in ["ran", "failed", "steps_run", "steps_failed", "last_at"] {
            end.as_object_mut().unwrap().remove(field);
        }
        for mut record in [
            of("run", None),
            of("start", Some("b")),
            of("finish", Some("b")),
            end,
        ] {
            record["run"] = run.into();
            if record.get("attempt").is_some() {
                record["attempt"] = run.into();
            }
            big += &format!("{record}\n");
        }
    }
    space.write_journal_resealed(&big);
    space.run(&["fsck"]).success();
    let (runs_before, _) = history_json(&space, &[]);
    assert_eq!(runs_before.len(), 3000);

    space
        .run(&["run"])
        .success()
        .stderr_has("compacted the journal first: journal:");
    assert_eq!(space.ran(), ["a", "b"], "nothing ran again");

    space.run(&["fsck"]).success().stdout_has("no problem");
    // The newest 1000 runs, and run 1, whose attempt of `a` is kept, as
    // they were.
    let (runs_after, _) = history_json(&space, &[]);
    let ids: Vec<u64> = runs_after
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    let want: Vec<u64> = (2001..=3000).rev().chain([1]).collect();
    assert_eq!(ids, want);
    let kept_before = runs_before
        .iter()
        .filter(|r| want.contains(&r["id"].as_u64().unwrap()));
    for (after, before) in runs_after.iter().zip(kept_before) {
        assert_eq!(after, before);
    }
}

#[test]
fn a_journal_an_earlier_gc_left_unclean_is_made_clean_by_gc() {
    let space = Space::with(&chain(&["a", "b"], &[]));
    space.run(&["run"]).success();
    space.run(&["forget", "b"]).success();
    space.run(&["run"]).success();
    // What gc wrote before it kept runs' starts first: the attempts, then
    // the runs.
    let journal = space.journal();
    let is_run =
        |line: &&str| line.contains(r#""event":"run""#) || line.contains(r#""event":"end""#);
    let mut lines: Vec<&str> = journal.lines().filter(|l| !is_run(l)).collect();
    lines.extend(journal.lines().filter(is_run));
    space.write(".stepwise/journal.jsonl", &(lines.join("\n") + "\n"));
    let _ = std::fs::remove_file(space.join(".stepwise/history-snapshot"));
    space
        .run(&["fsck"])
        .code(1)
        .stdout_has("belongs to run 1, which never started");
    let plan = space.plan_json(&[]);

    space.run(&["gc"]).success();
    space.run(&["fsck"]).success().stdout_has("no problem");
    assert_eq!(space.plan_json(&[]), plan);
}
