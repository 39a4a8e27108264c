//! Faults injected for real: the disk fills during a run (a file size limit,
//! RLIMIT_FSIZE, which needs no privileges), the state dir is read-only, a
//! step's log cannot be created, and the journal is replaced under a run.

mod common;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use nix::libc;

/// `stepwise ARGS...` with every file it (or a step) writes limited to
/// `limit` bytes: a write past it fails with EFBIG, as on a full disk.
fn run_with_file_size_limit(space: &Space, args: &[&str], limit: u64) -> Outcome {
    let mut cmd = space.command(args);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Otherwise the write past the limit kills the process
            // (SIGXFSZ) instead of failing; an ignored signal stays ignored
            // across exec.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    space.run_command(cmd)
}

fn many_steps(n: usize) -> (Vec<String>, String) {
    let names: Vec<String> = (1..=n).map(|i| format!("s{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    (names.clone(), chain(&refs, &[]))
}

#[test]
fn a_full_disk_stops_the_run_keeps_every_record_before_it_and_the_next_run_finishes() {
    let (names, toml) = many_steps(40);
    let space = Space::with(&toml);
    // Some history first: its records must all survive.
    space.run(&["run", "s03"]).success();
    let before = space.journal();
    assert_eq!(space.ran().len(), 3);

    let limit = before.len() as u64 + 3000;
    let full = run_with_file_size_limit(&space, &["run"], limit);
    full.code(2)
        .stderr_has("cannot append to the journal")
        .stderr_has("the disk is full, or a file size limit was hit");

    let journal = space.journal();
    assert!(
        journal.starts_with(&before),
        "every record written before the run is kept, byte for byte"
    );
    assert!(journal.ends_with('\n'), "no partial record is left behind");
    assert!(journal.len() as u64 <= limit);
    let records = journal_records(&journal);
    let ran = space.ran();
    assert!(
        ran.len() < names.len(),
        "the run stopped starting steps: {ran:?}"
    );
    for name in &ran {
        assert!(
            records
                .iter()
                .any(|r| r["event"] == "start" && r["step"] == name.as_str()),
            "{name} ran without its start on record"
        );
    }
    let succeeded: Vec<String> = records
        .iter()
        .filter(|r| r["event"] == "finish" && r["ok"] == true)
        .map(|r| r["step"].as_str().unwrap().to_string())
        .collect();
    // The journal loads, for every command.
    space.run(&["plan"]).success();
    space.run(&["fsck"]).success();

    space.run(&["run"]).success();
    for name in &names {
        let expected = if succeeded.contains(name) {
            1
        } else {
            ran.iter().filter(|r| *r == name).count() + 1
        };
        assert_eq!(
            space.ran_count(name),
            expected,
            "{name}: a recorded success is never rerun, everything else runs once more"
        );
    }
    assert_eq!(plan_remaining(&space.plan_json(&[])), Vec::<String>::new());
}

#[test]
fn a_full_disk_on_the_very_first_record_changes_nothing() {
    let space = Space::with(&chain(&["a"], &[]));
    space.run(&["run", "a"]).success();
    space.run(&["forget", "a"]).success();
    let before = space.journal_bytes();
    let len = before.as_ref().map_or(0, |b| b.len() as u64);
    run_with_file_size_limit(&space, &["run"], len)
        .code(2)
        .stderr_has("file size limit");
    assert_eq!(space.journal_bytes(), before);
    assert_eq!(space.ran(), ["a"], "nothing started");
}

/// Whether this process is root, for whom permission bits do not stop
/// writes.
fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `stepwise ARGS...` as a user the permission bits apply to: this
/// user, or, when the tests run as root (for whom `chmod` stops nothing),
/// the unprivileged `nobody`, with the space opened up for reading.
fn run_unprivileged(space: &Space, args: &[&str]) -> Outcome {
    let mut cmd = space.command(args);
    if is_root() {
        cmd.uid(65534).gid(65534).env("HOME", "/");
    }
    space.run_command(cmd)
}

/// Makes the space readable (not writable) to `nobody` when running as root.
fn open_up_for_nobody(space: &Space) -> bool {
    if !is_root() {
        return true;
    }
    let mut dir = space.path().to_path_buf();
    // Every folder above must be traversable, or nobody cannot reach it.
    loop {
        match std::fs::metadata(&dir) {
            Ok(m) if m.permissions().mode() & 0o001 != 0 || dir == space.path() => {}
            _ => return false,
        }
        if !dir.pop() {
            break;
        }
    }
    std::fs::set_permissions(space.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    true
}

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_read_only_state_dir_is_a_clear_error_before_anything_runs() {
    let space = Space::with(&chain(&["a", "b"], &["b"]));
    space.run(&["run"]).code(1);
    if !open_up_for_nobody(&space) {
        eprintln!(
            "SKIPPED a_read_only_state_dir_is_a_clear_error_before_anything_runs: running as root and the temp dir is not reachable by `nobody`"
        );
        return;
    }
    space.write("fixed", "");
    space.write("cp.json", "[[\"b\", true]]");
    // If a step did run, it could record it here.
    chmod(&space.join("ran"), 0o666);
    chmod(&space.join(".stepwise"), 0o555);
    chmod(&space.join(".stepwise/journal.jsonl"), 0o644);
    let journal = space.journal_bytes();

    for args in [
        &["run"][..],
        &["forget", "a"],
        &["checkpoint", "import", "cp.json"],
    ] {
        run_unprivileged(&space, args)
            .code(2)
            .stderr_has("the state dir")
            .stderr_has("is not writable")
            .stderr_has("nothing was run or changed");
    }
    assert_eq!(space.ran(), ["a", "b"], "nothing ran");
    assert_eq!(space.journal_bytes(), journal);
    // Reading needs no write access.
    run_unprivileged(&space, &["plan"])
        .success()
        .stdout_has("1 done, 1 remaining");
    chmod(&space.join(".stepwise"), 0o700);
}

#[test]
fn a_step_whose_log_cannot_be_created_is_not_started_and_the_error_names_the_path() {
    let space = Space::with(
        "[[step]]\nname = \"a\"\nrun = \"echo a >> ran; echo some output\"\n[[step]]\nname = \"b\"\nrun = \"echo b >> ran\"\n",
    );
    // A folder where attempt 1's log would go: no one, root included, can
    // create a file there.
    std::fs::create_dir_all(space.join(".stepwise/logs/a.1.log")).unwrap();
    space
        .run(&["run"])
        .code(1)
        .stderr_has("could not start: cannot create its log")
        .stderr_has(".stepwise/logs/a.1.log");
    assert!(space.ran().is_empty(), "a was not started, b waited for it");
    let status = space.run(&["status", "--json"]).json();
    assert_eq!(status["steps"][0]["last_attempt"]["ok"], false);

    // Attempt 2 has a log of its own.
    space.run(&["run"]).success();
    assert_eq!(space.ran(), ["a", "b"]);
    space.run(&["log", "a"]).success().stdout_has("some output");
}

#[test]
fn a_log_that_fails_at_the_first_byte_drops_the_output_with_a_warning_and_the_step_goes_on() {
    // The check before the start passed; then the path is taken before the
    // step prints (as a full disk would fail the creation).
    let space = Space::with(
        "[[step]]\nname = \"a\"\nrun = \"mkdir -p \\\"$STEPWISE_STATE_DIR/logs/a.1.log\\\"; echo a >> ran; echo output\"\n",
    );
    space
        .run(&["run"])
        .success()
        .stderr_has("could not write the log")
        .stderr_has(".stepwise/logs/a.1.log");
    assert_eq!(space.ran(), ["a"]);
}

#[test]
fn a_journal_replaced_under_a_running_run_is_detected_and_nothing_is_forked() {
    // `a` replaces the journal with a copy of itself (new file, same bytes),
    // as a sync tool or a careless script would.
    let space = Space::with(
        "[[step]]\nname = \"a\"\nrun = \"echo a >> ran; test -f replaced || { cp .stepwise/journal.jsonl copy && mv copy .stepwise/journal.jsonl && touch replaced; }\"\n[[step]]\nname = \"b\"\nrun = \"echo b >> ran\"\n",
    );
    let out = space.run(&["run"]);
    out.code(2)
        .stderr_has("replaced by another file")
        .stderr_has("journal.jsonl");
    assert_eq!(space.ran(), ["a"], "nothing starts after the fork is seen");
    let records = journal_records(&space.journal());
    assert!(
        !records.iter().any(|r| r["event"] == "finish"),
        "no record went to the replaced file or the new one: {records:?}"
    );
    // The replacement is the journal now: a's attempt reads as interrupted.
    space.run(&["run"]).success();
    assert_eq!(space.ran(), ["a", "a", "b"]);
}

#[test]
fn a_journal_deleted_under_a_running_run_is_detected() {
    let space = Space::with(
        "[[step]]\nname = \"a\"\nrun = \"echo a >> ran; rm .stepwise/journal.jsonl\"\n[[step]]\nname = \"b\"\nrun = \"echo b >> ran\"\n",
    );
    space.run(&["run"]).code(2).stderr_has("moved or deleted");
    assert_eq!(space.ran(), ["a"]);
    assert!(
        !space.exists(".stepwise/journal.jsonl"),
        "not silently recreated"
    );
}
