//! The commands of `hubbub-operator`: `run` (the default: the controller, in-cluster or
//! with a kubeconfig), `crd` (print the CustomResourceDefinition) and `render -f FILE`
//! (print the objects a ChatRoom becomes, without a cluster). Logging is set up by the
//! binary with [`hubbub_telemetry::init`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{ArgAction, Args, Parser, Subcommand};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};
use tracing::{error, info, warn};

use crate::Error;
use crate::crd::{self, ChatRoom};
use crate::leader::{LeaseConfig, LeaseLock};
use crate::metrics::{self, Metrics};
use crate::reconciler::{self, Context};
use crate::resources::{self, Images};
use hubbub_telemetry::LogFormat;

/// `hubbub-operator`: reconciles `ChatRoom` resources into chat services.
#[derive(Debug, Parser)]
#[command(
    name = "hubbub-operator",
    version,
    about = "hubbub-operator: reconciles ChatRoom resources into hubbub chat services",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Settings of `run` when no command is given.
    #[command(flatten)]
    pub run: RunArgs,
}

/// A command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller (the default).
    Run(RunArgs),
    /// Print the ChatRoom CustomResourceDefinition as YAML.
    Crd,
    /// Print the objects that would be applied for a ChatRoom, as YAML, without a cluster.
    Render(RenderArgs),
}

/// Images used when a ChatRoom names none.
#[derive(Debug, Clone, Args)]
pub struct ImageArgs {
    /// Chat server image for ChatRooms that do not set `spec.image`.
    #[arg(long, env = "HUBBUB_OPERATOR_SERVER_IMAGE", default_value_t = resources::default_server_image())]
    pub server_image: String,

    /// Redis image for ChatRooms that do not set `spec.redis.image`.
    #[arg(long, env = "HUBBUB_OPERATOR_REDIS_IMAGE", default_value = resources::DEFAULT_REDIS_IMAGE)]
    pub redis_image: String,
}

impl ImageArgs {
    /// As [`Images`].
    pub fn images(&self) -> Images {
        Images {
            server: self.server_image.clone(),
            redis: self.redis_image.clone(),
        }
    }
}

/// Settings of `run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Default images.
    #[command(flatten)]
    pub images: ImageArgs,

    /// Address of the operator's /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "HUBBUB_OPERATOR_METRICS_BIND",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_bind: SocketAddr,

    /// Elect a leader through a Lease so that only one replica reconciles.
    #[arg(long, env = "HUBBUB_OPERATOR_LEADER_ELECTION", default_value_t = true, action = ArgAction::Set)]
    pub leader_election: bool,

    /// Namespace of the leader-election Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// Name of the leader-election Lease.
    #[arg(long, default_value = "hubbub-operator")]
    pub lease_name: String,

    /// This replica's identity in the Lease and in Events (default: the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Log filter in tracing syntax, e.g. `info` or `hubbub=debug,kube=info`.
    #[arg(long = "log", env = "HUBBUB_LOG", default_value = "info")]
    pub log: String,

    /// Log format.
    #[arg(long, env = "HUBBUB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Settings of `render`.
#[derive(Debug, Clone, Args)]
pub struct RenderArgs {
    /// The ChatRoom YAML file (`-` for standard input).
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,

    /// Default images.
    #[command(flatten)]
    pub images: ImageArgs,
}

/// `hubbub-operator crd`: the CRD YAML.
pub fn crd_command() -> Result<String, Error> {
    Ok(crd::crd_yaml()?)
}

/// `hubbub-operator render -f FILE`.
pub fn render_command(args: &RenderArgs) -> Result<String, Error> {
    let source = args.file.display().to_string();
    let text = if source == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(&args.file)
    }
    .map_err(|e| Error::Input {
        path: source.clone(),
        reason: e.to_string(),
    })?;
    crate::render::render(&text, &args.images.images(), &source)
}

