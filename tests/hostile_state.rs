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
