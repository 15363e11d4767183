//! The TAP stack of SPEC as a graph over the regions of a topology (fixed in code), and its
//! outputs. The kinds behind the nodes are in `crate::kinds`.

use crate::engine::graph::{Graph, GraphError};
use crate::kinds;
use crate::resources::{route_table, subnet};
use crate::topology::Topology;
use std::collections::BTreeMap;

/// Every node of SPEC with its edges, over the regions of `t` (SPEC v3 "Dependencies").
pub fn graph(t: &Topology) -> Result<Graph, GraphError> {
    let mut g = Graph::default();
    for r in t.regions() {
        let key = add(&mut g, t, r, "kms-key", &[])?;
        add(&mut g, t, r, "kms-alias", std::slice::from_ref(&key))?;
        add(&mut g, t, r, "s3-bucket", std::slice::from_ref(&key))?;
        network(&mut g, t, r)?;
        compute(&mut g, t, r)?;
    }
    let (home, writer) = (t.home(), t.writer());
    let every = |kind: &str| t.regions().map(|r| t.id(r, kind)).collect::<Vec<_>>();
    // Cross-region. Defect 1 of the reference: every destination bucket exists and is versioned
    // before a replication rule names it. One role replicates every bucket to every other.
    let buckets_and_keys: Vec<String> = every("s3-bucket").into_iter().chain(every("kms-key")).collect();
    let role = add(&mut g, t, home, "iam-replication-role", &buckets_and_keys)?;
    for r in t.regions() {
        let mut deps = buckets_and_keys.clone();
        deps.push(role.clone());
        add(&mut g, t, r, "s3-replication", &deps)?;
    }

    // The database's secret: the writer's, replicated to every other region with that region's
    // key; the writer's database reads its password from it; replicas follow the writer.
    let secret = add(&mut g, t, writer, "db-secret", &every("kms-key"))?;
    let db = add(
        &mut g,
        t,
        writer,
        "db-instance",
        &[
            t.id(writer, "kms-key"),
            t.id(writer, "db-subnet-group"),
            t.id(writer, "sg-db"),
            secret.clone(),
        ],
    )?;
    for r in t.regions().filter(|r| !t.is_writer(r)) {
        add(&mut g, t, r, "db-secret", &[secret.clone(), t.id(r, "kms-key")])?;
        add(
            &mut g,
            t,
            r,
            "db-instance",
            &[
                t.id(r, "kms-key"),
                t.id(r, "db-subnet-group"),
                t.id(r, "sg-db"),
                db.clone(),
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
        &[t.id(writer, "s3-bucket"), t.id(t.next(writer), "s3-bucket"), oac, logs],
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
    // The database's role in each region, and which region writes (SPEC v3 "Outputs").
    for r in t.regions() {
        if attrs
            .get(&t.id(r, "db-instance"))
            .is_some_and(|a| a.contains_key("endpoint"))
        {
            let role = if t.is_writer(r) { "writer" } else { "replica" };
            out.entry(r.to_string())
                .or_default()
                .insert("DbRole".into(), role.into());
        }
    }
    if !out.is_empty() {
        out.entry(t.home().to_string())
            .or_default()
            .insert("WriterRegion".into(), t.writer().to_string());
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

    /// Adding a region adds nodes beside the others: every region has the same per-region
    /// nodes, the home region four more (role, log bucket, OAC, distribution).
    #[test]
    fn each_region_adds_the_same_nodes() {
        let [one, four] = [&topologies()[0], &topologies()[1]].map(|t| graph(t).unwrap().len());
        // Two regions against four.
        let per_region = (four - one) / 2;
        assert_eq!(four - one, 2 * per_region);
        assert_eq!(one, 2 * per_region + 4);
        let t = &topologies()[1];
        let g = graph(t).unwrap();
        for r in t.regions() {
            let extra = if t.is_home(r) { 4 } else { 0 };
            assert_eq!(g.nodes().filter(|n| n.region == r).count(), per_region + extra, "{r}");
        }
    }

    /// The writer's database and secret come first; every other region's follow them.
    #[test]
    fn roles_follow_the_writer() {
        let t = Topology::new("us-east-1", &["eu-west-1", "ap-southeast-2"])
            .unwrap()
            .with_writer(Some("eu-west-1"));
        let g = graph(&t).unwrap();
        let deps = |id: &str| g.get(id).unwrap().deps.clone();
        assert!(deps("us-east-1/db-instance").contains(&"eu-west-1/db-instance".to_string()));
        assert!(deps("ap-southeast-2/db-instance").contains(&"eu-west-1/db-instance".to_string()));
        assert!(deps("eu-west-1/db-instance").contains(&"eu-west-1/db-secret".to_string()));
        assert!(deps("us-east-1/db-secret").contains(&"eu-west-1/db-secret".to_string()));
        assert!(deps("us-east-1/cloudfront").contains(&"eu-west-1/s3-bucket".to_string()));
        assert!(deps("us-east-1/cloudfront").contains(&"ap-southeast-2/s3-bucket".to_string()));
        assert!(g.contains("us-east-1/iam-replication-role") && !g.contains("eu-west-1/iam-replication-role"));
    }
}
