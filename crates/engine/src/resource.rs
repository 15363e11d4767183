//! What the engine asks of a resource kind, in terms free of AWS types.

use crate::graph::Node;
use crate::policy::WaitPolicy;
use crate::state::NodeState;
use serde_json::Value;
use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

/// Properties by name. Values are JSON so that they diff, print and persist alike.
pub type Props = BTreeMap<String, Value>;

/// The ownership tags every object tap creates carries: the stack (env) and the logical id. The
/// create protocol adopts only objects tagged for this stack and node.
pub const STACK_TAG: &str = "tap:stack";
pub const ID_TAG: &str = "tap:id";

/// Shown for a value that only exists once a dependency has been created (plan).
pub const KNOWN_AFTER_APPLY: &str = "(known after apply)";

/// The live object as the API returns it.
#[derive(Clone, Debug, Default)]
pub struct Live {
    pub physical_id: String,
    pub arn: Option<String>,
    /// Only what the API returns: a property missing here is unobservable, never drift.
    pub props: Props,
    /// Values dependents and outputs read (`id`, `arn`, `name`, ...).
    pub attrs: BTreeMap<String, String>,
    /// The object's tags, for kinds that take tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// Physical ids of other objects carrying this node's ownership tags (e.g. a create whose
    /// response was lost, sent again by an older tap). Deploy and destroy delete them.
    pub twins: Vec<String>,
}

impl Live {
    pub fn new(physical_id: impl Into<String>) -> Live {
        Live {
            physical_id: physical_id.into(),
            ..Default::default()
        }
    }

    pub fn arn(mut self, arn: impl Into<String>) -> Live {
        let arn = arn.into();
        self.attrs.insert("arn".into(), arn.clone());
        self.arn = Some(arn);
        self
    }

    pub fn attr(mut self, k: &str, v: impl Into<String>) -> Live {
        self.attrs.insert(k.into(), v.into());
        self
    }

    pub fn prop(mut self, k: &str, v: impl Into<Value>) -> Live {
        self.props.insert(k.into(), v.into());
        self
    }

    pub fn twins(mut self, twins: Vec<String>) -> Live {
        self.twins = twins;
        self
    }

    pub fn tags(mut self, tags: BTreeMap<String, String>) -> Live {
        self.props
            .insert("tags".into(), serde_json::to_value(&tags).expect("tags serialize"));
        self.tags = Some(tags);
        self
    }

    /// `Some(true)` when tagged for `env`, `Some(false)` when tagged for another stack or for
    /// another logical id, `None` when it carries no ownership tags (or takes none).
    pub fn owned_by(&self, env: &str, id: &str) -> Option<bool> {
        self.owned_by_any(env, &[id])
    }

    /// As [`Live::owned_by`], for a node known by several ids (its id and those an earlier
    /// release gave it).
    pub fn owned_by_any(&self, env: &str, ids: &[&str]) -> Option<bool> {
        let t = self.tags.as_ref()?;
        match (t.get(STACK_TAG), t.get(ID_TAG)) {
            (None, None) => None,
            (s, i) => Some(s.map(String::as_str) == Some(env) && i.is_none_or(|i| ids.contains(&i.as_str()))),
        }
    }
}

/// Whether an object has reached the state its dependents need.
#[derive(Clone, Debug, PartialEq)]
pub enum Readiness {
    Ready,
    /// Still transitioning; the string is the current status, shown in progress lines.
    Pending(String),
    Failed(String),
}

/// What an error means for retrying. The SDK retries `Throttled` and `Transient` errors of
/// ordinary calls (the one layer for those); the driver retries the eventual-consistency classes
/// with their own budgets, and runs the create protocol on `Transient` and `AlreadyExists`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Validation, access denied, conflicts: retrying will not help.
    Fatal,
    /// Refused before it ran (throttling): sending it again is safe.
    Throttled,
    /// Outcome unknown (5xx, timeout, connection lost): the call may have run.
    Transient,
    /// IAM eventual consistency: a just-created role or profile is not usable yet.
    Propagation,
    /// A just-created object not yet visible to another call (`*.NotFound`), or a service that
    /// cannot validate a fresh dependency yet (S3 replication, notifications).
    NotYetVisible,
    /// A delete refused while something that used the object lingers (`DependencyViolation`,
    /// ENIs of a deleted function or instance, `OriginAccessControlInUse`).
    Lingering,
    /// A create refused because the name is taken: adopt it if it is ours.
    AlreadyExists,
}

