//! What the TAP stack gives its kinds through the engine's opaque node context: the run's inputs
//! and the region topology, and the ids of the nodes a kind reads.

use crate::config::Inputs;
use crate::engine::resource::NodeCx;
use crate::topology::{self, Topology};
use std::collections::BTreeMap;

/// The stack's view of a node's context.
pub trait StackCx {
    /// The run's inputs (the stack puts them in every node's context).
    fn inputs(&self) -> &Inputs;

    fn topo(&self) -> &Topology {
        &self.inputs().topology
    }

    /// The tags every taggable resource carries (SPEC "Tags").
    fn tags(&self) -> BTreeMap<String, String>;

    /// The logical id of `kind` in this node's region.
    fn local(&self, kind: &str) -> String;

    /// The logical id of `kind` in the home region.
    fn home(&self, kind: &str) -> String {
        let t = self.topo();
        t.id(t.home(), kind)
    }

    /// The logical id of `kind` in the writer region.
    fn writer(&self, kind: &str) -> String {
        let t = self.topo();
        t.id(t.writer(), kind)
    }

    /// `{r}` of SPEC for this node's region.
    fn r(&self) -> String;
}

impl StackCx for NodeCx {
    fn inputs(&self) -> &Inputs {
        self.stack
            .downcast_ref::<Inputs>()
            .expect("the TAP stack runs its nodes with its Inputs as their stack context")
    }

    fn tags(&self) -> BTreeMap<String, String> {
        self.inputs().tags(&self.node.id)
    }

    fn local(&self, kind: &str) -> String {
        self.topo().id(&self.node.region, kind)
    }

    fn r(&self) -> String {
        topology::r(&self.node.region)
    }
}
