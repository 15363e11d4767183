//! The create protocol: every create happens exactly once, whatever the network does.
//!
//! 1. Intent first: the node is recorded `creating`, with its generation and idempotency token,
//!    before the create call (a crash after the call leaves a state the next run can finish).
//! 2. The create call. Kinds whose API takes an idempotency token send `cx.token(..)`, the same
//!    for every retry and for a rerun; the SDK may retry those. Kinds without one tell the SDK
//!    not to retry it, and the protocol takes over: a throttled call (refused) is sent again; a
//!    call of unknown outcome (5xx, timeout, connection lost) is followed by a look-up by name or
//!    tags, a few times (listings are eventually consistent), and sent again only if nothing is
//!    found. A named create refused as "already exists" adopts the object when it carries this
//!    stack's ownership tags and fails clearly when it does not.
//! 3. The object is recorded with its physical id, still `creating`.
//! 4. Follow-up steps (`after_create`), idempotent, retried on their own: never the create.
//! 5. Readiness wait, then `ready` (by the caller).

use crate::events::Event;
use crate::policy::RetryPolicy;
use crate::reconcile::Driver;
use crate::resource::{ErrorClass, Live, NodeCx, NodeError, Props, Resource, diff, token_for};
use crate::state::{NodeState, NodeStatus};
use crate::store::now;
use std::collections::BTreeSet;

impl Driver {
    pub(crate) async fn create(&self, r: &dyn Resource, cx: &NodeCx, desired: &Props) -> Result<Live, NodeError> {
        self.progress.set_status(cx.id(), "creating");
        let mut intent = self.record_intent(cx, desired, false).await?;
        let (cx, live, adopted) = loop {
            let cx = NodeCx {
                token: Some(intent.token.clone()),
                ..cx.clone()
            };
            let (live, adopted) = match self.create_once(r, &cx, &intent.sent).await {
                // The token's first attempt was sent with other parameters than these (recorded
                // by an older tap): it exists, or existed, elsewhere than a look-up can see.
                Err(e) if intent.carried && e.code == PARAMETER_MISMATCH => match self.look_up(r, &cx, &e).await? {
                    Some(live) => (live, true),
                    None => {
                        intent = self.new_generation(&cx, desired, &e).await?;
                        continue;
                    }
                },
                other => other?,
            };
            // A token carried over from an earlier run is answered with its first object, even
            // one deleted since (EC2 "Ensuring idempotency": a retry "completes successfully
            // without performing any further actions"): a new generation only when that object
            // is known not to exist.
            if intent.carried && !self.exists(r, &cx, &live).await? {
                let gone = NodeError::fatal("create", "Gone", format!("{} no longer exists", live.physical_id));
                intent = self.new_generation(&cx, desired, &gone).await?;
                continue;
            }
            break (cx, live, adopted || intent.sent != *desired);
        };
        let cx = &cx;
        // What the create was sent (an earlier run's values for a carried token) until converged.
        let sent = std::mem::take(&mut intent.sent);
        self.record(cx, &live, sent, NodeStatus::Creating).await?;
        self.call(cx, || r.after_create(cx, &live, desired)).await?;
        self.wait(cx, cx.wait, "creation", || r.ready(cx, &live)).await?;
        // The values dependents read, as the API now reports them (the create's response may
        // lack what the follow-up steps set). A read that cannot see it yet keeps the response.
        let fresh = NodeCx {
            prior: self.store.get(cx.id()),
            ..cx.clone()
        };
        let mut live = match self.call(cx, || r.read(&fresh)).await? {
            Some(l) if l.physical_id == live.physical_id => l,
            _ => live,
        };
        if adopted {
            // Adopted after a lost response or "already exists", or made from an earlier run's
            // values: the first attempt may have stopped half-way. Converge what differs.
            let changes = diff(desired, &live.props);
            let keys: BTreeSet<String> = changes.iter().map(|c| c.key.clone()).collect();
            if !keys.is_empty() && !keys.iter().any(|k| r.immutable(cx).contains(&k.as_str())) {
                self.call(cx, || r.update(cx, &live, desired, &keys)).await?;
                live = self.call(cx, || r.read(&fresh)).await?.unwrap_or(live);
            }
        }
        Ok(live)
    }

