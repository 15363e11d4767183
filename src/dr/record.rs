//! What the state records of disaster recovery (SPEC v3 "Disaster recovery", **State**): the
//! writer region (`State::writer_region`) and the list of failovers, each with its steps and,
//! once the old writer's region answers again, its reprotect. Nothing else about roles is
//! stored: every role follows from the writer region.
//!
//! Each step is recorded before it starts and after it ends, so that a failover or reprotect
//! interrupted anywhere (Ctrl-C, kill -9, a throttled region) is finished by running the same
//! command again: a step recorded `done` is never sent twice.

use crate::engine::state::State;
use crate::topology::Topology;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Ungraceful,
    Graceful,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Ungraceful => "ungraceful",
            Mode::Graceful => "graceful",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Started,
    Done,
    /// A best-effort step that did not succeed (reported, not retried).
    Failed,
}

/// One step of a failover or reprotect, as recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub region: String,
    pub status: StepStatus,
    pub started: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// What it did or found (e.g. "already promoted", the snapshot's name, an error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// An instance reprotect renamed (`…-stale-{stamp}`) and is deleting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StaleDb {
    pub region: String,
    /// Its name after the rename.
    pub id: String,
    /// The stale writer (deleted with a final snapshot) or a replica that followed it.
    pub writer: bool,
    #[serde(default)]
    pub deleted: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reprotect {
    pub started: String,
    /// `yyyymmddhhmm` of the first attempt: the stale and final-snapshot names of every rerun.
    pub stamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub steps: BTreeMap<String, Step>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale: Vec<StaleDb>,
    /// The final snapshot of the stale writer (kept: it may hold writes that never replicated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_snapshot: Option<String>,
}

/// One failover, from its first step to its reprotect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failover {
    pub from: String,
    pub to: String,
    pub mode: Mode,
    pub started: String,
    /// When the new writer was promoted and recorded as the writer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// From `started` to `finished` (the execution time, as ARC Region switch reports it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_seconds: Option<f64>,
    /// When the outage began, as the operator gave it (`--since`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// From `since` to `finished`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_seconds: Option<f64>,
    /// The old writer's instance, left writable in its region until reprotect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_writer: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub steps: BTreeMap<String, Step>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprotect: Option<Reprotect>,
}

impl Failover {
    /// A stale writer exists until a reprotect has finished.
    pub fn reprotect_pending(&self) -> bool {
        self.promoted.is_some()
            && self.stale_writer.is_some()
            && self.reprotect.as_ref().is_none_or(|r| r.finished.is_none())
    }
}

/// The failovers state records (unreadable entries, from a newer tap, are an error).
pub fn failovers(state: &State) -> Result<Vec<Failover>, serde_json::Error> {
    state
        .failovers
        .iter()
        .map(|v| serde_json::from_value(v.clone()))
        .collect()
}

/// Replaces the last failover of `state` with `f` (or appends it when `new`).
pub fn put_last(state: &mut State, f: &Failover, new: bool) {
    let v = serde_json::to_value(f).expect("a failover serializes");
    match state.failovers.last_mut() {
        Some(last) if !new => *last = v,
        _ => state.failovers.push(v),
    }
}

/// The last failover, if it is unfinished or its reprotect is pending.
pub fn open(state: &State) -> Option<Failover> {
    let last = failovers(state).ok()?.pop()?;
    (last.finished.is_none() || last.reprotect_pending()).then_some(last)
}

/// Nodes that `plan` and `deploy` leave alone while a stale writer exists (SPEC: "never a
/// replica of a stale writer, never a second writer"; `deploy` does not run reprotect's steps):
/// the database and its secret in every region but the writer's (the stale writer, replicas
/// still following it, the stale primary secret), and the old writer region's Auto Scaling group
/// that the failover scaled to 0 (its instances must not write to the stale writer). Reprotect
/// converges them.
pub fn held(state: &State, topology: &Topology) -> BTreeMap<String, String> {
    let Some(f) = open(state).filter(Failover::reprotect_pending) else {
        return BTreeMap::new();
    };
    let reason = format!(
        "reprotect pending: {} is a stale writer since the failover to {}; run `tap reprotect` once {} answers",
        f.stale_writer.as_deref().unwrap_or("the old writer"),
        f.to,
        f.from
    );
    let mut held = BTreeMap::new();
    for region in topology.regions().filter(|r| *r != topology.writer()) {
        for kind in ["db-instance", "db-secret"] {
            held.insert(topology.id(region, kind), reason.clone());
        }
    }
    if topology.index(&f.from).is_some() {
        held.insert(topology.id(&f.from, "asg"), reason);
    }
    held
}

