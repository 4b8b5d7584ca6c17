//! Integration tests of the Redis scale-out against real `redis-server` processes started
//! on free loopback ports: the connection layer (readiness, fail-fast, resubscription),
//! the shared store (history, questions, presence across replicas, outages).

#[path = "redis_cluster/link.rs"]
mod link;
#[path = "redis_cluster/store.rs"]
mod store;
#[path = "redis_cluster/support.rs"]
mod support;
