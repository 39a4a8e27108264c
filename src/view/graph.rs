//! The dependency graph as a picture: Graphviz DOT, Mermaid, JSON, and an
//! SVG drawing for the HTML report, each node coloured by its plan state.
//!
//! Edges point the way work flows: from a step to the steps that need it.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::pipeline::{Pipeline, StepId};
use crate::plan::{Action, Plan, State, StepPlan};

/// The version of `graph --format json`'s schema.
pub const GRAPH_VERSION: u32 = 1;

/// The colour class of a step: what its node looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Skipped: done in a run.
    Done,
    /// Skipped: marked done by `checkpoint import`.
    Imported,
    /// Succeeded, but changed since: it will run.
    Stale,
    /// Its latest attempt failed: it will run.
    Failed,
    /// Its latest attempt did not finish: it will run.
    Interrupted,
    /// Running now, in another process.
    Running,
    /// Never run or forgotten: it will run.
    WillRun,
}

impl Kind {
    /// The class of a planned step.
    pub fn of(step: &StepPlan) -> Kind {
        match (step.action, step.state) {
            (Action::Skip, State::Imported) => Kind::Imported,
            (Action::Skip, _) => Kind::Done,
            (_, State::Stale) => Kind::Stale,
            (_, State::Failed) => Kind::Failed,
            (_, State::Interrupted) => Kind::Interrupted,
            (_, State::Running) => Kind::Running,
            _ => Kind::WillRun,
        }
    }

    /// A name fit for CSS classes and Mermaid class names.
    pub fn class(self) -> &'static str {
        match self {
            Kind::Done => "done",
            Kind::Imported => "imported",
            Kind::Stale => "stale",
            Kind::Failed => "failed",
            Kind::Interrupted => "interrupted",
            Kind::Running => "running",
            Kind::WillRun => "will_run",
        }
    }

    /// (fill, border) colours.
    pub fn colors(self) -> (&'static str, &'static str) {
        match self {
            Kind::Done => ("#c8e6c9", "#2e7d32"),
            Kind::Imported => ("#dcedc8", "#558b2f"),
            Kind::Stale => ("#fff3c4", "#b7950b"),
            Kind::Failed => ("#ffcdd2", "#c62828"),
            Kind::Interrupted => ("#ffe0b2", "#ef6c00"),
            Kind::Running => ("#e1bee7", "#6a1b9a"),
            Kind::WillRun => ("#bbdefb", "#1565c0"),
        }
    }

    /// Every kind, in the legend's order.
    pub const ALL: [Kind; 7] = [
        Kind::Done,
        Kind::Imported,
        Kind::Stale,
        Kind::Failed,
        Kind::Interrupted,
        Kind::Running,
        Kind::WillRun,
    ];

    /// How the legend names it.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Done => "done",
            Kind::Imported => "imported",
            Kind::Stale => "stale (will run)",
            Kind::Failed => "failed (will run)",
            Kind::Interrupted => "interrupted (will run)",
            Kind::Running => "running",
            Kind::WillRun => "will run",
        }
    }
}

/// The edges among the planned steps: (dependency, dependent), in pipeline
/// order of the dependent.
fn edges(pipeline: &Pipeline, plan: &Plan) -> Vec<(StepId, StepId)> {
    let mut in_plan = vec![false; pipeline.steps.len()];
    for s in &plan.steps {
        in_plan[s.id.index()] = true;
    }
    let mut out = Vec::new();
    for s in &plan.steps {
        for &dep in &pipeline.step(s.id).after {
            if in_plan[dep.index()] {
                out.push((dep, s.id));
            }
        }
    }
    out
}

