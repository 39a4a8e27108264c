//! The Slurm executor's settings and its bookkeeping, without a cluster:
//! how `executor` and `[step.slurm]` are read and refused, the local
//! override, and re-attaching from status files alone when Slurm is not
//! installed. `tests/slurm.rs` runs real jobs.

mod common;
use common::ui::normalize;
use common::*;

/// A folder with no programs in it: a `PATH` on which no Slurm command
/// (nor anything else) is found.
fn empty_path() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn bad_slurm_settings_are_refused_with_positions_and_hints() {
    let space = Space::with(
        r#"[pipeline]
executor = "cluster"

[pipeline.slurm]
partiton = "short"
poll_interval = "10ms"
cpus = 0

[[step]]
name = "align"
run = "true"
executor = 3

[step.slurm]
mem = "4GB"
gpus = "a100:0"
time = "soon"
account = "my lab"
poll_interval = "1s"
sbatch_args = ["--output=x.log", "avx2", "-J", "--array=1-3", "--constraint=avx2"]
"#,
    );
    let out = space.run(&["plan"]);
    out.code(2);
    insta::assert_snapshot!(normalize(&out.stderr, space.path()));
    assert!(!space.exists(".stepwise"), "nothing was created");
}

#[test]
fn slurm_settings_that_are_not_a_table_are_refused() {
    let space = Space::with("[[step]]\nname = \"a\"\nrun = \"true\"\nslurm = \"short\"\n");
    space
        .run(&["plan"])
        .code(2)
        .stderr_has("[step.slurm] of step `a` must be a table, found string")
        .stderr_has("stepwise.toml:4:9")
        .stderr_has("[step.slurm]");
}

#[test]
fn good_slurm_settings_plan_like_any_other() {
    let space = Space::with(
        r#"[pipeline]
executor = "slurm"
[pipeline.slurm]
partition = "short"
account = "lab"
mem = 2048
time = "2h"
sbatch_args = ["--constraint=avx2"]
poll_interval = "500ms"

[[step]]
name = "align"
run = "true"
timeout = "90s"
[step.slurm]
cpus = 8
mem = "32g"
gpus = 1

[[step]]
name = "report"
run = "true"
executor = "local"
"#,
    );
    let plan = space.plan_json(&[]);
    assert_eq!(plan_remaining(&plan), ["align", "report"]);
}

/// Moving a pipeline to Slurm changes where it runs, not what it is: a
/// step done locally stays done.
#[test]
fn the_executor_is_not_part_of_the_fingerprint() {
    let space = Space::with(&chain(&["a", "b"], &[]));
    space.run(&["run"]).success();
    space.write(
        "stepwise.toml",
        &format!(
            "[pipeline]\nexecutor = \"slurm\"\n[pipeline.slurm]\npartition = \"big\"\n\n{}",
            chain(&["a", "b"], &[])
        ),
    );
    let plan = space.plan_json(&[]);
    assert_eq!(plan["done"], 2, "{plan}");
}

/// Steps that say `executor = "local"`, or a run with `--executor local`,
/// run here without Slurm (no sbatch is run: there is none on the PATH).
#[test]
fn local_steps_of_a_slurm_pipeline_need_no_slurm() {
    let path = empty_path();
    let space = Space::with(
        "[pipeline]\nexecutor = \"slurm\"\nshell = [\"/bin/sh\", \"-c\"]\n\n\
         [[step]]\nname = \"a\"\nrun = \"echo a >> ran\"\nexecutor = \"local\"\n\n\
         [[step]]\nname = \"b\"\nrun = \"echo b >> ran\"\n",
    );
    let out = Outcome::of(space.command(&["run", "a"]).env("PATH", path.path()));
    out.success();
    assert_eq!(space.ran(), ["a"]);
    let out = Outcome::of(
        space
            .command(&["run", "--executor", "local"])
            .env("PATH", path.path()),
    );
    out.success();
    assert_eq!(space.ran(), ["a", "b"]);
    assert!(
        !space.exists(".stepwise/slurm"),
        "nothing was submitted or checked"
    );
}

#[test]
fn a_slurm_step_without_sbatch_says_what_to_do() {
    let path = empty_path();
    let space = Space::with(
        "[pipeline]\nshell = [\"/bin/sh\", \"-c\"]\n\n\
         [[step]]\nname = \"a\"\nrun = \"echo a >> ran\"\n",
    );
    let out = Outcome::of(
        space
            .command(&["run", "--executor", "slurm"])
            .env("PATH", path.path()),
    );
    out.code(2)
        .stderr_has("cannot submit to Slurm: `sbatch` is not installed here")
        .stderr_has("help: ");
    assert!(space.ran().is_empty());
}

#[test]
fn help_documents_the_executor() {
    let space = Space::new();
    let out = space.run(&["run", "--help"]);
    out.success()
        .stdout_has("--executor <EXECUTOR>")
        .stdout_has("slurm");
}

/// The journal of a runner killed while its Slurm job ran: run 1 started
/// attempt 1 of `a`, submitted as job 4242 (or, without `job`, killed
/// before `sbatch` returned), and never ended.
fn dead_runner_journal(job: Option<&str>) -> String {
    let mut journal = String::from(
        "{\"v\":1,\"event\":\"run\",\"run\":1,\"at\":1795975940540,\"pid\":999999}\n\
         {\"v\":1,\"event\":\"start\",\"run\":1,\"step\":\"a\",\"attempt\":1,\"at\":1795975940541}\n",
    );
    if let Some(job) = job {
        journal.push_str(&format!(
            "{{\"v\":2,\"event\":\"submit\",\"run\":1,\"step\":\"a\",\"attempt\":1,\"at\":1795975940542,\"job\":\"{job}\"}}\n"
        ));
    }
    journal
}