    /// Records `creating` with the token of this create before the call. An unfinished create of
    /// an earlier run (intent recorded, no object known) keeps its token, and the parameters it
    /// recorded: its call may have run, and the same token with other parameters (a newer AMI)
    /// is refused `IdempotentParameterMismatch`. `fresh` starts a new generation regardless.
    async fn record_intent(&self, cx: &NodeCx, desired: &Props, fresh: bool) -> Result<Intent, NodeError> {
        let mut intent = Intent::default();
        self.store
            .update(|state| {
                let prev = state.nodes.get(cx.id());
                let (generation, t, sent) = match prev {
                    Some(p) if !fresh && p.token.is_some() && p.physical_id.is_none() => {
                        intent.carried = true;
                        let sent = if p.props.is_empty() { desired } else { &p.props };
                        (p.generation, p.token.clone().expect("checked"), sent.clone())
                    }
                    p => {
                        let last = state.generations.get(cx.id()).copied().unwrap_or(0);
                        let g = last.max(p.map_or(0, |p| p.generation)) + 1;
                        (g, token_for(&cx.env, &state.lineage, cx.id(), g), desired.clone())
                    }
                };
                state.generations.insert(cx.id().to_string(), generation);
                state.nodes.insert(
                    cx.id().to_string(),
                    NodeState {
                        kind: cx.node.kind.to_string(),
                        region: cx.region.clone(),
                        physical_id: None,
                        arn: None,
                        props: sent.clone(),
                        attrs: Default::default(),
                        status: NodeStatus::Creating,
                        error: None,
                        updated_at: now(),
                        generation,
                        token: Some(t.clone()),
                    },
                );
                intent.token = t;
                intent.sent = sent;
            })
            .await?;
        Ok(intent)
    }

    /// Gives up a carried-over token whose first object is known not to exist: a new
    /// generation, a new token, the desired values.
    async fn new_generation(&self, cx: &NodeCx, desired: &Props, why: &NodeError) -> Result<Intent, NodeError> {
        self.events.emit(Event::Note {
            at: self.at(cx),
            message: format!(
                "{} answered {} for the token of an earlier run; creating a new generation",
                why.op, why.code
            ),
        });
        self.record_intent(cx, desired, true).await
    }

    /// Whether the object a carried-over token was answered with exists, read by its id (a
    /// fresh object may take a while to be visible: the `NOT_YET_VISIBLE` budget).
    async fn exists(&self, r: &dyn Resource, cx: &NodeCx, live: &Live) -> Result<bool, NodeError> {
        let Some(mut prior) = self.store.get(cx.id()) else {
            return Ok(true);
        };
        prior.physical_id = Some(live.physical_id.clone());
        let by_id = NodeCx {
            prior: Some(prior),
            ..cx.clone()
        };
        let policy = RetryPolicy::NOT_YET_VISIBLE.scaled(self.wait_scale);
        for attempt in 1..=policy.max_attempts {
            self.progress
                .set_status(cx.id(), &format!("checking that {} exists", live.physical_id));
            if let Some(l) = self.call(cx, || r.read(&by_id)).await?
                && l.physical_id == live.physical_id
            {
                return Ok(true);
            }
            if attempt < policy.max_attempts && !self.cancel.sleep(policy.jittered(attempt)).await {
                return Err(NodeError::interrupted("create"));
            }
        }
        Ok(false)
    }

