//! Property: for random pipelines and random sequences of edits to inputs
//! and commands, the steps `plan` says will run are exactly the steps a
//! from-scratch reference model says must run.
//!
//! The reference knows nothing of journals, stamps or stat caches: it
//! remembers, per step, what the step and everything upstream of it looked
//! like at its last success, and says "run" when that differs now, or when
//! something upstream runs.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use stepwise::plan::{Action, Mode};
use stepwise::project::Project;
use stepwise::run::scheduler::RunOptions;
use stepwise::view::progress::Silent;

#[derive(Clone, Debug)]
enum Edit {
    /// Give step `i` a new command.
    Command(usize),
    /// Write step `i`'s input with this content (often the same bytes).
    Input(usize, u8),
    /// `stepwise forget s{i}`.
    Forget(usize),
    /// `stepwise run`.
    Run,
}

#[derive(Clone, Debug)]
struct Case {
    deps: Vec<Vec<usize>>,
    edits: Vec<Edit>,
}

fn case() -> impl Strategy<Value = Case> {
    (2usize..6)
        .prop_flat_map(|n| {
            let deps = (0..n)
                .map(|i| proptest::sample::subsequence((0..i).collect::<Vec<_>>(), 0..=i.min(2)))
                .collect::<Vec<_>>();
            let edit = prop_oneof![
                (0..n).prop_map(Edit::Command),
                (0..n, 0u8..3).prop_map(|(i, c)| Edit::Input(i, c)),
                (0..n).prop_map(Edit::Forget),
                Just(Edit::Run),
            ];
            (deps, proptest::collection::vec(edit, 1..8))
        })
        .prop_map(|(deps, edits)| Case { deps, edits })
}

/// What the reference model sees of a step: everything that defines it,
/// with its dependencies' definitions folded in.
fn definition(i: usize, deps: &[Vec<usize>], version: &[u32], content: &[u8]) -> String {
    let upstream: Vec<String> = deps[i]
        .iter()
        .map(|&d| definition(d, deps, version, content))
        .collect();
    format!(
        "step{i}(v{}, in={}, deps=[{}])",
        version[i],
        content[i],
        upstream.join(",")
    )
}

fn must_run(
    deps: &[Vec<usize>],
    version: &[u32],
    content: &[u8],
    last_success: &BTreeMap<usize, String>,
) -> Vec<bool> {
    let mut runs = vec![false; deps.len()];
    for i in 0..deps.len() {
        let changed = last_success.get(&i) != Some(&definition(i, deps, version, content));
        runs[i] = changed || deps[i].iter().any(|&d| runs[d]);
    }
    runs
}

fn write_pipeline(dir: &Path, deps: &[Vec<usize>], version: &[u32]) {
    let mut toml = String::new();
    for (i, after) in deps.iter().enumerate() {
        let after: Vec<String> = after.iter().map(|d| format!("\"s{d}\"")).collect();
        toml += &format!(
            "[[step]]\nname = \"s{i}\"\nafter = [{}]\ninputs = [\"in{i}.txt\"]\nrun = \"true v{}\"\n\n",
            after.join(", "),
            version[i]
        );
    }
    std::fs::write(dir.join("stepwise.toml"), toml).unwrap();
}

fn planned(dir: &Path) -> Vec<bool> {
    let project = Project::open(&dir.join("stepwise.toml")).unwrap();
    let inspection = project.inspect(&[], Mode::Fingerprint).unwrap();
    inspection
        .plan
        .steps
        .iter()
        .map(|s| s.action == Action::Run)
        .collect()
}

fn run(dir: &Path) {
    let project = Project::open(&dir.join("stepwise.toml")).unwrap();
    let options = RunOptions {
        jobs: 2,
        ..RunOptions::default()
    };
    let report = project.run(&[], &options, &mut Silent).unwrap();
    assert_eq!(report.exit_code(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn plan_matches_the_reference_model(case in case()) {
        let dir = tempfile::tempdir().unwrap();
        let n = case.deps.len();
        let mut version = vec![0u32; n];
        let mut content = vec![0u8; n];
        for i in 0..n {
            std::fs::write(dir.path().join(format!("in{i}.txt")), "0").unwrap();
        }
        write_pipeline(dir.path(), &case.deps, &version);
        let mut last_success: BTreeMap<usize, String> = BTreeMap::new();

        for edit in &case.edits {
            match *edit {
                Edit::Command(i) => {
                    version[i] += 1;
                    write_pipeline(dir.path(), &case.deps, &version);
                }
                Edit::Input(i, c) => {
                    content[i] = c;
                    std::fs::write(dir.path().join(format!("in{i}.txt")), c.to_string()).unwrap();
                }
                Edit::Forget(i) => {
                    let project = Project::open(&dir.path().join("stepwise.toml")).unwrap();
                    project.forget(&[format!("s{i}")], false, false).unwrap();
                    last_success.remove(&i);
                }
                Edit::Run => {
                    run(dir.path());
                    for i in 0..n {
                        last_success.insert(i, definition(i, &case.deps, &version, &content));
                    }
                }
            }
            let expected = must_run(&case.deps, &version, &content, &last_success);
            prop_assert_eq!(planned(dir.path()), expected, "after {:?}", edit);
        }
    }
}
