//! Leader election with a `coordination.k8s.io/v1` Lease, so that two or more operator
//! replicas can run and only one reconciles.
//!
//! The protocol is the one client-go uses: the holder writes its identity and renews
//! `renewTime` every [`LeaseConfig::renew_every`]; a candidate takes the Lease over only
//! when it is free or `renewTime + leaseDurationSeconds` has passed. Every write is an
//! update with the `resourceVersion` that was read, so two candidates racing for the
//! same Lease cannot both win (the loser gets 409 Conflict). [`decide`] is the pure part.
//! A leader that cannot renew before its lease runs out stops (the process exits and
//! restarts as a candidate) rather than risk two reconcilers.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tracing::{debug, info, warn};

use crate::Error;

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease (the operator's own, from `POD_NAMESPACE`).
    pub namespace: String,
    /// Name of the Lease (`--lease-name`, default `hubbub-operator`).
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal (15 s).
    pub duration: Duration,
    /// How often the leader renews, and a candidate retries (5 s).
    pub renew_every: Duration,
}

impl LeaseConfig {
    /// The defaults client-go uses (15 s lease, renewal every 5 s... client-go retries
    /// every 2 s; 5 s keeps API traffic low for a single-purpose operator).
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        Self {
            namespace,
            name,
            identity,
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }
}

/// What a candidate should do with the Lease it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease: create it, holding it.
    Create,
    /// It is ours: renew it.
    Renew,
    /// It is free or expired: take it over.
    TakeOver,
    /// Someone else holds it: wait.
    Wait {
        /// The current holder.
        holder: String,
    },
}

/// Decides what `identity` should do with `lease` at `now`. Pure.
pub fn decide(lease: Option<&Lease>, identity: &str, now: Timestamp) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    match spec.renew_time.or(spec.acquire_time) {
        Some(MicroTime(renewed)) if renewed + duration > now => Decision::Wait { holder },
        _ => Decision::TakeOver,
    }
}

/// A handle on the Lease for one candidate.
pub struct LeaseLock {
    api: Api<Lease>,
    config: LeaseConfig,
}

impl LeaseLock {
    /// A lock on `config.namespace/config.name`.
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    /// The settings.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    fn spec(&self, previous: Option<&LeaseSpec>, now: Timestamp, takeover: bool) -> LeaseSpec {
        let transitions = previous.and_then(|s| s.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.duration.as_secs() as i32),
            acquire_time: if takeover {
                Some(MicroTime(now))
            } else {
                previous
                    .and_then(|s| s.acquire_time.clone())
                    .or(Some(MicroTime(now)))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if takeover && previous.is_some() {
                transitions + 1
            } else {
                transitions
            }),
            ..LeaseSpec::default()
        }
    }

    /// One attempt to become or stay the leader. `Ok(true)`: we hold the Lease until
    /// `now + duration`.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, Error> {
        let name = &self.config.name;
        let current = self
            .api
            .get_opt(name)
            .await
            .map_err(|e| Error::kube("get Lease", e))?;
        let now = Timestamp::now();
        let result = match decide(current.as_ref(), &self.config.identity, now) {
            Decision::Wait { holder } => {
                debug!(lease = %name, %holder, "lease held by another replica");
                return Ok(false);
            }
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(None, now, true)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            decision @ (Decision::Renew | Decision::TakeOver) => {
                // a Lease was read in this branch: decide returns Create only for None
                let Some(mut lease) = current else {
                    return Ok(false);
                };
                let takeover = decision == Decision::TakeOver;
                lease.spec = Some(self.spec(lease.spec.as_ref(), now, takeover));
                if takeover {
                    info!(lease = %name, identity = %self.config.identity, "taking over the lease");
                }
                // replace carries the resourceVersion we read: a concurrent writer makes it fail with 409
                self.api.replace(name, &PostParams::default(), &lease).await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(Error::kube("write Lease", e)),
        }
    }

    /// Waits until this replica is the leader (or `shutdown` fires: `Ok(false)`).
    pub async fn acquire(
        &self,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<bool, Error> {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
                    return Ok(true);
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "leader election attempt failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.renew_every) => {}
                _ = shutdown.wait_for(|stop| *stop) => return Ok(false),
            }
        }
    }

    /// Renews the Lease until renewal fails for longer than the lease lasts or another
    /// replica holds it; then returns [`Error::LeadershipLost`].
    pub async fn hold(&self) -> Error {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.config.renew_every).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => return Error::LeadershipLost(self.config.name.clone()),
                Err(e) => {
                    warn!(error = %e, "lease renewal failed");
                    // stop before the lease can expire under us
                    if last_renewal.elapsed() + self.config.renew_every >= self.config.duration {
                        return Error::LeadershipLost(self.config.name.clone());
                    }
                }
            }
        }
    }

    /// Gives the Lease up (on shutdown) so that a standby replica takes over at once.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        spec.acquire_time = None;
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = %self.config.name, "released the lease"),
            Err(e) => warn!(error = %e, "could not release the lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_secs: i64, duration: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                lease_duration_seconds: Some(duration),
                renew_time: Some(MicroTime(
                    Timestamp::from_second(renewed_secs).expect("time"),
                )),
                ..LeaseSpec::default()
            }),
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("time")
    }

    #[test]
    fn no_lease_is_created() {
        assert_eq!(decide(None, "a", at(100)), Decision::Create);
    }

    #[test]
    fn own_lease_is_renewed_even_when_expired() {
        assert_eq!(
            decide(Some(&lease(Some("a"), 0, 15)), "a", at(100)),
            Decision::Renew
        );
    }

    #[test]
    fn live_lease_of_another_is_respected() {
        assert_eq!(
            decide(Some(&lease(Some("b"), 90, 15)), "a", at(100)),
            Decision::Wait { holder: "b".into() }
        );
    }

    #[test]
    fn expired_or_released_lease_is_taken_over() {
        assert_eq!(
            decide(Some(&lease(Some("b"), 80, 15)), "a", at(100)),
            Decision::TakeOver
        );
        assert_eq!(
            decide(Some(&lease(None, 99, 15)), "a", at(100)),
            Decision::TakeOver
        );
        // exactly at expiry the lease is over
        assert_eq!(
            decide(Some(&lease(Some("b"), 85, 15)), "a", at(100)),
            Decision::TakeOver
        );
    }
}