    /// The create call, sent again only when it certainly did not create anything.
    /// Returns the object and whether it was found rather than made by this call.
    async fn create_once(&self, r: &dyn Resource, cx: &NodeCx, desired: &Props) -> Result<(Live, bool), NodeError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let res = {
                let _permit = self.permits.acquire(&cx.region).await;
                r.create(cx, desired).await
            };
            let e = match res {
                Ok(live) => return Ok((live, false)),
                Err(e) => e,
            };
            let policy = match e.class {
                ErrorClass::Transient | ErrorClass::AlreadyExists => {
                    // It may have run (response lost), or the name is taken: look first.
                    if let Some(live) = self.look_up(r, cx, &e).await? {
                        self.events.emit(Event::Note {
                            at: self.at(cx),
                            message: format!(
                                "{} answered {}; found {} and adopted it",
                                e.op, e.code, live.physical_id
                            ),
                        });
                        return Ok((live, true));
                    }
                    if e.class == ErrorClass::AlreadyExists {
                        return Err(NodeError::fatal(
                            e.op.clone(),
                            e.code.clone(),
                            format!(
                                "{} (and tap cannot find it as this env's object: is the name used outside tap?)",
                                e.message
                            ),
                        ));
                    }
                    RetryPolicy::CREATE.scaled(self.wait_scale)
                }
                ErrorClass::Throttled => RetryPolicy::CREATE.scaled(self.wait_scale),
                _ => match self.policy_for(e.class) {
                    Some(p) => p,
                    None => return Err(e),
                },
            };
            if attempt >= policy.max_attempts {
                return Err(e);
            }
            self.back_off(cx, &e, policy, attempt).await?;
        }
    }

    /// Looks for the object a create of unknown outcome may have made, a few times. An object
    /// found that carries other ownership tags is an error (`read` refuses it); one that takes
    /// tags but carries none is not adopted after "already exists".
    async fn look_up(&self, r: &dyn Resource, cx: &NodeCx, after: &NodeError) -> Result<Option<Live>, NodeError> {
        let policy = look_up_policy(after).scaled(self.wait_scale);
        for attempt in 1..=policy.max_attempts {
            self.progress.set_status(
                cx.id(),
                &format!(
                    "looking for the object after {} ({}), {attempt}/{}",
                    after.op, after.code, policy.max_attempts
                ),
            );
            if let Some(live) = self.read(r, cx).await? {
                if after.class == ErrorClass::AlreadyExists && cx.owns(&live).is_none() && live.tags.is_some() {
                    return Err(NodeError::fatal(
                        after.op.clone(),
                        "NotOwned",
                        format!(
                            "{} exists and does not carry tap:stack={} tags; tap will not take it over",
                            live.physical_id, cx.env
                        ),
                    ));
                }
                return Ok(Some(live));
            }
            if attempt < policy.max_attempts && !self.cancel.sleep(policy.jittered(attempt)).await {
                return Err(NodeError::interrupted(after.op.clone()));
            }
        }
        Ok(None)
    }
}

/// The error code of a token reused with other parameters (EC2; Auto Scaling says
/// `IdempotentParameterMismatchError`, mapped alike by the kinds).
pub const PARAMETER_MISMATCH: &str = "IdempotentParameterMismatch";

/// A create's intent: its token, the parameters to send, and whether both were carried over
/// from an earlier run's unfinished create.
#[derive(Default)]
struct Intent {
    token: String,
    sent: Props,
    carried: bool,
}

