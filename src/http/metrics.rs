//! Counters and a latency histogram, served at `/metrics` in the Prometheus text format.

use crate::service::{ResetOutcome, ResetReport};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

const OUTCOMES: [ResetOutcome; 5] =
    [ResetOutcome::Reset, ResetOutcome::Skipped, ResetOutcome::Denied, ResetOutcome::NotFound, ResetOutcome::Failed];

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// (route, method, status) → count
    requests: BTreeMap<(String, String, u16), u64>,
    /// route → histogram
    latency: BTreeMap<String, Histogram>,
    resets: BTreeMap<&'static str, u64>,
    logins: BTreeMap<(&'static str, &'static str), u64>,
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    pub fn record_request(&self, route: &str, method: &str, status: u16, took: Duration) {
        let secs = took.as_secs_f64();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *inner.requests.entry((route.to_string(), method.to_string(), status)).or_default() += 1;
        let h = inner.latency.entry(route.to_string()).or_default();
        h.count += 1;
        h.sum += secs;
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            h.counts[i] += 1;
        }
    }

    /// Count what a reset did to each user (dry runs change nothing and are not counted).
    pub fn record_resets(&self, report: &ResetReport) {
        if report.dry_run {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for r in &report.results {
            *inner.resets.entry(r.outcome.as_str()).or_default() += 1;
        }
    }

    /// `step` is `password`, `mfa` or `enroll`; `outcome` e.g. `success`, `mfa_required`, `failure`.
    pub fn record_login(&self, step: &'static str, outcome: &'static str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *inner.logins.entry((step, outcome)).or_default() += 1;
    }

    /// Everything, in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        out.push_str("# HELP mfadmin_http_requests_total HTTP requests answered, by route, method and status.\n");
        out.push_str("# TYPE mfadmin_http_requests_total counter\n");
        for ((route, method, status), n) in &inner.requests {
            let _ = writeln!(
                out,
                "mfadmin_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                escape(route),
                escape(method)
            );
        }
        out.push_str("# HELP mfadmin_http_request_duration_seconds Time to answer HTTP requests, by route.\n");
        out.push_str("# TYPE mfadmin_http_request_duration_seconds histogram\n");
        for (route, h) in &inner.latency {
            let route = escape(route);
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "mfadmin_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(out, "mfadmin_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "mfadmin_http_request_duration_seconds_sum{{route=\"{route}\"}} {}", h.sum);
            let _ = writeln!(out, "mfadmin_http_request_duration_seconds_count{{route=\"{route}\"}} {}", h.count);
        }
        out.push_str("# HELP mfadmin_mfa_resets_total Users whose MFA reset was attempted, by outcome.\n");
        out.push_str("# TYPE mfadmin_mfa_resets_total counter\n");
        for outcome in OUTCOMES {
            let n = inner.resets.get(outcome.as_str()).copied().unwrap_or(0);
            let _ = writeln!(out, "mfadmin_mfa_resets_total{{outcome=\"{}\"}} {n}", outcome.as_str());
        }
        out.push_str("# HELP mfadmin_logins_total Login steps, by step and outcome.\n");
        out.push_str("# TYPE mfadmin_logins_total counter\n");
        for ((step, outcome), n) in &inner.logins {
            let _ = writeln!(out, "mfadmin_logins_total{{step=\"{step}\",outcome=\"{outcome}\"}} {n}");
        }
        out
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.record_request("/a", "GET", 200, Duration::from_micros(500));
        m.record_request("/a", "GET", 200, Duration::from_millis(30));
        m.record_request("/a", "GET", 404, Duration::from_secs(20));
        let text = m.render();
        assert!(text.contains("mfadmin_http_requests_total{route=\"/a\",method=\"GET\",status=\"200\"} 2"), "{text}");
        assert!(text.contains("mfadmin_http_request_duration_seconds_bucket{route=\"/a\",le=\"0.001\"} 1"), "{text}");
        assert!(text.contains("mfadmin_http_request_duration_seconds_bucket{route=\"/a\",le=\"0.05\"} 2"), "{text}");
        assert!(text.contains("mfadmin_http_request_duration_seconds_bucket{route=\"/a\",le=\"10\"} 2"), "{text}");
        assert!(text.contains("mfadmin_http_request_duration_seconds_bucket{route=\"/a\",le=\"+Inf\"} 3"), "{text}");
        assert!(text.contains("mfadmin_mfa_resets_total{outcome=\"not_found\"} 0"), "{text}");
    }
}
