//! The reconciler: for one ChatRoom, apply every child from
//! [`resources::build`](crate::resources::build) by server-side apply (field
//! manager `hubbub-operator`), delete the optional children the spec no longer asks for,
//! compute the status from the Deployment and StatefulSet the API server returned, and
//! apply it on the status subresource. Events go to the ChatRoom.
//!
//! The logic is thin on purpose: everything that decides *what* the objects look like is
//! in `resources`; everything here is API calls in a fixed order (which the mocked
//! API-server tests in `tests/operator_reconcile.rs` pin down).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{info, warn};

use crate::Error;
use crate::crd::{ChatRoom, ChatRoomStatus, GROUP, VERSION};
use crate::metrics::Metrics;
use crate::resources::{self, Images, MANAGER};

/// How often a healthy ChatRoom is reconciled without any watch event (drift repair).
pub const RESYNC: Duration = Duration::from_secs(300);
/// First retry delay after a failure; doubles per consecutive failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Condition type: everything is available.
pub const READY: &str = "Ready";
/// Condition type: the chat server Deployment is fully available.
pub const SERVER_AVAILABLE: &str = "ServerAvailable";
/// Condition type: the Redis StatefulSet is ready.
pub const REDIS_AVAILABLE: &str = "RedisAvailable";

/// What every reconciliation shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Default images.
    pub images: Images,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per ChatRoom (`namespace/name`), for the back-off.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context whose Events are reported as `hubbub-operator` from `instance` (the pod).
    pub fn new(
        client: Client,
        images: Images,
        instance: Option<String>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            images,
            metrics,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The next retry delay for `key`, counting this failure.
    fn next_backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock();
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        backoff(*n)
    }

    fn reset_backoff(&self, key: &str) {
        self.failures.lock().remove(key);
    }
}

/// Retry delay after `failures` consecutive failures: 5s, 10s, 20s, ... capped at 5 min.
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_MAX)
}

fn key(room: &ChatRoom) -> String {
    format!(
        "{}/{}",
        room.namespace().unwrap_or_default(),
        room.name_any()
    )
}

/// Reconciles one ChatRoom. On failure the ChatRoom gets `Ready=False` with the reason
/// and a Warning Event before the error goes to [`error_policy`].
pub async fn reconcile(room: Arc<ChatRoom>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = apply_room(&room, &ctx).await;
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(action) => {
            ctx.metrics.record_success(seconds);
            ctx.reset_backoff(&key(&room));
            Ok(action)
        }
        Err(err) => {
            ctx.metrics.record_failure(&err, seconds);
            warn!(room = %key(&room), reason = err.condition_reason(), error = %err, "reconcile failed");
            report_failure(&room, &ctx, &err).await;
            Err(err)
        }
    }
}

/// Retries a failed ChatRoom with exponential back-off.
pub fn error_policy(room: Arc<ChatRoom>, _err: &Error, ctx: Arc<Context>) -> Action {
    Action::requeue(ctx.next_backoff(&key(&room)))
}

fn namespaced<K>(client: &Client, ns: &str) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope>,
    K::DynamicType: Default,
{
    Api::namespaced(client.clone(), ns)
}

/// Server-side apply of one child; returns the object as the API server holds it.
async fn apply<K>(client: &Client, ns: &str, obj: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope> + Serialize + DeserializeOwned + Clone + Debug,
    K::DynamicType: Default,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let api: Api<K> = namespaced(client, ns);
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map_err(|e| {
        Error::kube(
            format!("apply {} {name}", K::kind(&K::DynamicType::default())),
            e,
        )
    })
}

/// Deletes the child `name` of kind `K` when it exists and this ChatRoom controls it.
/// Returns whether something was deleted.
async fn delete_owned<K>(
    client: &Client,
    ns: &str,
    name: &str,
    room: &ChatRoom,
) -> Result<bool, Error>
where
    K: Resource<Scope = NamespaceResourceScope> + DeserializeOwned + Clone + Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let api: Api<K> = namespaced(client, ns);
    let Some(existing) = api
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("get {kind} {name}"), e))?
    else {
        return Ok(false);
    };
    if !resources::is_owned_by(existing.meta(), room) {
        // someone else's object of the same name: never ours to delete
        return Ok(false);
    }
    // the uid precondition makes sure the object deleted is the one checked above
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: existing.meta().uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        // gone meanwhile (404), or replaced by another object of that name (409)
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(false),
        Err(e) => Err(Error::kube(format!("delete {kind} {name}"), e)),
    }
}