/// An error of one node: the operation, the AWS error code and message.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeError {
    pub op: String,
    /// The object the call was about (a bucket name, a role name, an id), when known.
    pub object: Option<String>,
    pub code: String,
    pub message: String,
    pub class: ErrorClass,
    /// The HTTP status of the answer, when there was one: code that branches on an outcome
    /// (412, 409, 404) reads it here, never in the message.
    pub status: Option<u16>,
}

impl NodeError {
    pub fn fatal(op: impl Into<String>, code: impl Into<String>, message: impl Into<String>) -> NodeError {
        NodeError {
            op: op.into(),
            object: None,
            code: code.into(),
            message: message.into(),
            class: ErrorClass::Fatal,
            status: None,
        }
    }

    /// The run was interrupted (Ctrl-C) while this node was in flight.
    pub fn interrupted(op: impl Into<String>) -> NodeError {
        NodeError::fatal(op, INTERRUPTED, "interrupted; the next run resumes this node")
    }

    pub fn is_interrupted(&self) -> bool {
        self.code == INTERRUPTED
    }

    /// Names the object the failed call was about, unless the error already does. An AWS error
    /// alone may not: a HEAD request's 403 has no body, so no message and no resource.
    pub fn on(mut self, object: impl Into<String>) -> NodeError {
        if self.object.is_none() {
            self.object = Some(object.into());
        }
        self
    }
}

/// The code of [`NodeError::interrupted`].
pub const INTERRUPTED: &str = "Interrupted";

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.object {
            Some(o) => write!(f, "{} on {o} failed: {}: {}", self.op, self.code, self.message),
            None => write!(f, "{} failed: {}: {}", self.op, self.code, self.message),
        }
    }
}

impl std::error::Error for NodeError {}

/// What a node sees while it runs: its stack, its own prior state, its dependencies' values.
#[derive(Clone)]
pub struct NodeCx {
    pub node: Node,
    /// The stack's name (the `tap:stack` tag, part of every idempotency token).
    pub env: String,
    /// What the stack gives its kinds (inputs, region layout): opaque to the engine, read back
    /// by the stack's own kinds.
    pub stack: Arc<dyn Any + Send + Sync>,
    pub region: String,
    /// How long the driver waits for this node to become ready or gone (the stack's policy for
    /// its kind, `--max-wait` applied).
    pub wait: WaitPolicy,
    /// This node's entry in the state file, if any.
    pub prior: Option<NodeState>,
    /// Dependencies' attrs by logical id (from this run, or the state file).
    pub deps: BTreeMap<String, BTreeMap<String, String>>,
    /// Plan mode: a dependency value that does not exist yet reads as [`KNOWN_AFTER_APPLY`].
    pub planning: bool,
    /// Other ids this node's objects may carry as their `tap:id` (an earlier release's ids, until
    /// the next deploy retags them): adoption and look-ups accept them as this node's.
    pub aliases: Vec<String>,
    /// While creating: the idempotency token of this create (same for every retry of it and for
    /// a rerun after a crash; new only for a new generation of the object).
    pub token: Option<String>,
}

impl fmt::Debug for NodeCx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCx")
            .field("node", &self.node)
            .field("env", &self.env)
            .field("region", &self.region)
            .field("planning", &self.planning)
            .finish_non_exhaustive()
    }
}

impl NodeCx {
    pub fn id(&self) -> &str {
        &self.node.id
    }

    /// Whether `live` is this node's object (see [`Live::owned_by`]), by its id or an alias.
    pub fn owns(&self, live: &Live) -> Option<bool> {
        let ids: Vec<&str> = std::iter::once(self.id())
            .chain(self.aliases.iter().map(String::as_str))
            .collect();
        live.owned_by_any(&self.env, &ids)
    }

