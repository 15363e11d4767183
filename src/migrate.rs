//! SPEC v3 "Migration from v2": a state written by SPEC v2's tap (schema 1: ids `primary/…` and
//! `secondary/…`, nodes `rds-primary` and `rds-replica`, the secret's replica inside the
//! primary's node) becomes a v3 state when first loaded: ids `{R}/…` with the regions it records,
//! both databases `db-instance`, the replica its region's `db-secret`, indexes 0 and 1. Nothing
//! that exists is created again: every object keeps its physical id, and adoption accepts the v2
//! `tap:id` values until the next deploy retags them. A v2 state with an id it does not know is
//! refused, untouched.

use crate::config::Inputs;
use crate::engine::state::{NodeState, NodeStatus, SCHEMA_VERSION, State};
use crate::kinds;
use std::collections::BTreeMap;

/// Migrates `state` in memory. `Ok(true)`: it was a v2 state (the caller keeps the old text).
pub fn migrate(state: &mut State) -> Result<bool, String> {
    if state.schema_version == SCHEMA_VERSION {
        return Ok(false);
    }
    if state.schema_version != 1 {
        return Err(format!("schema version {} has no migration", state.schema_version));
    }
    let Some(recorded) = state.inputs.clone() else {
        if !state.nodes.is_empty() {
            return Err("a SPEC v2 state with nodes but no recorded inputs (its regions are unknown)".into());
        }
        state.schema_version = SCHEMA_VERSION;
        return Ok(true);
    };
    let inputs: Inputs =
        serde_json::from_value(recorded).map_err(|e| format!("its recorded inputs are unreadable: {e}"))?;
    let t = &inputs.topology;
    let home = t.home().to_string();
    let secondary = t
        .secondaries()
        .next()
        .ok_or("its recorded inputs name no secondary region")?
        .to_string();
    let rename = |id: &str| -> Result<(String, String, &'static str), String> {
        let (prefix, kind) = id.split_once('/').ok_or_else(|| format!("unknown node id {id:?}"))?;
        let region = match prefix {
            "primary" => &home,
            "secondary" => &secondary,
            _ => return Err(format!("unknown node id {id:?}")),
        };
        let kind: &'static str = match kind {
            "rds-primary" | "rds-replica" => "db-instance",
            k => kinds::get(k)
                .map(|k| k.name)
                .ok_or_else(|| format!("unknown node id {id:?}"))?,
        };
        Ok((t.id(region, kind), region.clone(), kind))
    };
    // Everything is checked before anything changes: an unknown id leaves the state untouched.
    let mut nodes = BTreeMap::new();
    for (id, node) in &state.nodes {
        let (new_id, region, kind) = rename(id)?;
        let node = NodeState {
            kind: kind.to_string(),
            region,
            ..node.clone()
        };
        nodes.insert(new_id, node);
    }
    let mut generations = BTreeMap::new();
    for (id, g) in &state.generations {
        generations.insert(rename(id)?.0, *g);
    }
    // The secret's replica, recorded by v2 inside the primary's node, is its region's node now.
    let replica_id = t.id(&secondary, "db-secret");
    if let Some(primary) = nodes.get(&t.id(&home, "db-secret"))
        && let Some(replica_arn) = primary.attrs.get("replica_arn").cloned()
        && !nodes.contains_key(&replica_id)
    {
        let name = primary.attrs.get("name").cloned().unwrap_or_default();
        let replica = NodeState {
            kind: "db-secret".into(),
            region: secondary.clone(),
            physical_id: Some(replica_arn.clone()),
            arn: Some(replica_arn.clone()),
            props: BTreeMap::new(),
            attrs: BTreeMap::from([("arn".to_string(), replica_arn), ("name".to_string(), name)]),
            status: NodeStatus::Ready,
            error: None,
            updated_at: primary.updated_at.clone(),
            generation: 0,
            token: None,
        };
        nodes.insert(replica_id, replica);
    }
    state.nodes = nodes;
    state.generations = generations;
    state.regions = t.indexes();
    state.writer_region = None;
    state.inputs = Some(serde_json::to_value(&inputs).expect("inputs serialize"));
    // The last run's timeline names v2 ids; it describes a run of the previous release.
    state.last_run = None;
    state.schema_version = SCHEMA_VERSION;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The state SPEC v2's tap (commit f63c4d2) wrote for a full deploy on the emulator.
    fn v2_state() -> State {
        let text = include_str!("../tests/fixtures/v2-state.json");
        State::parse(text, Path::new("v2-state.json")).expect("a v2 state parses")
    }

    #[test]
    fn a_v2_state_becomes_v3_with_the_same_objects() {
        let before = v2_state();
        let mut s = before.clone();
        assert!(migrate(&mut s).unwrap());
        assert_eq!(s.schema_version, SCHEMA_VERSION);
        // Every v2 node, plus the secret's replica as its own node.
        assert_eq!(s.nodes.len(), before.nodes.len() + 1);
        assert!(
            s.nodes
                .keys()
                .all(|id| id.starts_with("us-east-1/") || id.starts_with("eu-west-1/"))
        );
        let db = &s.nodes["us-east-1/db-instance"];
        assert_eq!(db.kind, "db-instance");
        assert_eq!(db.physical_id, before.nodes["primary/rds-primary"].physical_id);
        assert_eq!(
            s.nodes["eu-west-1/db-instance"].physical_id,
            before.nodes["secondary/rds-replica"].physical_id
        );
        let replica = &s.nodes["eu-west-1/db-secret"];
        assert_eq!(replica.region, "eu-west-1");
        assert!(
            replica
                .physical_id
                .as_deref()
                .unwrap()
                .starts_with("arn:aws:secretsmanager:eu-west-1:")
        );
        assert_eq!(
            s.nodes["eu-west-1/vpc"].physical_id,
            before.nodes["secondary/vpc"].physical_id
        );
        assert_eq!(s.regions["us-east-1"], 0);
        assert_eq!(s.regions["eu-west-1"], 1);
        assert_eq!(s.lineage, before.lineage);
        assert_eq!(s.generations.len(), before.generations.len());
        assert!(s.generations.contains_key("us-east-1/db-instance"));
        let inputs: Inputs = serde_json::from_value(s.inputs.clone().unwrap()).unwrap();
        assert_eq!(inputs.topology.secondaries().collect::<Vec<_>>(), ["eu-west-1"]);
        // A second load is not migrated again.
        let again = s.clone();
        assert!(!migrate(&mut s).unwrap());
        assert_eq!(s, again);
    }

    #[test]
    fn a_v2_state_with_an_unknown_id_is_refused_untouched() {
        let mut s = v2_state();
        let n = s.nodes["primary/vpc"].clone();
        s.nodes.insert("tertiary/vpc".into(), n);
        let before = s.clone();
        let e = migrate(&mut s).unwrap_err();
        assert!(e.contains("tertiary/vpc"), "{e}");
        assert_eq!(s, before);
    }
}
