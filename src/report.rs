//! What a run prints when it ends (summary, plan, outputs, failures) and the read-only commands
//! that print from the state file (`status`, `output`, `timeline`). Lines go through
//! [`render::out`]; NDJSON through [`render::json_line`].

use crate::app::{self, AppError, Command, NodeLine, Options, Outcome, Report};
use crate::engine::reconcile::Action;
use crate::engine::state::State;
use crate::render::{self, out};

/// `println!` through [`render::out`]: a closed stdout is not a panic.
macro_rules! outln {
    ($($t:tt)*) => {
        render::out(&format!($($t)*))
    };
}

pub(crate) fn finish(report: &Report, json: bool, t0: std::time::Instant) -> Result<i32, AppError> {
    let code = finish_report(report, json, t0);
    if let Some(conflict) = &report.state_conflict {
        return Err(AppError::Failed(conflict.clone()));
    }
    Ok(if report.interrupted { 130 } else { code })
}

fn finish_report(report: &Report, json: bool, t0: std::time::Instant) -> i32 {
    let c = report.counts();
    let failures = report.failures();
    if json {
        for v in render::output_values(&report.outputs) {
            render::json_line(v);
        }
        let command = match report.command {
            Command::Destroy => "destroy",
            _ => "deploy",
        };
        render::json_line(render::summary(command, &report.nodes, t0.elapsed().as_secs_f64()));
    } else {
        if report.interrupted {
            out("Interrupted: the state file is saved; run the same command again to resume.");
        }
        // Interrupted nodes did not fail: they are counted apart (as NDJSON does).
        let interrupted = failures
            .iter()
            .filter(|f| matches!(f.outcome, Outcome::Interrupted))
            .count();
        let stopped = match interrupted {
            0 => String::new(),
            n => format!(", {n} interrupted"),
        };
        out(&format!(
            "{}: {} created, {} updated, {} replaced, {} deleted, {} unchanged, {} failed{stopped}.",
            match report.command {
                Command::Destroy => "Destroy",
                _ => "Deploy",
            },
            c["create"],
            c["update"],
            c["replace"],
            c["delete"],
            c["unchanged"],
            failures.len() - interrupted
        ));
        print_outputs(&report.outputs);
    }
    if failures.is_empty() {
        return 0;
    }
    render::err(&format!("\n{} node(s) did not complete:", failures.len()));
    for f in failures {
        match &f.outcome {
            Outcome::Failed { error, .. } => render::err(&format!("  {} ({}): {error}", f.id, f.region)),
            Outcome::Blocked { by } => render::err(&format!(
                "  {} ({}): not attempted, depends on failed {by}",
                f.id, f.region
            )),
            Outcome::Interrupted => render::err(&format!(
                "  {} ({}): interrupted; the next run resumes it",
                f.id, f.region
            )),
            Outcome::Done(_) => {}
        }
    }
    1
}

pub(crate) fn print_plan(nodes: &[NodeLine], json: bool, verbose: bool) {
    let c = app::counts(nodes);
    if json {
        for n in nodes {
            render::json_line(render::node_value("plan", n));
        }
        return;
    }
    for n in nodes {
        match &n.outcome {
            Outcome::Done(Action::None) if !verbose => {}
            Outcome::Done(a) => {
                let sign = match a {
                    Action::Create => "+",
                    Action::Update { .. } => "~",
                    Action::Replace { .. } => "-/+",
                    Action::Delete => "-",
                    _ => " ",
                };
                match a {
                    Action::Replace { because, .. } => {
                        outln!(
                            "{sign} {} ({}): replace, because {} cannot change in place",
                            n.id,
                            n.region,
                            because.join(", ")
                        )
                    }
                    // Left alone (a held node: reprotect pending; not this stack's object).
                    Action::Skip { reason } => outln!("  {} ({}): left as it is: {reason}", n.id, n.region),
                    _ => outln!("{sign} {} ({}): {}", n.id, n.region, a.verb(false)),
                }
                if let Action::Update { changes } | Action::Replace { changes, .. } = a {
                    for ch in changes {
                        outln!("      {}: {} -> {}", ch.key, ch.old, ch.new);
                    }
                }
            }
            Outcome::Failed { error, .. } => outln!("! {} ({}): cannot plan: {error}", n.id, n.region),
            Outcome::Blocked { by } => outln!("? {} ({}): unknown, depends on {by}", n.id, n.region),
            Outcome::Interrupted => outln!("? {} ({}): not planned (interrupted)", n.id, n.region),
        }
        for t in &n.twins {
            outln!("- {} ({}): delete (twin of {}): {t}", n.id, n.region, n.id);
        }
    }
    outln!(
        "Plan: {} to create, {} to update, {} to replace, {} to delete, {} unchanged.",
        c["create"],
        c["update"],
        c["replace"],
        c["delete"],
        c["unchanged"]
    );
}