    /// Every `tap:id` value this node's objects may carry: its id first, then its aliases.
    pub fn ids(&self) -> Vec<String> {
        std::iter::once(self.id().to_string())
            .chain(self.aliases.iter().cloned())
            .collect()
    }

    /// The physical id recorded in state by an earlier run.
    pub fn known_id(&self) -> Option<&str> {
        self.prior.as_ref().and_then(|p| p.physical_id.as_deref())
    }

    /// The create's idempotency token, at most `max` characters (APIs differ: 64 for EC2).
    pub fn token(&self, max: usize) -> String {
        let t = self
            .token
            .clone()
            .unwrap_or_else(|| token_for(&self.env, "", self.id(), 0));
        t.chars().take(max).collect()
    }

    /// Attribute `key` of dependency `dep`. A node reads only what it declared as a dependency
    /// (the graph's edge): anything else is an error of the stack, not of AWS.
    pub fn attr(&self, dep: &str, key: &str) -> Result<String, NodeError> {
        if !self.node.deps.iter().any(|d| d == dep) {
            return Err(NodeError::fatal(
                "resolve",
                "UndeclaredDependency",
                format!("{} reads {dep} but does not declare it as a dependency", self.node.id),
            ));
        }
        match self.deps.get(dep).and_then(|a| a.get(key)) {
            Some(v) => Ok(v.clone()),
            None if self.planning => Ok(KNOWN_AFTER_APPLY.into()),
            None => Err(NodeError::fatal(
                "resolve",
                "MissingDependency",
                format!("{dep} has no value {key:?} (was it deployed?)"),
            )),
        }
    }
}

/// The idempotency token of generation `generation` of node `id` in env `env` and the state of
/// lineage `lineage`: a hash, so that every retry and a rerun after a crash send the same one,
/// and a later create (after destroy, or with a new state file) another.
pub fn token_for(env: &str, lineage: &str, id: &str, generation: u32) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("tap\0{env}\0{lineage}\0{id}\0{generation}"));
    format!(
        "tap-{}",
        h.iter().take(24).map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// A context for unit tests: node `id` of kind `kind` in env `dev`, region `us-east-1`, with no
/// stack context.
#[doc(hidden)]
pub fn test_cx(id: &str, kind: &'static str) -> NodeCx {
    NodeCx {
        node: Node {
            id: id.into(),
            kind,
            region: "us-east-1".into(),
            deps: vec![],
        },
        env: "dev".into(),
        stack: Arc::new(()),
        wait: WaitPolicy::default(),
        aliases: vec![],
        region: "us-east-1".into(),
        prior: None,
        deps: BTreeMap::new(),
        planning: false,
        token: None,
    }
}

/// One property that differs: live `old`, desired `new`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Change {
    pub key: String,
    pub old: Value,
    pub new: Value,
}