const TWO_STEPS: &str = "[pipeline]\nexecutor = \"slurm\"\nshell = [\"/bin/sh\", \"-c\"]\n\n\
     [[step]]\nname = \"a\"\nrun = \"echo a >> ran\"\n\n\
     [[step]]\nname = \"b\"\nrun = \"echo b >> ran\"\nexecutor = \"local\"\n";

/// Re-attaching needs no Slurm for a job whose status file says how it
/// ended: it is recorded as it ended, and not run again.
#[test]
fn a_job_that_ended_while_no_runner_watched_is_recorded_from_its_status_file() {
    let path = empty_path();
    for job in [Some("4242"), None] {
        let space = Space::with(TWO_STEPS);
        space.write(".stepwise/journal.jsonl", &dead_runner_journal(job));
        space.write(".stepwise/slurm/a.1.sh", "#!/bin/sh\n");
        space.write(".stepwise/slurm/a.1.status", "0\n");
        let out = Outcome::of(space.command(&["run"]).env("PATH", path.path()));
        out.success().stderr_has(&format!(
            "attach a (attempt 1, Slurm job {}) ended while no runner watched it: succeeded",
            job.unwrap_or("never submitted")
        ));
        assert_eq!(space.ran(), ["b"], "a is not run again");
        let finishes: Vec<serde_json::Value> = journal_records(&space.journal())
            .into_iter()
            .filter(|r| r["event"] == "finish" && r["step"] == "a")
            .collect();
        assert_eq!(finishes.len(), 1);
        assert_eq!(finishes[0]["run"], 1, "recorded in the run that started it");
        assert_eq!(finishes[0]["ok"], true);
        assert!(!space.exists(".stepwise/slurm/a.1.status"), "cleaned up");
    }
}

#[test]
fn a_failed_job_found_on_resume_is_recorded_with_its_exit_code() {
    let path = empty_path();
    let space = Space::with(TWO_STEPS);
    space.write(".stepwise/journal.jsonl", &dead_runner_journal(Some("17")));
    space.write(".stepwise/slurm/a.1.sh", "#!/bin/sh\n");
    space.write(".stepwise/slurm/a.1.status", "3\n");
    let out = Outcome::of(
        space
            .command(&["run", "--executor", "local", "b"])
            .env("PATH", path.path()),
    );
    // The recorded failure of `a` is why `b` does not run; then `a` runs
    // again, here locally.
    out.success()
        .stderr_has(
            "attach a (attempt 1, Slurm job 17) ended while no runner watched it: exit code 3",
        )
        .stderr_has("start  a (attempt 2)");
    assert_eq!(space.ran(), ["a", "b"]);
    let status = space.run(&["status", "--json"]).json();
    assert_eq!(status["steps"][0]["attempts"], 2);
}

/// A job Slurm cannot be asked about (not installed here) that left no
/// status file is lost: it counts as interrupted and runs again.
#[test]
fn a_job_nobody_knows_about_runs_again() {
    let path = empty_path();
    let space = Space::with(TWO_STEPS);
    space.write(
        ".stepwise/journal.jsonl",
        &dead_runner_journal(Some("4242")),
    );
    let out = Outcome::of(
        space
            .command(&["run", "--executor", "local"])
            .env("PATH", path.path()),
    );
    out.success().stderr_has(
        "attach a (attempt 1, Slurm job 4242) is unknown to Slurm and left no status: it counts as interrupted and runs again",
    );
    assert_eq!(space.ran(), ["a", "b"]);
}

/// An attempt that died before writing its batch script never reached
/// Slurm: nothing to re-attach to, and no Slurm command is needed.
#[test]
fn an_attempt_without_a_script_was_never_submitted() {
    let path = empty_path();
    let space = Space::with(TWO_STEPS);
    space.write(".stepwise/journal.jsonl", &dead_runner_journal(None));
    let out = Outcome::of(
        space
            .command(&["run", "--executor", "local"])
            .env("PATH", path.path()),
    );
    out.success();
    assert!(!out.stderr.contains("attach"), "{}", out.stderr);
    assert_eq!(space.ran(), ["a", "b"]);
}

/// `status` and `plan` tell a job in flight from an attempt that simply
/// died, in a journal as a stepwise before checksums wrote it (format 2
/// only for Slurm records).
#[test]
fn inspecting_a_journal_with_jobs_in_flight() {
    let space = Space::with(TWO_STEPS);
    space.write(
        ".stepwise/journal.jsonl",
        &dead_runner_journal(Some("4242")),
    );
    let status = space.run(&["status", "--json"]).json();
    assert_eq!(status["steps"][0]["last_attempt"]["job"], "4242");
    assert_eq!(status["steps"][0]["state"], "interrupted");
    let table = space.run(&["status"]);
    table.success().stdout_has("JOB");
    let row = table.stdout.lines().find(|l| l.starts_with("a ")).unwrap();
    assert!(
        row.contains("interrupted") && row.contains(" 4242 "),
        "{row}"
    );
    let plan = space.plan_json(&[]);
    let reason = plan["steps"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("Slurm job 4242"), "{reason}");
    assert!(reason.contains("the next run asks Slurm"), "{reason}");
}
