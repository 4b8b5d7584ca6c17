//! Integration tests of the Redis scale-out against real `redis-server` processes started
//! on free loopback ports: the connection layer (readiness, fail-fast, resubscription),
//! the shared store (history, questions, presence across replicas, outages), several
//! hubbub-server replicas with the official socket.io-client, and interoperability with a
//! Node.js socket.io server using @socket.io/redis-adapter and with @socket.io/redis-emitter.

#[path = "redis_cluster/harness.rs"]
mod harness;
#[path = "redis_cluster/interop.rs"]
mod interop;
#[path = "redis_cluster/link.rs"]
mod link;
#[path = "redis_cluster/replicas.rs"]
mod replicas;
#[path = "redis_cluster/store.rs"]
mod store;
#[path = "redis_cluster/support.rs"]
mod support;