/// How long to look for the object a failed create may have made before sending it again.
/// A lost response (500, timeout, connection reset: the create may have run) is looked for for
/// minutes, as long as a tag listing may lag behind ([`RetryPolicy::LOOK_UP_UNKNOWN`]). A 503
/// refused it before it ran ("ServiceUnavailable", "Unavailable: the server is overloaded and
/// cannot handle the request"; EC2 API reference, "Error codes",
/// https://docs.aws.amazon.com/ec2/latest/devguide/errors-overview.html) and "already exists"
/// names an object a read finds at once: a few quick looks.
fn look_up_policy(after: &NodeError) -> RetryPolicy {
    match (after.class, after.status) {
        (ErrorClass::Transient, Some(503)) => RetryPolicy::LOOK_UP,
        (ErrorClass::Transient, _) => RetryPolicy::LOOK_UP_UNKNOWN,
        _ => RetryPolicy::LOOK_UP,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Readiness;
    use crate::resource::{ID_TAG, STACK_TAG};
    use crate::state::State;
    use crate::store::StateStore;
    use std::collections::{BTreeMap, VecDeque};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    /// What one create call does.
    #[derive(Clone, Copy)]
    enum Step {
        Ok,
        /// Runs, then its response is lost.
        Lost,
        /// Refused before running.
        Refused(ErrorClass),
        /// Refused before running with a 503.
        Unavailable,
    }

    /// An in-memory kind: the engine's protocol under test, not an AWS API.
    #[derive(Default)]
    struct Mem {
        objects: Mutex<Vec<Live>>,
        steps: Mutex<VecDeque<Step>>,
        creates: AtomicU32,
        follow_ups: AtomicU32,
        follow_up_failures: AtomicU32,
        tagged: bool,
        /// A listing (read) does not show an object until this long after its create
        /// (eventual consistency).
        hidden_for: std::time::Duration,
        made_at: Mutex<Option<tokio::time::Instant>>,
        /// Idempotency tokens as EC2 keeps them: token -> (parameters, first answer).
        tokens: Mutex<BTreeMap<String, (Props, Live)>>,
        updates: AtomicU32,
    }

    impl Mem {
        fn new(steps: &[Step], tagged: bool) -> Mem {
            Mem {
                steps: Mutex::new(steps.iter().copied().collect()),
                tagged,
                ..Default::default()
            }
        }
    }

    fn err(class: ErrorClass) -> NodeError {
        NodeError {
            op: "CreateThing".into(),
            object: None,
            code: format!("{class:?}"),
            status: None,
            message: "m".into(),
            class,
        }
    }

    #[async_trait::async_trait]
    impl Resource for Mem {
        async fn desired(&self, _: &NodeCx) -> Result<Props, NodeError> {
            Ok(Props::new())
        }
        async fn read(&self, _: &NodeCx) -> Result<Option<Live>, NodeError> {
            let made = *self.made_at.lock().unwrap();
            if made.is_some_and(|t| t.elapsed() < self.hidden_for) {
                return Ok(None);
            }
            Ok(self.objects.lock().unwrap().first().cloned())
        }
        async fn create(&self, cx: &NodeCx, props: &Props) -> Result<Live, NodeError> {
            self.creates.fetch_add(1, Ordering::SeqCst);
            let token = cx.token.clone().unwrap_or_default();
            if let Some((sent, first)) = self.tokens.lock().unwrap().get(&token).cloned() {
                return match &sent == props {
                    true => Ok(first),
                    false => Err(NodeError {
                        code: PARAMETER_MISMATCH.into(),
                        ..err(ErrorClass::Fatal)
                    }),
                };
            }
            self.made_at
                .lock()
                .unwrap()
                .get_or_insert_with(tokio::time::Instant::now);
            let step = self.steps.lock().unwrap().pop_front().unwrap_or(Step::Ok);
            let mut objects = self.objects.lock().unwrap();
            let tags = match self.tagged {
                true => BTreeMap::from([
                    (STACK_TAG.to_string(), cx.env.clone()),
                    (ID_TAG.to_string(), cx.id().to_string()),
                ]),
                false => BTreeMap::new(),
            };
            let mut live = Live::new(format!("obj-{}", self.creates.load(Ordering::SeqCst) - 1)).tags(tags);
            live.props.extend(props.clone());
            if matches!(step, Step::Ok | Step::Lost) {
                self.tokens.lock().unwrap().insert(token, (props.clone(), live.clone()));
            }
            match step {
                Step::Refused(c) if c == ErrorClass::AlreadyExists => {
                    objects.push(live);
                    Err(err(c))
                }
                Step::Refused(c) => Err(err(c)),
                Step::Unavailable => Err(NodeError {
                    status: Some(503),
                    ..err(ErrorClass::Transient)
                }),
                Step::Lost => {
                    objects.push(live);
                    Err(err(ErrorClass::Transient))
                }
                Step::Ok => {
                    objects.push(live.clone());
                    Ok(live)
                }
            }
        }
        async fn after_create(&self, _: &NodeCx, _: &Live, _: &Props) -> Result<(), NodeError> {
            self.follow_ups.fetch_add(1, Ordering::SeqCst);
            if self.follow_up_failures.load(Ordering::SeqCst) > 0 {
                self.follow_up_failures.fetch_sub(1, Ordering::SeqCst);
                return Err(err(ErrorClass::NotYetVisible));
            }
            Ok(())
        }
        async fn update(&self, _: &NodeCx, _: &Live, _: &Props, _: &BTreeSet<String>) -> Result<(), NodeError> {
            self.updates.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn delete(&self, _: &NodeCx, _: &Live) -> Result<(), NodeError> {
            Ok(())
        }
        async fn ready(&self, _: &NodeCx, _: &Live) -> Result<Readiness, NodeError> {
            Ok(Readiness::Ready)
        }
    }

    fn setup() -> (Driver, NodeCx) {
        let store = Arc::new(StateStore::new(
            std::env::temp_dir().join("tap-unused.json"),
            State::new(),
            true,
        ));
        let d = Driver::new(store, 2, Arc::default(), false);
        let cx = crate::resource::test_cx("primary/vpc", "vpc");
        (d, cx)
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_create_response_is_adopted_not_repeated() {
        let (d, cx) = setup();
        let r = Mem::new(&[Step::Lost], true);
        let live = d.create(&r, &cx, &Props::new()).await.unwrap();
        assert_eq!(live.physical_id, "obj-0");
        assert_eq!(r.creates.load(Ordering::SeqCst), 1);
        assert_eq!(r.objects.lock().unwrap().len(), 1, "no twin");
        assert_eq!(r.follow_ups.load(Ordering::SeqCst), 1, "follow-up steps still run");
        // Intent and token were recorded; the token carries over while the create is unfinished.
        let s = d.store.get(cx.id()).unwrap();
        assert_eq!(s.generation, 1);
        let lineage = d.store.snapshot().lineage;
        assert_eq!(
            s.token.as_deref(),
            Some(token_for("dev", &lineage, "primary/vpc", 1).as_str())
        );
        // Forgotten (destroy) and created again: a new generation, a new token.
        d.store.remove(cx.id()).await.unwrap();
        r.objects.lock().unwrap().clear();
        d.create(&r, &cx, &Props::new()).await.unwrap();
        let again = d.store.get(cx.id()).unwrap();
        assert_eq!(again.generation, 2);
        assert_ne!(again.token, s.token);
    }

    #[tokio::test(start_paused = true)]
    async fn refused_or_unknown_creates_that_made_nothing_are_sent_again() {
        let (d, cx) = setup();
        let r = Mem::new(
            &[
                Step::Refused(ErrorClass::Throttled),
                Step::Refused(ErrorClass::Transient),
            ],
            true,
        );
        d.create(&r, &cx, &Props::new()).await.unwrap();
        assert_eq!(r.creates.load(Ordering::SeqCst), 3);
        assert_eq!(r.objects.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_follow_up_step_is_retried_without_the_create() {
        let (d, cx) = setup();
        let r = Mem::new(&[], true);
        r.follow_up_failures.store(2, Ordering::SeqCst);
        d.create(&r, &cx, &Props::new()).await.unwrap();
        assert_eq!(r.creates.load(Ordering::SeqCst), 1);
        assert_eq!(r.follow_ups.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn already_exists_adopts_only_an_owned_object() {
        let (d, cx) = setup();
        let r = Mem::new(&[Step::Refused(ErrorClass::AlreadyExists)], true);
        assert_eq!(d.create(&r, &cx, &Props::new()).await.unwrap().physical_id, "obj-0");
        let (d, cx) = setup();
        let r = Mem::new(&[Step::Refused(ErrorClass::AlreadyExists)], false);
        let e = d.create(&r, &cx, &Props::new()).await.unwrap_err();
        assert_eq!(e.code, "NotOwned", "{e}");
        assert_eq!(r.creates.load(Ordering::SeqCst), 1);
    }

    /// Issue 17 item 10: a tag listing that lags the create by a minute. The look-up after a
    /// lost response went on for 6 s, concluded "not there" and created a twin.
    #[tokio::test(start_paused = true)]
    async fn look_up_after_a_lost_create_response_outlasts_a_slow_tag_listing() {
        let (d, cx) = setup();
        let mut r = Mem::new(&[Step::Lost], true);
        r.hidden_for = std::time::Duration::from_secs(60);
        let t0 = tokio::time::Instant::now();
        let live = d.create(&r, &cx, &Props::new()).await.unwrap();
        assert_eq!(live.physical_id, "obj-0");
        assert_eq!(r.creates.load(Ordering::SeqCst), 1, "not sent again");
        assert_eq!(r.objects.lock().unwrap().len(), 1, "no twin");
        assert!(t0.elapsed() >= std::time::Duration::from_secs(60));
    }

    /// A create refused with a 503 did not run: a few quick looks, then it is sent again (the
    /// common path does not wait minutes).
    #[tokio::test(start_paused = true)]
    async fn a_create_refused_with_503_is_sent_again_after_a_short_look() {
        let (d, cx) = setup();
        let r = Mem::new(&[Step::Unavailable], true);
        let t0 = tokio::time::Instant::now();
        d.create(&r, &cx, &Props::new()).await.unwrap();
        assert_eq!(r.creates.load(Ordering::SeqCst), 2);
        assert!(t0.elapsed() < std::time::Duration::from_secs(10), "{:?}", t0.elapsed());
    }

    fn props(ami: &str) -> Props {
        Props::from([("ami".to_string(), serde_json::json!(ami))])
    }

    /// An earlier run recorded its intent (token, parameters) and sent the create, then died
    /// before it learnt the answer.
    async fn unfinished_create(d: &Driver, r: &Mem, cx: &NodeCx, sent: &Props) {
        let intent = d.record_intent(cx, sent, false).await.unwrap();
        let cx = NodeCx {
            token: Some(intent.token),
            ..cx.clone()
        };
        r.create(&cx, sent).await.unwrap();
    }

    /// Issue 17 item 11: the unfinished create is resumed after the desired values changed (a
    /// newer AMI). The same token with the new values was refused IdempotentParameterMismatch;
    /// the recorded values are sent, the first object comes back, and is converged.
    #[tokio::test(start_paused = true)]
    async fn a_token_reused_with_different_parameters_resends_the_recorded_ones() {
        let (d, cx) = setup();
        let r = Mem::new(&[], true);
        unfinished_create(&d, &r, &cx, &props("ami-old")).await;
        let live = d.create(&r, &cx, &props("ami-new")).await.unwrap();
        assert_eq!(live.physical_id, "obj-0");
        assert_eq!(r.objects.lock().unwrap().len(), 1, "no twin");
        assert_eq!(r.updates.load(Ordering::SeqCst), 1, "converged to the new values");
        assert_eq!(d.store.get(cx.id()).unwrap().generation, 1);
    }

    /// The first object of a carried token was deleted since: EC2 still answers the token with
    /// it. A new generation (a new token) creates the object again.
    #[tokio::test(start_paused = true)]
    async fn a_token_whose_object_was_deleted_since_starts_a_new_generation() {
        let (d, cx) = setup();
        let r = Mem::new(&[], true);
        unfinished_create(&d, &r, &cx, &props("ami-1")).await;
        r.objects.lock().unwrap().clear();
        let live = d.create(&r, &cx, &props("ami-1")).await.unwrap();
        assert_eq!(live.physical_id, "obj-2", "not the deleted obj-0");
        assert_eq!(r.objects.lock().unwrap().len(), 1);
        let s = d.store.get(cx.id()).unwrap();
        assert_eq!(s.generation, 2);
        assert_eq!(s.status, NodeStatus::Creating);
    }
}
