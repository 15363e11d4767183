//! The TAP stack of SPEC as a graph over the regions of a topology (fixed in code), and its
//! outputs. The kinds behind the nodes are in `crate::kinds`.

use crate::engine::graph::{Graph, GraphError};
use crate::kinds;
use crate::resources::{route_table, subnet};
use crate::topology::Topology;
use std::collections::BTreeMap;

/// Every node of SPEC with its edges, over the regions of `t`.
pub fn graph(t: &Topology) -> Result<Graph, GraphError> {
    let mut g = Graph::default();
    for r in t.regions() {
        let key = add(&mut g, t, r, "kms-key", &[])?;
        add(&mut g, t, r, "kms-alias", std::slice::from_ref(&key))?;
        add(&mut g, t, r, "s3-bucket", std::slice::from_ref(&key))?;
        network(&mut g, t, r)?;
        compute(&mut g, t, r)?;
    }
    let (writer, next) = (t.writer(), t.next(t.writer()));
    let home = t.home();
    // Cross-region. Defect 1 of the reference: the destination bucket exists and is versioned
    // before the replication rule names it.
    let buckets_and_keys = [
        t.id(writer, "s3-bucket"),
        t.id(next, "s3-bucket"),
        t.id(writer, "kms-key"),
        t.id(next, "kms-key"),
    ];
    let role = add(&mut g, t, home, "iam-replication-role", &buckets_and_keys)?;
    let mut repl = buckets_and_keys.to_vec();
    repl.push(role);
    add(&mut g, t, writer, "s3-replication", &repl)?;

    // SPEC v2: the master password comes from a secret replicated to the secondary region.
    let secret = add(
        &mut g,
        t,
        writer,
        "db-secret",
        &[t.id(writer, "kms-key"), t.id(next, "kms-key")],
    )?;
    let primary_db = add(
        &mut g,
        t,
        writer,
        "rds-primary",
        &[
            t.id(writer, "kms-key"),
            t.id(writer, "db-subnet-group"),
            t.id(writer, "sg-db"),
            secret,
        ],
    )?;
    for r in t.regions().filter(|r| *r != writer) {
        add(
            &mut g,
            t,
            r,
            "rds-replica",
            &[
                t.id(r, "kms-key"),
                t.id(r, "db-subnet-group"),
                t.id(r, "sg-db"),
                primary_db.clone(),
            ],
        )?;
    }

    let logs = add(&mut g, t, home, "cf-log-bucket", &[])?;
    let oac = add(&mut g, t, home, "cf-origin-access-control", &[])?;
    let cf = add(
        &mut g,
        t,
        home,
        "cloudfront",
        &[t.id(writer, "s3-bucket"), t.id(next, "s3-bucket"), oac, logs],
    )?;
    for r in t.regions() {
        add(&mut g, t, r, "s3-bucket-policy", &[t.id(r, "s3-bucket"), cf.clone()])?;
    }
    Ok(g)
}

/// Adds `kind` in region `r` under its logical id.
fn add(g: &mut Graph, t: &Topology, r: &str, kind: &'static str, deps: &[String]) -> Result<String, GraphError> {
    g.add(t.id(r, kind), r, kind, deps)
}

/// Database subnet group, instances' role and template, Auto Scaling, topic, function, events.
fn compute(g: &mut Graph, t: &Topology, r: &str) -> Result<(), GraphError> {
    let id = |kind: &str| t.id(r, kind);
    let key = id("kms-key");
    add(
        g,
        t,
        r,
        "db-subnet-group",
        &[id("subnet-database-a"), id("subnet-database-b")],
    )?;
    let ec2_role = add(g, t, r, "iam-ec2-role", &[key.clone(), id("s3-bucket")])?;
    let lt = add(g, t, r, "launch-template", &[ec2_role, id("sg-app"), key.clone()])?;
    // After the private routes, so that instances have egress.
    add(
        g,
        t,
        r,
        "asg",
        &[
            lt,
            id("subnet-private-a"),
            id("subnet-private-b"),
            id("route-table-private-a"),
            id("route-table-private-b"),
        ],
    )?;
    let topic = add(g, t, r, "sns-topic", std::slice::from_ref(&key))?;
    let log_group = add(g, t, r, "log-group", &[])?;
    let lambda_role = add(g, t, r, "iam-lambda-role", &[key, topic.clone(), log_group.clone()])?;
    let function = add(g, t, r, "lambda-function", &[log_group, lambda_role, topic])?;
    add(g, t, r, "s3-notification", &[function, id("s3-bucket")])?;
    Ok(())
}

