//! Hostile state cannot make stepwise lose what is done or touch what is
//! not its own: an output spelled to reach the state dir, a lock file
//! deleted under a run, symlinks planted inside `.stepwise/` (a state dir
//! committed to a repository and cloned), temp files left by a kill, a
//! `.stepwise` that is a file, and a service a finished step left running.

mod common;
use common::*;

use std::os::unix::fs::symlink;

// ---- output handling never reaches the state dir ----

#[test]
fn a_failed_output_spelled_through_a_symlink_to_the_project_never_deletes_the_state_dir() {
    let space = Space::with(
        "[[step]]\nname = \"a\"\nrun = \"echo a >> ran\"\n\n[[step]]\nname = \"b\"\nrun = \"exit 1\"\noutputs = [\"here/.stepwise\"]\n",
    );
    symlink(".", space.join("here")).unwrap();
    space
        .run(&["run"])
        .code(1)
        .stderr_has("here/.stepwise was not removed after `b` failed: it is really")
        .stderr_has("stepwise's state dir");
    assert!(
        space.exists(".stepwise/journal.jsonl"),
        "the state dir is intact"
    );
    // The next run redoes only b, never a.
    space.run(&["run"]).code(1);
    assert_eq!(space.ran_count("a"), 1);
}

#[test]
fn a_failed_output_through_a_symlink_into_the_state_dir_never_deletes_the_journal() {
    let space = Space::with(
        "[[step]]\nname = \"a\"\nrun = \"echo a >> ran\"\n\n[[step]]\nname = \"b\"\nrun = \"exit 1\"\noutputs = [\"st/journal.jsonl\"]\nafter = [\"a\"]\n",
    );
    space.run(&["plan"]).success();
    std::fs::create_dir_all(space.join(".stepwise")).unwrap();
    symlink(".stepwise", space.join("st")).unwrap();
    space
        .run(&["run"])
        .code(1)
        .stderr_has("stepwise's state dir");
    assert!(
        space.journal().contains("\"a\""),
        "a's success is still recorded"
    );
    space.run(&["run"]).code(1);
    assert_eq!(space.ran_count("a"), 1);
}

// ---- one writer, whatever happens to the lock file ----

#[test]
fn deleting_the_lock_file_during_a_run_does_not_let_a_second_writer_in() {
    let space = Space::with(
        "[[step]]\nname = \"slow\"\nrun = \"echo started >> ran; sleep 3; echo slow >> ran\"\n",
    );
    let mut first = space.spawn(&["run"]);
    space.wait_for_line("ran", "started");
    std::fs::remove_file(space.join(".stepwise/lock")).unwrap();
    let before = space.journal_bytes();
    space.run(&["run"]).code(3).stderr_has("already");
    space.run(&["forget", "slow"]).code(3);
    space.run(&["gc"]).code(3);
    assert_eq!(
        space.journal_bytes(),
        before,
        "the refused writers changed nothing"
    );
    first.wait().success();
    assert_eq!(
        space.ran_count("slow"),
        1,
        "the first run's step was never killed"
    );
    space.run(&["fsck"]).success();
}

#[test]
fn status_still_sees_the_run_in_progress_after_its_lock_file_was_deleted() {
    let space = Space::with("[[step]]\nname = \"slow\"\nrun = \"echo started >> ran; sleep 2\"\n");
    let mut first = space.spawn(&["run"]);
    space.wait_for_line("ran", "started");
    std::fs::remove_file(space.join(".stepwise/lock")).unwrap();
    space.run(&["status"]).success().stdout_has("running");
    first.wait().success();
}

// ---- a service a finished step started is not killed after a crash ----

