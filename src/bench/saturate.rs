//! The saturate scenario: fan-out runs at a rising message rate (each step
//! `factor` times the last) until a step loses deliveries or its p99 passes
//! the bound; reports the best step that met both. Bounded by `max_steps`.

use std::time::Duration;

use serde::Serialize;

use super::BenchError;
use super::fanout::{self, FanoutConfig, FanoutReport};

/// A saturate run: the fan-out settings of every step plus the ramp.
#[derive(Debug, Clone)]
pub struct SaturateConfig {
    /// The fan-out of each step; its `rate` is the first step's rate.
    pub fanout: FanoutConfig,
    /// Each step's rate is the previous one times this (> 1).
    pub factor: f64,
    /// Most steps.
    pub max_steps: usize,
    /// Largest acceptable p99, in milliseconds.
    pub p99_bound_ms: f64,
}

/// The outcome of a saturate run.
#[derive(Debug, Clone, Serialize)]
pub struct SaturateReport {
    /// The p99 bound in milliseconds.
    pub p99_bound_ms: f64,
    /// The best step with zero loss and p99 under the bound, if any.
    pub best: Option<FanoutReport>,
    /// Every step in order.
    pub steps: Vec<FanoutReport>,
}

impl SaturateReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::from("saturate  rate msg/s | deliveries/s | loss | p99 ms\n");
        for r in &self.steps {
            s.push_str(&format!(
                "          {:>10.0} | {:>12.0} | {:>4} | {:.3}\n",
                r.rate, r.deliveries_per_sec, r.loss, r.latency_ms.p99
            ));
        }
        match &self.best {
            Some(b) => s.push_str(&format!(
                "best      {:.0} deliveries/s at {:.0} msg/s with zero loss and p99 {:.3} ms <= {} ms\n",
                b.deliveries_per_sec, b.rate, b.latency_ms.p99, self.p99_bound_ms
            )),
            None => s.push_str("best      no step met zero loss and the p99 bound\n"),
        }
        s
    }
}

/// Runs the ramp and reports.
pub async fn run(config: SaturateConfig) -> Result<SaturateReport, BenchError> {
    if config.factor.is_nan()
        || config.factor <= 1.0
        || config.max_steps == 0
        || config.max_steps > 50
    {
        return Err(BenchError::Setting(
            "--factor must be > 1 and --max-steps 1..=50".into(),
        ));
    }
    let mut steps = Vec::new();
    let mut best: Option<FanoutReport> = None;
    let mut rate = config.fanout.rate;
    for _ in 0..config.max_steps {
        let report = fanout::run(FanoutConfig {
            rate,
            ..config.fanout.clone()
        })
        .await?;
        let ok = report.loss == 0 && report.latency_ms.p99 <= config.p99_bound_ms;
        steps.push(report.clone());
        if !ok {
            break;
        }
        best = Some(report);
        rate *= config.factor;
        // Let the server settle between steps.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(SaturateReport {
        p99_bound_ms: config.p99_bound_ms,
        best,
        steps,
    })
}