fn dot_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Graphviz DOT: `stepwise graph | dot -Tsvg > graph.svg`.
pub fn dot(pipeline: &Pipeline, plan: &Plan) -> String {
    let mut out = String::new();
    out.push_str("digraph stepwise {\n");
    out.push_str("  graph [rankdir=LR, fontname=\"Helvetica\"];\n");
    out.push_str("  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];\n");
    out.push_str("  edge [color=\"#888888\"];\n");
    let node = |out: &mut String, s: &StepPlan, indent: &str| {
        let name = &pipeline.step(s.id).name;
        let (fill, border) = Kind::of(s).colors();
        let _ = writeln!(
            out,
            "{indent}\"{}\" [label=\"{}\\n{}\", fillcolor=\"{fill}\", color=\"{border}\", tooltip=\"{}\"];",
            dot_escape(name),
            dot_escape(name),
            s.state,
            dot_escape(&s.reason)
        );
    };
    for s in plan
        .steps
        .iter()
        .filter(|s| pipeline.step(s.id).template.is_none())
    {
        node(&mut out, s, "  ");
    }
    // The expansions of a matrix or for_each step, boxed under its name.
    for (template, members) in groups(pipeline, plan) {
        let _ = writeln!(
            out,
            "  subgraph \"cluster_{}\" {{\n    label=\"{} ({})\";\n    style=\"rounded,dashed\";",
            dot_escape(template),
            dot_escape(template),
            members.len()
        );
        for s in members {
            node(&mut out, s, "    ");
        }
        out.push_str("  }\n");
    }
    for (from, to) in edges(pipeline, plan) {
        let _ = writeln!(
            out,
            "  \"{}\" -> \"{}\";",
            dot_escape(&pipeline.step(from).name),
            dot_escape(&pipeline.step(to).name)
        );
    }
    out.push_str("}\n");
    out
}

/// The expansions of each template in the plan, templates in plan order.
fn groups<'p>(pipeline: &'p Pipeline, plan: &'p Plan) -> Vec<(&'p str, Vec<&'p StepPlan>)> {
    let mut out: Vec<(&str, Vec<&StepPlan>)> = Vec::new();
    for s in &plan.steps {
        let Some(template) = pipeline.step(s.id).template.as_deref() else {
            continue;
        };
        match out.iter_mut().find(|(t, _)| *t == template) {
            Some((_, members)) => members.push(s),
            None => out.push((template, vec![s])),
        }
    }
    out
}

/// Text for a Mermaid label: labels are HTML, so `<b>` in a matrix value
/// would be markup; Mermaid's entity codes (`#60;`) show each character as
/// itself. `#` is escaped too, since it starts an entity code.
fn mermaid_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '#' => out.push_str("#35;"),
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#60;"),
            '>' => out.push_str("#62;"),
            '&' => out.push_str("#38;"),
            c => out.push(c),
        }
    }
    out
}

/// Mermaid: paste into a Markdown file between ```` ```mermaid ```` fences.
pub fn mermaid(pipeline: &Pipeline, plan: &Plan) -> String {
    let id = |s: StepId| format!("s{}", s.0);
    let mut out = String::from("flowchart LR\n");
    let node = |out: &mut String, s: &StepPlan, indent: &str| {
        let name = &pipeline.step(s.id).name;
        let _ = writeln!(
            out,
            "{indent}{}[\"{}<br/><small>{}</small>\"]",
            id(s.id),
            mermaid_escape(name),
            s.state
        );
    };
    for s in plan
        .steps
        .iter()
        .filter(|s| pipeline.step(s.id).template.is_none())
    {
        node(&mut out, s, "  ");
    }
    for (n, (template, members)) in groups(pipeline, plan).into_iter().enumerate() {
        let _ = writeln!(
            out,
            "  subgraph t{n}[\"{} ({})\"]",
            mermaid_escape(template),
            members.len()
        );
        for s in members {
            node(&mut out, s, "    ");
        }
        out.push_str("  end\n");
    }
    for (from, to) in edges(pipeline, plan) {
        let _ = writeln!(out, "  {} --> {}", id(from), id(to));
    }
    let mut used: Vec<Kind> = Vec::new();
    for s in &plan.steps {
        let kind = Kind::of(s);
        if !used.contains(&kind) {
            used.push(kind);
        }
    }
    for kind in Kind::ALL.into_iter().filter(|k| used.contains(k)) {
        let (fill, border) = kind.colors();
        let _ = writeln!(
            out,
            "  classDef {} fill:{fill},stroke:{border},color:#000",
            kind.class()
        );
        let members: Vec<String> = plan
            .steps
            .iter()
            .filter(|s| Kind::of(s) == kind)
            .map(|s| id(s.id))
            .collect();
        let _ = writeln!(out, "  class {} {}", members.join(","), kind.class());
    }
    out
}

/// `graph --format json`.
pub fn json(pipeline: &Pipeline, plan: &Plan) -> Value {
    let nodes: Vec<Value> = plan
        .steps
        .iter()
        .map(|s| {
            let kind = Kind::of(s);
            json!({
                "name": pipeline.step(s.id).name,
                "action": s.action,
                "state": s.state,
                "reason": s.reason,
                "color": kind.colors().0,
            })
        })
        .collect();
    let edges: Vec<Value> = edges(pipeline, plan)
        .into_iter()
        .map(|(from, to)| json!({ "from": pipeline.step(from).name, "to": pipeline.step(to).name }))
        .collect();
    json!({ "version": GRAPH_VERSION, "nodes": nodes, "edges": edges })
}

