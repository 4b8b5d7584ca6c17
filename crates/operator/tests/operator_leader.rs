//! Lease-based leader election against a mocked API server (`tower-test`): the exact
//! requests for creating, respecting, taking over, losing a race for and releasing the
//! Lease.

use http::{Method, Request, Response, StatusCode};
use hubbub_operator::leader::{LeaseConfig, LeaseLock};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::Handle;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/hubbub-operator";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";

fn lock() -> (LeaseLock, Handle<Request<Body>, Response<Body>>) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let config = LeaseConfig::new("ops".into(), "hubbub-operator".into(), "pod-a".into());
    (LeaseLock::new(client, config), handle)
}

/// Answers the next request with `code` and `body` after checking method and path;
/// returns the request body.
async fn expect(
    handle: &mut Handle<Request<Body>, Response<Body>>,
    method: Method,
    path: &str,
    code: u16,
    body: Value,
) -> Value {
    let (req, send) = handle.next_request().await.expect("a request");
    assert_eq!(req.method(), method, "{}", req.uri());
    assert_eq!(req.uri().path(), path);
    let bytes = req.into_body().collect_bytes().await.expect("body");
    let sent = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("json")
    };
    send.send_response(
        Response::builder()
            .status(StatusCode::from_u16(code).expect("code"))
            .body(Body::from(serde_json::to_vec(&body).expect("json")))
            .expect("response"),
    );
    sent
}

fn lease(holder: &str, renewed: Timestamp, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "hubbub-operator", "namespace": "ops", "resourceVersion": "7"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                 "leaseTransitions": transitions}
    })
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "NotFound", "code": 404})
}

#[tokio::test]
async fn creates_the_lease_when_there_is_none() {
    let (lock, mut api) = lock();
    let task = tokio::spawn(async move { lock.try_acquire_or_renew().await });
    expect(&mut api, Method::GET, LEASE, 404, not_found()).await;
    let created = expect(
        &mut api,
        Method::POST,
        LEASES,
        201,
        lease("pod-a", Timestamp::now(), 0),
    )
    .await;
    assert!(task.await.expect("join").expect("acquire"));
    assert_eq!(created["spec"]["holderIdentity"], json!("pod-a"));
    assert_eq!(created["spec"]["leaseDurationSeconds"], json!(15));
    assert_eq!(created["metadata"]["name"], json!("hubbub-operator"));
}

#[tokio::test]
async fn respects_a_live_lease_of_another_replica() {
    let (lock, mut api) = lock();
    let task = tokio::spawn(async move { lock.try_acquire_or_renew().await });
    expect(
        &mut api,
        Method::GET,
        LEASE,
        200,
        lease("pod-b", Timestamp::now(), 3),
    )
    .await;
    assert!(!task.await.expect("join").expect("attempt"));
    // and makes no write before the lock (and its client) is gone
    assert!(api.next_request().await.is_none());
}

#[tokio::test]
async fn takes_over_an_expired_lease_with_optimistic_concurrency() {
    let (lock, mut api) = lock();
    let task = tokio::spawn(async move { lock.try_acquire_or_renew().await });
    let stale = Timestamp::now() - SignedDuration::from_secs(60);
    expect(&mut api, Method::GET, LEASE, 200, lease("pod-b", stale, 3)).await;
    let written = expect(
        &mut api,
        Method::PUT,
        LEASE,
        200,
        lease("pod-a", Timestamp::now(), 4),
    )
    .await;
    assert!(task.await.expect("join").expect("takeover"));
    assert_eq!(
        written["metadata"]["resourceVersion"],
        json!("7"),
        "the write is conditional"
    );
    assert_eq!(written["spec"]["holderIdentity"], json!("pod-a"));
    assert_eq!(written["spec"]["leaseTransitions"], json!(4));
}

#[tokio::test]
async fn losing_the_race_for_a_lease_is_not_an_error() {
    let (lock, mut api) = lock();
    let task = tokio::spawn(async move { lock.try_acquire_or_renew().await });
    let stale = Timestamp::now() - SignedDuration::from_secs(60);
    expect(&mut api, Method::GET, LEASE, 200, lease("pod-b", stale, 3)).await;
    expect(
        &mut api,
        Method::PUT,
        LEASE,
        409,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Conflict", "code": 409}),
    )
    .await;
    assert!(!task.await.expect("join").expect("attempt"));
}

#[tokio::test]
async fn renews_its_own_lease_and_releases_it_on_shutdown() {
    let (lock, mut api) = lock();
    let lock = std::sync::Arc::new(lock);
    let l = lock.clone();
    let task = tokio::spawn(async move { l.try_acquire_or_renew().await });
    let earlier = Timestamp::now() - SignedDuration::from_secs(4);
    expect(
        &mut api,
        Method::GET,
        LEASE,
        200,
        lease("pod-a", earlier, 2),
    )
    .await;
    let renewed = expect(
        &mut api,
        Method::PUT,
        LEASE,
        200,
        lease("pod-a", Timestamp::now(), 2),
    )
    .await;
    assert!(task.await.expect("join").expect("renew"));
    assert_eq!(
        renewed["spec"]["leaseTransitions"],
        json!(2),
        "a renewal is no transition"
    );

    let l = lock.clone();
    let task = tokio::spawn(async move { l.release().await });
    expect(
        &mut api,
        Method::GET,
        LEASE,
        200,
        lease("pod-a", Timestamp::now(), 2),
    )
    .await;
    let released = expect(
        &mut api,
        Method::PUT,
        LEASE,
        200,
        lease("", Timestamp::now(), 2),
    )
    .await;
    task.await.expect("join");
    assert!(
        released["spec"].get("holderIdentity").is_none(),
        "{released}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_lease_was_taken_reports_leadership_lost() {
    let (lock, mut api) = lock();
    // hold() renews every 5 s; paused time advances by itself while everything waits
    let task = tokio::spawn(async move { lock.hold().await });
    let mine = Timestamp::now();
    expect(&mut api, Method::GET, LEASE, 200, lease("pod-a", mine, 1)).await;
    expect(&mut api, Method::PUT, LEASE, 200, lease("pod-a", mine, 1)).await;
    // someone else holds it now (e.g. after a long pause of this process)
    expect(
        &mut api,
        Method::GET,
        LEASE,
        200,
        lease("pod-b", Timestamp::now(), 2),
    )
    .await;
    let err = task.await.expect("join");
    assert_eq!(err.to_string(), "lost leadership of lease hubbub-operator");
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_gives_up_before_its_lease_expires() {
    let (lock, mut api) = lock();
    let task = tokio::spawn(async move { lock.hold().await });
    let started = tokio::time::Instant::now();
    // the API server answers every renewal attempt with an error
    let mut attempts = 0;
    while !task.is_finished() {
        let Some((_, send)) = api.next_request().await else {
            break;
        };
        attempts += 1;
        send.send_response(
            Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .body(Body::from(
                    serde_json::to_vec(
                        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "reason": "InternalError", "code": 500}),
                    )
                    .expect("json"),
                ))
                .expect("response"),
        );
    }
    let err = task.await.expect("join");
    assert_eq!(err.to_string(), "lost leadership of lease hubbub-operator");
    // gave up after two failed renewals (10 s), before the 15 s lease could run out
    assert_eq!(attempts, 2);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}