/// VPC, subnets, gateways, route tables and security groups of one region.
fn network(g: &mut Graph, t: &Topology, r: &str) -> Result<(), GraphError> {
    let id = |kind: &str| t.id(r, kind);
    let vpc = add(g, t, r, "vpc", &[])?;
    for kind in subnet::KINDS {
        add(g, t, r, kind, std::slice::from_ref(&vpc))?;
    }
    let igw = add(g, t, r, "internet-gateway", std::slice::from_ref(&vpc))?;
    let eip = add(g, t, r, "nat-eip", &[])?;
    let nat = add(g, t, r, "nat-gateway", &[igw.clone(), id("subnet-public-a"), eip])?;
    for kind in route_table::KINDS {
        let (target, subnets) = route_table::layout(kind);
        let mut deps: Vec<String> = subnets.iter().map(|s| id(s)).collect();
        deps.push(vpc.clone());
        match target {
            Some(("internet-gateway", _)) => deps.push(igw.clone()),
            Some(_) => deps.push(nat.clone()),
            None => {}
        }
        add(g, t, r, kind, &deps)?;
    }
    let app = add(g, t, r, "sg-app", std::slice::from_ref(&vpc))?;
    add(g, t, r, "sg-db", &[vpc, app])?;
    Ok(())
}

/// SPEC "Outputs", from the nodes' attrs: per region name, output name → value. Each kind's
/// registry row names the outputs it gives in its own region.
pub fn outputs(
    g: &Graph,
    t: &Topology,
    attrs: &BTreeMap<String, BTreeMap<String, String>>,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for n in g.nodes() {
        let Some(kind) = kinds::get(n.kind) else { continue };
        for (name, attr) in kind.outputs {
            if let Some(v) = attrs.get(&n.id).and_then(|a| a.get(*attr)) {
                out.entry(n.region.clone())
                    .or_default()
                    .insert(name.to_string(), v.clone());
            }
        }
    }
    // DbSecretArn in the secret's replica region: the replica's ARN.
    let writer = t.writer();
    if let Some(v) = attrs.get(&t.id(writer, "db-secret")).and_then(|a| a.get("replica_arn")) {
        out.entry(t.next(writer).to_string())
            .or_default()
            .insert("DbSecretArn".into(), v.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topologies() -> Vec<Topology> {
        vec![
            Topology::new("us-east-1", &["eu-west-1"]).unwrap(),
            Topology::new("us-east-1", &["eu-west-1", "ap-southeast-2", "sa-east-1"]).unwrap(),
        ]
    }

    #[test]
    fn graph_is_acyclic_and_every_edge_names_a_node() {
        for t in topologies() {
            let g = graph(&t).unwrap();
            let order = g.validate().unwrap();
            assert_eq!(order.len(), g.len());
        }
    }

    #[test]
    fn every_node_has_a_registered_kind_and_its_region_prefix() {
        for t in topologies() {
            let g = graph(&t).unwrap();
            for n in g.nodes() {
                assert!(kinds::get(n.kind).is_some(), "{} has no registry row", n.kind);
                assert_eq!(n.id, t.id(&n.region, n.kind));
            }
        }
        // Every registered kind is used by the graph (no dead rows).
        let g = graph(&topologies()[0]).unwrap();
        for k in kinds::KINDS {
            assert!(g.nodes().any(|n| n.kind == k.name), "{} is in no graph", k.name);
        }
    }

    #[test]
    fn the_v2_topology_keeps_the_ids_of_the_deployed_release() {
        let g = graph(&topologies()[0]).unwrap();
        assert!(g.contains("primary/rds-primary"));
        assert!(g.contains("secondary/rds-replica"));
        assert!(g.contains("primary/cloudfront"));
        assert!(g.contains("secondary/s3-bucket-policy"));
        assert!(
            g.nodes()
                .all(|n| n.id.starts_with("primary/") || n.id.starts_with("secondary/"))
        );
    }
}
