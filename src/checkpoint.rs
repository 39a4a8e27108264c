//! The seed contract: which steps are done, given a checkpoint of attempts.
//!
//! Everything else in stepwise (the journal, fingerprints, the scheduler) is
//! built around this one rule, so it lives here on its own, small and exact.

use std::collections::HashMap;
use std::fmt;

/// What a checkpoint says about a pipeline: which steps are done and which
/// remain, the remaining ones in the pipeline's own order.
///
/// Displays as `Resume plan: {done} done, {remaining} remaining`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumePlan<S> {
    /// Steps of the pipeline with at least one successful attempt, in
    /// pipeline order.
    pub done: Vec<S>,
    /// Every other step of the pipeline, in pipeline order.
    pub remaining: Vec<S>,
}

impl<S> fmt::Display for ResumePlan<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Resume plan: {} done, {} remaining",
            self.done.len(),
            self.remaining.len()
        )
    }
}

/// Decides which steps of a pipeline still have to run, given the attempts
/// recorded so far.
///
/// `all_steps` is the pipeline in its order; `checkpoint` is the sequence of
/// recorded attempts as `(name, ok)` pairs, in the order they happened. A
/// step may appear in the checkpoint any number of times (it was retried),
/// and any success wins:
///
/// | checkpoint state of a step        | runs again?               |
/// |-----------------------------------|---------------------------|
/// | recorded successful (any attempt) | no, skipped               |
/// | recorded failed (every attempt)   | yes, re-attempt           |
/// | never recorded                    | yes, first attempt        |
///
/// `remaining` keeps the order of `all_steps`; names in the checkpoint that
/// are not steps of the pipeline are ignored, and a step listed twice in
/// `all_steps` is planned once.
///
/// This is the Python pattern every hand-rolled checkpoint script uses:
///
/// ```python
/// done = {name for name, ok in checkpoint if ok}
/// remaining = [step for step in all_steps if step not in done]
/// ```
///
/// # Example
///
/// ```
/// use stepwise::resume_from_checkpoint;
///
/// let steps = ["load", "clean", "train", "report"];
/// // `clean` failed once and then succeeded; `train` failed; `report` never ran.
/// let checkpoint = [("load", true), ("clean", false), ("clean", true), ("train", false)];
///
/// let plan = resume_from_checkpoint(&steps, checkpoint);
/// assert_eq!(plan.done, ["load", "clean"]);
/// assert_eq!(plan.remaining, ["train", "report"]);
/// assert_eq!(plan.to_string(), "Resume plan: 2 done, 2 remaining");
/// ```
pub fn resume_from_checkpoint<S, N>(
    all_steps: &[S],
    checkpoint: impl IntoIterator<Item = (N, bool)>,
) -> ResumePlan<&str>
where
    S: AsRef<str>,
    N: AsRef<str>,
{
    // Index the pipeline once so the checkpoint is read in one pass without
    // allocating per entry: journals can hold millions of attempts.
    let mut index: HashMap<&str, usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(all_steps.len(), Default::default());
    for (i, step) in all_steps.iter().enumerate() {
        index.entry(step.as_ref()).or_insert(i);
    }
    let mut succeeded = vec![false; all_steps.len()];
    for (name, ok) in checkpoint {
        if ok && let Some(&i) = index.get(name.as_ref()) {
            succeeded[i] = true;
        }
    }
    let mut plan = ResumePlan {
        done: Vec::new(),
        remaining: Vec::new(),
    };
    for (i, step) in all_steps.iter().enumerate() {
        if index[step.as_ref()] != i {
            continue; // listed twice: planned once, at its first position
        }
        if succeeded[i] {
            plan.done.push(step.as_ref());
        } else {
            plan.remaining.push(step.as_ref());
        }
    }
    plan
}

/// Parses a checkpoint file in the seed's own format: a JSON list of
/// `[name, ok]` pairs, e.g. `[["load", true], ["clean", false]]`.
///
/// Anything else is refused with a message saying where and what (serde_json
/// reports the line and column), and so is a name no step can have: empty,
/// or holding a control character (which would also reach terminals raw).
///
/// ```
/// let cp = stepwise::checkpoint::parse_checkpoint(br#"[["a", true], ["b", false]]"#).unwrap();
/// assert_eq!(cp, [("a".to_string(), true), ("b".to_string(), false)]);
/// assert!(stepwise::checkpoint::parse_checkpoint(br#"[["a", "yes"]]"#).is_err());
/// assert!(stepwise::checkpoint::parse_checkpoint(br#"[["", true]]"#).is_err());
/// ```
pub fn parse_checkpoint(bytes: &[u8]) -> Result<Vec<(String, bool)>, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("the file is empty; expected a JSON list of [name, ok] pairs".into());
    }
    let entries = serde_json::from_slice::<Vec<(String, bool)>>(bytes).map_err(|e| {
        format!("{e}; expected a JSON list of [name, ok] pairs such as [[\"load\", true]]")
    })?;
    for (i, (name, _)) in entries.iter().enumerate() {
        let problem = if name.is_empty() {
            Some("is empty".to_string())
        } else {
            name.chars()
                .find(|c| c.is_control())
                .map(|c| format!("holds the control character U+{:04X}", u32::from(c)))
        };
        if let Some(problem) = problem {
            return Err(format!(
                "the name of pair {} {problem}: no step can have it",
                i + 1
            ));
        }
    }
    Ok(entries)
}