/// Desired against live. A key the live side lacks is unobservable and never a change; tags
/// compare only the keys tap sets (tags added by others are left alone).
pub fn diff(desired: &Props, live: &Props) -> Vec<Change> {
    let mut out = Vec::new();
    for (k, want) in desired {
        let Some(have) = live.get(k) else { continue };
        let have = if k == "tags" {
            let want_keys: BTreeSet<&String> = want.as_object().map(|o| o.keys().collect()).unwrap_or_default();
            match have.as_object() {
                Some(o) => Value::Object(
                    o.iter()
                        .filter(|(k, _)| want_keys.contains(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
                None => have.clone(),
            }
        } else {
            have.clone()
        };
        if &have != want {
            out.push(Change {
                key: k.clone(),
                old: have,
                new: want.clone(),
            });
        }
    }
    out
}

/// A resource kind: read, create, update, delete one object. One implementation per kind.
#[async_trait::async_trait]
pub trait Resource: Send + Sync {
    /// The desired properties, from inputs and dependencies.
    async fn desired(&self, cx: &NodeCx) -> Result<Props, NodeError>;

    /// Properties that cannot change in place: a difference means replacement.
    fn immutable(&self, _cx: &NodeCx) -> &'static [&'static str] {
        &[]
    }

    /// The object this node manages, as errors name it: its SPEC name for kinds found by name.
    /// Default: the physical id in state, else the ownership tag it is found by.
    fn object(&self, cx: &NodeCx) -> String {
        match cx.known_id() {
            Some(id) => id.to_string(),
            None => format!("the object tagged tap:id={}", cx.id()),
        }
    }

    /// Finds the live object: by the physical id in state, then by SPEC name or tags.
    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError>;

    /// Creates it: the one create call, with its tags where the API allows and the idempotency
    /// token `cx.token(..)` where it takes one. Its outcome may be unknown (a lost response): the
    /// driver then looks for the object with `read` before creating again.
    async fn create(&self, cx: &NodeCx, desired: &Props) -> Result<Live, NodeError>;

    /// Idempotent follow-up steps of a create (attributes, policies, ...). A failure here retries
    /// these steps, never the create call.
    async fn after_create(&self, _cx: &NodeCx, _live: &Live, _desired: &Props) -> Result<(), NodeError> {
        Ok(())
    }

    /// Deletes a twin: another object carrying this node's ownership tags.
    async fn delete_twin(&self, cx: &NodeCx, physical_id: &str) -> Result<(), NodeError> {
        self.delete(cx, &Live::new(physical_id)).await
    }

    /// Makes the properties in `changed` match `desired`.
    async fn update(
        &self,
        cx: &NodeCx,
        live: &Live,
        desired: &Props,
        changed: &BTreeSet<String>,
    ) -> Result<(), NodeError>;

    /// Deletes it; an object already gone is success.
    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError>;

    /// Whether the object is in the state dependents need (polled after create and update).
    async fn ready(&self, _cx: &NodeCx, _live: &Live) -> Result<Readiness, NodeError> {
        Ok(Readiness::Ready)
    }

    /// After delete: whether `live` is gone (polled). Default: `read` finds nothing.
    async fn gone(&self, cx: &NodeCx, _live: &Live) -> Result<Readiness, NodeError> {
        Ok(match self.read(cx).await? {
            None => Readiness::Ready,
            Some(_) => Readiness::Pending("deleting".into()),
        })
    }

    /// Before `delete`: put the object in a deletable state (e.g. disable a distribution).
    /// Returns whether `deletable` must then be polled.
    async fn prepare_delete(&self, _cx: &NodeCx, _live: &Live) -> Result<bool, NodeError> {
        Ok(false)
    }

    /// Polled after `prepare_delete` returned true, until the object may be deleted.
    async fn deletable(&self, _cx: &NodeCx, _live: &Live) -> Result<Readiness, NodeError> {
        Ok(Readiness::Ready)
    }

    /// Whether `delete` must be followed by polling `gone` (objects that linger while deleting).
    fn waits_for_deletion(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_live_keys_are_unobservable_and_extra_tags_ignored() {
        let desired = Props::from([
            ("a".into(), json!(1)),
            ("b".into(), json!("x")),
            ("tags".into(), json!({"k": "v"})),
        ]);
        let live = Props::from([("a".into(), json!(2)), ("tags".into(), json!({"k": "v", "other": "z"}))]);
        let d = diff(&desired, &live);
        assert_eq!(
            d,
            vec![Change {
                key: "a".into(),
                old: json!(2),
                new: json!(1)
            }]
        );
        let live = Props::from([("tags".into(), json!({"other": "z"}))]);
        assert_eq!(diff(&desired, &live)[0].old, json!({}));
    }

    #[test]
    fn ownership() {
        let l = Live::new("x");
        assert_eq!(l.owned_by("dev", "primary/a"), None);
        let tags = |s: &str, i: &str| {
            BTreeMap::from([
                (STACK_TAG.to_string(), s.to_string()),
                (ID_TAG.to_string(), i.to_string()),
            ])
        };
        assert_eq!(
            Live::new("x")
                .tags(tags("dev", "primary/a"))
                .owned_by("dev", "primary/a"),
            Some(true)
        );
        assert_eq!(
            Live::new("x")
                .tags(tags("prod", "primary/a"))
                .owned_by("dev", "primary/a"),
            Some(false)
        );
        assert_eq!(
            Live::new("x")
                .tags(tags("dev", "primary/b"))
                .owned_by("dev", "primary/a"),
            Some(false)
        );
    }
}
