//! Where a run's time went: per node, when it started and ended and when it waited on AWS.
//! Recorded from the event stream, kept in the state file (`tap timeline` redraws the last run),
//! drawn by `crate::timeline_svg`.

use crate::events::{Event, Sink};
use crate::graph::Graph;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Timeline {
    pub command: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub elapsed_s: f64,
    pub bars: Vec<Bar>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Bar {
    pub node: String,
    pub kind: String,
    pub region: String,
    /// The action taken, or `failed`.
    pub action: String,
    pub start_s: f64,
    pub end_s: f64,
    /// Intervals spent waiting on AWS (creation, deletion, readiness), within start..end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waits: Vec<(f64, f64)>,
    #[serde(default)]
    pub critical: bool,
}

/// Subscribes to a run's events and builds its [`Timeline`].
pub struct Recorder {
    t0: Instant,
    inner: Mutex<BTreeMap<String, Bar>>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            t0: Instant::now(),
            inner: Mutex::default(),
        })
    }

    pub fn sink(self: &Arc<Self>) -> Sink {
        let r = self.clone();
        Arc::new(move |e: &Event| r.record(e))
    }

    fn record(&self, e: &Event) {
        let t = self.t0.elapsed().as_secs_f64();
        let mut bars = self.inner.lock().expect("timeline lock");
        match e {
            Event::NodeStart { at } => {
                bars.insert(
                    at.node.clone(),
                    Bar {
                        node: at.node.clone(),
                        kind: at.kind.clone(),
                        region: at.region.clone(),
                        action: at.action.clone(),
                        start_s: t,
                        end_s: t,
                        ..Bar::default()
                    },
                );
            }
            Event::NodeWait { at, .. } => {
                if let Some(b) = bars.get_mut(&at.node)
                    && b.waits.last().is_none_or(|w| w.1 >= 0.0)
                {
                    // Open (end < 0) until NodeWaitEnd.
                    b.waits.push((t, -1.0));
                }
            }
            Event::NodeWaitEnd { at, .. } => {
                if let Some(w) = bars.get_mut(&at.node).and_then(|b| b.waits.last_mut()) {
                    w.1 = t;
                }
            }
            Event::NodeDone { at, .. } | Event::NodeFailed { at, .. } => {
                if let Some(b) = bars.get_mut(&at.node) {
                    b.end_s = t;
                    b.action = match e {
                        Event::NodeFailed { .. } => "failed".into(),
                        _ => at.action.clone(),
                    };
                    for w in &mut b.waits {
                        if w.1 < 0.0 {
                            w.1 = t;
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// The timeline so far, its critical path marked. `reverse`: destroy (dependents first).
    pub fn finish(&self, command: &str, started_at: String, graph: &Graph, reverse: bool) -> Timeline {
        let mut bars: Vec<Bar> = self.inner.lock().expect("timeline lock").values().cloned().collect();
        bars.sort_by(|a, b| a.start_s.total_cmp(&b.start_s).then(a.node.cmp(&b.node)));
        mark_critical(&mut bars, graph, reverse);
        Timeline {
            command: command.into(),
            started_at,
            elapsed_s: self.t0.elapsed().as_secs_f64(),
            bars,
        }
    }
}

/// The chain that bounded the run: from the node that ended last, back through the
/// prerequisite that ended last before each node started.
fn mark_critical(bars: &mut [Bar], graph: &Graph, reverse: bool) {
    let index: BTreeMap<String, usize> = bars.iter().enumerate().map(|(i, b)| (b.node.clone(), i)).collect();
    let prereqs = |id: &str| -> Vec<String> {
        match reverse {
            false => graph.get(id).map(|n| n.deps.clone()).unwrap_or_default(),
            true => graph.dependents(id).into_iter().map(str::to_string).collect(),
        }
    };
    let Some(mut cur) = (0..bars.len()).max_by(|a, b| bars[*a].end_s.total_cmp(&bars[*b].end_s)) else {
        return;
    };
    loop {
        bars[cur].critical = true;
        let start = bars[cur].start_s;
        let prev = prereqs(&bars[cur].node)
            .iter()
            .filter_map(|p| index.get(p).copied())
            .filter(|i| bars[*i].end_s <= start + 0.05)
            .max_by(|a, b| bars[*a].end_s.total_cmp(&bars[*b].end_s));
        match prev {
            Some(p) => cur = p,
            None => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::At;

    fn at(node: &str) -> At {
        At {
            node: node.into(),
            kind: "k".into(),
            region: "us-east-1".into(),
            action: "create".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn records_bars_waits_and_the_chain_that_bounded_the_run() {
        let mut g = Graph::default();
        let a = g.add("primary/a", "r1", "a", &[]).unwrap();
        let b = g.add("primary/b", "r1", "b", std::slice::from_ref(&a)).unwrap();
        let c = g.add("primary/c", "r1", "c", &[]).unwrap();
        let r = Recorder::new();
        let sink = r.sink();
        let step = |s: u64| tokio::time::advance(std::time::Duration::from_secs(s));
        sink(&Event::NodeStart { at: at(&a) });
        sink(&Event::NodeStart { at: at(&c) });
        step(1).await;
        sink(&Event::NodeDone {
            at: at(&c),
            elapsed_s: 1.0,
        });
        step(1).await;
        sink(&Event::NodeDone {
            at: at(&a),
            elapsed_s: 2.0,
        });
        sink(&Event::NodeStart { at: at(&b) });
        sink(&Event::NodeWait {
            at: at(&b),
            waiting_for: "creation: creating".into(),
        });
        step(5).await;
        sink(&Event::NodeWaitEnd {
            at: at(&b),
            wait_s: 5.0,
        });
        sink(&Event::NodeDone {
            at: at(&b),
            elapsed_s: 5.0,
        });
        let t = r.finish("deploy", "now".into(), &g, false);
        let bar = |id: &str| t.bars.iter().find(|x| x.node == id).unwrap().clone();
        assert_eq!((bar(&b).start_s, bar(&b).end_s), (2.0, 7.0));
        assert_eq!(bar(&b).waits, [(2.0, 7.0)]);
        assert!(bar(&a).critical && bar(&b).critical && !bar(&c).critical);
    }
}