/// Renders a checkpoint in the seed's format: `[["a",true],["b",false]]`,
/// one pair per line.
pub fn format_checkpoint<N: AsRef<str>>(entries: &[(N, bool)]) -> String {
    let mut out = String::from("[");
    for (i, (name, ok)) in entries.iter().enumerate() {
        out.push_str(if i == 0 { "\n  " } else { ",\n  " });
        out.push('[');
        out.push_str(&serde_json::to_string(name.as_ref()).expect("a string serializes"));
        out.push_str(if *ok { ", true]" } else { ", false]" });
    }
    out.push_str(if entries.is_empty() { "]\n" } else { "\n]\n" });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, written as plainly as possible.
    fn reference(
        all_steps: &[String],
        checkpoint: &[(String, bool)],
    ) -> (Vec<String>, Vec<String>) {
        let done: Vec<&String> = checkpoint
            .iter()
            .filter(|(_, ok)| *ok)
            .map(|(n, _)| n)
            .collect();
        let mut planned: Vec<&String> = Vec::new();
        let (mut d, mut r) = (Vec::new(), Vec::new());
        for step in all_steps {
            if planned.contains(&step) {
                continue;
            }
            planned.push(step);
            if done.contains(&step) {
                d.push(step.clone());
            } else {
                r.push(step.clone());
            }
        }
        (d, r)
    }

    #[test]
    fn the_seed_table() {
        let steps = ["a", "b", "c"];
        let plan = resume_from_checkpoint(&steps, [("a", true), ("b", false)]);
        assert_eq!(plan.done, ["a"]);
        assert_eq!(plan.remaining, ["b", "c"]);
    }

    #[test]
    fn any_success_wins_whatever_the_order() {
        let steps = ["a"];
        for cp in [[("a", true), ("a", false)], [("a", false), ("a", true)]] {
            assert_eq!(resume_from_checkpoint(&steps, cp).done, ["a"]);
        }
    }

    #[test]
    fn unknown_names_are_ignored_and_remaining_keeps_file_order() {
        let steps = ["z", "y", "x"];
        let plan = resume_from_checkpoint(&steps, [("ghost", true), ("y", true)]);
        assert_eq!(plan.done, ["y"]);
        assert_eq!(plan.remaining, ["z", "x"]);
        assert_eq!(plan.to_string(), "Resume plan: 1 done, 2 remaining");
    }

    #[test]
    fn export_then_import_round_trips() {
        let cp = vec![("a".to_string(), true), ("we\"ird".to_string(), false)];
        assert_eq!(parse_checkpoint(format_checkpoint(&cp).as_bytes()), Ok(cp));
        assert_eq!(
            parse_checkpoint(format_checkpoint::<&str>(&[]).as_bytes()),
            Ok(vec![])
        );
    }

    #[test]
    fn malformed_checkpoints_are_refused() {
        for bad in [
            &b""[..],
            b"{}",
            b"[[\"a\"]]",
            b"[[\"a\", true, 1]]",
            b"[[1, true]]",
            b"[\"a\"]",
            b"not json",
            b"[[\"a\", true]] x",
        ] {
            assert!(
                parse_checkpoint(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn works_with_owned_strings_and_borrowed_names() {
        let steps = vec!["a".to_string(), "b".to_string()];
        let cp: Vec<(String, bool)> = vec![("b".into(), true)];
        let plan = resume_from_checkpoint(&steps, cp.iter().map(|(n, ok)| (n, *ok)));
        assert_eq!(plan.done, ["b"]);
    }

    fn name() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", "c", "d", "e", "f"]).prop_map(String::from)
    }

    proptest! {
        #[test]
        fn matches_the_reference_model(
            all_steps in prop::collection::vec(name(), 0..8),
            checkpoint in prop::collection::vec((name(), any::<bool>()), 0..20),
        ) {
            let plan = resume_from_checkpoint(&all_steps, checkpoint.iter().map(|(n, ok)| (n, *ok)));
            let done: Vec<String> = plan.done.iter().map(|s| s.to_string()).collect();
            let remaining: Vec<String> = plan.remaining.iter().map(|s| s.to_string()).collect();
            let (d, r) = reference(&all_steps, &checkpoint);
            prop_assert_eq!(done, d);
            prop_assert_eq!(remaining, r);
        }

        #[test]
        fn order_of_the_checkpoint_does_not_matter(
            all_steps in prop::collection::vec(name(), 0..8),
            mut checkpoint in prop::collection::vec((name(), any::<bool>()), 0..20),
        ) {
            let before = resume_from_checkpoint(&all_steps, checkpoint.iter().map(|(n, ok)| (n, *ok))).done.len();
            checkpoint.reverse();
            let after = resume_from_checkpoint(&all_steps, checkpoint.iter().map(|(n, ok)| (n, *ok))).done.len();
            prop_assert_eq!(before, after);
        }
    }
}
