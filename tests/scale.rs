//! Growth guards that cannot flake: work counted, not wall-clock time.

mod common;
use common::*;

use stepwise::plan::Mode;
use stepwise::project::Project;
use stepwise::run::scheduler::RunOptions;
use stepwise::view::progress::Silent;

/// A no-op run of a 10,000-step pipeline reads the journal once and hashes
/// no file: every output's hash comes from the stat cache. Once a run has
/// left a history snapshot, the next parses none of the journal.
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
    // The import left a snapshot of the journal it wrote; without it (a
    // crash before it was written, a cache deleted) the journal is parsed.
    let snapshot = space.join(".stepwise/history-snapshot");
    assert!(snapshot.exists(), "checkpoint import leaves a snapshot");
    std::fs::remove_file(&snapshot).unwrap();

    let project = Project::open(&space.join("stepwise.toml")).unwrap();
    let options = RunOptions {
        jobs: 2,
        ..RunOptions::default()
    };
    let journal_len = std::fs::metadata(space.join(".stepwise/journal.jsonl"))
        .unwrap()
        .len();
    let reads = stepwise::journal::reads();
    let parsed = stepwise::journal::bytes_parsed();
    let report = project.run(&[], &options, &mut Silent).unwrap();
    assert_eq!(report.plan.remaining(), 0, "{}", report.plan);
    assert!(report.summary.is_none(), "nothing ran");
    assert_eq!(
        stepwise::journal::reads() - reads,
        1,
        "the journal is read once"
    );
    // No snapshot: this run parses the journal whole, and leaves one.
    assert_eq!(stepwise::journal::bytes_parsed() - parsed, journal_len);
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
    let reads = stepwise::journal::reads();
    let parsed = stepwise::journal::bytes_parsed();
    let report = project.run(&[], &options, &mut Silent).unwrap();
    assert_eq!(report.plan.remaining(), 0);
    assert_eq!(report.hash_stats.files_hashed, 1, "{:?}", report.hash_stats);
    assert_eq!(stepwise::journal::reads() - reads, 1);
    assert_eq!(
        stepwise::journal::bytes_parsed() - parsed,
        0,
        "the snapshot holds the whole journal: nothing of it is parsed"
    );

    // A record appended since (as by a run that died before writing its
    // snapshot): only it is parsed.
    let mut journal = std::fs::OpenOptions::new()
        .append(true)
        .open(space.join(".stepwise/journal.jsonl"))
        .unwrap();
    let line = stepwise::journal::Record::Forgotten {
        at: 1,
        steps: Some(vec!["s9999".into()]),
    }
    .to_line();
    std::io::Write::write_all(&mut journal, &line).unwrap();
    drop(journal);
    let parsed = stepwise::journal::bytes_parsed();
    let inspection = project.inspect(&[], Mode::Fingerprint).unwrap();
    assert_eq!(inspection.plan.remaining(), 1);
    assert_eq!(
        stepwise::journal::bytes_parsed() - parsed,
        line.len() as u64
    );
}

/// A step that needs every expansion of a 50,000-value matrix, and the same
/// written out: compiling either is linear. (Each expansion once cloned the
/// whole matrix, and each dependency was checked against every earlier one:
/// N², over a minute at this size in a debug build; seconds now.)
#[test]
fn a_50000_value_matrix_and_a_50000_step_fan_in_plan_in_linear_time() {
    const N: usize = 50_000;
    let values: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    let names: Vec<String> = (0..N).map(|i| format!("\"w{i}\"")).collect();
    let mut toml = format!(
        "[[step]]\nname = \"s\"\nmatrix = {{ i = [{}] }}\nrun = \"true\"\n\n\
         [[step]]\nname = \"all\"\nafter = [\"s\"]\nrun = \"true\"\n\n",
        values.join(", ")
    );
    for i in 0..N {
        toml += &format!("[[step]]\nname = \"w{i}\"\nrun = \"true\"\nafter = []\n\n");
    }
    toml += &format!(
        "[[step]]\nname = \"fan_in\"\nafter = [{}]\nrun = \"true\"\n",
        names.join(", ")
    );
    let space = Space::with(&toml);
    let t = std::time::Instant::now();
    let plan = space.plan_json(&[]);
    let took = t.elapsed();
    assert_eq!(plan["remaining"], 2 * N + 2);
    // A loose bound: quadratic work takes minutes here, linear about a second.
    assert!(
        took < std::time::Duration::from_secs(30),
        "plan took {took:?}"
    );
}

/// Plans `toml` in this thread; returns the plan and the work done to decide
/// whether missing inputs are provided upstream.
fn plan_counting_provider_checks(toml: &str) -> (stepwise::plan::Plan, u64) {
    let space = Space::with(toml);
    let project = Project::open(&space.join("stepwise.toml")).unwrap();
    let before = stepwise::plan::provider_checks();
    let inspection = project.inspect(&[], Mode::Fingerprint).unwrap();
    (inspection.plan, stepwise::plan::provider_checks() - before)
}

/// A fan-in of outputs in a fresh project: `b`'s N expansions each read the
/// N outputs of `a`'s, none of which exist yet. Each input's provider is
/// found in an index, not by matching it against every upstream output (N³:
/// 12 s to plan at N = 200, 4.1 GB at N = 3,000).
#[test]
fn a_fan_in_of_n_outputs_into_n_steps_is_checked_in_n_squared_not_n_cubed() {
    const N: usize = 200;
    let values: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    let toml = format!(
        "[[step]]\nname = \"a\"\nmatrix = {{ i = [{v}] }}\nrun = \"true\"\noutputs = [\"a/{{i}}.txt\"]\n\n\
         [[step]]\nname = \"b\"\nmatrix = {{ j = [{v}] }}\ninputs = [\"{{a.outputs}}\"]\nrun = \"true\"\n",
        v = values.join(", ")
    );
    let (plan, checks) = plan_counting_provider_checks(&toml);
    assert_eq!(plan.remaining(), 2 * N);
    assert!(
        plan.steps.iter().all(|s| s.warnings.is_empty()),
        "every input is an output of a step that runs first"
    );
    // N² inputs: a few checks each.
    let paths = (N * N + N) as u64;
    assert!(checks <= 4 * paths, "{checks} checks for {paths} paths");
}

/// A chain whose every step reads raw data that no step makes (not fetched
/// yet): nothing upstream provides it, which an index answers at once,
/// instead of walking the whole chain above each step (N²: 15-21 s to plan
/// at N = 4,000), whichever way the chain runs against the file's order.
#[test]
fn a_chain_of_steps_reading_inputs_no_step_makes_is_checked_in_linear_work() {
    const N: usize = 2_000;
    for reversed in [false, true] {
        let mut toml = String::new();
        for i in 0..N {
            let after = match (reversed, i) {
                (false, _) => String::new(),
                (true, i) if i + 1 < N => format!("after = [\"s{}\"]\n", i + 1),
                (true, _) => "after = []\n".into(),
            };
            toml += &format!(
                "[[step]]\nname = \"s{i}\"\n{after}inputs = [\"raw/in{i}.csv\"]\nrun = \"true\"\noutputs = [\"out/s{i}\"]\n\n"
            );
        }
        let (plan, checks) = plan_counting_provider_checks(&toml);
        assert_eq!(plan.remaining(), N);
        assert!(
            plan.steps.iter().all(|s| s.warnings.len() == 1),
            "every step is warned that its raw input is missing"
        );
        assert!(
            checks <= 4 * N as u64,
            "{checks} checks for {N} steps (reversed: {reversed})"
        );
    }
}