#[test]
fn a_service_started_with_setsid_by_a_done_step_survives_a_runner_crash() {
    let space = Space::with(
        r#"
[[step]]
name = "svc"
run = "setsid sleep 1000 & echo $! > svc.pid; sleep 0.3"

[[step]]
name = "work"
run = "sleep 1000 & echo $! > work.pid; echo started >> ran; wait"
after = ["svc"]
"#,
    );
    let mut runner = space.spawn(&["run"]);
    space.wait_for_line("ran", "started");
    let svc: u32 = space.read("svc.pid").trim().parse().unwrap();
    let work: u32 = space.read("work.pid").trim().parse().unwrap();
    runner.kill9();
    // What kill -9 of the runner leaves: `work`'s processes (PDEATHSIG
    // takes the shell itself, not its background child).
    let mut next = space.spawn(&["run"]);
    wait_until("the leftover of `work` is killed", || !alive(work));
    assert!(
        alive(svc),
        "the service of the done step `svc` is left running"
    );
    drop(next.kill9());
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(svc as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

// ---- symlinks planted inside the state dir are refused, never followed ----

const ONE_STEP: &str = "[[step]]\nname = \"a\"\nrun = \"echo a >> ran\"\n";

/// A file outside the project, with its exact bytes, to check nothing
/// touched it.
fn outside_file(contents: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("precious");
    std::fs::write(&path, contents).unwrap();
    (dir, path)
}

#[test]
fn a_lock_file_symlinked_outside_is_refused_and_its_target_untouched() {
    let (_keep, precious) = outside_file("precious\n");
    let space = Space::with(ONE_STEP);
    std::fs::create_dir(space.join(".stepwise")).unwrap();
    symlink(&precious, space.join(".stepwise/lock")).unwrap();
    for cmd in [
        &["run"][..],
        &["forget", "a"],
        &["gc"],
        &["fsck", "--repair"],
    ] {
        space
            .run(cmd)
            .code(2)
            .stderr_has(".stepwise/lock is a symlink")
            .stderr_has("never follows a symlink inside its state dir")
            .stderr_has("rm ");
    }
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "precious\n");
    assert!(space.ran().is_empty(), "nothing ran");
}

#[test]
fn a_journal_symlinked_outside_gets_no_record_even_when_the_link_dangles() {
    let (keep, precious) = outside_file("a line without its newline");
    let space = Space::with(ONE_STEP);
    std::fs::create_dir(space.join(".stepwise")).unwrap();
    symlink(&precious, space.join(".stepwise/journal.jsonl")).unwrap();
    space
        .run(&["run"])
        .code(2)
        .stderr_has("journal.jsonl is a symlink");
    space
        .run(&["plan"])
        .code(2)
        .stderr_has("journal.jsonl is a symlink");
    space
        .run(&["fsck"])
        .code(2)
        .stderr_has("journal.jsonl is a symlink");
    assert_eq!(
        std::fs::read_to_string(&precious).unwrap(),
        "a line without its newline"
    );
    // Dangling: no file is created at the target.
    let nowhere = keep.path().join("created-by-stepwise");
    std::fs::remove_file(space.join(".stepwise/journal.jsonl")).unwrap();
    symlink(&nowhere, space.join(".stepwise/journal.jsonl")).unwrap();
    space.run(&["run"]).code(2);
    assert!(!nowhere.exists(), "no file was created outside");
}

#[test]
fn a_logs_folder_symlinked_outside_never_loses_its_log_files_to_gc() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("server.log"), "keep me\n").unwrap();
    let space = Space::with(ONE_STEP);
    space.run(&["run"]).success();
    std::fs::remove_dir_all(space.join(".stepwise/logs")).unwrap();
    symlink(outside.path(), space.join(".stepwise/logs")).unwrap();
    space
        .run(&["gc"])
        .code(2)
        .stderr_has(".stepwise/logs is a symlink");
    space
        .run(&["run"])
        .code(2)
        .stderr_has(".stepwise/logs is a symlink");
    assert_eq!(
        std::fs::read_to_string(outside.path().join("server.log")).unwrap(),
        "keep me\n"
    );
}

#[test]
fn a_report_symlinked_outside_is_never_overwritten() {
    let (_keep, precious) = outside_file("precious\n");
    let space = Space::with(ONE_STEP);
    space.run(&["run"]).success();
    symlink(&precious, space.join(".stepwise/report.html")).unwrap();
    space
        .run(&["report"])
        .code(2)
        .stderr_has("report.html is a symlink");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "precious\n");
}

