//! `hubbub-bench`: a Socket.IO v5 load tool (fan-out, connect-storm, idle, polling).
//! Parses arguments and calls `hubbub_bench`; every run is bounded and only
//! targets the URLs it is given.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hubbub_bench::client::Target;
use hubbub_bench::{churn, fanout, floor, idle, polling, saturate, storm};

#[derive(Debug, Parser)]
#[command(name = "hubbub-bench", version, about = "Socket.IO v5 load tool")]
struct Cli {
    /// Print the report as JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Runtime worker threads (default: the CPUs this process may run on).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Seconds allowed for each connection's handshake.
    #[arg(long, global = true, default_value_t = 10)]
    connect_timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publishers emit `sendToAll`; subscribers measure `messages` delivery.
    Fanout {
        /// Server URL(s), comma-separated (ws:// or http://host:port[/path/]); subscribers round-robin over them.
        #[arg(long, required = true)]
        url: String,
        /// Receiving connections.
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        /// Sending connections (not counted as receivers).
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        /// Messages per second, all publishers together.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Bytes of JSON in each message's argument.
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Seconds of sending.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Seconds to wait after the last send for deliveries in flight.
        #[arg(long, default_value_t = 5)]
        drain: u64,
        /// Handshakes in flight at once while setting up.
        #[arg(long, default_value_t = 100)]
        concurrency: usize,
        /// Server PIDs whose CPU time over the run is reported, comma-separated.
        #[arg(long, value_delimiter = ',')]
        pids: Vec<u32>,
    },
    /// Fan-out at a rising rate until loss or p99 over the bound; reports the best step.
    Saturate {
        /// Server URL(s), comma-separated; subscribers round-robin over them.
        #[arg(long, required = true)]
        url: String,
        /// Receiving connections.
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        /// Sending connections (not counted as receivers).
        #[arg(long, default_value_t = 2)]
        publishers: usize,
        /// Messages per second of the first step.
        #[arg(long, default_value_t = 50.0)]
        start_rate: f64,
        /// Each step's rate is the previous one times this.
        #[arg(long, default_value_t = 1.5)]
        factor: f64,
        /// Most steps of the ramp.
        #[arg(long, default_value_t = 10)]
        max_steps: usize,
        /// Bisections between the best rate and the first failing one after the ramp.
        #[arg(long, default_value_t = 0)]
        refine: usize,
        /// Largest acceptable p99 in milliseconds.
        #[arg(long, default_value_t = 50.0)]
        p99_ms: f64,
        /// Seconds of an unjudged first run at the start rate (0: none).
        #[arg(long, default_value_t = 3)]
        warmup: u64,
        /// Bytes of JSON in each message's argument.
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Seconds of sending per step.
        #[arg(long, default_value_t = 5)]
        duration: u64,
        /// Seconds to wait after each step's last send.
        #[arg(long, default_value_t = 3)]
        drain: u64,
        /// Handshakes in flight at once while setting up.
        #[arg(long, default_value_t = 100)]
        concurrency: usize,
        /// Server PIDs whose CPU time over the run is reported, comma-separated.
        #[arg(long, value_delimiter = ',')]
        pids: Vec<u32>,
    },
    /// Connect, wait for the CONNECT acknowledgement, close; as fast as possible.
    ConnectStorm {
        /// Server URL(s), comma-separated.
        #[arg(long, required = true)]
        url: String,
        /// Connections in total.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Handshakes in flight at once.
        #[arg(long, default_value_t = 100)]
        concurrency: usize,
    },
    /// Clients connecting and leaving in every way for a while; then checks that the
    /// server's sessions, sockets, tasks, fds and memory return to their baseline.
    Churn {
        /// Server URL (one hubbub server; its /metrics is read on the same port).
        #[arg(long, required = true)]
        url: String,
        /// Clients in flight at once.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// Seconds of churn.
        #[arg(long, default_value_t = 60)]
        duration: u64,
        /// Seconds the server may take to settle once the clients stop.
        #[arg(long, default_value_t = 30)]
        settle: u64,
        /// MiB resident memory may stay above its baseline.
        #[arg(long, default_value_t = 16)]
        rss_slack_mib: u64,
        /// Seconds one client may take before it counts as stuck.
        #[arg(long, default_value_t = 30)]
        client_timeout: u64,
    },
    /// No server: the time and CPU this machine's kernel needs to write one frame to each
    /// of many loopback connections (the floor under any server's fan-out).
    Floor {
        /// Receiving connections.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// WebSocket payload bytes per frame (a 100-byte `messages` event is about 130).
        #[arg(long, default_value_t = 130)]
        size: usize,
        /// Broadcasts in all.
        #[arg(long, default_value_t = 1000)]
        broadcasts: usize,
        /// Broadcasts per second.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// CPU to pin the writing thread to.
        #[arg(long)]
        writer_cpu: Option<usize>,
        /// CPU to pin the reading thread to.
        #[arg(long)]
        reader_cpu: Option<usize>,
    },
    /// Open and hold connections; report connect rate and server memory per connection.
    Idle {
        /// Server URL(s), comma-separated.
        #[arg(long, required = true)]
        url: String,
        /// Connections to hold.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Handshakes in flight at once.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// Seconds to hold all connections before measuring.
        #[arg(long, default_value_t = 5)]
        hold: u64,
        /// Server PIDs whose VmRSS is measured before and after, comma-separated.
        #[arg(long, value_delimiter = ',')]
        pids: Vec<u32>,
    },
    /// HTTP long-polling round trips (POST an acked event, GET until the ack), each session
    /// opened at --url and then polled through --via (another replica: forwarded).
    Polling {
        /// Where each session is opened (http://host:port[/path/]); that replica owns it.
        #[arg(long, required = true)]
        url: String,
        /// Where the session's POSTs and GETs go; default: --url (no forwarding).
        #[arg(long)]
        via: Option<String>,
        /// Clients looping at once.
        #[arg(long, default_value_t = 10)]
        clients: usize,
        /// Seconds of looping.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Server PIDs whose CPU time over the run is reported, comma-separated.
        #[arg(long, value_delimiter = ',')]
        pids: Vec<u32>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.threads {
        runtime.worker_threads(n.max(1));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let connect_timeout = Duration::from_secs(cli.connect_timeout);
    let mut churn_failed = false;
    let (json, table) = runtime.block_on(async {
        Ok::<_, anyhow::Error>(match cli.command {
            Command::Fanout {
                url,
                subscribers,
                publishers,
                rate,
                size,
                duration,
                drain,
                concurrency,
                pids,
            } => {
                let r = fanout::run(fanout::FanoutConfig {
                    targets: Target::parse_list(&url)?,
                    subscribers,
                    publishers,
                    rate,
                    size,
                    duration: Duration::from_secs(duration),
                    drain: Duration::from_secs(drain),
                    connect_concurrency: concurrency,
                    connect_timeout,
                    pids,
                })
                .await?;
                (serde_json::to_string_pretty(&r)?, r.table())
            }
            Command::Saturate {
                url,
                subscribers,
                publishers,
                start_rate,
                factor,
                max_steps,
                refine,
                p99_ms,
                warmup,
                size,
                duration,
                drain,
                concurrency,
                pids,
            } => {
                let r = saturate::run(saturate::SaturateConfig {
                    fanout: fanout::FanoutConfig {
                        targets: Target::parse_list(&url)?,
                        subscribers,
                        publishers,
                        rate: start_rate,
                        size,
                        duration: Duration::from_secs(duration),
                        drain: Duration::from_secs(drain),
                        connect_concurrency: concurrency,
                        connect_timeout,
                        pids,
                    },
                    factor,
                    max_steps,
                    refine,
                    p99_bound_ms: p99_ms,
                    warmup: Duration::from_secs(warmup),
                })
                .await?;
                (serde_json::to_string_pretty(&r)?, r.table())
            }
            Command::ConnectStorm {
                url,
                connections,
                concurrency,
            } => {
                let r = storm::run(storm::StormConfig {
                    targets: Target::parse_list(&url)?,
                    connections,
                    concurrency,
                    connect_timeout,
                })
                .await?;
                (serde_json::to_string_pretty(&r)?, r.table())
            }
            Command::Polling {
                url,
                via,
                clients,
                duration,
                pids,
            } => {
                let url = Target::parse(&url)?;
                let via = match via {
                    Some(via) => Target::parse(&via)?,
                    None => url.clone(),
                };
                let r = polling::run(polling::PollingOptions {
                    url,
                    via,
                    clients,
                    duration: Duration::from_secs(duration),
                    pids,
                })
                .await?;
                (serde_json::to_string_pretty(&r)?, r.table())
            }
            Command::Churn {
                url,
                concurrency,
                duration,
                settle,
                rss_slack_mib,
                client_timeout,
            } => {
                let r = churn::run(churn::ChurnConfig {
                    target: Target::parse(&url)?,
                    concurrency,
                    duration: Duration::from_secs(duration),
                    settle: Duration::from_secs(settle),
                    rss_slack: rss_slack_mib * 1024 * 1024,
                    client_timeout: Duration::from_secs(client_timeout),
                })
                .await?;
                if !r.settled || r.failed > 0 {
                    churn_failed = true;
                }
                (serde_json::to_string_pretty(&r)?, r.table())
            }
            Command::Floor {
                connections,
                size,
                broadcasts,
                rate,
                writer_cpu,
                reader_cpu,
            } => {
                let config = floor::FloorConfig {
                    connections,
                    size,
                    broadcasts,
                    rate,
                    writer_cpu,
                    reader_cpu,
                };
                let r = tokio::task::spawn_blocking(move || floor::run(config))
                    .await
                    .map_err(|e| anyhow::anyhow!("the floor run failed: {e}"))??;
                (serde_json::to_string_pretty(&r)?, r.table())
            }
            Command::Idle {
                url,
                connections,
                concurrency,
                hold,
                pids,
            } => {
                let r = idle::run(idle::IdleConfig {
                    targets: Target::parse_list(&url)?,
                    connections,
                    concurrency,
                    hold: Duration::from_secs(hold),
                    connect_timeout,
                    pids,
                })
                .await?;
                (serde_json::to_string_pretty(&r)?, r.table())
            }
        })
    })?;
    if cli.json {
        println!("{json}");
    } else {
        print!("{table}");
    }
    // Held connections are dropped with the runtime; do not wait for their tasks.
    runtime.shutdown_background();
    if churn_failed {
        anyhow::bail!("churn: the server did not return to its baseline, or clients failed");
    }
    Ok(())
}