async fn apply_room(room: &ChatRoom, ctx: &Context) -> Result<Action, Error> {
    let ns = room
        .namespace()
        .ok_or(Error::MissingMetadata("namespace"))?;
    // owner references need the uid: without it children would be left unowned
    room.uid().ok_or(Error::MissingMetadata("uid"))?;
    let children = resources::build(room, &ctx.images)?;
    let name = room.name_any();
    let client = &ctx.client;

    // (kind, name, Event action): the recorder folds Events with the same action into one
    // series, so each kind of removal has its own action
    let mut removed: Vec<(&str, String, &str)> = Vec::new();
    let redis: Option<StatefulSet> = match (&children.redis_service, &children.redis) {
        (Some(service), Some(statefulset)) => {
            apply(client, &ns, service).await?;
            Some(apply(client, &ns, statefulset).await?)
        }
        _ => {
            // an external Redis: the bundled one this room had before goes (a claim of
            // spec.redis.storage stays, as StatefulSet claims always do)
            let redis_name = resources::redis_name(&name);
            if delete_owned::<StatefulSet>(client, &ns, &redis_name, room).await? {
                removed.push(("StatefulSet", redis_name.clone(), "DeleteRedisStatefulSet"));
            }
            if delete_owned::<Service>(client, &ns, &redis_name, room).await? {
                removed.push(("Service", redis_name, "DeleteRedisService"));
            }
            None
        }
    };
    let sentinel: Option<StatefulSet> = match (&children.sentinel_service, &children.sentinel) {
        (Some(service), Some(statefulset)) => {
            apply(client, &ns, service).await?;
            Some(apply(client, &ns, statefulset).await?)
        }
        _ => {
            let sentinel_name = resources::sentinel_name(&name);
            if delete_owned::<StatefulSet>(client, &ns, &sentinel_name, room).await? {
                removed.push((
                    "StatefulSet",
                    sentinel_name.clone(),
                    "DeleteSentinelStatefulSet",
                ));
            }
            if delete_owned::<Service>(client, &ns, &sentinel_name, room).await? {
                removed.push(("Service", sentinel_name, "DeleteSentinelService"));
            }
            None
        }
    };
    for (pdb, pdb_name, action) in [
        (
            &children.redis_pdb,
            resources::redis_name(&name),
            "DeleteRedisPodDisruptionBudget",
        ),
        (
            &children.sentinel_pdb,
            resources::sentinel_name(&name),
            "DeleteSentinelPodDisruptionBudget",
        ),
    ] {
        match pdb {
            Some(pdb) => drop(apply(client, &ns, pdb).await?),
            None => {
                if delete_owned::<PodDisruptionBudget>(client, &ns, &pdb_name, room).await? {
                    removed.push(("PodDisruptionBudget", pdb_name, action));
                }
            }
        }
    }
    apply(client, &ns, &children.service).await?;
    let deployment: Deployment = apply(client, &ns, &children.deployment).await?;

    match &children.pdb {
        Some(pdb) => drop(apply(client, &ns, pdb).await?),
        None => {
            if delete_owned::<PodDisruptionBudget>(client, &ns, &name, room).await? {
                removed.push((
                    "PodDisruptionBudget",
                    name.clone(),
                    "DeletePodDisruptionBudget",
                ));
            }
        }
    }
    match &children.ingress {
        Some(ingress) => drop(apply(client, &ns, ingress).await?),
        None => {
            if delete_owned::<Ingress>(client, &ns, &name, room).await? {
                removed.push(("Ingress", name.clone(), "DeleteIngress"));
            }
        }
    }
    match &children.hpa {
        Some(hpa) => drop(apply(client, &ns, hpa).await?),
        None => {
            if delete_owned::<HorizontalPodAutoscaler>(client, &ns, &name, room).await? {
                removed.push((
                    "HorizontalPodAutoscaler",
                    name.clone(),
                    "DeleteHorizontalPodAutoscaler",
                ));
            }
        }
    }

    let status = compute_status(
        room,
        &deployment,
        redis.as_ref(),
        sentinel.as_ref(),
        Timestamp::now(),
    );
    let ready = condition_is_true(&status, READY);
    patch_status(client, room, &status).await?;

    let previous = room.status.as_ref().and_then(|s| s.observed_generation);
    let event = match previous {
        None => Some((
            "Created",
            match &room.spec.redis.external {
                None => format!("created the chat service {name} and its Redis"),
                Some(external) => format!(
                    "created the chat service {name} on an {}",
                    resources::describe_external_redis(external)
                ),
            },
        )),
        Some(g) if Some(g) != room.metadata.generation => Some((
            "Updated",
            format!(
                "applied generation {}",
                room.metadata.generation.unwrap_or_default()
            ),
        )),
        _ => None,
    };
    if let Some((reason, note)) = event {
        publish(ctx, room, EventType::Normal, reason, "Reconcile", note).await;
    }
    for (kind, object, action) in removed {
        publish(
            ctx,
            room,
            EventType::Normal,
            "Deleted",
            action,
            format!("deleted {kind} {object}: the spec no longer asks for it"),
        )
        .await;
    }
    info!(room = %key(room), ready, "reconciled");
    Ok(Action::requeue(RESYNC))
}