/// Where each node of the SVG drawing goes.
struct Layout {
    /// (x, y, width) of each planned step, in plan order.
    boxes: Vec<(f64, f64, f64)>,
    width: f64,
    height: f64,
}

const NODE_H: f64 = 42.0;
const V_GAP: f64 = 14.0;
const H_GAP: f64 = 56.0;
const MARGIN: f64 = 10.0;
/// Roughly the width of a character of the node font.
const CHAR_W: f64 = 7.4;

/// Columns by the longest path from a step that needs nothing; within a
/// column, steps near the steps they need, then in file order.
fn layout(pipeline: &Pipeline, plan: &Plan) -> Layout {
    let n = pipeline.steps.len();
    let mut slot = vec![usize::MAX; n];
    for (i, s) in plan.steps.iter().enumerate() {
        slot[s.id.index()] = i;
    }
    let mut column = vec![0usize; plan.steps.len()];
    for id in pipeline.topological_order() {
        let i = slot[id.index()];
        if i == usize::MAX {
            continue;
        }
        column[i] = pipeline
            .step(id)
            .after
            .iter()
            .filter(|d| slot[d.index()] != usize::MAX)
            .map(|d| column[slot[d.index()]] + 1)
            .max()
            .unwrap_or(0);
    }
    let columns = column.iter().max().map_or(0, |m| m + 1);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); columns];
    for (i, &c) in column.iter().enumerate() {
        members[c].push(i);
    }
    // Row of each step within its column, ordered by the mean row of what
    // it needs (one sweep is enough for pipelines people draw).
    let mut row = vec![0f64; plan.steps.len()];
    for list in &mut members {
        let key = |i: usize| {
            let deps: Vec<f64> = pipeline
                .step(plan.steps[i].id)
                .after
                .iter()
                .filter(|d| slot[d.index()] != usize::MAX)
                .map(|d| row[slot[d.index()]])
                .collect();
            if deps.is_empty() {
                f64::MAX
            } else {
                deps.iter().sum::<f64>() / deps.len() as f64
            }
        };
        let mut keyed: Vec<(f64, usize)> = list.iter().map(|&i| (key(i), i)).collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        *list = keyed.into_iter().map(|(_, i)| i).collect();
        for (r, &i) in list.iter().enumerate() {
            row[i] = r as f64;
        }
    }
    let width_of = |i: usize| {
        let s = &plan.steps[i];
        let chars = pipeline
            .step(s.id)
            .name
            .chars()
            .count()
            .max(s.state.as_str().len());
        (chars as f64 * CHAR_W + 24.0).max(80.0)
    };
    let tallest = members.iter().map(Vec::len).max().unwrap_or(0) as f64;
    let height = tallest * NODE_H + (tallest - 1.0).max(0.0) * V_GAP + 2.0 * MARGIN;
    let mut boxes = vec![(0.0, 0.0, 0.0); plan.steps.len()];
    let mut x = MARGIN;
    for list in &members {
        let col_w = list.iter().map(|&i| width_of(i)).fold(0.0, f64::max);
        let used = list.len() as f64 * NODE_H + (list.len() as f64 - 1.0).max(0.0) * V_GAP;
        let top = (height - used) / 2.0;
        for (r, &i) in list.iter().enumerate() {
            boxes[i] = (x, top + r as f64 * (NODE_H + V_GAP), col_w);
        }
        x += col_w + H_GAP;
    }
    Layout {
        boxes,
        width: (x - H_GAP + MARGIN).max(2.0 * MARGIN),
        height: height.max(2.0 * MARGIN),
    }
}

