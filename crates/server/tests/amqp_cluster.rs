//! Integration tests of the RabbitMQ back end against real `rabbitmq-server` nodes started
//! by the tests (private nodes on free loopback ports, see `amqp_cluster/broker.rs`):
//! three replicas sharing RabbitMQ and Redis with the official socket.io-client, three
//! replicas on RabbitMQ alone, the broker stopped and restarted, a replica SIGKILLed,
//! unusable settings, and `amqps://` with a private CA.

#[path = "amqp_cluster/alone.rs"]
mod alone;
#[path = "amqp_cluster/broker.rs"]
mod broker;
#[path = "amqp_cluster/failures.rs"]
mod failures;
#[allow(dead_code)]
#[path = "redis_cluster/harness.rs"]
mod harness;
#[path = "amqp_cluster/replicas.rs"]
mod replicas;
#[allow(dead_code)]
#[path = "redis_cluster/support.rs"]
mod support;
#[path = "amqp_cluster/tls.rs"]
mod tls;
