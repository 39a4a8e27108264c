//! The seed's promise, end to end: what succeeded is skipped, what failed or
//! never ran runs, in the pipeline's order.

mod common;
use common::*;

#[test]
fn a_succeeds_b_fails_c_never_runs_then_after_the_fix_only_b_and_c_run() {
    let space = Space::with(&chain(&["a", "b", "c"], &["b"]));

    let first = space.run(&["run"]);
    first
        .code(1)
        .stderr_has("Resume plan: 0 done, 3 remaining")
        .stderr_has("FAILED b");
    first
        .stderr_has("b is broken")
        .stderr_has("not run: c (needs b, which failed)");
    assert_eq!(space.ran(), ["a", "b"]);

    space.write("fixed", "");
    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 1 done, 2 remaining");
    assert_eq!(space.ran(), ["a", "b", "b", "c"]);
    assert_eq!(space.ran_count("a"), 1);

    space
        .run(&["run"])
        .success()
        .stderr_has("Resume plan: 3 done, 0 remaining");
    assert_eq!(space.ran().len(), 4, "nothing runs once everything is done");
}
