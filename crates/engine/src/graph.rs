//! The dependency graph: nodes keyed by logical id (`primary/s3-bucket`), explicit edges.
//! Knows nothing of AWS nor of how regions are laid out: a node's region is an opaque key that
//! the stack chooses (and the driver hands to the kind).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[derive(Clone, Debug)]
pub struct Node {
    /// Logical id, also the value of the `tap:id` tag.
    pub id: String,
    /// Resource kind, e.g. `s3-bucket`; selects the implementation.
    pub kind: &'static str,
    /// The region the node lives in (an opaque key to the engine, e.g. `us-east-1`).
    pub region: String,
    /// Logical ids this node needs first.
    pub deps: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Graph {
    nodes: BTreeMap<String, Node>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GraphError {
    #[error("node {0} is defined twice")]
    Duplicate(String),
    #[error("node {from} depends on {to}, which is not in the graph")]
    Dangling { from: String, to: String },
    #[error("the graph has a cycle through {0}")]
    Cycle(String),
}

impl Graph {
    /// Adds node `id` of `kind` in `region`, needing `deps` first; returns its id.
    pub fn add(
        &mut self,
        id: impl Into<String>,
        region: &str,
        kind: &'static str,
        deps: &[String],
    ) -> Result<String, GraphError> {
        let id = id.into();
        if self.nodes.contains_key(&id) {
            return Err(GraphError::Duplicate(id));
        }
        let mut deps = deps.to_vec();
        deps.sort();
        deps.dedup();
        let node = Node {
            id: id.clone(),
            kind,
            region: region.to_string(),
            deps,
        };
        self.nodes.insert(id.clone(), node);
        Ok(id)
    }

    pub fn get(&self, id: &str) -> Option<&Node> {
        self.nodes.get(id)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.nodes.contains_key(id)
    }

    /// The nodes that name `id` among their dependencies.
    pub fn dependents(&self, id: &str) -> Vec<&str> {
        self.nodes
            .values()
            .filter(|n| n.deps.iter().any(|d| d == id))
            .map(|n| n.id.as_str())
            .collect()
    }

    /// Every node that depends on `id`, directly or not.
    pub fn transitive_dependents(&self, id: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut queue = VecDeque::from([id.to_string()]);
        while let Some(cur) = queue.pop_front() {
            for d in self.dependents(&cur) {
                if out.insert(d.to_string()) {
                    queue.push_back(d.to_string());
                }
            }
        }
        out
    }

    /// Every edge names a node and there is no cycle; returns a topological order.
    pub fn validate(&self) -> Result<Vec<String>, GraphError> {
        for n in self.nodes.values() {
            for d in &n.deps {
                if !self.nodes.contains_key(d) {
                    return Err(GraphError::Dangling {
                        from: n.id.clone(),
                        to: d.clone(),
                    });
                }
            }
        }
        let mut indeg: BTreeMap<&str, usize> = self.nodes.values().map(|n| (n.id.as_str(), n.deps.len())).collect();
        let mut ready: VecDeque<&str> = indeg.iter().filter(|(_, d)| **d == 0).map(|(k, _)| *k).collect();
        let mut order = Vec::with_capacity(self.nodes.len());
        while let Some(id) = ready.pop_front() {
            order.push(id.to_string());
            for dep in self.dependents(id) {
                let e = indeg.get_mut(dep).expect("dependent is a node");
                *e -= 1;
                if *e == 0 {
                    ready.push_back(dep);
                }
            }
        }
        if order.len() != self.nodes.len() {
            let stuck = indeg
                .iter()
                .find(|(_, d)| **d > 0)
                .map(|(k, _)| k.to_string())
                .unwrap_or_default();
            return Err(GraphError::Cycle(stuck));
        }
        Ok(order)
    }

    /// The longest chain of dependencies when each node takes `secs(node)`: what bounds a run
    /// however parallel it is. From the first node to the last.
    pub fn critical_path(&self, secs: impl Fn(&Node) -> f64) -> Vec<String> {
        let Ok(order) = self.validate() else {
            return vec![];
        };
        // finish[id]: the earliest it can finish; via[id]: the dependency that bounds its start.
        let mut finish: BTreeMap<&str, f64> = BTreeMap::new();
        let mut via: BTreeMap<&str, &str> = BTreeMap::new();
        for id in &order {
            let n = &self.nodes[id];
            let mut start = 0.0;
            for d in &n.deps {
                let f = finish[d.as_str()];
                if f > start || !via.contains_key(n.id.as_str()) && f >= start {
                    start = f;
                    via.insert(&n.id, d);
                }
            }
            finish.insert(&n.id, start + secs(n));
        }
        let Some((mut cur, _)) = finish.iter().max_by(|a, b| a.1.total_cmp(b.1)).map(|(k, v)| (*k, *v)) else {
            return vec![];
        };
        let mut path = vec![cur.to_string()];
        while let Some(prev) = via.get(cur) {
            path.push(prev.to_string());
            cur = prev;
        }
        path.reverse();
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_critical_path_is_the_longest_chain() {
        let mut g = Graph::default();
        let a = g.add("primary/a", "r1", "a", &[]).unwrap();
        let slow = g.add("primary/slow", "r1", "slow", std::slice::from_ref(&a)).unwrap();
        let fast = g.add("primary/fast", "r1", "fast", std::slice::from_ref(&a)).unwrap();
        let end = g.add("primary/end", "r1", "end", &[slow.clone(), fast]).unwrap();
        let secs = |n: &Node| if n.kind == "slow" { 10.0 } else { 1.0 };
        assert_eq!(g.critical_path(secs), [a, slow, end]);
    }

    #[test]
    fn detects_dangling_edges_and_cycles() {
        let mut g = Graph::default();
        let a = g.add("primary/a", "r1", "a", &[]).unwrap();
        g.add("primary/b", "r1", "b", &[a.clone(), "primary/zzz".into()])
            .unwrap();
        assert!(matches!(g.validate(), Err(GraphError::Dangling { .. })));

        let mut g = Graph::default();
        g.add("primary/a", "r1", "a", &["primary/b".into()]).unwrap();
        g.add("primary/b", "r1", "b", &["primary/a".into()]).unwrap();
        assert!(matches!(g.validate(), Err(GraphError::Cycle(_))));
        assert_eq!(
            g.add("primary/a", "r1", "a", &[]),
            Err(GraphError::Duplicate("primary/a".into()))
        );
    }

    #[test]
    fn order_respects_edges() {
        let mut g = Graph::default();
        let a = g.add("primary/a", "r1", "a", &[]).unwrap();
        let b = g.add("secondary/b", "r2", "b", std::slice::from_ref(&a)).unwrap();
        let c = g.add("primary/c", "r1", "c", &[a.clone(), b.clone()]).unwrap();
        let order = g.validate().unwrap();
        let pos = |x: &str| order.iter().position(|o| o == x).unwrap();
        assert!(pos(&a) < pos(&b) && pos(&b) < pos(&c));
        assert_eq!(g.transitive_dependents(&a), BTreeSet::from([b, c]));
    }
}
