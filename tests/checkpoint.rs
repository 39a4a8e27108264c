//! The checkpoint in the seed's own format, a JSON list of `[name, ok]`
//! pairs: exported from one place, imported into another, duplicates and
//! all. Any success wins; malformed input changes nothing.

mod common;
use common::*;

fn abc() -> Space {
    Space::with(&chain(&["a", "b", "c"], &[]))
}

#[test]
fn an_imported_checkpoint_with_duplicates_counts_any_success() {
    let space = abc();
    // a failed, then succeeded; b succeeded, then failed: both are done.
    space.write(
        "cp.json",
        r#"[["a", false], ["a", true], ["b", true], ["b", false]]"#,
    );
    space
        .run(&["checkpoint", "import", "cp.json"])
        .success()
        .stderr_has("imported 4 attempts (2 successful)");

    let plan = space.plan_json(&[]);
    assert_eq!(plan["done"], 2);
    assert_eq!(plan["remaining"], 1);
    assert_eq!(
        plan_steps(&plan),
        [
            ("a".into(), "skip".into(), "imported".into()),
            ("b".into(), "skip".into(), "imported".into()),
            ("c".into(), "run".into(), "never run".into()),
        ]
    );
    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 2 done, 1 remaining");
    assert_eq!(
        space.ran(),
        ["c"],
        "only c runs; a and b were imported as done"
    );
}

