//! Integration tests of hubbub on Redis's distributed modes, against real `redis-server`
//! processes started on free loopback ports with private data directories: a master with
//! a replica and three Sentinels (failover followed), and settings that cannot work.

#[path = "redis_ha/bad_settings.rs"]
mod bad_settings;
#[allow(dead_code)] // shared with the redis_cluster suite
#[path = "redis_cluster/harness.rs"]
mod harness;
#[path = "redis_ha/sentinel.rs"]
mod sentinel;
#[allow(dead_code)]
#[path = "redis_cluster/support.rs"]
mod support;
#[path = "redis_ha/topology.rs"]
mod topology;
