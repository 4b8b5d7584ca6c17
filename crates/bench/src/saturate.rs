//! The saturate scenario: fan-out runs at a rising message rate (each step
//! `factor` times the last) until a step loses deliveries or its p99 passes
//! the bound, then optionally `refine` bisections between the best step and
//! the first failing one; reports the best step that met both. Bounded by
//! `max_steps` + `refine`, after an optional warm-up run that is not judged.

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
    /// Most steps of the ramp.
    pub max_steps: usize,
    /// Bisections after the ramp between the best rate and the first failing
    /// one (geometric midpoints): each halves the uncertainty of `factor`.
    pub refine: usize,
    /// Largest acceptable p99, in milliseconds.
    pub p99_bound_ms: f64,
    /// A first fan-out at the start rate for this long, not judged, so that
    /// a server that warms up (a JIT) is measured warm; zero skips it.
    pub warmup: Duration,
}

/// The outcome of a saturate run.
#[derive(Debug, Clone, Serialize)]
pub struct SaturateReport {
    /// The p99 bound in milliseconds.
    pub p99_bound_ms: f64,
    /// The best step with zero loss and p99 under the bound, if any.
    pub best: Option<FanoutReport>,
    /// The warm-up run, if any (not judged).
    pub warmup: Option<FanoutReport>,
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
        || config.refine > 20
    {
        return Err(BenchError::Setting(
            "--factor must be > 1, --max-steps 1..=50 and --refine 0..=20".into(),
        ));
    }
    let warmup = if config.warmup.is_zero() {
        None
    } else {
        Some(
            fanout::run(FanoutConfig {
                duration: config.warmup,
                ..config.fanout.clone()
            })
            .await?,
        )
    };
    let mut steps = Vec::new();
    let mut best: Option<FanoutReport> = None;
    let mut search = Search::new(
        config.fanout.rate,
        config.factor,
        config.max_steps,
        config.refine,
    );
    while let Some(rate) = search.next_rate() {
        if !steps.is_empty() {
            // Let the server settle between steps.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let report = fanout::run(FanoutConfig {
            rate,
            ..config.fanout.clone()
        })
        .await?;
        let ok = report.loss == 0 && report.latency_ms.p99 <= config.p99_bound_ms;
        steps.push(report.clone());
        search.judge(rate, ok);
        if ok && best.as_ref().is_none_or(|b| b.rate < rate) {
            best = Some(report);
        }
    }
    Ok(SaturateReport {
        p99_bound_ms: config.p99_bound_ms,
        best,
        warmup,
        steps,
    })
}

/// Which rate to try next: a geometric ramp until a rate fails (or the ramp's
/// steps run out), then bisection between the best passing rate and the
/// lowest failing one.
#[derive(Debug, Clone)]
struct Search {
    next: Option<f64>,
    factor: f64,
    ramp_left: usize,
    refine_left: usize,
    good: Option<f64>,
    bad: Option<f64>,
}

impl Search {
    fn new(start: f64, factor: f64, max_steps: usize, refine: usize) -> Search {
        Search {
            next: Some(start),
            factor,
            ramp_left: max_steps,
            refine_left: refine,
            good: None,
            bad: None,
        }
    }

    fn next_rate(&self) -> Option<f64> {
        self.next
    }

    fn judge(&mut self, rate: f64, ok: bool) {
        if ok {
            self.good = Some(self.good.map_or(rate, |g| g.max(rate)));
        } else {
            self.bad = Some(self.bad.map_or(rate, |b| b.min(rate)));
        }
        if self.bad.is_none() && ok {
            self.ramp_left = self.ramp_left.saturating_sub(1);
            self.next = (self.ramp_left > 0).then_some(rate * self.factor);
            return;
        }
        if self.ramp_left > 0 {
            // The ramp ended at its first failure.
            self.ramp_left = 0;
        } else if self.refine_left > 0 {
            self.refine_left -= 1;
        }
        self.next = match (self.good, self.bad) {
            (Some(g), Some(b)) if self.refine_left > 0 => Some((g * b).sqrt()),
            _ => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the search against a server that passes every rate up to `limit`.
    fn tried(start: f64, factor: f64, max_steps: usize, refine: usize, limit: f64) -> Vec<f64> {
        let mut search = Search::new(start, factor, max_steps, refine);
        let mut tried = Vec::new();
        while let Some(rate) = search.next_rate() {
            tried.push(rate);
            search.judge(rate, rate <= limit);
            assert!(tried.len() <= max_steps + refine, "{tried:?}");
        }
        tried
    }

    #[test]
    fn ramps_until_the_first_failure() {
        assert_eq!(tried(10.0, 2.0, 12, 0, 50.0), vec![10.0, 20.0, 40.0, 80.0]);
        // Every step passes: the ramp's steps bound the run, nothing to refine.
        assert_eq!(tried(10.0, 2.0, 3, 2, 1e9), vec![10.0, 20.0, 40.0]);
        // The first step fails: nothing to bisect.
        assert_eq!(tried(10.0, 2.0, 12, 3, 5.0), vec![10.0]);
    }

    #[test]
    fn refines_between_the_best_and_the_first_failure() {
        let t = tried(10.0, 4.0, 12, 3, 100.0);
        assert_eq!(&t[..3], &[10.0, 40.0, 160.0]);
        // sqrt(40 * 160) = 80 passes; sqrt(80 * 160) ≈ 113 fails; sqrt(80 * 113) ≈ 95 passes.
        assert_eq!(t.len(), 6);
        assert!((t[3] - 80.0).abs() < 1e-9, "{t:?}");
        assert!((t[4] - 113.137).abs() < 1e-3, "{t:?}");
        assert!((t[5] - 95.137).abs() < 1e-3, "{t:?}");
    }
}