#[test]
fn an_imported_failure_only_is_not_done() {
    let space = abc();
    space.write("cp.json", r#"[["a", true], ["b", false], ["b", false]]"#);
    space.run(&["checkpoint", "import", "cp.json"]).success();
    let plan = space.plan_json(&[]);
    assert_eq!(plan_remaining(&plan), ["b", "c"]);
    assert_eq!(plan["steps"][1]["state"], "failed");
    space.run(&["run"]).success();
    assert_eq!(space.ran(), ["b", "c"]);
}

#[test]
fn an_import_adds_to_what_the_journal_already_knows() {
    let space = Space::with(&chain(&["a", "b", "c"], &["b"]));
    space.run(&["run"]).code(1);
    // b failed here but succeeded on another machine.
    space.write("cp.json", r#"[["b", true]]"#);
    space.run(&["checkpoint", "import", "cp.json"]).success();
    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 2 done, 1 remaining");
    assert_eq!(space.ran(), ["a", "b", "c"]);
}

#[test]
fn an_import_from_stdin_with_a_dash() {
    let space = abc();
    space
        .run_with_stdin(
            &["checkpoint", "import", "-"],
            "[[\"a\", true], [\"b\", true]]\n",
        )
        .success();
    let plan = space.plan_json(&[]);
    assert_eq!(plan_remaining(&plan), ["c"]);
}

#[test]
fn importing_names_the_pipeline_lacks_warns_but_succeeds() {
    let space = abc();
    space.write(
        "cp.json",
        r#"[["zz", true], ["a", true], ["old-step", false]]"#,
    );
    let out = space.run(&["checkpoint", "import", "cp.json"]);
    out.success()
        .stderr_has("warning: `zz` is not a step")
        .stderr_has("warning: `old-step` is not a step");
    assert!(
        !out.stderr.contains("`a` is not a step"),
        "no warning for a real step:\n{}",
        out.stderr
    );
    let plan = space.plan_json(&[]);
    assert_eq!(plan["done"], 1);
    assert_eq!(plan_remaining(&plan), ["b", "c"]);
}

#[test]
fn an_imported_step_has_no_log_and_log_says_so() {
    let space = abc();
    space.write("cp.json", r#"[["a", true]]"#);
    space.run(&["checkpoint", "import", "cp.json"]).success();
    space.run(&["log", "a"]).code(2).stderr_has("imported");
}

/// Checks that importing `contents` is refused with exit 2 and leaves the
/// journal exactly as it was (absent, or the bytes of a previous run).
#[track_caller]
fn import_is_refused(contents: Option<&str>, fragment: &str) {
    for with_history in [false, true] {
        let space = abc();
        if with_history {
            space.run(&["run", "a"]).success();
        }
        let before = space.journal_bytes();
        let path = match contents {
            Some(text) => {
                space.write("cp.json", text);
                "cp.json"
            }
            None => "missing.json",
        };
        let out = space.run(&["checkpoint", "import", path]);
        out.code(2).stderr_has(fragment);
        assert!(
            out.stderr.contains(path),
            "the message names the file:\n{}",
            out.stderr
        );
        assert_eq!(
            space.journal_bytes(),
            before,
            "the journal is byte for byte unchanged (history: {with_history})"
        );
        assert_eq!(space.ran().len(), usize::from(with_history), "nothing ran");
    }
}

#[test]
fn importing_something_that_is_not_json_is_refused() {
    import_is_refused(Some("download,true\nclean,false\n"), "not a checkpoint");
}

#[test]
fn importing_an_object_is_refused() {
    import_is_refused(Some("{}"), "not a checkpoint");
}

#[test]
fn importing_a_pair_without_ok_is_refused() {
    import_is_refused(Some(r#"[["a"]]"#), "not a checkpoint");
}

#[test]
fn importing_ok_as_a_string_is_refused() {
    import_is_refused(Some(r#"[["a", "yes"]]"#), "not a checkpoint");
}

#[test]
fn importing_a_triple_is_refused() {
    import_is_refused(Some(r#"[["a", true, 1]]"#), "not a checkpoint");
}

#[test]
fn importing_a_list_of_numbers_is_refused() {
    import_is_refused(Some("[1]"), "not a checkpoint");
}

#[test]
fn importing_an_empty_file_is_refused() {
    import_is_refused(Some(""), "empty");
}

#[test]
fn importing_a_valid_list_followed_by_junk_is_refused() {
    import_is_refused(Some(r#"[["a", true]] [["b", true]]"#), "not a checkpoint");
}

#[test]
fn importing_a_name_no_step_can_have_is_refused() {
    import_is_refused(
        Some(r#"[["a", true], ["", true]]"#),
        "the name of pair 2 is empty",
    );
    import_is_refused(
        Some(r#"[["a\u001b[2Jb", true]]"#),
        "the name of pair 1 holds the control character U+001B",
    );
}

#[test]
fn importing_a_missing_file_is_refused() {
    import_is_refused(None, "cannot read the checkpoint file");
}

#[test]
fn a_refused_import_from_stdin_changes_nothing() {
    let space = abc();
    space
        .run_with_stdin(&["checkpoint", "import", "-"], "[[\"a\", 1]]")
        .code(2)
        .stderr_has("not a checkpoint");
    assert_eq!(space.journal_bytes(), None);
}

#[test]
fn export_prints_one_pair_per_finished_attempt_oldest_first() {
    let space = Space::with(&chain(&["a", "b", "c"], &["b"]));
    space.run(&["run"]).code(1);
    space.write("fixed", "");
    space.run(&["run"]).success();
    let export = space.run(&["checkpoint", "export"]);
    export.success();
    assert_eq!(
        export.json(),
        serde_json::json!([["a", true], ["b", false], ["b", true], ["c", true]])
    );
}

#[test]
fn export_of_a_fresh_pipeline_is_an_empty_list() {
    let space = abc();
    let export = space.run(&["checkpoint", "export"]);
    export.success();
    assert_eq!(export.json(), serde_json::json!([]));
    assert!(!space.exists(".stepwise"), "export writes nothing");
}

#[test]
fn export_leaves_out_what_forget_cleared() {
    let space = abc();
    space.run(&["run"]).success();
    space.run(&["forget", "b"]).success();
    let export = space.run(&["checkpoint", "export"]);
    assert_eq!(export.json(), serde_json::json!([["a", true], ["c", true]]));
}

#[test]
fn a_checkpoint_exported_here_and_imported_there_gives_the_same_plan() {
    let toml = chain(&["a", "b", "c", "d"], &["c"]);
    let here = Space::with(&toml);
    here.run(&["run"]).code(1); // a, b done; c failed; d never ran
    here.run(&["forget", "a"]).success(); // a must run again
    let export = here.run(&["checkpoint", "export"]);
    export.success();

    let there = Space::with(&toml);
    there
        .run_with_stdin(&["checkpoint", "import", "-"], &export.stdout)
        .success();

    let plan_here = here.plan_json(&[]);
    let plan_there = there.plan_json(&[]);
    assert_eq!(plan_there["done"], plan_here["done"]);
    assert_eq!(plan_there["remaining"], plan_here["remaining"]);
    assert_eq!(plan_remaining(&plan_there), plan_remaining(&plan_here));
    // b is done, but needs a, which will run: planned, and skipped at its
    // turn if a changes nothing it depends on. By name, b is simply done.
    assert_eq!(plan_remaining(&plan_there), ["a", "b", "c", "d"]);
    assert_eq!(
        plan_remaining(&there.plan_json(&["--by-name"])),
        ["a", "c", "d"]
    );
    assert_eq!(
        plan_remaining(&here.plan_json(&["--by-name"])),
        ["a", "c", "d"]
    );

    // And its own export is the same list.
    let again = there.run(&["checkpoint", "export"]);
    assert_eq!(again.json(), export.json());
}

#[test]
fn import_and_export_work_with_a_pipeline_named_by_f_before_or_after_the_command() {
    let space = Space::new();
    space.write(
        "project/pipe.toml",
        &chain(&["a", "b", "c"], &[]).replace("ran", "../ran"),
    );
    space.write("cp.json", r#"[["a", true]]"#);
    space
        .run(&["-f", "project/pipe.toml", "checkpoint", "import", "cp.json"])
        .success();
    space.write("cp2.json", r#"[["b", true]]"#);
    space
        .run(&[
            "checkpoint",
            "import",
            "cp2.json",
            "-f",
            "project/pipe.toml",
        ])
        .success();
    // A pipeline file not named stepwise.toml has a state dir of its own.
    assert!(space.exists("project/.stepwise-pipe/journal.jsonl"));
    assert!(
        !space.exists(".stepwise"),
        "the state dir is the pipeline's"
    );
    let export = space.run(&["checkpoint", "export", "-f", "project/pipe.toml"]);
    export.success();
    assert_eq!(export.json(), serde_json::json!([["a", true], ["b", true]]));
    space
        .run(&["run", "--file", "project/pipe.toml"])
        .success()
        .stderr_has("Resume plan: 2 done, 1 remaining");
    assert_eq!(space.ran(), ["c"]);
}
