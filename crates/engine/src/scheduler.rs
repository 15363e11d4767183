//! Dispatches every node the moment its prerequisites are done (no level barrier). A failed
//! node blocks only what depends on it; everything else still runs. Each node runs exactly once.

use crate::cancel::Cancel;
use crate::events::{Event, Events, InFlight};
use crate::graph::Graph;
use crate::resource::NodeError;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Dependencies first (deploy, plan).
    Forward,
    /// Dependents first (destroy).
    Reverse,
}

#[derive(Debug)]
pub enum NodeResult<O> {
    Done(O),
    Failed(NodeError),
    /// Not run because a prerequisite failed (named).
    Blocked(String),
    /// Not started, or stopped after the grace period, because the run was interrupted.
    Interrupted,
}

/// After Ctrl-C, how long in-flight nodes may take to finish their calls or reach their next
/// wait before they are stopped (their state is saved at every transition).
pub const GRACE: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct NodeReport<O> {
    pub id: String,
    pub result: NodeResult<O>,
    pub elapsed: Duration,
}

/// What is in flight, for progress lines while long waits run.
#[derive(Default)]
pub struct Progress {
    inner: Mutex<ProgressInner>,
    /// Where progress events go (every `every` of [`run`]).
    pub events: Events,
}

#[derive(Default)]
struct ProgressInner {
    total: usize,
    done: usize,
    in_flight: BTreeMap<String, (Instant, String)>,
}

impl Progress {
    pub fn new(events: Events) -> Progress {
        Progress {
            inner: Mutex::default(),
            events,
        }
    }

    pub fn set_status(&self, id: &str, status: &str) {
        if let Some(e) = self.inner.lock().expect("progress lock").in_flight.get_mut(id) {
            e.1 = status.to_string();
        }
    }

    fn start(&self, id: &str) {
        let mut g = self.inner.lock().expect("progress lock");
        g.in_flight.insert(id.to_string(), (Instant::now(), "running".into()));
    }

    fn finish(&self, id: &str) {
        let mut g = self.inner.lock().expect("progress lock");
        g.in_flight.remove(id);
        g.done += 1;
    }

    /// What is done and in flight now; `None` when nothing is in flight.
    pub fn snapshot(&self) -> Option<Event> {
        let g = self.inner.lock().expect("progress lock");
        if g.in_flight.is_empty() {
            return None;
        }
        let now = Instant::now();
        let in_flight = g
            .in_flight
            .iter()
            .map(|(id, (t, s))| InFlight {
                node: id.clone(),
                elapsed_s: now.duration_since(*t).as_secs(),
                status: s.clone(),
            })
            .collect();
        Some(Event::Progress {
            done: g.done,
            total: g.total,
            in_flight,
        })
    }
}

