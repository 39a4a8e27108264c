//! The journal survives what machines do to files: a torn last line is
//! shrugged off, a corrupt line elsewhere stops everything, and a journal
//! from a newer stepwise is refused rather than misread.

mod common;
use common::*;

const TORN: &str = "{\"v\":1,\"event\":\"start\",\"run\":2,\"st";

/// A space where a succeeded, b failed and c never ran.
fn half_done() -> Space {
    let space = Space::with(&chain(&["a", "b", "c"], &["b"]));
    space.run(&["run"]).code(1);
    space
}

fn append(space: &Space, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(space.join(".stepwise/journal.jsonl"))
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

#[test]
fn a_torn_last_line_is_ignored_with_one_warning_and_plan_still_works() {
    let space = half_done();
    let before = space.plan_json(&[]);
    append(&space, TORN);
    let torn = space.journal_bytes();

    let plan = space.run(&["plan"]);
    plan.success()
        .stdout_has("Resume plan: 1 done, 2 remaining");
    assert_eq!(
        plan.stderr.matches("incomplete").count(),
        1,
        "one warning, once:\n{}",
        plan.stderr
    );
    assert_eq!(
        plan.stderr.lines().count(),
        1,
        "the warning is one line:\n{}",
        plan.stderr
    );
    assert!(plan.stderr.contains("warning"), "{}", plan.stderr);
    assert_eq!(space.plan_json(&[])["steps"], before["steps"]);
    assert_eq!(space.journal_bytes(), torn, "a reader changes nothing");
    space.run(&["status", "--json"]).success();
    assert_eq!(space.ran(), ["a", "b"]);
}

#[test]
fn the_next_run_cuts_a_torn_last_line_off_and_works() {
    let space = half_done();
    let whole = space.journal();
    append(&space, TORN);
    space.write("fixed", "");

    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 1 done, 2 remaining");
    assert_eq!(space.ran(), ["a", "b", "b", "c"]);

    let journal = space.journal();
    assert!(
        journal.ends_with('\n'),
        "the journal ends with a whole line"
    );
    let added = journal
        .strip_prefix(&whole)
        .expect("the whole lines are kept as they were");
    assert!(
        added.starts_with("{\"v\":3,\"event\":\"run\""),
        "the torn line is gone and the run's first record follows the last whole line:\n{added}"
    );
    let records = journal_records(&journal);
    assert!(records.iter().all(|r| r["v"] == 3), "{journal}");

    let plan = space.run(&["plan"]);
    plan.success()
        .stdout_has("Resume plan: 3 done, 0 remaining");
    assert!(
        !plan.stderr.contains("incomplete"),
        "no warning once the line is cut off:\n{}",
        plan.stderr
    );
}

#[test]
fn a_torn_line_written_as_the_very_first_record_is_survivable_too() {
    let space = Space::with(&chain(&["a"], &[]));
    space.write(".stepwise/journal.jsonl", TORN);
    space.run(&["plan"]).success().stderr_has("incomplete");
    space.run(&["run"]).success();
    assert_eq!(space.ran(), ["a"]);
    let journal = space.journal();
    assert!(journal.ends_with('\n'));
    journal_records(&journal);
}

/// Replaces line `n` (1-based) of the journal with `text`.
fn replace_line(space: &Space, n: usize, text: &str) {
    let journal = space.journal();
    let mut lines: Vec<&str> = journal.lines().collect();
    assert!(lines.len() > n, "the journal has more than {n} lines");
    lines[n - 1] = text;
    space.write(".stepwise/journal.jsonl", &(lines.join("\n") + "\n"));
}

#[test]
fn a_corrupt_line_in_the_middle_stops_everything_and_names_the_line() {
    let space = half_done();
    replace_line(&space, 3, "{\"v\":1,\"event\":\"fin garbage");
    let corrupt = space.journal_bytes();
    space.write("fixed", "");

    for command in [
        &["run"][..],
        &["plan"],
        &["status"],
        &["log", "a"],
        &["checkpoint", "export"],
        &["forget", "a"],
    ] {
        let out = space.run(command);
        out.code(2)
            .stderr_has("journal.jsonl:3")
            .stderr_has("corrupt");
        assert!(
            !out.stderr.contains("Resume plan"),
            "{command:?} planned nothing:\n{}",
            out.stderr
        );
        assert_eq!(space.ran(), ["a", "b"], "{command:?} ran nothing");
        assert_eq!(
            space.journal_bytes(),
            corrupt,
            "{command:?} left the journal byte for byte as it was"
        );
    }
}

#[test]
fn a_corrupt_last_line_that_ends_in_a_newline_is_corruption_not_a_torn_write() {
    let space = half_done();
    append(&space, "not json at all\n");
    let lines = space.journal().lines().count();
    let corrupt = space.journal_bytes();
    space
        .run(&["run"])
        .code(2)
        .stderr_has(&format!("journal.jsonl:{lines}"));
    assert_eq!(space.ran(), ["a", "b"]);
    assert_eq!(space.journal_bytes(), corrupt);
}

#[test]
fn a_record_from_a_newer_stepwise_is_refused() {
    let space = half_done();
    append(&space, "{\"v\":4,\"event\":\"run\",\"run\":3,\"at\":1}\n");
    let newer = space.journal_bytes();
    space.write("fixed", "");
    for command in [&["run"][..], &["plan"], &["checkpoint", "export"]] {
        space.run(command).code(2).stderr_has("newer stepwise");
        assert_eq!(space.ran(), ["a", "b"], "{command:?} ran nothing");
        assert_eq!(space.journal_bytes(), newer, "{command:?}");
    }
}

#[test]
fn a_journal_from_a_newer_stepwise_is_not_called_corrupt() {
    // The file is fine; this stepwise is just too old for it. "corrupt"
    // would send the user repairing or moving aside a healthy journal.
    let space = half_done();
    append(&space, "{\"v\":4,\"event\":\"run\",\"run\":3,\"at\":1}\n");
    let out = space.run(&["run"]);
    out.code(2)
        .stderr_has("newer stepwise")
        .stderr_has("upgrade");
    assert!(
        !out.stderr.contains("corrupt"),
        "a newer journal is reported as corrupt:\n{}",
        out.stderr
    );
}

#[test]
fn every_record_is_a_whole_json_line_with_the_format_version() {
    let space = half_done();
    space.run(&["forget", "a"]).success();
    let journal = space.journal();
    assert!(journal.ends_with('\n'));
    let records = journal_records(&journal);
    let events: Vec<&str> = records
        .iter()
        .map(|r| r["event"].as_str().expect("an event"))
        .collect();
    assert_eq!(
        events,
        ["run", "start", "finish", "start", "finish", "end", "forget"]
    );
    assert!(records.iter().all(|r| r["v"] == 3 && r["sum"].is_string()));
    assert_eq!(records[2]["ok"], true);
    assert_eq!(records[4]["ok"], false);
    assert_eq!(records[4]["exit_code"], 3);
    assert_eq!(
        records[5]["exit_code"], 1,
        "the run's exit code is recorded"
    );
}

#[test]
fn every_reader_warns_about_a_torn_last_line() {
    // README: "Readers ignore it with a one-line warning".
    let space = half_done();
    append(&space, TORN);
    let mut silent = Vec::new();
    for command in [
        &["plan"][..],
        &["status"],
        &["log", "a"],
        &["checkpoint", "export"],
    ] {
        let out = space.run(command);
        out.success();
        if out.stderr.matches("incomplete").count() != 1 {
            silent.push(format!("{command:?}: {:?}", out.stderr));
        }
    }
    assert!(
        silent.is_empty(),
        "readers that did not warn exactly once: {silent:#?}"
    );
}

#[test]
fn zero_bytes_left_by_a_crash_are_skipped_with_a_warning() {
    let space = Space::with(&chain(&["a", "b"], &["b"]));
    space.run(&["run"]).code(1);
    let mut bytes = std::fs::read(space.join(".stepwise/journal.jsonl")).unwrap();
    let cut = bytes.len() / 2;
    let at = bytes[..cut].iter().rposition(|&b| b == b'\n').unwrap() + 1;
    let zeros = [0u8; 40];
    bytes.splice(at..at, zeros.iter().copied().chain([b'\n']));
    std::fs::write(space.join(".stepwise/journal.jsonl"), &bytes).unwrap();
    space.run(&["plan"]).success().stderr_has("zero bytes");
    space.write("fixed", "");
    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 1 done, 1 remaining");
    assert_eq!(space.ran_count("a"), 1);
}

#[test]
fn a_whole_last_record_without_its_newline_is_kept() {
    let space = Space::with(&chain(&["a", "b"], &[]));
    space.run(&["run", "a"]).success();
    let journal = space.journal();
    space.write(".stepwise/journal.jsonl", journal.trim_end_matches('\n'));
    space
        .run(&["plan"])
        .success()
        .stdout_has("Resume plan: 1 done, 1 remaining");
    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 1 done, 1 remaining");
    assert_eq!(space.ran(), ["a", "b"]);
    for line in space.journal().lines() {
        let _: serde_json::Value = serde_json::from_str(line).expect("every line is a record");
    }
}

/// The 1-based number of the journal line holding `event` for `step`.
fn line_of(space: &Space, event: &str, step: &str) -> usize {
    space
        .journal()
        .lines()
        .position(|l| {
            l.contains(&format!("\"event\":\"{event}\""))
                && l.contains(&format!("\"step\":\"{step}\""))
        })
        .expect("the record is there")
        + 1
}

#[test]
fn a_zero_filled_line_merged_into_the_next_is_reported_not_silently_dropped() {
    // A crash can zero a page that ends exactly where a line starts: the
    // zeroed line's newline is gone too, and its zeros become a prefix of
    // the next line, which still reads.
    let space = half_done();
    let n = line_of(&space, "finish", "a");
    let journal = space.journal();
    let mut zeroed = String::new();
    for (i, line) in journal.lines().enumerate() {
        if i + 1 == n {
            zeroed.push_str(&"\0".repeat(line.len() + 1));
        } else {
            zeroed.push_str(line);
            zeroed.push('\n');
        }
    }
    space.write(".stepwise/journal.jsonl", &zeroed);
    let damaged = space.journal_bytes();

    // The zeros now start line n: that line is named, and the lost record
    // is said to be lost (a's success: a runs again).
    for command in [&["plan"][..], &["status"]] {
        space
            .run(command)
            .success()
            .stderr_has("zero bytes")
            .stderr_has(&format!("line {n} "));
    }
    assert_eq!(space.journal_bytes(), damaged, "a reader changes nothing");
    space
        .run(&["fsck"])
        .code(1)
        .stdout_has(&format!("line {n}"))
        .stdout_has("zero bytes");
    // a's success is lost: it runs again, and the run says why.
    space
        .run(&["run"])
        .code(1)
        .stderr_has("zero bytes")
        .stderr_has(&format!("line {n} "));
    assert_eq!(space.ran_count("a"), 2);
    // Still said by a reader that resumes from the run's snapshot.
    space
        .run(&["plan"])
        .success()
        .stderr_has(&format!("line {n} "));
    space
        .run(&["fsck", "--repair"])
        .success()
        .stdout_has("zero bytes");
    space.run(&["fsck"]).success().stdout_has("clean");
    let plan = space.run(&["plan"]);
    plan.success().stdout_has("1 done, 2 remaining");
    assert!(!plan.stderr.contains("zero bytes"), "{}", plan.stderr);
}

#[test]
fn a_changed_digit_of_a_recorded_fingerprint_is_corruption_not_a_silent_rerun() {
    let space = half_done();
    let n = line_of(&space, "start", "a");
    let journal = space.journal();
    let line = journal.lines().nth(n - 1).unwrap();
    let at = line.find("\"fingerprint\":\"").unwrap() + "\"fingerprint\":\"".len();
    let mut changed = line.as_bytes().to_vec();
    changed[at] = if changed[at] == b'0' { b'1' } else { b'0' };
    replace_line(&space, n, std::str::from_utf8(&changed).unwrap());
    let corrupt = space.journal_bytes();
    space.write("fixed", "");
    for command in [&["plan"][..], &["run"]] {
        space
            .run(command)
            .code(2)
            .stderr_has(&format!("journal.jsonl:{n}"))
            .stderr_has("checksum");
    }
    assert_eq!(space.ran(), ["a", "b"], "nothing ran");
    assert_eq!(space.journal_bytes(), corrupt);
    space
        .run(&["fsck"])
        .code(1)
        .stdout_has(&format!("line {n}"));
}
