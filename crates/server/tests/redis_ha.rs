//! Integration tests of hubbub on Redis's distributed modes, against real `redis-server`
//! processes started on free loopback ports with private data directories: a master with
//! a replica and three Sentinels (failover followed), a Redis Cluster of three masters
//! with one replica each (sharded pub/sub, the chat's state in one slot, a master failover
//! followed, room channels spread over the shards), interoperability with a Node.js
//! socket.io server using `createShardedAdapter` on the same cluster, passwords of the
//! Sentinels and of the data nodes, TLS with a private CA (`rediss://`, Sentinels), and
//! settings that cannot work.

#[path = "redis_ha/bad_settings.rs"]
mod bad_settings;
#[path = "redis_ha/cluster.rs"]
mod cluster;
#[allow(dead_code)] // shared with the redis_cluster suite
#[path = "redis_cluster/harness.rs"]
mod harness;
#[path = "redis_ha/passwords.rs"]
mod passwords;
#[path = "redis_ha/pki.rs"]
mod pki;
#[path = "redis_ha/sentinel.rs"]
mod sentinel;
#[path = "redis_ha/sharded_interop.rs"]
mod sharded_interop;
#[allow(dead_code)]
#[path = "redis_cluster/support.rs"]
mod support;
#[path = "redis_ha/tls.rs"]
mod tls;
#[path = "redis_ha/topology.rs"]
mod topology;
