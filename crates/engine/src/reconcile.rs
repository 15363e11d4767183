//! One node's reconcile step: read the live object, then create, update, replace, delete or
//! leave it. Retries and waits follow the policies in `policy`; every transition is saved.
//!
//! Retries: throttling and 5xx answers of ordinary calls are retried by the SDK (one layer, with
//! jitter and a bounded budget, `aws::RetryBudget`); `Driver::call` retries only the
//! eventual-consistency classes, each with its own budget; creates follow the protocol in
//! `create`.

use crate::cancel::Cancel;
use crate::events::{At, Event, Events};
use crate::resource::{Change, Live, NodeCx, NodeError, Props, Resource, diff};
use crate::scheduler::Progress;
use crate::state::{NodeState, NodeStatus};
use crate::store::{StateStore, now};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// What a node did (deploy, destroy) or would do (plan).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Create,
    Update {
        changes: Vec<Change>,
    },
    Replace {
        changes: Vec<Change>,
        /// The immutable properties among the changes: why it must be replaced.
        because: Vec<String>,
    },
    Delete,
    /// Nothing to do (deploy: already as desired; destroy: already gone).
    None,
    /// Left alone on purpose (e.g. not owned by this stack).
    Skip {
        reason: String,
    },
}

impl Action {
    pub fn verb(&self, done: bool) -> &'static str {
        match (self, done) {
            (Action::Create, true) => "created",
            (Action::Create, false) => "create",
            (Action::Update { .. }, true) => "updated",
            (Action::Update { .. }, false) => "update",
            (Action::Replace { .. }, true) => "replaced",
            (Action::Replace { .. }, false) => "replace",
            (Action::Delete, true) => "deleted",
            (Action::Delete, false) => "delete",
            (Action::None, _) => "unchanged",
            (Action::Skip { .. }, _) => "skipped",
        }
    }
}

/// The error code of an object that exists under another account (see `resources::s3_bucket`).
pub const FOREIGN: &str = "BucketOwnedByAnotherAccount";

/// The error code of a delete that keeps its object on purpose (a key that encrypts data that
/// must stay readable): destroy forgets the node and says what it kept and why.
pub const KEPT: &str = "Kept";

