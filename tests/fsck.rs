//! `stepwise fsck [--repair]`: a clean state dir is clean, what a crash
//! leaves is not a problem, an unreadable line is found and moved aside
//! with nothing readable lost, and a newer journal is never touched.

mod common;
use common::*;

/// A space where a succeeded, b failed (attempt 1) and c never ran.
fn half_done() -> Space {
    let space = Space::with(&chain(&["a", "b", "c"], &["b"]));
    space.run(&["run"]).code(1);
    space
}

fn lines(space: &Space) -> Vec<String> {
    space.journal().lines().map(String::from).collect()
}

fn set_lines(space: &Space, lines: &[String]) {
    space.write(".stepwise/journal.jsonl", &(lines.join("\n") + "\n"));
}

/// The 1-based number of the journal line holding `event` for `step`.
fn line_of(space: &Space, event: &str, step: &str) -> usize {
    lines(space)
        .iter()
        .position(|l| {
            l.contains(&format!("\"event\":\"{event}\""))
                && l.contains(&format!("\"step\":\"{step}\""))
        })
        .expect("the record is there")
        + 1
}

fn corrupt_files(space: &Space) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(space.join(".stepwise"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("journal.corrupt."))
        })
        .collect();
    found.sort();
    found
}

#[test]
fn a_clean_state_dir_is_clean() {
    let space = half_done();
    let out = space.run(&["fsck"]);
    out.success().stdout_has("clean: ");
    assert!(!out.stdout.contains("problem:"), "{}", out.stdout);
}

#[test]
fn without_a_state_dir_there_is_nothing_to_check() {
    let space = Space::with(&chain(&["a"], &[]));
    space
        .run(&["fsck"])
        .success()
        .stdout_has("nothing recorded yet");
    space.run(&["fsck", "--repair"]).success();
    assert!(!space.exists(".stepwise"), "fsck created the state dir");
}

#[test]
fn an_attempt_killed_mid_run_is_a_note_not_a_problem() {
    let space = Space::with(
        "[[step]]\nname = \"a\"\nrun = \"echo a >> ran\"\n[[step]]\nname = \"slow\"\nrun = \"echo slow >> ran; sleep 30\"\n",
    );
    let mut run = space.spawn(&["run"]);
    space.wait_for_line("ran", "slow");
    run.kill9();
    let out = space.run(&["fsck"]);
    out.success()
        .stdout_has("started and never finished")
        .stdout_has("slow (attempt 1)");
}

#[test]
fn an_unreadable_line_is_found_and_repair_moves_it_aside_keeping_every_other_byte() {
    let space = half_done();
    let n = line_of(&space, "finish", "b");
    let mut all = lines(&space);
    let original = all[n - 1].clone();
    all[n - 1] = original.replace("\"ok\":false", "\"ok\":fa#lse");
    set_lines(&space, &all);
    let before = space.journal();

    // Every other command refuses the journal, naming the line.
    space
        .run(&["plan"])
        .code(2)
        .stderr_has(&format!("journal.jsonl:{n} is corrupt"))
        .stderr_has("`stepwise fsck --repair` moves unreadable lines aside");

    let check = space.run(&["fsck"]);
    check
        .code(1)
        .stdout_has(&format!("problem: line {n} cannot be read"))
        .stdout_has("a `finish` record of attempt 1 of `b`")
        .stdout_has("--repair");
    assert_eq!(
        space.journal(),
        before,
        "fsck without --repair changes nothing"
    );
    assert!(corrupt_files(&space).is_empty());

    let repair = space.run(&["fsck", "--repair"]);
    repair
        .success()
        .stdout_has("moved 1 unreadable line")
        .stdout_has("records lost, by step:")
        .stdout_has(&format!(
            "  b: line {n}, a `finish` record of attempt 1 of `b`"
        ))
        .stdout_has("reads as interrupted");
    let aside = corrupt_files(&space);
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read_to_string(&aside[0]).unwrap(),
        format!("{}\n", all[n - 1]),
        "the unreadable line is kept, byte for byte"
    );
    let mut expected = all.clone();
    expected.remove(n - 1);
    assert_eq!(
        lines(&space),
        expected,
        "every readable line is kept as it was"
    );

    // The journal loads again: b's attempt reads as interrupted, a is done.
    space.run(&["fsck"]).success().stdout_has("clean");
    let plan = space.plan_json(&[]);
    assert_eq!(plan_remaining(&plan), ["b", "c"]);
    space.write("fixed", "");
    space.run(&["run"]).success();
    assert_eq!(space.ran(), ["a", "b", "b", "c"], "a is never rerun");
}

