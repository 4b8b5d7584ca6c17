//! Reconciler scenarios against a mocked API server (`tower-test`): a tiny in-memory
//! Kubernetes that stores what is applied and answers GET/PATCH/DELETE/POST. Each test
//! asserts the exact sequence of requests the reconciler makes (create, update, removal
//! of optional children, status, Events, failures) and what they carried.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hubbub_operator::crd::ChatRoom;
use hubbub_operator::metrics::Metrics;
use hubbub_operator::reconciler::{self, Context};
use hubbub_operator::resources::Images;
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use parking_lot::Mutex;
use serde_json::{Value, json};

const UID: &str = "6a1f1c3e-0000-4000-8000-00000000abcd";

/// One request the fake API server saw.
#[derive(Debug, Clone)]
struct Call {
    method: Method,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

impl Call {
    fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    /// Status the fake reports for a Deployment/StatefulSet path after an apply.
    statuses: BTreeMap<String, Value>,
    /// Paths whose apply answers this error code.
    fail_apply: BTreeMap<String, u16>,
    calls: Vec<Call>,
}

#[derive(Clone, Default)]
struct FakeApi(Arc<Mutex<State>>);

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

impl FakeApi {
    fn client(&self) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = self.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let (code, body) = fake.answer(req).await;
                let response = Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&body).expect("json")))
                    .expect("response");
                send.send_response(response);
            }
        });
        Client::new(service, "default")
    }

    async fn answer(&self, req: Request<Body>) -> (StatusCode, Value) {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = req.into_body().collect_bytes().await.expect("body");
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("request body is json")
        };
        let mut state = self.0.lock();
        state.calls.push(Call {
            method: method.clone(),
            path: path.clone(),
            query,
            content_type,
            body: body.clone(),
        });
        let (object_path, sub) = match path.strip_suffix("/status") {
            Some(p) => (p.to_string(), Some("status")),
            None => (path.clone(), None),
        };
        match (method, sub) {
            (Method::GET, None) => match state.objects.get(&object_path) {
                Some(obj) => (StatusCode::OK, obj.clone()),
                None => (
                    StatusCode::NOT_FOUND,
                    status_body(404, "NotFound", "not found"),
                ),
            },
            (Method::PATCH, Some("status")) => {
                let Some(obj) = state.objects.get_mut(&object_path) else {
                    return (
                        StatusCode::NOT_FOUND,
                        status_body(404, "NotFound", "not found"),
                    );
                };
                obj["status"] = body["status"].clone();
                (StatusCode::OK, obj.clone())
            }
            (Method::PATCH, None) => {
                if let Some(code) = state.fail_apply.get(&object_path) {
                    let code = *code;
                    return (
                        StatusCode::from_u16(code).expect("code"),
                        status_body(code, "Invalid", "field is immutable"),
                    );
                }
                let mut obj = body.clone();
                obj["metadata"]["uid"] = json!(format!("uid-{}", state.objects.len()));
                obj["metadata"]["generation"] = json!(1);
                obj["metadata"]["resourceVersion"] = json!("1");
                if let Some(status) = state.statuses.get(&object_path) {
                    obj["status"] = status.clone();
                }
                state.objects.insert(object_path, obj.clone());
                (StatusCode::OK, obj)
            }
            (Method::DELETE, None) => match state.objects.remove(&object_path) {
                Some(_) => (
                    StatusCode::OK,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
                ),
                None => (
                    StatusCode::NOT_FOUND,
                    status_body(404, "NotFound", "not found"),
                ),
            },
            (Method::POST, None) => (StatusCode::CREATED, body),
            (m, s) => panic!("unexpected request {m} {path} ({s:?})"),
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.0.lock().calls.clone()
    }

    fn lines(&self) -> Vec<String> {
        self.calls().iter().map(Call::line).collect()
    }

    fn clear_calls(&self) {
        self.0.lock().calls.clear();
    }

    fn put(&self, path: &str, obj: Value) {
        self.0.lock().objects.insert(path.to_string(), obj);
    }

    fn has(&self, path: &str) -> bool {
        self.0.lock().objects.contains_key(path)
    }

    fn set_status(&self, path: &str, status: Value) {
        self.0.lock().statuses.insert(path.to_string(), status);
    }
}