/// The lines `plan`, `deploy` and `status` print about roles: the writer region since when, and
/// whether a reprotect or an unfinished failover is pending.
pub fn summary(state: &State, home: &str) -> Vec<String> {
    let list = failovers(state).unwrap_or_default();
    let Some(last) = list.last() else {
        return vec![];
    };
    let writer = state.writer_region.as_deref().unwrap_or(home);
    let since = list
        .iter()
        .rev()
        .find(|f| f.to == writer)
        .and_then(|f| f.promoted.clone())
        .unwrap_or_else(|| "the first deploy".into());
    let mut lines = vec![format!("writer region: {writer} since {since}")];
    if last.finished.is_none() {
        lines.push(format!(
            "failover to {} unfinished: run `tap failover --to {}` again to finish it",
            last.to, last.to
        ));
    } else if last.reprotect_pending() {
        lines.push(format!(
            "reprotect pending: {} in {} is a stale writer (run `tap reprotect` once {} answers)",
            last.stale_writer.as_deref().unwrap_or("the old writer"),
            last.from,
            last.from
        ));
    }
    lines
}

/// Now, RFC 3339 with milliseconds (step and failover times: execution times are seconds).
pub fn now_ms() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Seconds between two RFC 3339 times (0 when either is unreadable).
pub fn seconds_between(from: &str, to: &str) -> f64 {
    match (
        chrono::DateTime::parse_from_rfc3339(from),
        chrono::DateTime::parse_from_rfc3339(to),
    ) {
        (Ok(a), Ok(b)) => (b - a).num_milliseconds() as f64 / 1000.0,
        _ => 0.0,
    }
}

/// `--since`: RFC 3339 (`2026-12-07T05:40:00Z`), or `HH:MM` today in UTC.
pub fn parse_since(s: &str, now: chrono::DateTime<chrono::Utc>) -> Result<String, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t
            .with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    if let Ok(t) = chrono::NaiveTime::parse_from_str(s, "%H:%M") {
        let at = now.date_naive().and_time(t).and_utc();
        if at > now {
            return Err(format!("--since {s:?} is in the future (UTC)"));
        }
        return Ok(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    Err(format!(
        "--since {s:?}: expected an RFC 3339 time (2026-12-07T05:40:00Z) or HH:MM (UTC, today)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with(f: &Failover, writer: &str) -> State {
        let mut s = State::new();
        s.writer_region = Some(writer.into());
        put_last(&mut s, f, true);
        s
    }

    fn failover() -> Failover {
        Failover {
            from: "us-east-1".into(),
            to: "eu-west-1".into(),
            mode: Mode::Ungraceful,
            started: "2026-12-07T06:00:00Z".into(),
            promoted: Some("2026-12-07T06:04:00Z".into()),
            finished: Some("2026-12-07T06:05:00Z".into()),
            execution_seconds: Some(300.0),
            since: None,
            recovery_seconds: None,
            stale_writer: Some("tap-db-useast1-dev".into()),
            steps: BTreeMap::new(),
            reprotect: None,
        }
    }

    #[test]
    fn while_reprotect_is_pending_the_non_writer_databases_secrets_and_the_old_asg_are_held() {
        let t = Topology::new("us-east-1", &["eu-west-1", "ap-south-1"])
            .unwrap()
            .with_writer(Some("eu-west-1"));
        let s = state_with(&failover(), "eu-west-1");
        let ids: Vec<String> = held(&s, &t).into_keys().collect();
        assert_eq!(
            ids,
            [
                "ap-south-1/db-instance",
                "ap-south-1/db-secret",
                "us-east-1/asg",
                "us-east-1/db-instance",
                "us-east-1/db-secret"
            ]
        );
        assert_eq!(
            summary(&s, "us-east-1"),
            [
                "writer region: eu-west-1 since 2026-12-07T06:04:00Z",
                "reprotect pending: tap-db-useast1-dev in us-east-1 is a stale writer (run `tap reprotect` once us-east-1 answers)"
            ]
        );
        let mut done = failover();
        done.reprotect = Some(Reprotect {
            finished: Some("2026-12-07T07:00:00Z".into()),
            ..Reprotect::default()
        });
        let s = state_with(&done, "eu-west-1");
        assert!(held(&s, &t).is_empty());
        assert_eq!(
            summary(&s, "us-east-1"),
            ["writer region: eu-west-1 since 2026-12-07T06:04:00Z"]
        );
        assert!(
            summary(&State::new(), "us-east-1").is_empty(),
            "no failover: nothing to say"
        );
    }

    #[test]
    fn since_reads_rfc3339_or_a_time_of_today() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-07T06:30:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_since("06:10", now).unwrap(), "2026-12-07T06:10:00Z");
        assert_eq!(
            parse_since("2026-12-07T07:10:00+01:00", now).unwrap(),
            "2026-12-07T06:10:00Z"
        );
        assert!(parse_since("07:10", now).is_err(), "in the future");
        assert!(parse_since("yesterday", now).is_err());
        assert_eq!(seconds_between("2026-12-07T06:10:00Z", "2026-12-07T06:12:30Z"), 150.0);
    }
}