#[test]
fn a_line_of_garbage_with_no_step_is_reported_as_such() {
    let space = half_done();
    let mut all = lines(&space);
    all.insert(2, "\u{1}\u{2}garbage".into());
    set_lines(&space, &all);
    space
        .run(&["fsck", "--repair"])
        .success()
        .stdout_has("(no step that can be told): line 3");
    space.run(&["fsck"]).success();
}

#[test]
fn a_torn_last_line_and_zero_lines_are_notes_and_repair_tidies_them() {
    let space = half_done();
    let whole = space.journal();
    let mut bytes = whole.clone().into_bytes();
    bytes.extend_from_slice(b"\0\0\0\0\n{\"v\":1,\"event\":\"sta");
    std::fs::write(space.join(".stepwise/journal.jsonl"), &bytes).unwrap();
    space
        .run(&["fsck"])
        .success()
        .stdout_has("is incomplete")
        .stdout_has("zero bytes");
    space
        .run(&["fsck", "--repair"])
        .success()
        .stdout_has("moved 1 unreadable line");
    assert_eq!(space.journal(), whole);
}

#[test]
fn a_newer_journal_is_refused_by_check_and_repair_and_left_untouched() {
    let space = half_done();
    let mut all = lines(&space);
    all.push(r#"{"v":4,"event":"run","run":9,"at":1,"new":"field"}"#.into());
    all.push("garbage".into());
    set_lines(&space, &all);
    let before = space.journal_bytes();
    for args in [&["fsck"][..], &["fsck", "--repair"]] {
        space
            .run(args)
            .code(2)
            .stderr_has("written by a newer stepwise")
            .stderr_has("format 4");
    }
    assert_eq!(space.journal_bytes(), before);
    assert!(corrupt_files(&space).is_empty());
}

#[test]
fn records_that_contradict_each_other_are_problems_repair_never_drops() {
    let space = half_done();
    let mut all = lines(&space);
    // A finish for an attempt that never started (with its checksum, as
    // stepwise writes every record).
    let ghost = stepwise::journal::Record::AttemptFinished {
        run: 1,
        step: "ghost".into(),
        attempt: 4,
        at: 9,
        duration_ms: 0,
        outcome: stepwise::journal::Outcome::Success,
        value: None,
    }
    .to_line();
    all.push(String::from_utf8(ghost).unwrap().trim_end().into());
    set_lines(&space, &all);
    let before = space.journal_bytes();
    space
        .run(&["fsck"])
        .code(1)
        .stdout_has("attempt 4 of `ghost` (run 1) finishes without having started");
    space
        .run(&["fsck", "--repair"])
        .code(1)
        .stdout_has("left as is");
    assert_eq!(space.journal_bytes(), before);
}

#[test]
fn a_corrupt_stat_cache_is_a_problem_and_repair_deletes_it() {
    let space =
        Space::with("[[step]]\nname = \"a\"\nrun = \"echo a >> ran\"\ninputs = [\"in.txt\"]\n");
    space.write("in.txt", "data");
    space.run(&["run"]).success();
    space.write(".stepwise/stat-cache", "stepwise stat-cache v1\nnonsense\n");
    space
        .run(&["fsck"])
        .code(1)
        .stdout_has("stat cache")
        .stdout_has("is corrupt");
    space
        .run(&["fsck", "--repair"])
        .success()
        .stdout_has("removed the corrupt stat cache");
    assert!(!space.exists(".stepwise/stat-cache"));
    space.run(&["fsck"]).success();
    space.run(&["run"]).success();
    assert_eq!(space.ran(), ["a"], "nothing reruns for a lost cache");
}

#[test]
fn repair_is_refused_while_a_run_holds_the_lock() {
    let space = Space::with("[[step]]\nname = \"slow\"\nrun = \"echo slow >> ran; sleep 30\"\n");
    let _run = space.spawn(&["run"]);
    space.wait_for_line("ran", "slow");
    space
        .run(&["fsck", "--repair"])
        .code(3)
        .stderr_has("already running");
    // A check takes no lock: it works during a run.
    space.run(&["fsck"]).success();
}

#[test]
fn fsck_works_while_the_pipeline_file_does_not_parse() {
    let space = half_done();
    space.write("stepwise.toml", "[[step]\nthis is not toml");
    space.run(&["plan"]).code(2);
    space.run(&["fsck"]).success();
}

#[test]
fn fsck_looks_at_the_state_dir_of_the_pipeline_file_named_with_f() {
    let space = Space::new();
    space.write("sub/ci.toml", &chain(&["a"], &[]));
    space.run(&["-f", "sub/ci.toml", "run"]).success();
    assert!(space.exists("sub/.stepwise-ci/journal.jsonl"));
    std::fs::write(space.join("sub/.stepwise-ci/journal.jsonl"), "junk\n{}\n").unwrap();
    space
        .run(&["fsck", "-f", "sub/ci.toml"])
        .code(1)
        .stdout_has("line 1 cannot be read");
}
