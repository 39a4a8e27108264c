//! What `plan` prints: the plan as text (one line per step, or per
//! template with its counts) and as its `--json` document.

use serde_json::json;

use crate::pipeline::Pipeline;
use crate::plan::{Action, Plan, State};
use crate::state::lock::Holder;

/// `plan --json`: version 1, the counts, every step's action, state and
/// reasons, and the expansions the journal knows that the pipeline no
/// longer has (`removed`).
pub fn plan_json(pipeline: &Pipeline, the_plan: &Plan, removed: &[&str]) -> serde_json::Value {
    let steps: Vec<_> = the_plan
        .steps
        .iter()
        .map(|s| {
            let step = pipeline.step(s.id);
            let mut doc = json!({
                "name": step.name,
                "action": s.action,
                "state": s.state,
                "reason": s.reason,
                "reasons": s.reasons,
                "warnings": s.warnings,
            });
            if let (Some(template), Some(obj)) = (&step.template, doc.as_object_mut()) {
                let values: serde_json::Map<String, serde_json::Value> = step
                    .values
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect();
                obj.insert("template".into(), json!(template));
                obj.insert("values".into(), serde_json::Value::Object(values));
            }
            doc
        })
        .collect();
    let mut doc = json!({
        "version": 1,
        "done": the_plan.done(),
        "remaining": the_plan.remaining(),
        "steps": steps,
    });
    if !removed.is_empty()
        && let Some(obj) = doc.as_object_mut()
    {
        obj.insert("removed".into(), json!(removed));
    }
    doc
}

/// `plan` as text: the seed's summary line, then a line per step (or per
/// template, unless `expand`), then what is no longer in the pipeline.
pub fn plan_text(
    pipeline: &Pipeline,
    the_plan: &Plan,
    writer: Option<&Holder>,
    removed: &[&str],
    expand: bool,
) -> String {
    let mut out = format!("{the_plan}\n");
    if let Some(holder) = writer {
        out += &format!(
            "({holder} is working on this pipeline; this is what it has recorded so far)\n"
        );
    }
    let width = the_plan
        .steps
        .iter()
        .map(|s| pipeline.step(s.id).name.len())
        .max()
        .unwrap_or(0);
    let mut shown_templates: Vec<&str> = Vec::new();
    for s in &the_plan.steps {
        let step = pipeline.step(s.id);
        if let Some(template) = step.template.as_deref().filter(|_| !expand) {
            // One line per template: `align: 312 done, 1 failed, 187 remaining`.
            if shown_templates.contains(&template) {
                continue;
            }
            shown_templates.push(template);
            let group: Vec<&crate::plan::StepPlan> = the_plan
                .steps
                .iter()
                .filter(|p| pipeline.step(p.id).template.as_deref() == Some(template))
                .collect();
            let mut counts: Vec<(State, usize)> = Vec::new();
            for p in &group {
                match counts.iter_mut().find(|(state, _)| *state == p.state) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((p.state, 1)),
                }
            }
            let remaining = group.iter().filter(|p| p.action == Action::Run).count();
            let mut parts: Vec<String> = counts
                .iter()
                .map(|(state, n)| format!("{n} {state}"))
                .collect();
            parts.push(format!("{remaining} to run"));
            let action = if remaining > 0 { "run " } else { "skip" };
            out += &format!(
                "  {action}  {:width$}  {} steps: {}\n",
                template,
                group.len(),
                parts.join(", ")
            );
            continue;
        }
        let action = match s.action {
            Action::Run => "run ",
            Action::Skip => "skip",
        };
        out += &format!(
            "  {action}  {:width$}  {:11}  {}\n",
            pipeline.step(s.id).name,
            s.state,
            s.reason
        );
        for w in &s.warnings {
            out += &format!(
                "  {:width$}        warning: {w}; the step will fail unless it appears\n",
                ""
            );
        }
    }
    if !removed.is_empty() {
        out += &format!(
            "  no longer in the pipeline ({}): {}\n",
            removed.len(),
            removed.join(", ")
        );
    }
    out
}