/// Publishes an Event about `room`. Events with the same type, reason and action within
/// a few minutes are folded into one series by the recorder, so distinct happenings get
/// distinct actions (e.g. `DeleteIngress`).
async fn publish(
    ctx: &Context,
    room: &ChatRoom,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &room.object_ref(&())).await {
        // an Event is best effort: failing to record one must not fail the reconcile
        warn!(room = %key(room), reason, error = %e, "could not publish event");
    }
}

/// Applies `status` on the ChatRoom's status subresource.
async fn patch_status(
    client: &Client,
    room: &ChatRoom,
    status: &ChatRoomStatus,
) -> Result<(), Error> {
    let ns = room
        .namespace()
        .ok_or(Error::MissingMetadata("namespace"))?;
    let api: Api<ChatRoom> = Api::namespaced(client.clone(), &ns);
    let body = json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "ChatRoom",
        "status": status,
    });
    api.patch_status(
        &room.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| Error::kube("apply ChatRoom status", e))?;
    Ok(())
}

/// Marks a ChatRoom `Ready=False` with the error's reason and records a Warning Event.
/// Best effort: failures here are logged, the original error is what counts.
async fn report_failure(room: &ChatRoom, ctx: &Context, err: &Error) {
    let mut status = room.status.clone().unwrap_or_default();
    status.observed_generation = room.metadata.generation;
    set_condition(
        &mut status.conditions,
        READY,
        false,
        err.condition_reason(),
        &err.to_string(),
        room.metadata.generation,
        Timestamp::now(),
    );
    if room.namespace().is_some()
        && let Err(e) = patch_status(&ctx.client, room, &status).await
    {
        warn!(room = %key(room), error = %e, "could not record failure in status");
    }
    publish(
        ctx,
        room,
        EventType::Warning,
        err.condition_reason(),
        "Reconcile",
        err.to_string(),
    )
    .await;
}

fn condition_is_true(status: &ChatRoomStatus, type_: &str) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// Sets condition `type_`, keeping its `lastTransitionTime` when the status is unchanged.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if ok { "True" } else { "False" };
    set_condition_status(conditions, type_, status, reason, message, generation, now);
}

/// Sets condition `type_` to `status` (`True`, `False` or `Unknown`), keeping its
/// `lastTransitionTime` when the status is unchanged.
pub fn set_condition_status(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let since = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    let condition = Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: since,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => *existing = condition,
        None => conditions.push(condition),
    }
}

