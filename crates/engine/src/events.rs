//! What happens during a run, as one stream of events. The human lines on stderr, the NDJSON of
//! `--json` and the timeline are renderers of this stream; the engine emits, never prints.

use serde::Serialize;
use std::sync::Arc;

/// Where a node event happened: the graph id, its kind and region, and the action (the planned
/// one at the start, the one done at the end).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct At {
    pub node: String,
    pub kind: String,
    pub region: String,
    pub action: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    NodeStart {
        #[serde(flatten)]
        at: At,
    },
    /// A wait on AWS began or its reason changed: `waiting_for` is e.g. `creation: backing-up`.
    NodeWait {
        #[serde(flatten)]
        at: At,
        waiting_for: String,
    },
    /// The wait that the last `NodeWait` of this node announced is over.
    NodeWaitEnd {
        #[serde(flatten)]
        at: At,
        wait_s: f64,
    },
    /// A call refused for a reason that clears by itself (eventual consistency) is sent again.
    Retry {
        #[serde(flatten)]
        at: At,
        operation: String,
        code: String,
        attempt: u32,
        delay_s: f64,
    },
    NodeDone {
        #[serde(flatten)]
        at: At,
        elapsed_s: f64,
    },
    NodeFailed {
        #[serde(flatten)]
        at: At,
        operation: String,
        code: String,
        message: String,
        elapsed_s: f64,
    },
    /// Something a watcher should know: a twin deleted, a lost response whose object was found.
    Note {
        #[serde(flatten)]
        at: At,
        message: String,
    },
    /// Every few seconds while nodes run: how far, and what is in flight for how long.
    Progress {
        done: usize,
        total: usize,
        in_flight: Vec<InFlight>,
    },
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct InFlight {
    pub node: String,
    pub elapsed_s: u64,
    pub status: String,
}

impl Event {
    /// The node the event is about, if any.
    pub fn node(&self) -> Option<&str> {
        match self {
            Event::NodeStart { at }
            | Event::NodeWait { at, .. }
            | Event::NodeWaitEnd { at, .. }
            | Event::Retry { at, .. }
            | Event::NodeDone { at, .. }
            | Event::NodeFailed { at, .. }
            | Event::Note { at, .. } => Some(&at.node),
            Event::Progress { .. } => None,
        }
    }
}

pub type Sink = Arc<dyn Fn(&Event) + Send + Sync>;

/// The subscribers of a run's events; cheap to clone.
#[derive(Clone, Default)]
pub struct Events {
    sinks: Vec<Sink>,
}

impl Events {
    pub fn new() -> Events {
        Events::default()
    }

    pub fn with(mut self, sink: Sink) -> Events {
        self.sinks.push(sink);
        self
    }

    pub fn emit(&self, e: Event) {
        for s in &self.sinks {
            s(&e);
        }
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Events({} sinks)", self.sinks.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn node_events_serialize_flat_with_a_type() {
        let at = At {
            node: "primary/vpc".into(),
            kind: "vpc".into(),
            region: "us-east-1".into(),
            action: "create".into(),
        };
        let v = serde_json::to_value(Event::NodeDone { at, elapsed_s: 1.5 }).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "node_done", "node": "primary/vpc", "kind": "vpc",
                "region": "us-east-1", "action": "create", "elapsed_s": 1.5})
        );
    }

    #[test]
    fn every_sink_sees_every_event() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (a, b) = (seen.clone(), seen.clone());
        let events = Events::new()
            .with(Arc::new(move |e: &Event| {
                a.lock().unwrap().push(format!("a {:?}", e.node()))
            }))
            .with(Arc::new(move |e: &Event| {
                b.lock().unwrap().push(format!("b {:?}", e.node()))
            }));
        events.emit(Event::Progress {
            done: 1,
            total: 2,
            in_flight: vec![],
        });
        assert_eq!(*seen.lock().unwrap(), ["a None", "b None"]);
    }
}