/// Runs `work` for every node of `graph` in dependency order. `every` > 0 emits a progress
/// event at that interval while nodes are in flight. Once `cancel` is set no node
/// starts; nodes in flight get [`GRACE`] to finish, then are stopped.
pub async fn run<O, W, Fut>(
    graph: &Graph,
    direction: Direction,
    progress: Arc<Progress>,
    every: Duration,
    cancel: &Cancel,
    work: W,
) -> Vec<NodeReport<O>>
where
    O: Send + 'static,
    W: Fn(String) -> Fut,
    Fut: Future<Output = Result<O, NodeError>> + Send + 'static,
{
    // prereqs[id]: what must finish first; next[id]: what waits on id.
    let mut prereqs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut next: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in graph.nodes() {
        prereqs.entry(n.id.clone()).or_default();
        for d in &n.deps {
            let (before, after) = match direction {
                Direction::Forward => (d.clone(), n.id.clone()),
                Direction::Reverse => (n.id.clone(), d.clone()),
            };
            prereqs.entry(after.clone()).or_default().insert(before.clone());
            next.entry(before).or_default().push(after);
        }
    }
    progress.inner.lock().expect("progress lock").total = prereqs.len();

    let ticker = (!every.is_zero()).then(|| {
        let p = progress.clone();
        tokio::spawn(async move {
            let mut iv = tokio::time::interval_at(Instant::now() + every, every);
            loop {
                iv.tick().await;
                if let Some(e) = p.snapshot() {
                    p.events.emit(e);
                }
            }
        })
    });

    let mut reports = Vec::new();
    let mut blocked: BTreeMap<String, String> = BTreeMap::new();
    let mut tasks: JoinSet<(String, Instant, Result<O, NodeError>)> = JoinSet::new();
    let mut running: BTreeMap<tokio::task::Id, (String, Instant)> = BTreeMap::new();
    let spawn = |id: String, tasks: &mut JoinSet<_>, running: &mut BTreeMap<_, _>, reports: &mut Vec<NodeReport<O>>| {
        if cancel.is_set() {
            reports.push(NodeReport {
                id,
                result: NodeResult::Interrupted,
                elapsed: Duration::ZERO,
            });
            return;
        }
        progress.start(&id);
        let fut = work(id.clone());
        let t0 = Instant::now();
        let task_id = id.clone();
        let h = tasks.spawn(async move {
            let r = fut.await;
            (task_id, t0, r)
        });
        running.insert(h.id(), (id, t0));
    };
    let ready: Vec<String> = prereqs
        .iter()
        .filter(|(_, p)| p.is_empty())
        .map(|(k, _)| k.clone())
        .collect();
    for id in ready {
        spawn(id, &mut tasks, &mut running, &mut reports);
    }
    let mut deadline: Option<Instant> = None;
    loop {
        let joined = tokio::select! {
            j = tasks.join_next_with_id() => match j {
                Some(j) => j,
                None => break,
            },
            _ = cancel.cancelled(), if deadline.is_none() => {
                deadline = Some(Instant::now() + GRACE);
                continue;
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                tasks.abort_all();
                deadline = Some(Instant::now() + Duration::from_secs(3600));
                continue;
            }
        };
        let (id, t0, result) = match joined {
            Ok((_, r)) => r,
            Err(e) if e.is_cancelled() => {
                let (id, t0) = running.remove(&e.id()).expect("aborted task was running");
                progress.finish(&id);
                reports.push(NodeReport {
                    id: id.clone(),
                    result: NodeResult::Interrupted,
                    elapsed: t0.elapsed(),
                });
                continue;
            }
            Err(e) => panic!("node task panicked: {e}"),
        };
        running.retain(|_, (i, _)| *i != id);
        progress.finish(&id);
        // Once interrupted, what follows is reported as interrupted, not as blocked.
        let ok = result.is_ok() || cancel.is_set();
        reports.push(NodeReport {
            id: id.clone(),
            result: match result {
                Ok(o) => NodeResult::Done(o),
                Err(e) => NodeResult::Failed(e),
            },
            elapsed: t0.elapsed(),
        });
        for succ in next.get(&id).cloned().unwrap_or_default() {
            if !ok {
                blocked.entry(succ.clone()).or_insert_with(|| id.clone());
            }
            let p = prereqs.get_mut(&succ).expect("successor is a node");
            p.remove(&id);
            if p.is_empty() {
                match blocked.get(&succ) {
                    None => spawn(succ, &mut tasks, &mut running, &mut reports),
                    Some(by) => {
                        // Propagate the block to its successors in turn.
                        let by = by.clone();
                        block_all(&succ, &by, &next, &mut prereqs, &mut blocked, &mut reports);
                    }
                }
            }
        }
    }
    if let Some(t) = ticker {
        t.abort();
    }
    // Nodes whose prerequisites were stopped by an interruption never became ready.
    let seen: BTreeSet<String> = reports.iter().map(|r| r.id.clone()).collect();
    for id in prereqs.keys().filter(|id| !seen.contains(*id)) {
        reports.push(NodeReport {
            id: id.clone(),
            result: NodeResult::Interrupted,
            elapsed: Duration::ZERO,
        });
    }
    reports
}