const ROOM: &str = "/apis/hubbub.dev/v1alpha1/namespaces/chat/chatrooms/lobby";
const REDIS_SVC: &str = "/api/v1/namespaces/chat/services/lobby-redis";
const REDIS_STS: &str = "/apis/apps/v1/namespaces/chat/statefulsets/lobby-redis";
const SVC: &str = "/api/v1/namespaces/chat/services/lobby";
const DEPLOY: &str = "/apis/apps/v1/namespaces/chat/deployments/lobby";
const PDB: &str = "/apis/policy/v1/namespaces/chat/poddisruptionbudgets/lobby";
const INGRESS: &str = "/apis/networking.k8s.io/v1/namespaces/chat/ingresses/lobby";
const HPA: &str = "/apis/autoscaling/v2/namespaces/chat/horizontalpodautoscalers/lobby";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/chat/events";
const SENTINEL_SVC: &str = "/api/v1/namespaces/chat/services/lobby-sentinel";
const SENTINEL_STS: &str = "/apis/apps/v1/namespaces/chat/statefulsets/lobby-sentinel";
const REDIS_PDB: &str = "/apis/policy/v1/namespaces/chat/poddisruptionbudgets/lobby-redis";
const SENTINEL_PDB: &str = "/apis/policy/v1/namespaces/chat/poddisruptionbudgets/lobby-sentinel";

fn room_json(spec: Value, generation: i64, status: Option<Value>) -> Value {
    let mut room = json!({
        "apiVersion": "hubbub.dev/v1alpha1",
        "kind": "ChatRoom",
        "metadata": {"name": "lobby", "namespace": "chat", "uid": UID, "generation": generation},
        "spec": spec,
    });
    if let Some(status) = status {
        room["status"] = status;
    }
    room
}

/// Stores the room in the fake (so the status patch finds it) and parses it.
fn room(fake: &FakeApi, spec: Value, generation: i64, status: Option<Value>) -> Arc<ChatRoom> {
    let value = room_json(spec, generation, status);
    fake.put(ROOM, value.clone());
    Arc::new(serde_json::from_value(value).expect("chatroom"))
}

fn context(fake: &FakeApi) -> Arc<Context> {
    Arc::new(Context::new(
        fake.client(),
        Images {
            server: "example/hubbub:1".into(),
            redis: "example/redis:7".into(),
        },
        Some("operator-0".into()),
        Arc::new(Metrics::new()),
    ))
}

fn p(s: &str) -> String {
    format!("PATCH {s}")
}
fn g(s: &str) -> String {
    format!("GET {s}")
}
fn d(s: &str) -> String {
    format!("DELETE {s}")
}

fn status_of(fake: &FakeApi) -> Value {
    fake.0.lock().objects[ROOM]["status"].clone()
}

