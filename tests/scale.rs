//! Growth guards that cannot flake: work counted, not wall-clock time.

mod common;
use common::*;

use stepwise::plan::Mode;
use stepwise::project::Project;
use stepwise::report::Silent;
use stepwise::scheduler::RunOptions;

/// A no-op run of a 10,000-step pipeline reads the journal once and hashes
/// no file: every output's hash comes from the stat cache.
#[test]
fn a_no_op_run_of_10000_steps_reads_the_journal_once_and_hashes_nothing() {
    const N: usize = 10_000;
    let space = Space::new();
    let mut toml = String::new();
    let mut checkpoint = Vec::new();
    for i in 0..N {
        toml += &format!(
            "[[step]]\nname = \"s{i}\"\nrun = \"echo {i} > out/s{i}\"\noutputs = [\"out/s{i}\"]\n\n"
        );
        space.write(&format!("out/s{i}"), &format!("{i}\n"));
        checkpoint.push(serde_json::json!([format!("s{i}"), true]));
    }
    space.write("stepwise.toml", &toml);
    space.write(
        "done.json",
        &serde_json::Value::Array(checkpoint).to_string(),
    );
    // Files changed in the last two seconds are never trusted from the
    // cache (a second write in the same timestamp tick could go unseen).
    std::thread::sleep(std::time::Duration::from_millis(2100));
    space.run(&["checkpoint", "import", "done.json"]).success();

    let project = Project::open(&space.join("stepwise.toml")).unwrap();
    let options = RunOptions {
        jobs: 2,
        ..RunOptions::default()
    };
    let reads = stepwise::journal::reads();
    let report = project.run(&[], &options, &mut Silent).unwrap();
    assert_eq!(report.plan.remaining(), 0, "{}", report.plan);
    assert!(report.summary.is_none(), "nothing ran");
    assert_eq!(
        stepwise::journal::reads() - reads,
        1,
        "the journal is read once"
    );
    assert_eq!(report.hash_stats.files_hashed, 0, "{:?}", report.hash_stats);
    assert_eq!(
        report.hash_stats.cache_hits, N as u64,
        "{:?}",
        report.hash_stats
    );

    // `touch` one output: its stamp changed, so it alone is read again, and
    // its bytes are the same, so nothing runs.
    std::fs::File::options()
        .write(true)
        .open(space.join("out/s123"))
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    let report = project.run(&[], &options, &mut Silent).unwrap();
    assert_eq!(report.plan.remaining(), 0);
    assert_eq!(report.hash_stats.files_hashed, 1, "{:?}", report.hash_stats);

    // The read-only plan does the same work and writes nothing.
    let inspection = project.inspect(&[], Mode::Fingerprint).unwrap();
    assert_eq!(inspection.plan.remaining(), 0);
}