fn block_all<O>(
    id: &str,
    by: &str,
    next: &BTreeMap<String, Vec<String>>,
    prereqs: &mut BTreeMap<String, BTreeSet<String>>,
    blocked: &mut BTreeMap<String, String>,
    reports: &mut Vec<NodeReport<O>>,
) {
    reports.push(NodeReport {
        id: id.to_string(),
        result: NodeResult::Blocked(by.to_string()),
        elapsed: Duration::ZERO,
    });
    for succ in next.get(id).cloned().unwrap_or_default() {
        blocked.entry(succ.clone()).or_insert_with(|| by.to_string());
        let p = prereqs.get_mut(&succ).expect("successor is a node");
        p.remove(id);
        if p.is_empty() {
            block_all(&succ, by, next, prereqs, blocked, reports);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::NodeError;

    fn graph() -> Graph {
        // a -> b -> d ; c (independent, slow) ; a -> e
        let mut g = Graph::default();
        let a = g.add("primary/a", "r1", "a", &[]).unwrap();
        let b = g.add("primary/b", "r1", "b", std::slice::from_ref(&a)).unwrap();
        g.add("secondary/c", "r2", "c", &[]).unwrap();
        g.add("primary/d", "r1", "d", &[b]).unwrap();
        g.add("primary/e", "r1", "e", &[a]).unwrap();
        g
    }

    #[tokio::test(start_paused = true)]
    async fn dispatches_without_level_barrier() {
        let g = graph();
        let log = Arc::new(Mutex::new(Vec::<(String, u64)>::new()));
        let t0 = Instant::now();
        let l2 = log.clone();
        let reports = run(
            &g,
            Direction::Forward,
            Arc::default(),
            Duration::ZERO,
            &Cancel::default(),
            move |id: String| {
                let log = l2.clone();
                async move {
                    // c is slow; b and d must not wait for it.
                    let secs = if id == "secondary/c" { 100 } else { 1 };
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                    log.lock().unwrap().push((id, t0.elapsed().as_secs()));
                    Ok::<_, NodeError>(())
                }
            },
        )
        .await;
        assert_eq!(reports.len(), 5);
        let log = log.lock().unwrap().clone();
        let at = |id: &str| log.iter().find(|(i, _)| i == id).unwrap().1;
        assert_eq!(at("primary/a"), 1);
        assert_eq!(at("primary/b"), 2);
        assert_eq!(at("primary/d"), 3, "d ran while the slow c was still in flight");
        assert_eq!(at("secondary/c"), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn failure_blocks_only_dependents() {
        let g = graph();
        let reports = run(
            &g,
            Direction::Forward,
            Arc::default(),
            Duration::ZERO,
            &Cancel::default(),
            |id: String| async move {
                if id == "primary/b" {
                    Err(NodeError::fatal("CreateThing", "ValidationError", "no"))
                } else {
                    Ok(())
                }
            },
        )
        .await;
        let by_id: BTreeMap<_, _> = reports.iter().map(|r| (r.id.as_str(), &r.result)).collect();
        assert!(matches!(by_id["primary/b"], NodeResult::Failed(_)));
        assert!(matches!(by_id["primary/d"], NodeResult::Blocked(b) if b == "primary/b"));
        for ok in ["primary/a", "secondary/c", "primary/e"] {
            assert!(matches!(by_id[ok], NodeResult::Done(())), "{ok}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reverse_runs_dependents_first() {
        let g = graph();
        let order = Arc::new(Mutex::new(Vec::new()));
        let o2 = order.clone();
        run(
            &g,
            Direction::Reverse,
            Arc::default(),
            Duration::ZERO,
            &Cancel::default(),
            move |id: String| {
                let o = o2.clone();
                async move {
                    o.lock().unwrap().push(id);
                    Ok::<_, NodeError>(())
                }
            },
        )
        .await;
        let order = order.lock().unwrap().clone();
        let pos = |x: &str| order.iter().position(|o| o == x).unwrap();
        assert!(pos("primary/d") < pos("primary/b") && pos("primary/b") < pos("primary/a"));
        assert!(pos("primary/e") < pos("primary/a"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_interrupt_starts_no_new_node_and_stops_stragglers_after_the_grace() {
        let g = graph();
        let cancel = Cancel::default();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            c2.trigger();
        });
        let t0 = Instant::now();
        let reports = run(
            &g,
            Direction::Forward,
            Arc::default(),
            Duration::ZERO,
            &cancel,
            |id: String| async move {
                // b and c ignore the interruption; e finishes within the grace period.
                let secs = match id.as_str() {
                    "secondary/c" => 1000,
                    "primary/b" => 10,
                    _ => 1,
                };
                tokio::time::sleep(Duration::from_secs(secs)).await;
                Ok::<_, NodeError>(())
            },
        )
        .await;
        assert_eq!(t0.elapsed(), Duration::from_millis(1500) + GRACE);
        let by_id: BTreeMap<_, _> = reports.iter().map(|r| (r.id.as_str(), &r.result)).collect();
        assert_eq!(by_id.len(), 5);
        for done in ["primary/a", "primary/e"] {
            assert!(matches!(by_id[done], NodeResult::Done(())), "{done}");
        }
        for stopped in ["primary/b", "secondary/c", "primary/d"] {
            assert!(matches!(by_id[stopped], NodeResult::Interrupted), "{stopped}");
        }
    }
}
