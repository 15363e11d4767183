//! `tap graph`: the fixed dependency graph as Graphviz dot or Mermaid, one cluster per region,
//! the critical path (by typical AWS create times, `kinds::typical_seconds`) marked.

use crate::config::Inputs;
use crate::engine::graph::Graph;
use crate::kinds;
use std::collections::BTreeSet;
use std::fmt::Write;

/// Edges point from a dependency to what needs it (the order deploy runs them in).
pub fn render(g: &Graph, inputs: &Inputs, mermaid: bool) -> String {
    let critical: Vec<String> = g.critical_path(|n| kinds::typical_seconds(n.kind));
    let on_path: BTreeSet<(&str, &str)> = critical.windows(2).map(|w| (w[0].as_str(), w[1].as_str())).collect();
    let hot: BTreeSet<&str> = critical.iter().map(String::as_str).collect();
    let mut s = String::new();
    if mermaid {
        s.push_str("flowchart LR\n");
        let key = |id: &str| id.replace(['/', '-'], "_");
        for region in inputs.topology.regions() {
            let _ = writeln!(s, "  subgraph {region}[\"{region}\"]");
            for n in g.nodes().filter(|n| n.region == region) {
                let _ = writeln!(s, "    {}[\"{}\"]", key(&n.id), n.id);
            }
            s.push_str("  end\n");
        }
        let mut i = 0;
        let mut hot_links = Vec::new();
        for n in g.nodes() {
            for d in &n.deps {
                let _ = writeln!(s, "  {} --> {}", key(d), key(&n.id));
                if on_path.contains(&(d.as_str(), n.id.as_str())) {
                    hot_links.push(i.to_string());
                }
                i += 1;
            }
        }
        s.push_str("  classDef critical stroke:#c62828,stroke-width:3px\n");
        for id in &critical {
            let _ = writeln!(s, "  class {} critical", key(id));
        }
        if !hot_links.is_empty() {
            let _ = writeln!(s, "  linkStyle {} stroke:#c62828,stroke-width:3px", hot_links.join(","));
        }
    } else {
        s.push_str("digraph tap {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n");
        for region in inputs.topology.regions() {
            let _ = writeln!(s, "  subgraph \"cluster_{region}\" {{\n    label=\"{region}\";");
            for n in g.nodes().filter(|n| n.region == region) {
                let style = if hot.contains(n.id.as_str()) {
                    ", color=\"#c62828\", penwidth=3, class=\"critical\""
                } else {
                    ""
                };
                let _ = writeln!(s, "    \"{}\" [label=\"{}\"{style}];", n.id, n.id);
            }
            s.push_str("  }\n");
        }
        for n in g.nodes() {
            for d in &n.deps {
                let style = if on_path.contains(&(d.as_str(), n.id.as_str())) {
                    " [color=\"#c62828\", penwidth=3]"
                } else {
                    ""
                };
                let _ = writeln!(s, "  \"{d}\" -> \"{}\"{style};", n.id);
            }
        }
        let _ = writeln!(s, "  // critical path: {}", critical.join(" -> "));
        s.push_str("}\n");
    }
    s.trim_end().to_string()
}
