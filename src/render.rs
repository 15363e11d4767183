//! Renderers of a run's event stream and of its results: human lines (stderr) and NDJSON
//! (`--json`, stdout). The only place that writes what a user reads.

use crate::engine::events::{Event, Sink};
use crate::engine::reconcile::Action;
use crate::engine::resource::INTERRUPTED;
use crate::run::{self, NodeLine, Outcome};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// One line on stdout. A closed stdout (`tap plan --json | head -1`) is the reader's choice:
/// the line is dropped, the run goes on and exits as it would have, no panic.
pub fn out(line: &str) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut o = std::io::stdout().lock();
    if writeln!(o, "{line}").and_then(|_| o.flush()).is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// One line on stderr; a closed stderr is ignored too.
pub fn err(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// One NDJSON object on stdout, stamped with `ts` (RFC 3339, UTC).
pub fn json_line(mut v: Value) {
    if let Value::Object(m) = &mut v {
        m.insert(
            "ts".into(),
            json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
    }
    out(&v.to_string());
}

/// `--json`: every event as one NDJSON line on stdout.
pub fn json() -> Sink {
    Arc::new(|e: &Event| json_line(serde_json::to_value(e).expect("events serialize")))
}

/// Every event as a `tracing` diagnostic (target `tap::events`, debug level), inside the span
/// of the node that emitted it: `RUST_LOG=tap=debug` shows the run span by span.
pub fn diagnostics() -> Sink {
    Arc::new(|e: &Event| {
        if tracing::enabled!(target: "tap::events", tracing::Level::DEBUG) {
            tracing::debug!(target: "tap::events", "{}", serde_json::to_string(e).expect("events serialize"));
        }
    })
}

fn past(action: &str) -> &str {
    match action {
        "create" => "created",
        "update" => "updated",
        "replace" => "replaced",
        "delete" => "deleted",
        other => other,
    }
}

/// The human view on stderr: a line per finished node, per wait reason, per retry, and a
/// progress line while long waits run.
pub fn human() -> Sink {
    Arc::new(|e: &Event| {
        let line = match e {
            Event::NodeStart { .. } | Event::NodeWaitEnd { .. } => return,
            Event::NodeWait { at, waiting_for } => format!("  {}: waiting for {waiting_for}", at.node),
            Event::Retry {
                at,
                operation,
                code,
                attempt,
                delay_s,
            } => format!("  {}: {operation} ({code}), retry {attempt} in {delay_s:.1}s", at.node),
            Event::NodeDone { at, elapsed_s } => format!("  {}: {} ({elapsed_s:.1}s)", at.node, past(&at.action)),
            // An interrupted node did not fail: the next run resumes it.
            Event::NodeFailed { at, code, .. } if code == INTERRUPTED => {
                format!("  {}: interrupted; the next run resumes it", at.node)
            }
            Event::NodeFailed { at, message, .. } => format!("  {}: FAILED: {message}", at.node),
            Event::Note { at, message } => format!("  {}: {message}", at.node),
            Event::Progress { done, total, in_flight } => {
                let items: Vec<String> = in_flight
                    .iter()
                    .map(|f| format!("{} ({}s, {})", f.node, f.elapsed_s, f.status))
                    .collect();
                format!("  … {done}/{total} done; in flight: {}", items.join(", "))
            }
        };
        err(&line);
    })
}

/// A node of a plan or a result as one JSON object of type `kind`.
pub fn node_value(kind: &str, n: &NodeLine) -> Value {
    let mut v = json!({"type": kind, "node": n.id, "kind": n.kind, "region": n.region});
    let m = v.as_object_mut().expect("object");
    match &n.outcome {
        Outcome::Done(a) => {
            m.insert("action".into(), json!(a.verb(false)));
            match a {
                Action::Update { changes } => {
                    m.insert("changes".into(), json!(changes));
                }
                Action::Replace { changes, because } => {
                    m.insert("changes".into(), json!(changes));
                    m.insert("because".into(), json!(because));
                }
                Action::Skip { reason } => {
                    m.insert("reason".into(), json!(reason));
                }
                _ => {}
            }
        }
        Outcome::Failed { error, code, operation } => {
            m.insert("action".into(), json!("failed"));
            m.insert("operation".into(), json!(operation));
            m.insert("code".into(), json!(code));
            m.insert("message".into(), json!(error));
        }
        Outcome::Blocked { by } => {
            m.insert("action".into(), json!("blocked"));
            m.insert("blocked_by".into(), json!(by));
        }
        Outcome::Interrupted => {
            m.insert("action".into(), json!("interrupted"));
        }
    }
    if !n.twins.is_empty() {
        m.insert("twins".into(), json!(n.twins));
    }
    v
}

/// The last line of every `--json` run.
pub fn summary(command: &str, nodes: &[NodeLine], elapsed_s: f64) -> Value {
    let c = run::counts(nodes);
    let get = |k: &str| c.get(k).copied().unwrap_or(0);
    json!({
        "type": "summary",
        "command": command,
        "nodes": nodes.len(),
        "created": get("create"),
        "updated": get("update"),
        "replaced": get("replace"),
        "deleted": get("delete"),
        "unchanged": get("unchanged"),
        "failed": get("failed"),
        "interrupted": get("interrupted"),
        "elapsed_s": (elapsed_s * 10.0).round() / 10.0,
    })
}

/// Outputs as `output` lines.
pub fn output_values(outputs: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Value> {
    outputs
        .iter()
        .flat_map(|(region, o)| {
            o.iter()
                .map(move |(k, v)| json!({"type": "output", "region": region, "name": k, "value": v}))
        })
        .collect()
}

/// The live view on a terminal (stderr): done/total, one line per node in flight with its
/// elapsed time and what it waits for, a typical duration for the long waits; finished nodes
/// scroll above as plain lines. Drawn from the first node on (the plan and any prompt first).
pub fn live(total: usize) -> Sink {
    use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
    use std::sync::Mutex;
    use std::time::Duration;
    struct View {
        mp: MultiProgress,
        main: ProgressBar,
        nodes: BTreeMap<String, ProgressBar>,
    }
    let view: Mutex<Option<View>> = Mutex::default();
    let style = ProgressStyle::with_template("  {spinner} {elapsed:>4} {msg}").expect("template");
    let plain = human();
    Arc::new(move |e: &Event| {
        let mut guard = view.lock().expect("live view");
        let v = guard.get_or_insert_with(|| {
            let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let main = mp.add(ProgressBar::new(total as u64));
            main.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} nodes")
                    .expect("template")
                    .progress_chars("=> "),
            );
            main.enable_steady_tick(Duration::from_millis(250));
            View {
                mp,
                main,
                nodes: BTreeMap::new(),
            }
        });
        match e {
            Event::NodeStart { at } => {
                let pb = v.mp.insert_before(&v.main, ProgressBar::new_spinner());
                pb.set_style(style.clone());
                pb.enable_steady_tick(Duration::from_millis(250));
                pb.set_message(format!("{}: {}", at.node, at.action));
                v.nodes.insert(at.node.clone(), pb);
            }
            Event::NodeWait { at, waiting_for } => {
                if let Some(pb) = v.nodes.get(&at.node) {
                    let typical = crate::kinds::typical_seconds(&at.kind);
                    let hint = match typical >= 60.0 {
                        true => format!(" (typically ~{} on AWS)", crate::timeline_svg::duration(typical)),
                        false => String::new(),
                    };
                    pb.set_message(format!("{}: waiting for {waiting_for}{hint}", at.node));
                }
            }
            Event::NodeDone { at, .. } | Event::NodeFailed { at, .. } => {
                if let Some(pb) = v.nodes.remove(&at.node) {
                    pb.finish_and_clear();
                    v.mp.remove(&pb);
                }
                v.main.inc(1);
                v.mp.suspend(|| plain(e));
            }
            // The live view shows what progress lines would.
            Event::Progress { .. } | Event::NodeWaitEnd { .. } => {}
            Event::Retry { .. } | Event::Note { .. } => v.mp.suspend(|| plain(e)),
        }
        if v.main.position() >= v.main.length().unwrap_or(0) && v.nodes.is_empty() {
            v.main.finish_and_clear();
        }
    })
}