fn condition(status: &Value, type_: &str) -> Value {
    status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

fn events(fake: &FakeApi) -> Vec<(String, String)> {
    fake.calls()
        .iter()
        .filter(|c| c.path == EVENTS)
        .map(|c| {
            (
                c.body["type"].as_str().unwrap_or_default().to_string(),
                c.body["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn create_applies_every_child_then_status_then_a_created_event() {
    let fake = FakeApi::default();
    let ctx = context(&fake);
    let room = room(&fake, json!({}), 1, None);

    let action = reconciler::reconcile(room, ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(action, Action::requeue(reconciler::RESYNC));

    assert_eq!(
        fake.lines(),
        [
            p(REDIS_SVC),
            p(REDIS_STS),
            g(SENTINEL_STS),
            g(SENTINEL_SVC),
            g(REDIS_PDB),
            g(SENTINEL_PDB),
            p(SVC),
            p(DEPLOY),
            p(PDB),
            g(INGRESS),
            g(HPA),
            p(&format!("{ROOM}/status")),
            format!("POST {EVENTS}"),
        ]
    );
    let calls = fake.calls();
    for call in calls.iter().filter(|c| c.method == Method::PATCH) {
        // server-side apply, one field manager, forced (the operator owns these fields)
        assert_eq!(
            call.content_type,
            "application/apply-patch+yaml",
            "{}",
            call.line()
        );
        let query: Vec<&str> = call.query.split('&').collect();
        assert!(
            query.contains(&"fieldManager=hubbub-operator"),
            "{}",
            call.query
        );
        assert!(query.contains(&"force=true"), "{}", call.query);
    }
    let applied: Vec<&Call> = calls
        .iter()
        .filter(|c| c.method == Method::PATCH && !c.path.ends_with("/status"))
        .collect();
    assert_eq!(applied.len(), 5);
    for call in applied {
        let owner = &call.body["metadata"]["ownerReferences"][0];
        assert_eq!(owner["uid"], json!(UID), "{}", call.line());
        assert_eq!(owner["controller"], json!(true));
        assert_eq!(owner["kind"], json!("ChatRoom"));
    }
    let deploy = calls.iter().find(|c| c.path == DEPLOY).expect("deploy");
    assert_eq!(deploy.body["kind"], json!("Deployment"));
    assert_eq!(deploy.body["spec"]["replicas"], json!(2));

    // the fake's Deployment has no status yet: not ready
    let status = status_of(&fake);
    assert_eq!(status["observedGeneration"], json!(1));
    assert_eq!(condition(&status, "Ready")["status"], json!("False"));
    assert_eq!(
        condition(&status, "Ready")["reason"],
        json!("ServerUnavailable")
    );
    assert_eq!(
        status["endpoint"],
        json!("http://lobby.chat.svc.cluster.local")
    );
    assert_eq!(
        calls
            .iter()
            .find(|c| c.path.ends_with("/status"))
            .expect("status")
            .body["apiVersion"],
        json!("hubbub.dev/v1alpha1"),
        "status is applied as a ChatRoom"
    );
    assert_eq!(
        events(&fake),
        [("Normal".to_string(), "Created".to_string())]
    );
    let event = &calls.iter().find(|c| c.path == EVENTS).expect("event").body;
    assert_eq!(event["regarding"]["uid"], json!(UID));
    assert_eq!(event["reportingController"], json!("hubbub-operator"));
    assert_eq!(event["reportingInstance"], json!("operator-0"));

    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains("hubbub_operator_reconciliations_total{result=\"success\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn ready_when_the_deployment_and_redis_report_available() {
    let fake = FakeApi::default();
    fake.set_status(
        DEPLOY,
        json!({"observedGeneration": 1, "replicas": 2, "readyReplicas": 2, "availableReplicas": 2, "updatedReplicas": 2}),
    );
    fake.set_status(REDIS_STS, json!({"replicas": 1, "readyReplicas": 1}));
    let ctx = context(&fake);
    let room = room(&fake, json!({}), 1, None);
    reconciler::reconcile(room, ctx).await.expect("reconcile");

    let status = status_of(&fake);
    assert_eq!(condition(&status, "Ready")["status"], json!("True"));
    assert_eq!(
        condition(&status, "ServerAvailable")["status"],
        json!("True")
    );
    assert_eq!(
        condition(&status, "RedisAvailable")["status"],
        json!("True")
    );
    assert_eq!(status["replicas"], json!(2));
    assert_eq!(status["readyReplicas"], json!(2));
    assert_eq!(
        status["selector"],
        json!(
            "app.kubernetes.io/component=server,app.kubernetes.io/instance=lobby,app.kubernetes.io/name=hubbub"
        )
    );
}

#[tokio::test]
async fn removing_ingress_and_autoscaling_deletes_them_and_records_events() {
    let fake = FakeApi::default();
    let ctx = context(&fake);
    let spec = json!({"ingress": {"host": "chat.example.com"}, "autoscaling": {"minReplicas": 2, "maxReplicas": 4}});
    reconciler::reconcile(room(&fake, spec, 1, None), ctx.clone())
        .await
        .expect("first reconcile");
    let first = fake.lines();
    assert!(
        first.contains(&p(INGRESS)) && first.contains(&p(HPA)),
        "{first:?}"
    );
    assert!(fake.has(INGRESS) && fake.has(HPA));
    let deploy = fake
        .calls()
        .into_iter()
        .find(|c| c.path == DEPLOY)
        .expect("deploy");
    assert!(
        deploy.body["spec"].get("replicas").is_none(),
        "with autoscaling the HPA owns replicas"
    );

    // the user removes both; the API server bumped the generation
    fake.clear_calls();
    let status = status_of(&fake);
    let room = room(&fake, json!({"replicas": 3}), 2, Some(status));
    reconciler::reconcile(room, ctx)
        .await
        .expect("second reconcile");
    assert_eq!(
        fake.lines(),
        [
            p(REDIS_SVC),
            p(REDIS_STS),
            g(SENTINEL_STS),
            g(SENTINEL_SVC),
            g(REDIS_PDB),
            g(SENTINEL_PDB),
            p(SVC),
            p(DEPLOY),
            p(PDB),
            g(INGRESS),
            d(INGRESS),
            g(HPA),
            d(HPA),
            p(&format!("{ROOM}/status")),
            format!("POST {EVENTS}"),
            format!("POST {EVENTS}"),
            format!("POST {EVENTS}"),
        ]
    );
    assert!(!fake.has(INGRESS) && !fake.has(HPA));
    let delete = fake
        .calls()
        .into_iter()
        .find(|c| c.method == Method::DELETE)
        .expect("delete");
    assert!(
        delete.body["preconditions"]["uid"]
            .as_str()
            .is_some_and(|u| u.starts_with("uid-")),
        "deletes only the object it checked: {}",
        delete.body
    );
    let deploy = fake
        .calls()
        .into_iter()
        .find(|c| c.path == DEPLOY)
        .expect("deploy");
    assert_eq!(deploy.body["spec"]["replicas"], json!(3));
    assert_eq!(
        events(&fake),
        [
            ("Normal".to_string(), "Updated".to_string()),
            ("Normal".to_string(), "Deleted".to_string()),
            ("Normal".to_string(), "Deleted".to_string()),
        ]
    );
    let notes: Vec<String> = fake
        .calls()
        .iter()
        .filter(|c| c.path == EVENTS)
        .map(|c| c.body["note"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(notes[0], "applied generation 2");
    assert!(notes[1].starts_with("deleted Ingress lobby"), "{notes:?}");
    assert!(
        notes[2].starts_with("deleted HorizontalPodAutoscaler lobby"),
        "{notes:?}"
    );
    assert_eq!(status_of(&fake)["observedGeneration"], json!(2));
}

#[tokio::test]
async fn an_object_of_the_same_name_that_the_room_does_not_own_is_left_alone() {
    let fake = FakeApi::default();
    fake.put(
        INGRESS,
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": "lobby", "namespace": "chat", "uid": "someone-else"}}),
    );
    let ctx = context(&fake);
    let room = room(&fake, json!({"replicas": 1}), 1, None);
    reconciler::reconcile(room, ctx).await.expect("reconcile");
    let lines = fake.lines();
    assert!(lines.contains(&g(INGRESS)));
    assert!(!lines.contains(&d(INGRESS)), "{lines:?}");
    assert!(fake.has(INGRESS));
    // replicas 1: no PDB wanted, none existed
    assert!(lines.contains(&g(PDB)) && !lines.contains(&p(PDB)));
}

#[tokio::test]
async fn a_reconcile_without_changes_records_no_event() {
    let fake = FakeApi::default();
    let ctx = context(&fake);
    reconciler::reconcile(room(&fake, json!({}), 1, None), ctx.clone())
        .await
        .expect("first");
    fake.clear_calls();
    let status = status_of(&fake);
    reconciler::reconcile(room(&fake, json!({}), 1, Some(status)), ctx)
        .await
        .expect("second");
    assert!(events(&fake).is_empty(), "{:?}", fake.lines());
    // the children are applied again: drift made by hand is put back
    assert!(fake.lines().contains(&p(DEPLOY)));
}

#[tokio::test]
async fn an_unreconcilable_spec_sets_ready_false_records_a_warning_and_backs_off() {
    let fake = FakeApi::default();
    let ctx = context(&fake);
    let room = room(&fake, json!({"ingress": {"className": "nginx"}}), 1, None);

    let err = reconciler::reconcile(room.clone(), ctx.clone())
        .await
        .expect_err("must fail");
    assert_eq!(err.condition_reason(), "IngressHostMissing");
    // nothing half-made: no child was applied
    assert_eq!(
        fake.lines(),
        [p(&format!("{ROOM}/status")), format!("POST {EVENTS}")]
    );
    let status = status_of(&fake);
    let ready = condition(&status, "Ready");
    assert_eq!(ready["status"], json!("False"));
    assert_eq!(ready["reason"], json!("IngressHostMissing"));
    assert_eq!(
        ready["message"],
        json!("invalid chatroom spec: spec.ingress needs a host")
    );
    assert_eq!(
        events(&fake),
        [("Warning".to_string(), "IngressHostMissing".to_string())]
    );

    // retried with exponential back-off
    assert_eq!(
        reconciler::error_policy(room.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        reconciler::error_policy(room.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(10))
    );
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains("hubbub_operator_reconcile_failures_total{reason=\"invalid_spec\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_api_error_stops_the_reconcile_and_is_reported() {
    let fake = FakeApi::default();
    fake.0.lock().fail_apply.insert(REDIS_STS.to_string(), 422);
    let ctx = context(&fake);
    let room = room(&fake, json!({}), 1, None);
    let err = reconciler::reconcile(room, ctx)
        .await
        .expect_err("must fail");
    assert_eq!(err.condition_reason(), "ApplyFailed");
    assert_eq!(
        fake.lines(),
        [
            p(REDIS_SVC),
            p(REDIS_STS),
            p(&format!("{ROOM}/status")),
            format!("POST {EVENTS}")
        ]
    );
    let ready = condition(&status_of(&fake), "Ready");
    assert_eq!(ready["reason"], json!("ApplyFailed"));
    assert!(
        ready["message"]
            .as_str()
            .expect("msg")
            .contains("apply StatefulSet lobby-redis"),
        "{ready}"
    );
}

fn sentinel_spec() -> Value {
    json!({"redis": {"external": {
        "mode": "sentinel",
        "sentinels": ["sentinel-0.sentinel.data:26379", "sentinel-1.sentinel.data:26379"],
        "masterName": "mymaster",
        "passwordSecretRef": {"name": "lobby-redis-auth"}
    }}})
}

fn env_of(deploy: &Value) -> BTreeMap<String, Value> {
    deploy["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            let v = e.get("value").cloned().unwrap_or(e["valueFrom"].clone());
            (e["name"].as_str().expect("name").to_string(), v)
        })
        .collect()
}

#[tokio::test]
async fn an_external_redis_gets_no_redis_of_ours_and_its_condition_is_unknown() {
    let fake = FakeApi::default();
    fake.set_status(
        DEPLOY,
        json!({"observedGeneration": 1, "replicas": 2, "readyReplicas": 2, "availableReplicas": 2, "updatedReplicas": 2}),
    );
    let ctx = context(&fake);
    reconciler::reconcile(room(&fake, sentinel_spec(), 1, None), ctx)
        .await
        .expect("reconcile");

    // nothing of the bundled Redis is applied; the operator only makes sure none of its
    // own is left (GETs that find nothing)
    assert_eq!(
        fake.lines(),
        [
            g(REDIS_STS),
            g(REDIS_SVC),
            g(SENTINEL_STS),
            g(SENTINEL_SVC),
            g(REDIS_PDB),
            g(SENTINEL_PDB),
            p(SVC),
            p(DEPLOY),
            p(PDB),
            g(INGRESS),
            g(HPA),
            p(&format!("{ROOM}/status")),
            format!("POST {EVENTS}"),
        ]
    );
    assert!(!fake.has(REDIS_STS) && !fake.has(REDIS_SVC));
    let deploy = fake
        .calls()
        .into_iter()
        .find(|c| c.path == DEPLOY)
        .expect("deploy");
    let env = env_of(&deploy.body);
    assert_eq!(
        env["HUBBUB_REDIS_SENTINELS"],
        json!("sentinel-0.sentinel.data:26379,sentinel-1.sentinel.data:26379")
    );
    assert_eq!(env["HUBBUB_REDIS_SENTINEL_MASTER"], json!("mymaster"));
    assert_eq!(
        env["HUBBUB_REDIS_PASSWORD"],
        json!({"secretKeyRef": {"name": "lobby-redis-auth", "key": "password", "optional": false}})
    );
    assert!(!env.contains_key("HUBBUB_REDIS_URL"), "{env:?}");

    let status = status_of(&fake);
    let redis = condition(&status, "RedisAvailable");
    assert_eq!(redis["status"], json!("Unknown"));
    assert_eq!(redis["reason"], json!("External"));
    assert!(
        redis["message"].as_str().expect("message").starts_with(
            "external Redis (sentinel, master mymaster) is not watched by the operator"
        ),
        "{redis}"
    );
    // Ready follows the chat server, whose /readyz fails while it cannot reach Redis
    let ready = condition(&status, "Ready");
    assert_eq!(ready["status"], json!("True"));
    assert_eq!(
        ready["message"],
        json!("chat server is available and reaches its external redis")
    );
    let notes: Vec<String> = fake
        .calls()
        .iter()
        .filter(|c| c.path == EVENTS)
        .map(|c| c.body["note"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        notes,
        ["created the chat service lobby on an external Redis (sentinel, master mymaster)"]
    );
}

#[tokio::test]
async fn moving_to_an_external_redis_deletes_the_bundled_one_and_says_so() {
    let fake = FakeApi::default();
    let ctx = context(&fake);
    reconciler::reconcile(room(&fake, json!({}), 1, None), ctx.clone())
        .await
        .expect("bundled");
    assert!(fake.has(REDIS_STS) && fake.has(REDIS_SVC));

    fake.clear_calls();
    let status = status_of(&fake);
    let cluster =
        json!({"redis": {"external": {"mode": "cluster", "nodes": ["redis-0.redis:6379"]}}});
    reconciler::reconcile(room(&fake, cluster, 2, Some(status)), ctx)
        .await
        .expect("external");
    assert_eq!(
        fake.lines(),
        [
            g(REDIS_STS),
            d(REDIS_STS),
            g(REDIS_SVC),
            d(REDIS_SVC),
            g(SENTINEL_STS),
            g(SENTINEL_SVC),
            g(REDIS_PDB),
            g(SENTINEL_PDB),
            p(SVC),
            p(DEPLOY),
            p(PDB),
            g(INGRESS),
            g(HPA),
            p(&format!("{ROOM}/status")),
            format!("POST {EVENTS}"),
            format!("POST {EVENTS}"),
            format!("POST {EVENTS}"),
        ]
    );
    assert!(!fake.has(REDIS_STS) && !fake.has(REDIS_SVC));
    let notes: Vec<String> = fake
        .calls()
        .iter()
        .filter(|c| c.path == EVENTS)
        .map(|c| c.body["note"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        notes,
        [
            "applied generation 2",
            "deleted StatefulSet lobby-redis: the spec no longer asks for it",
            "deleted Service lobby-redis: the spec no longer asks for it",
        ]
    );
    let deploy = fake
        .calls()
        .into_iter()
        .find(|c| c.path == DEPLOY)
        .expect("deploy");
    let env = env_of(&deploy.body);
    assert_eq!(
        env["HUBBUB_REDIS_CLUSTER_NODES"],
        json!("redis-0.redis:6379")
    );
    assert!(!env.contains_key("HUBBUB_REDIS_URL"), "{env:?}");
}

#[tokio::test]
async fn an_invalid_external_redis_is_refused_before_anything_is_applied() {
    let cases = [
        (
            json!({"redis": {"external": {"mode": "sentinel", "sentinels": ["s:26379"]}}}),
            "InvalidExternalRedis",
            "invalid chatroom spec: spec.redis.external: mode sentinel needs masterName",
        ),
        (
            json!({"redis": {"storage": {"size": "1Gi"},
                             "external": {"mode": "standalone", "url": "redis://r:6379/0"}}}),
            "ExternalRedisConflict",
            "invalid chatroom spec: spec.redis.external: cannot be combined with spec.redis.storage, which configures the bundled Redis; remove one of them",
        ),
    ];
    for (spec, reason, message) in cases {
        let fake = FakeApi::default();
        let ctx = context(&fake);
        let err = reconciler::reconcile(room(&fake, spec, 1, None), ctx)
            .await
            .expect_err("must fail");
        assert_eq!(err.condition_reason(), reason);
        assert_eq!(
            fake.lines(),
            [p(&format!("{ROOM}/status")), format!("POST {EVENTS}")],
            "nothing applied, nothing deleted"
        );
        let ready = condition(&status_of(&fake), "Ready");
        assert_eq!(ready["status"], json!("False"));
        assert_eq!(ready["reason"], json!(reason));
        assert_eq!(ready["message"], json!(message));
        assert_eq!(events(&fake), [("Warning".to_string(), reason.to_string())]);
    }
}

#[tokio::test]
async fn a_sentinel_redis_is_applied_with_its_pdbs_and_ready_with_a_quorum_of_sentinels() {
    let fake = FakeApi::default();
    fake.set_status(
        DEPLOY,
        json!({"observedGeneration": 1, "replicas": 2, "readyReplicas": 2, "availableReplicas": 2, "updatedReplicas": 2}),
    );
    fake.set_status(REDIS_STS, json!({"replicas": 3, "readyReplicas": 3}));
    fake.set_status(SENTINEL_STS, json!({"replicas": 3, "readyReplicas": 1}));
    let ctx = context(&fake);
    let spec = json!({"redis": {"sentinel": {}}});
    reconciler::reconcile(room(&fake, spec.clone(), 1, None), ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(
        fake.lines(),
        [
            p(REDIS_SVC),
            p(REDIS_STS),
            p(SENTINEL_SVC),
            p(SENTINEL_STS),
            p(REDIS_PDB),
            p(SENTINEL_PDB),
            p(SVC),
            p(DEPLOY),
            p(PDB),
            g(INGRESS),
            g(HPA),
            p(&format!("{ROOM}/status")),
            format!("POST {EVENTS}"),
        ]
    );
    // one Sentinel of three cannot fail over: Redis is not available yet
    let status = status_of(&fake);
    let redis = condition(&status, "RedisAvailable");
    assert_eq!(redis["status"], json!("False"));
    assert_eq!(
        redis["message"],
        json!("3/3 redis pods and 1/3 sentinels ready (a failover needs 2)")
    );
    assert_eq!(condition(&status, "Ready")["status"], json!("False"));
    let deploy = fake
        .calls()
        .into_iter()
        .find(|c| c.path == DEPLOY)
        .expect("deploy");
    let env = env_of(&deploy.body);
    assert_eq!(env["HUBBUB_REDIS_SENTINEL_MASTER"], json!("hubbub"));
    assert!(!env.contains_key("HUBBUB_REDIS_URL"));

    fake.set_status(SENTINEL_STS, json!({"replicas": 3, "readyReplicas": 2}));
    fake.clear_calls();
    reconciler::reconcile(room(&fake, spec, 1, Some(status)), ctx.clone())
        .await
        .expect("again");
    let status = status_of(&fake);
    assert_eq!(
        condition(&status, "RedisAvailable")["status"],
        json!("True")
    );
    assert_eq!(condition(&status, "Ready")["status"], json!("True"));

    // back to one Redis pod: the Sentinels and both PDBs go, with an Event each
    fake.clear_calls();
    reconciler::reconcile(room(&fake, json!({}), 2, Some(status)), ctx)
        .await
        .expect("back to one pod");
    let lines = fake.lines();
    for path in [SENTINEL_STS, SENTINEL_SVC, REDIS_PDB, SENTINEL_PDB] {
        assert!(lines.contains(&d(path)), "{path} not deleted: {lines:?}");
        assert!(!fake.has(path));
    }
    assert!(fake.has(REDIS_STS) && fake.has(REDIS_SVC));
    let notes: Vec<String> = fake
        .calls()
        .iter()
        .filter(|c| c.path == EVENTS)
        .map(|c| c.body["note"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        notes,
        [
            "applied generation 2",
            "deleted StatefulSet lobby-sentinel: the spec no longer asks for it",
            "deleted Service lobby-sentinel: the spec no longer asks for it",
            "deleted PodDisruptionBudget lobby-redis: the spec no longer asks for it",
            "deleted PodDisruptionBudget lobby-sentinel: the spec no longer asks for it",
        ]
    );
}

/// (apiGroup, resource[/subresource], verb) of a request to the fake API server.
fn permission(call: &Call) -> (String, String, String) {
    let parts: Vec<&str> = call.path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts[0] {
        "api" => (String::new(), &parts[2..]),
        _ => (parts[1].to_string(), &parts[3..]),
    };
    // rest: namespaces/NS/RESOURCE[/NAME[/SUB]]
    let resource = match rest.get(4) {
        Some(sub) => format!("{}/{sub}", rest[2]),
        None => rest[2].to_string(),
    };
    let verb = match call.method {
        Method::GET => "get",
        Method::PATCH => "patch",
        Method::POST => "create",
        Method::DELETE => "delete",
        Method::PUT => "update",
        _ => "unknown",
    };
    (group, resource, verb.to_string())
}

#[tokio::test]
async fn the_cluster_role_grants_every_call_the_reconciler_makes() {
    let fake = FakeApi::default();
    let ctx = context(&fake);
    let spec = json!({"ingress": {"host": "h.example"}, "autoscaling": {"maxReplicas": 3}});
    reconciler::reconcile(room(&fake, spec, 1, None), ctx.clone())
        .await
        .expect("create");
    let status = status_of(&fake);
    reconciler::reconcile(
        room(&fake, json!({"replicas": 1}), 2, Some(status)),
        ctx.clone(),
    )
    .await
    .expect("removal");
    reconciler::reconcile(room(&fake, json!({"ingress": {}}), 3, None), ctx.clone())
        .await
        .expect_err("invalid");
    // moving to an external Redis deletes the bundled one
    reconciler::reconcile(room(&fake, sentinel_spec(), 4, None), ctx)
        .await
        .expect("external");

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../k8s/rbac.yaml");
    let text = std::fs::read_to_string(&path).expect("k8s/rbac.yaml");
    let role = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).expect("yaml"))
        .find(|d| d["kind"] == "ClusterRole")
        .expect("a ClusterRole");
    let granted = |(group, resource, verb): &(String, String, String)| {
        role["rules"].as_array().expect("rules").iter().any(|rule| {
            let has =
                |key: &str, want: &str| rule[key].as_array().expect(key).iter().any(|v| v == want);
            has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
        })
    };
    let mut used: Vec<_> = fake.calls().iter().map(permission).collect();
    used.sort();
    used.dedup();
    let expected = [
        ("", "services", "delete"),
        ("", "services", "get"),
        ("", "services", "patch"),
        ("apps", "deployments", "patch"),
        ("apps", "statefulsets", "delete"),
        ("apps", "statefulsets", "get"),
        ("apps", "statefulsets", "patch"),
        ("autoscaling", "horizontalpodautoscalers", "delete"),
        ("autoscaling", "horizontalpodautoscalers", "get"),
        ("autoscaling", "horizontalpodautoscalers", "patch"),
        ("events.k8s.io", "events", "create"),
        // the recorder folds a repeated Event (two Created) into a series by patching it
        ("events.k8s.io", "events", "patch"),
        ("hubbub.dev", "chatrooms/status", "patch"),
        ("networking.k8s.io", "ingresses", "delete"),
        ("networking.k8s.io", "ingresses", "get"),
        ("networking.k8s.io", "ingresses", "patch"),
        ("policy", "poddisruptionbudgets", "delete"),
        ("policy", "poddisruptionbudgets", "get"),
        ("policy", "poddisruptionbudgets", "patch"),
    ]
    .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()));
    assert_eq!(
        used, expected,
        "the reconciler's API calls changed: review k8s/rbac.yaml"
    );
    for p in &used {
        assert!(granted(p), "k8s/rbac.yaml does not grant {p:?}");
    }
}