/// The ownership tags of an object as a person reads them: `tap:stack=prod, no tap:id tag`.
pub fn ownership_tags(tags: &BTreeMap<String, String>) -> String {
    [crate::resource::STACK_TAG, crate::resource::ID_TAG]
        .iter()
        .map(|k| match tags.get(*k) {
            Some(v) => format!("{k}={v}"),
            None => format!("no {k} tag"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub use crate::permits::RegionPermits;

/// Shared by every node of a run.
pub struct Driver {
    pub store: Arc<StateStore>,
    /// AWS operations in flight, bounded per region.
    pub permits: RegionPermits,
    pub progress: Arc<Progress>,
    pub allow_replace: bool,
    /// Multiplies every wait policy (tests use short waits).
    pub wait_scale: f64,
    /// Where node events go (retries, waits, notes; the pass emits start and end).
    pub events: Events,
    /// The action each node is expected to take (deploy: from its plan), for events.
    pub planned: BTreeMap<String, String>,
    /// The action of a node without a planned one (`plan`, `delete`).
    pub default_action: &'static str,
    /// Set on Ctrl-C: retries and waits stop at their next sleep.
    pub cancel: Cancel,
    /// Nodes the stack asks to leave as they are in this run (plan and deploy), with the reason
    /// (e.g. a failover's roles not yet re-protected): skipped, their recorded attrs kept for
    /// dependents. Destroy ignores it.
    pub held: BTreeMap<String, String>,
    /// Attrs of nodes known in this run (seeded from state), for dependents.
    attrs: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
    /// Twins found (plan) or deleted (deploy, destroy), by node: their physical ids.
    twins: Mutex<BTreeMap<String, Vec<String>>>,
}

impl Driver {
    pub fn new(store: Arc<StateStore>, parallelism: usize, progress: Arc<Progress>, allow_replace: bool) -> Driver {
        let attrs = store.snapshot().nodes.into_iter().map(|(k, v)| (k, v.attrs)).collect();
        Driver {
            store,
            permits: RegionPermits::new(parallelism),
            progress,
            allow_replace,
            wait_scale: 1.0,
            events: Events::default(),
            planned: BTreeMap::new(),
            default_action: "plan",
            cancel: Cancel::default(),
            held: BTreeMap::new(),
            attrs: Mutex::new(attrs),
            twins: Mutex::default(),
        }
    }

    /// Where an event about `cx`'s node happened.
    pub fn at(&self, cx: &NodeCx) -> At {
        At {
            node: cx.id().to_string(),
            kind: cx.node.kind.to_string(),
            region: cx.region.clone(),
            action: self
                .planned
                .get(cx.id())
                .cloned()
                .unwrap_or_else(|| self.default_action.to_string()),
        }
    }

    /// Twins by node: found by a plan, deleted by a deploy or destroy.
    pub fn twins(&self) -> BTreeMap<String, Vec<String>> {
        self.twins.lock().expect("twins lock").clone()
    }

    pub fn dep_attrs(&self, deps: &[String]) -> BTreeMap<String, BTreeMap<String, String>> {
        let g = self.attrs.lock().expect("attrs lock");
        deps.iter()
            .filter_map(|d| g.get(d).map(|a| (d.clone(), a.clone())))
            .collect()
    }

    fn set_attrs(&self, id: &str, attrs: Option<BTreeMap<String, String>>) {
        let mut g = self.attrs.lock().expect("attrs lock");
        match attrs {
            Some(a) => g.insert(id.to_string(), a),
            None => g.remove(id),
        };
    }

    pub(crate) async fn record(
        &self,
        cx: &NodeCx,
        live: &Live,
        props: Props,
        status: NodeStatus,
    ) -> Result<(), NodeError> {
        // The generation carries over; the token only while the create is unfinished.
        let prev = self.store.get(cx.id());
        let generation = prev.as_ref().map_or(0, |p| p.generation);
        let token = match status {
            NodeStatus::Creating => prev.and_then(|p| p.token),
            _ => None,
        };
        self.store
            .put(
                cx.id(),
                NodeState {
                    kind: cx.node.kind.to_string(),
                    region: cx.region.clone(),
                    physical_id: Some(live.physical_id.clone()),
                    arn: live.arn.clone(),
                    props,
                    attrs: live.attrs.clone(),
                    status,
                    error: None,
                    updated_at: now(),
                    generation,
                    token,
                },
            )
            .await
    }

    async fn fail(&self, r: &dyn Resource, cx: &NodeCx, e: NodeError) -> NodeError {
        let e = e.on(r.object(cx));
        // An interrupted node keeps the status it had (creating, deleting...): the next run
        // resumes it from there.
        if !cx.planning && !e.is_interrupted() {
            self.store.mark_failed(cx.id(), cx.node.kind, &cx.region, &e).await;
        }
        e
    }

    pub(crate) async fn read(&self, r: &dyn Resource, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let live = self.call(cx, || r.read(cx)).await?;
        if let Some(l) = &live
            && cx.owns(l) == Some(false)
        {
            let t = l.tags.clone().unwrap_or_default();
            return Err(NodeError::fatal(
                "adopt",
                "NotOwned",
                format!(
                    "{} exists but is tagged {}; tap will not take it over",
                    l.physical_id,
                    ownership_tags(&t)
                ),
            ));
        }
        Ok(live)
    }

    /// Plan: what deploy would do. Writes nothing.
    pub async fn plan(&self, r: &dyn Resource, cx: &NodeCx) -> Result<Action, NodeError> {
        if let Some(reason) = self.held.get(cx.id()) {
            return Ok(Action::Skip { reason: reason.clone() });
        }
        let live = self.read(r, cx).await.map_err(|e| e.on(r.object(cx)))?;
        let desired = r.desired(cx).await?;
        self.set_attrs(cx.id(), live.as_ref().map(|l| l.attrs.clone()));
        if let Some(l) = &live
            && !l.twins.is_empty()
        {
            self.twins
                .lock()
                .expect("twins lock")
                .insert(cx.id().to_string(), l.twins.clone());
        }
        Ok(match live {
            None => Action::Create,
            Some(l) => self.classify(r, cx, diff(&desired, &l.props)),
        })
    }

    fn classify(&self, r: &dyn Resource, cx: &NodeCx, changes: Vec<Change>) -> Action {
        if changes.is_empty() {
            Action::None
        } else if changes.iter().any(|c| r.immutable(cx).contains(&c.key.as_str())) {
            let because = changes
                .iter()
                .filter(|c| r.immutable(cx).contains(&c.key.as_str()))
                .map(|c| c.key.clone())
                .collect();
            Action::Replace { changes, because }
        } else {
            Action::Update { changes }
        }
    }

    pub async fn deploy(&self, r: &dyn Resource, cx: &NodeCx) -> Result<Action, NodeError> {
        if let Some(reason) = self.held.get(cx.id()) {
            return Ok(Action::Skip { reason: reason.clone() });
        }
        match self.deploy_inner(r, cx).await {
            Ok(a) => Ok(a),
            Err(e) => Err(self.fail(r, cx, e).await),
        }
    }

    async fn deploy_inner(&self, r: &dyn Resource, cx: &NodeCx) -> Result<Action, NodeError> {
        let desired = r.desired(cx).await?;
        let mut live = self.read(r, cx).await?;
        if let Some(l) = &live {
            self.delete_twins(r, cx, l).await?;
        }
        if let Some(l) = &live
            && let Some(prior) = cx.prior.as_ref().filter(|p| {
                matches!(
                    p.status,
                    NodeStatus::Creating | NodeStatus::Updating | NodeStatus::Failed
                )
            })
        {
            // A run that stopped half-way (crash, Ctrl-C, failure): finish what it began, and
            // let an object still transitioning settle before dependents use it.
            // Its create was unfinished (the token is kept until the node is ready).
            if prior.status == NodeStatus::Creating || prior.token.is_some() {
                self.call(cx, || r.after_create(cx, l, &desired)).await?;
            }
            self.wait(cx, cx.wait, "readiness", || r.ready(cx, l)).await?;
            live = self.call(cx, || r.read(cx)).await?.or(live);
        } else if let Some(l) = &live
            && cx.prior.is_none()
        {
            // Adopted (state lost): it may still be transitioning.
            self.wait(cx, cx.wait, "readiness", || r.ready(cx, l)).await?;
        }
        let (action, live) = match live {
            None => (Action::Create, self.create(r, cx, &desired).await?),
            Some(l) => match self.classify(r, cx, diff(&desired, &l.props)) {
                Action::None => (Action::None, l),
                Action::Update { changes } => {
                    self.record(cx, &l, l.props.clone(), NodeStatus::Updating).await?;
                    let keys: BTreeSet<String> = changes.iter().map(|c| c.key.clone()).collect();
                    self.call(cx, || r.update(cx, &l, &desired, &keys)).await?;
                    self.wait(cx, cx.wait, "update", || r.ready(cx, &l)).await?;
                    // Values dependents read may have changed with the update.
                    let fresh = self.call(cx, || r.read(cx)).await?.unwrap_or(l);
                    (Action::Update { changes }, fresh)
                }
                Action::Replace { changes, because } => {
                    if !self.allow_replace {
                        return Err(NodeError::fatal(
                            "plan",
                            "ReplaceRequired",
                            format!(
                                "immutable properties differ ({}); rerun with --allow-replace to delete and recreate",
                                because.join(", ")
                            ),
                        ));
                    }
                    self.delete_and_wait(r, cx, &l).await?;
                    (
                        Action::Replace { changes, because },
                        self.create(r, cx, &desired).await?,
                    )
                }
                other => unreachable!("classify returned {other:?}"),
            },
        };
        self.record(cx, &live, desired, NodeStatus::Ready).await?;
        self.set_attrs(cx.id(), Some(live.attrs.clone()));
        Ok(action)
    }

    /// Deletes the other objects that carry this node's ownership tags.
    async fn delete_twins(&self, r: &dyn Resource, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        for id in &live.twins {
            self.progress.set_status(cx.id(), &format!("deleting twin {id}"));
            self.call(cx, || r.delete_twin(cx, id)).await?;
            self.events.emit(Event::Note {
                at: self.at(cx),
                message: format!("deleted twin {id} (kept {})", live.physical_id),
            });
        }
        if !live.twins.is_empty() {
            self.twins
                .lock()
                .expect("twins lock")
                .insert(cx.id().to_string(), live.twins.clone());
        }
        Ok(())
    }

    pub(crate) async fn delete_and_wait(&self, r: &dyn Resource, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        self.record(
            cx,
            live,
            cx.prior.as_ref().map(|p| p.props.clone()).unwrap_or_default(),
            NodeStatus::Deleting,
        )
        .await?;
        self.progress.set_status(cx.id(), "deleting");
        if self.call(cx, || r.prepare_delete(cx, live)).await? {
            self.wait(cx, cx.wait, "deletable state", || r.deletable(cx, live))
                .await?;
        }
        self.call(cx, || r.delete(cx, live)).await?;
        if r.waits_for_deletion() {
            self.wait(cx, cx.wait, "deletion", || r.gone(cx, live)).await?;
        }
        Ok(())
    }

    /// A node recorded in state that the graph no longer has: delete the object it recorded, by
    /// its physical id (nothing in the graph depends on it), then forget it. Plan: say so.
    pub async fn remove_orphan(&self, r: &dyn Resource, cx: &NodeCx) -> Result<Action, NodeError> {
        let Some(prior) = cx.prior.clone() else {
            return Ok(Action::None);
        };
        if cx.planning {
            return Ok(if prior.physical_id.is_some() {
                Action::Delete
            } else {
                Action::None
            });
        }
        let res = async {
            if let Some(id) = &prior.physical_id {
                let live = Live {
                    physical_id: id.clone(),
                    arn: prior.arn.clone(),
                    props: prior.props.clone(),
                    attrs: prior.attrs.clone(),
                    tags: None,
                    twins: vec![],
                };
                match self.delete_and_wait(r, cx, &live).await {
                    Err(e) if e.code == KEPT => {
                        self.store.remove(cx.id()).await?;
                        return Ok(Action::Skip { reason: e.message });
                    }
                    other => other?,
                }
            }
            self.store.remove(cx.id()).await?;
            Ok(Action::Delete)
        }
        .await;
        match res {
            Ok(a) => Ok(a),
            Err(e) => Err(self.fail(r, cx, e).await),
        }
    }

    pub async fn destroy(&self, r: &dyn Resource, cx: &NodeCx) -> Result<Action, NodeError> {
        let res = async {
            let live = match self.call(cx, || r.read(cx)).await {
                // Not this account's object (a bucket name someone else holds): not tap's to delete.
                Err(e) if e.code == FOREIGN => {
                    self.store.remove(cx.id()).await?;
                    return Ok(Action::Skip { reason: e.message });
                }
                other => other?,
            };
            let action = match live {
                None => Action::None,
                Some(l) if cx.owns(&l) == Some(false) => {
                    return Ok(Action::Skip {
                        reason: format!("{} is not tagged tap:stack={}", l.physical_id, cx.env),
                    });
                }
                Some(l) => {
                    self.delete_twins(r, cx, &l).await?;
                    match self.delete_and_wait(r, cx, &l).await {
                        Err(e) if e.code == KEPT => {
                            self.store.remove(cx.id()).await?;
                            self.set_attrs(cx.id(), None);
                            return Ok(Action::Skip { reason: e.message });
                        }
                        other => other?,
                    }
                    Action::Delete
                }
            };
            self.store.remove(cx.id()).await?;
            self.set_attrs(cx.id(), None);
            Ok(action)
        }
        .await;
        match res {
            Ok(a) => Ok(a),
            Err(e) => Err(self.fail(r, cx, e).await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{RetryPolicy, WaitPolicy};
    use crate::resource::{ErrorClass, Readiness};
    use crate::state::State;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;
    use tokio::time::Instant;

    fn driver() -> Driver {
        let store = Arc::new(StateStore::new(
            std::env::temp_dir().join("tap-unused.json"),
            State::new(),
            true,
        ));
        Driver::new(store, 2, Arc::default(), false)
    }

    fn cx() -> NodeCx {
        crate::resource::test_cx("primary/x", "x")
    }

    fn err(class: ErrorClass) -> NodeError {
        NodeError {
            op: "CreateFunction".into(),
            object: None,
            code: "InvalidParameterValueException".into(),
            message: "cannot be assumed".into(),
            class,
            status: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn iam_propagation_refusals_are_retried_with_backoff() {
        let (d, cx, n) = (driver(), cx(), AtomicU32::new(0));
        let t0 = Instant::now();
        let r = d
            .call(&cx, || async {
                if n.fetch_add(1, Ordering::SeqCst) < 3 {
                    Err(err(ErrorClass::Propagation))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(r, Ok(7));
        assert_eq!(n.load(Ordering::SeqCst), 4);
        // 2 s, 4 s, 8 s of backoff (PROPAGATION), each jittered down to half at most.
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_secs(7) && waited <= Duration::from_secs(14),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_at_the_policy_limit_and_fatal_errors_are_not_retried() {
        let (d, cx, n) = (driver(), cx(), AtomicU32::new(0));
        let r: Result<(), _> = d
            .call(&cx, || async {
                n.fetch_add(1, Ordering::SeqCst);
                Err(err(ErrorClass::Propagation))
            })
            .await;
        assert_eq!(r.unwrap_err().class, ErrorClass::Propagation);
        assert_eq!(n.load(Ordering::SeqCst), RetryPolicy::PROPAGATION.max_attempts);
        n.store(0, Ordering::SeqCst);
        let r: Result<(), _> = d
            .call(&cx, || async {
                n.fetch_add(1, Ordering::SeqCst);
                Err(err(ErrorClass::Fatal))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_poll_until_ready_and_time_out_at_the_maximum() {
        let (d, cx, n) = (driver(), cx(), AtomicU32::new(0));
        let policy = WaitPolicy {
            max_wait: Duration::from_secs(60),
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(4),
        };
        let t0 = Instant::now();
        let ready = d
            .wait(&cx, policy, "creation", || async {
                Ok(if n.fetch_add(1, Ordering::SeqCst) < 4 {
                    Readiness::Pending("creating".into())
                } else {
                    Readiness::Ready
                })
            })
            .await;
        assert_eq!(ready, Ok(()));
        assert_eq!(t0.elapsed(), Duration::from_secs(1 + 2 + 4 + 4));
        let t0 = Instant::now();
        let never = d
            .wait(&cx, policy, "creation", || async {
                Ok(Readiness::Pending("creating".into()))
            })
            .await
            .unwrap_err();
        assert_eq!(never.code, "WaitTimeout");
        assert!(never.message.contains("still creating"), "{}", never.message);
        assert_eq!(t0.elapsed(), Duration::from_secs(60));
    }
}