fn print_outputs(outputs: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>) {
    if outputs.is_empty() {
        return;
    }
    outln!("\nOutputs:");
    for (region, o) in outputs {
        for (k, v) in o {
            outln!("  {region} {k} = {v}");
        }
    }
}

pub(crate) fn write_timeline(
    file: &std::path::Path,
    t: &crate::engine::timeline::Timeline,
    opts: &Options,
) -> Result<(), AppError> {
    let svg = crate::timeline_svg::render(t, &opts.inputs.topology.regions().collect::<Vec<_>>());
    std::fs::write(file, svg).map_err(|e| AppError::context(format!("writing timeline {}", file.display()), e))?;
    render::err(&format!("timeline written to {}", file.display()));
    Ok(())
}

/// `tap output`: every output, or the raw value of one (for `$(...)` in scripts).
pub(crate) fn output(
    opts: &Options,
    state: &State,
    name: Option<&str>,
    region: Option<&str>,
    json: bool,
) -> Result<i32, AppError> {
    let outputs: std::collections::BTreeMap<&String, _> = state
        .outputs
        .iter()
        .filter(|(r, _)| region.is_none_or(|want| want == r.as_str()))
        .collect();
    let Some(name) = name else {
        match json {
            true => out(&serde_json::to_string(&outputs).expect("outputs serialize")),
            false => print_outputs(&outputs.into_iter().map(|(r, o)| (r.clone(), o.clone())).collect()),
        }
        return Ok(0);
    };
    let found: Vec<(&String, &String)> = outputs
        .iter()
        .filter_map(|(r, o)| o.get(name).map(|v| (*r, v)))
        .collect();
    match found.as_slice() {
        [(_, v)] => {
            match json {
                true => out(&serde_json::to_string(v).expect("string serializes")),
                false => out(v),
            }
            Ok(0)
        }
        [] => {
            let known: std::collections::BTreeSet<&String> = state.outputs.values().flat_map(|o| o.keys()).collect();
            Err(AppError::Failed(format!(
                "no output {name:?}{} in {} (outputs: {})",
                region.map(|r| format!(" in {r}")).unwrap_or_default(),
                opts.state_path.display(),
                known.into_iter().cloned().collect::<Vec<_>>().join(", ")
            )))
        }
        many => Err(AppError::Usage(format!(
            "output {name:?} exists in {}; choose one with --region",
            many.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>().join(" and ")
        ))),
    }
}

pub(crate) fn status(opts: &Options, state: &State, where_: &str, json: bool) -> Result<i32, AppError> {
    let graph = app::graph_of(&app::with_recorded_topology(&opts.inputs, state));
    if json {
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for n in graph.nodes() {
            let s = state.nodes.get(&n.id);
            let status = s.map_or("absent".to_string(), |s| format!("{:?}", s.status).to_lowercase());
            *counts.entry(status.clone()).or_default() += 1;
            render::json_line(serde_json::json!({
                "type": "node",
                "node": n.id,
                "kind": n.kind,
                "region": n.region,
                "status": status,
                "physical_id": s.and_then(|s| s.physical_id.clone()),
                "arn": s.and_then(|s| s.arn.clone()),
                "error": s.and_then(|s| s.error.clone()),
                "updated_at": s.map(|s| s.updated_at.clone()),
            }));
        }
        for v in render::output_values(&state.outputs) {
            render::json_line(v);
        }
        let mut summary = serde_json::json!({"type": "summary", "command": "status", "nodes": graph.len(),
            "serial": state.serial, "lineage": state.lineage,
            "writer_region": state.writer_region.as_deref().unwrap_or(opts.inputs.topology.home()),
            "dr": crate::dr::record::summary(state, opts.inputs.topology.home())});
        for (k, n) in counts {
            summary[k] = serde_json::json!(n);
        }
        render::json_line(summary);
        return Ok(0);
    }
    outln!(
        "env {} · state {} (serial {}, lineage {})",
        opts.inputs.env,
        where_,
        state.serial,
        state.lineage
    );
    for line in crate::dr::record::summary(state, opts.inputs.topology.home()) {
        outln!("{line}");
    }
    for n in graph.nodes() {
        let line = match state.nodes.get(&n.id) {
            None => "absent".to_string(),
            Some(s) => {
                let mut l = format!("{:?}", s.status).to_lowercase();
                if let Some(id) = &s.physical_id {
                    l.push_str(&format!("  {id}"));
                }
                for (k, v) in &s.attrs {
                    if k.starts_with("status") {
                        l.push_str(&format!("  ({k}: {v})"));
                    }
                }
                if let Some(e) = &s.error {
                    l.push_str(&format!("  error: {e}"));
                }
                l
            }
        };
        outln!("  {:<36} {line}", n.id);
    }
    print_outputs(&state.outputs);
    Ok(0)
}