/// Escapes text for HTML and SVG.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The graph drawn as inline SVG: each node a `<g class="node">` with
/// `data-step` and `data-state`, linking to the step's row `#step-NAME`.
pub fn svg(pipeline: &Pipeline, plan: &Plan) -> String {
    let l = layout(pipeline, plan);
    let mut slot = vec![usize::MAX; pipeline.steps.len()];
    for (i, s) in plan.steps.iter().enumerate() {
        slot[s.id.index()] = i;
    }
    let mut out = format!(
        "<svg class=\"graph\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0}\" height=\"{:.0}\" viewBox=\"0 0 {:.0} {:.0}\" role=\"img\" aria-label=\"dependency graph\">\n",
        l.width, l.height, l.width, l.height
    );
    out.push_str("<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#888\"/></marker></defs>\n");
    for (from, to) in edges(pipeline, plan) {
        let (fx, fy, fw) = l.boxes[slot[from.index()]];
        let (tx, ty, _) = l.boxes[slot[to.index()]];
        let (x1, y1, x2, y2) = (fx + fw, fy + NODE_H / 2.0, tx - 2.0, ty + NODE_H / 2.0);
        let mid = (x1 + x2) / 2.0;
        let _ = writeln!(
            out,
            "<path class=\"edge\" data-from=\"{}\" data-to=\"{}\" d=\"M {x1:.1} {y1:.1} C {mid:.1} {y1:.1}, {mid:.1} {y2:.1}, {x2:.1} {y2:.1}\" fill=\"none\" stroke=\"#888\" stroke-width=\"1.4\" marker-end=\"url(#arrow)\"/>",
            escape_html(&pipeline.step(from).name),
            escape_html(&pipeline.step(to).name)
        );
    }
    for (i, s) in plan.steps.iter().enumerate() {
        let (x, y, w) = l.boxes[i];
        let kind = Kind::of(s);
        let (fill, border) = kind.colors();
        let name = escape_html(&pipeline.step(s.id).name);
        let _ = writeln!(
            out,
            "<a href=\"#step-{name}\"><g class=\"node {}\" data-step=\"{name}\" data-state=\"{}\"><title>{name}: {} ({})</title><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{NODE_H}\" rx=\"7\" fill=\"{fill}\" stroke=\"{border}\" stroke-width=\"1.6\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"name\">{name}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"state\">{}</text></g></a>",
            kind.class(),
            s.state,
            s.state,
            escape_html(&s.reason),
            x + w / 2.0,
            y + 18.0,
            x + w / 2.0,
            y + 33.0,
            s.state
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::history::History;
    use std::path::Path;

    fn diamond() -> (Pipeline, Plan) {
        let src = "[[step]]\nname = \"a\"\nrun = \"true\"\n[[step]]\nname = \"b\"\nrun = \"true\"\n[[step]]\nname = \"c\"\nrun = \"true\"\nafter = [\"a\"]\n[[step]]\nname = \"d\"\nrun = \"true\"\nafter = [\"b\", \"c\"]\n";
        let p = Pipeline::parse(Path::new("p.toml"), Path::new("/"), src).unwrap();
        let plan = crate::plan::plan(&p, &History::default(), &p.scope(&[]), None, None);
        (p, plan)
    }

    #[test]
    fn edges_go_from_a_step_to_what_needs_it() {
        let (p, plan) = diamond();
        let dot = dot(&p, &plan);
        for edge in [
            "\"a\" -> \"b\"",
            "\"a\" -> \"c\"",
            "\"b\" -> \"d\"",
            "\"c\" -> \"d\"",
        ] {
            assert!(dot.contains(edge), "{edge} in\n{dot}");
        }
        let m = mermaid(&p, &plan);
        assert!(m.contains("s0 --> s1") && m.contains("s2 --> s3"), "{m}");
        assert!(m.contains("class s0,s1,s2,s3 will_run"), "{m}");
    }

    #[test]
    fn the_layout_puts_each_step_right_of_what_it_needs() {
        let (p, plan) = diamond();
        let l = layout(&p, &plan);
        let x = |i: usize| l.boxes[i].0;
        assert!(x(0) < x(1) && x(1) == x(2) && x(2) < x(3), "{:?}", l.boxes);
        assert_ne!(l.boxes[1].1, l.boxes[2].1, "b and c do not overlap");
        let svg = svg(&p, &plan);
        assert_eq!(svg.matches("<g class=\"node").count(), 4);
        assert_eq!(svg.matches("class=\"edge\"").count(), 4);
    }

    #[test]
    fn escapes_what_it_embeds() {
        assert_eq!(
            escape_html("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(dot_escape("say \"hi\"\\"), "say \\\"hi\\\"\\\\");
        assert_eq!(
            mermaid_escape("a[v=<b>\"x\"&#1;]"),
            "a[v=#60;b#62;#quot;x#quot;#38;#35;1;]"
        );
    }
}