/// Time the controller gets after SIGTERM to finish the reconciliations that are running.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Resolves `grace` after `stop` turns true.
async fn after_stop(mut stop: tokio::sync::watch::Receiver<bool>, grace: std::time::Duration) {
    if stop.wait_for(|stop| *stop).await.is_err() {
        // the sender is gone: no stop will ever come
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(grace).await;
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `hubbub-operator run`: serves metrics, waits for leadership, then runs the controller
/// until SIGTERM/SIGINT (returns `Ok`) or leadership is lost (returns the error).
pub async fn run(args: RunArgs) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::new());
    let server = metrics::serve(args.metrics_bind, metrics.clone())?;
    info!(addr = %server.addr(), "serving /metrics, /healthz and /readyz");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutdown signal received");
        let _ = stop_tx.send(true);
    });

    let result = run_controller(&args, metrics, stop_rx).await;
    server.stop();
    result
}

async fn run_controller(
    args: &RunArgs,
    metrics: Arc<Metrics>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), Error> {
    let client = Client::try_default().await.map_err(Error::Client)?;
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("hubbub-operator-{}", std::process::id()));

    let lock = args.leader_election.then(|| {
        LeaseLock::new(
            client.clone(),
            LeaseConfig::new(
                args.lease_namespace.clone(),
                args.lease_name.clone(),
                identity.clone(),
            ),
        )
    });
    // a standby replica is healthy and ready: it is doing its job by waiting
    metrics.set_ready(true);
    if lock.is_some() {
        info!(lease = %args.lease_name, namespace = %args.lease_namespace, %identity, "waiting to become leader");
    }
    if let Some(lock) = &lock
        && !lock.acquire(stop.clone()).await?
    {
        return Ok(());
    }
    metrics.leader.set(1);

    let ctx = Arc::new(Context::new(
        client.clone(),
        args.images.images(),
        Some(identity),
        metrics.clone(),
    ));
    let rooms: Api<ChatRoom> = Api::all(client.clone());
    // children are watched only when they carry our managed-by label: a cluster's other
    // Deployments and Services never enter the operator's caches
    let cfg = watcher::Config::default().labels(&format!(
        "app.kubernetes.io/managed-by={}",
        resources::MANAGER
    ));
    let mut stop_controller = stop.clone();
    let stop_grace = stop.clone();
    let controller = Controller::new(rooms, watcher::Config::default())
        .owns(Api::<Deployment>::all(client.clone()), cfg.clone())
        .owns(Api::<StatefulSet>::all(client.clone()), cfg.clone())
        .owns(Api::<Service>::all(client.clone()), cfg.clone())
        .owns(Api::<PodDisruptionBudget>::all(client.clone()), cfg.clone())
        .owns(Api::<Ingress>::all(client.clone()), cfg.clone())
        .owns(Api::<HorizontalPodAutoscaler>::all(client.clone()), cfg);
    metrics.watch_rooms(controller.store());
    let controller = controller
        .graceful_shutdown_on(async move {
            let _ = stop_controller.wait_for(|stop| *stop).await;
        })
        .run(reconciler::reconcile, reconciler::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(room = %obj, "reconcile done"),
                Err(e) => warn!(error = %e, "controller error"),
            }
        });
    // After the stop signal running reconciliations get SHUTDOWN_GRACE to finish. The
    // controller does not end by itself while its caches never synced (API unreachable).
    let controller = async move {
        let mut controller = std::pin::pin!(controller);
        tokio::select! {
            _ = &mut controller => {}
            _ = after_stop(stop_grace, SHUTDOWN_GRACE) => {
                warn!("controller did not stop within the grace period; abandoning it");
            }
        }
    };

    info!("controller started");
    let result = match &lock {
        Some(lock) => tokio::select! {
            _ = controller => Ok(()),
            lost = lock.hold() => {
                error!(error = %lost, "stopping: leadership lost");
                Err(lost)
            }
        },
        None => {
            controller.await;
            Ok(())
        }
    };
    metrics.leader.set(0);
    if let (Some(lock), Ok(())) = (&lock, &result) {
        lock.release().await;
    }
    info!("controller stopped");
    result
}