#[test]
fn a_state_dir_that_is_a_symlink_is_refused() {
    let elsewhere = tempfile::tempdir().unwrap();
    let space = Space::with(ONE_STEP);
    symlink(elsewhere.path(), space.join(".stepwise")).unwrap();
    space
        .run(&["run"])
        .code(2)
        .stderr_has("the state dir")
        .stderr_has("is a symlink");
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    assert!(space.ran().is_empty());
}

// ---- a `.stepwise` that is a file ----

#[test]
fn a_state_dir_that_is_a_file_is_named_with_what_to_do_by_run_plan_and_fsck() {
    let space = Space::with(ONE_STEP);
    space.write(".stepwise", "not a folder\n");
    for cmd in [
        &["run"][..],
        &["plan"],
        &["fsck"],
        &["fsck", "--repair"],
        &["status"],
    ] {
        space
            .run(cmd)
            .code(2)
            .stderr_has(".stepwise is a file, not a folder")
            .stderr_has("mv ");
    }
    assert_eq!(space.read(".stepwise"), "not a folder\n");
    assert!(space.ran().is_empty());
}

// ---- what a message quotes cannot act on the terminal ----

#[test]
fn control_characters_in_the_pipeline_file_are_shown_escaped_in_every_message() {
    // A name with a colour code, and a comment that would set the title and
    // clear the screen, on the line of an error.
    let space = Space::with(
        "[[step]]\nname = \"a\\u001b[31mred\"\nrun = \"true\" # \u{1b}]0;PWNED\u{7}\u{1b}[2J\n",
    );
    let sgr = regex::Regex::new("\u{1b}\\[[0-9;]*m").unwrap();
    for color in ["never", "always"] {
        let out = space.run(&["--color", color, "plan"]);
        out.code(2);
        assert!(
            !out.stderr.contains('\u{7}'),
            "a raw BEL in:\n{}",
            out.stderr
        );
        // The only escape sequences left are stepwise's own colours (SGR,
        // `ESC [ digits ; m`), and none at all without colour.
        let rest = sgr.replace_all(&out.stderr, "");
        assert!(!rest.contains('\u{1b}'), "a raw escape in:\n{}", out.stderr);
        if color == "never" {
            assert!(!out.stderr.contains('\u{1b}'), "{}", out.stderr);
        }
        assert!(
            out.stderr.contains("\\u{1b}"),
            "shown escaped:\n{}",
            out.stderr
        );
        assert!(!out.stderr.contains("[31mred"), "{}", out.stderr);
    }
}

// ---- temp files left by a kill ----

/// A pid that no process has now: one that exited and was reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn temp_files_of_a_writer_killed_mid_rewrite_are_listed_by_fsck_and_removed_by_the_next_writer() {
    let space = Space::with(ONE_STEP);
    space.run(&["run"]).success();
    let dead = dead_pid();
    let journal_tmp = format!(".stepwise/.journal.jsonl.tmp.{dead}");
    let cache_tmp = format!(".stepwise/.pipeline-cache.tmp.{dead}");
    // One being written right now by a live process (a `plan` writing its
    // cache): never removed.
    let live_tmp = format!(".stepwise/.pipeline-cache.tmp.{}", std::process::id());
    for tmp in [&journal_tmp, &cache_tmp, &live_tmp] {
        space.write(tmp, "half a file");
    }
    space
        .run(&["fsck"])
        .success()
        .stdout_has(&format!("temp file {journal_tmp} left by process {dead}"))
        .stdout_has(&format!("temp file {cache_tmp} left by process {dead}"))
        .stdout_has("is writing it");
    assert!(
        space.exists(&journal_tmp),
        "fsck without --repair changes nothing"
    );
    space.run(&["run"]).success();
    assert!(!space.exists(&journal_tmp) && !space.exists(&cache_tmp));
    assert!(space.exists(&live_tmp), "a live writer's temp file is kept");

    space.write(&journal_tmp, "again");
    space
        .run(&["fsck", "--repair"])
        .success()
        .stdout_has("removed 1 temp file(s) left by dead processes");
    assert!(!space.exists(&journal_tmp));
}