/// The status of `room` given its Deployment and Redis StatefulSet as the API server
/// returned them (no StatefulSet: the room uses an external Redis), and the Sentinels'
/// StatefulSet with `spec.redis.sentinel`. Pure.
///
/// An external Redis is not watched by the operator: `RedisAvailable` is `Unknown` (reason
/// `External`) and `Ready` follows the chat server alone, whose readiness probe (`/readyz`)
/// fails while the server cannot reach that Redis.
pub fn compute_status(
    room: &ChatRoom,
    deployment: &Deployment,
    redis: Option<&StatefulSet>,
    sentinel: Option<&StatefulSet>,
    now: Timestamp,
) -> ChatRoomStatus {
    let generation = room.metadata.generation;
    let mut status = room.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.selector = Some(resources::server_selector_string(&room.name_any()));
    status.endpoint = Some(resources::endpoint(room));

    let ds = deployment.status.clone().unwrap_or_default();
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(room.spec.replicas);
    status.replicas = ds.replicas.unwrap_or(0);
    status.ready_replicas = ds.ready_replicas.unwrap_or(0);
    let available = ds.available_replicas.unwrap_or(0);
    let updated = ds.updated_replicas.unwrap_or(0);
    let rolled_out =
        ds.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(0);
    let server_ok = rolled_out && available >= desired && updated >= desired && desired > 0;
    let server_msg =
        format!("{available}/{desired} chat server pods available, {updated} up to date");

    let external = room.spec.redis.external.as_ref();
    let rs = redis.and_then(|r| r.status.clone()).unwrap_or_default();
    let redis_ready = rs.ready_replicas.unwrap_or(0);
    let sentinel_spec = room.spec.redis.sentinel.as_ref();
    let sentinels_ready = sentinel
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    // with Sentinels: a master (some data pod) and enough Sentinels to fail over
    let redis_ok = external.is_some()
        || (redis_ready >= 1
            && sentinel_spec.is_none_or(|s| sentinels_ready >= resources::quorum(s)));
    let redis_msg = match (external, sentinel_spec) {
        (Some(ext), _) => format!(
            "{} is not watched by the operator; the chat server pods are ready only while they reach it",
            resources::describe_external_redis(ext)
        ),
        (None, Some(s)) => format!(
            "{redis_ready}/{} redis pods and {sentinels_ready}/{} sentinels ready (a failover needs {})",
            s.replicas,
            s.sentinels,
            resources::quorum(s)
        ),
        (None, None) => format!("{redis_ready}/1 redis pods ready"),
    };

    set_condition(
        &mut status.conditions,
        SERVER_AVAILABLE,
        server_ok,
        if server_ok {
            "MinimumReplicasAvailable"
        } else {
            "ReplicasUnavailable"
        },
        &server_msg,
        generation,
        now,
    );
    let (redis_status, redis_reason) = match (external, redis_ok) {
        (Some(_), _) => ("Unknown", "External"),
        (None, true) => ("True", "RedisReady"),
        (None, false) => ("False", "RedisNotReady"),
    };
    set_condition_status(
        &mut status.conditions,
        REDIS_AVAILABLE,
        redis_status,
        redis_reason,
        &redis_msg,
        generation,
        now,
    );
    let (ready, reason, message) = match (server_ok, redis_ok) {
        (true, true) if external.is_some() => (
            true,
            "Available",
            "chat server is available and reaches its external redis".to_string(),
        ),
        (true, true) => (
            true,
            "Available",
            "chat server and redis are available".to_string(),
        ),
        (false, _) => (false, "ServerUnavailable", server_msg),
        (true, false) => (false, "RedisUnavailable", redis_msg),
    };
    set_condition(
        &mut status.conditions,
        READY,
        ready,
        reason,
        &message,
        generation,
        now,
    );
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ChatRoomSpec;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus, StatefulSetStatus};

    fn room() -> ChatRoom {
        let mut room = ChatRoom::new(
            "lobby",
            serde_json::from_value::<ChatRoomSpec>(json!({})).expect("spec"),
        );
        room.metadata.namespace = Some("chat".into());
        room.metadata.generation = Some(3);
        room
    }

    fn deployment(replicas: i32, available: i32, observed: i64) -> Deployment {
        Deployment {
            metadata: kube::api::ObjectMeta {
                generation: Some(7),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(DeploymentStatus {
                replicas: Some(replicas),
                ready_replicas: Some(available),
                available_replicas: Some(available),
                updated_replicas: Some(replicas),
                observed_generation: Some(observed),
                ..Default::default()
            }),
        }
    }

    fn redis(ready: i32) -> StatefulSet {
        StatefulSet {
            status: Some(StatefulSetStatus {
                ready_replicas: Some(ready),
                replicas: 1,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn cond<'a>(s: &'a ChatRoomStatus, t: &str) -> &'a Condition {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .expect("condition")
    }

    #[test]
    fn ready_only_when_server_fully_available_and_redis_ready() {
        let now = Timestamp::UNIX_EPOCH;
        let s = compute_status(&room(), &deployment(2, 2, 7), Some(&redis(1)), None, now);
        assert_eq!(cond(&s, READY).status, "True");
        assert_eq!(s.replicas, 2);
        assert_eq!(s.ready_replicas, 2);
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(
            s.selector.as_deref(),
            Some(
                "app.kubernetes.io/component=server,app.kubernetes.io/instance=lobby,app.kubernetes.io/name=hubbub"
            )
        );
        assert_eq!(
            s.endpoint.as_deref(),
            Some("http://lobby.chat.svc.cluster.local")
        );

        let s = compute_status(&room(), &deployment(2, 1, 7), Some(&redis(1)), None, now);
        assert_eq!(cond(&s, READY).status, "False");
        assert_eq!(cond(&s, READY).reason, "ServerUnavailable");
        assert_eq!(
            cond(&s, SERVER_AVAILABLE).message,
            "1/2 chat server pods available, 2 up to date"
        );

        let s = compute_status(&room(), &deployment(2, 2, 7), Some(&redis(0)), None, now);
        assert_eq!(cond(&s, READY).reason, "RedisUnavailable");
        assert_eq!(cond(&s, REDIS_AVAILABLE).status, "False");

        // the Deployment controller has not seen the newest generation yet
        let s = compute_status(&room(), &deployment(2, 2, 6), Some(&redis(1)), None, now);
        assert_eq!(cond(&s, SERVER_AVAILABLE).status, "False");
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let t0 = Timestamp::UNIX_EPOCH;
        let t1 = Timestamp::from_second(1000).expect("time");
        let mut conditions = Vec::new();
        set_condition(&mut conditions, READY, false, "A", "a", Some(1), t0);
        set_condition(&mut conditions, READY, false, "B", "b", Some(2), t1);
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, Time(t0));
        assert_eq!(conditions[0].reason, "B");
        set_condition(&mut conditions, READY, true, "C", "c", Some(2), t1);
        assert_eq!(conditions[0].last_transition_time, Time(t1));
        assert_eq!(conditions[0].status, "True");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(7), Duration::from_secs(300));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }
}
