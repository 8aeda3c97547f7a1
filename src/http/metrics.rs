//! What `/metrics` serves, in the OpenMetrics text format (prometheus-client): request counts and
//! latency by route, resets and logins by outcome, users by MFA state and active sessions, the
//! build, and the process (CPU, memory, descriptors, start time, read from `/proc/self`).
//!
//! Counters are atomics in label families (a read lock per family, taken for writing only the
//! first time a label set is seen), so the request path shares no lock with other requests.

use crate::domain::mfa::MfaStatus;
use crate::service::{ResetOutcome, ResetReport};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

const OUTCOMES: [ResetOutcome; 5] =
    [ResetOutcome::Reset, ResetOutcome::Skipped, ResetOutcome::Denied, ResetOutcome::NotFound, ResetOutcome::Failed];

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    step: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MfaStateLabels {
    mfa_state: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    resets: Family<OutcomeLabels, Counter>,
    logins: Family<LoginLabels, Counter>,
    users: Family<MfaStateLabels, Gauge>,
    active_sessions: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let resets = Family::<OutcomeLabels, Counter>::default();
        let logins = Family::<LoginLabels, Counter>::default();
        let users = Family::<MfaStateLabels, Gauge>::default();
        let active_sessions = Gauge::default();
        registry.register("mfadmin_http_requests", "HTTP requests answered, by route, method and status", requests.clone());
        registry.register("mfadmin_http_request_duration_seconds", "Time to answer HTTP requests, by route", latency.clone());
        registry.register("mfadmin_mfa_resets", "Users whose MFA reset was attempted, by outcome", resets.clone());
        registry.register("mfadmin_logins", "Login steps, by step and outcome", logins.clone());
        registry.register("mfadmin_users", "Users, by MFA state (as the user list shows it)", users.clone());
        registry.register("mfadmin_active_sessions", "Login sessions that have not expired", active_sessions.clone());
        registry.register("mfadmin_build", "The running build", Info::new(vec![("version".to_string(), env!("CARGO_PKG_VERSION").to_string())]));
        registry.register_collector(Box::new(ProcessCollector));
        // Every outcome and state is there from the start, at 0, so a rate over them is defined.
        for outcome in OUTCOMES {
            let _ = resets.get_or_create(&OutcomeLabels { outcome: outcome.as_str() });
        }
        for state in MfaStatus::ALL {
            let _ = users.get_or_create(&MfaStateLabels { mfa_state: state.as_str() });
        }
        Metrics { registry, requests, latency, resets, logins, users, active_sessions }
    }
}

impl Metrics {
    pub fn record_request(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.requests.get_or_create(&RequestLabels { route: route.to_string(), method: method.to_string(), status }).inc();
        self.latency.get_or_create(&RouteLabels { route: route.to_string() }).observe(took.as_secs_f64());
    }

    /// Count what a reset did to each user (dry runs change nothing and are not counted).
    pub fn record_resets(&self, report: &ResetReport) {
        if report.dry_run {
            return;
        }
        for r in &report.results {
            self.resets.get_or_create(&OutcomeLabels { outcome: r.outcome.as_str() }).inc();
        }
    }

    /// `step` is `password`, `mfa` or `enroll`; `outcome` e.g. `success`, `mfa_required`, `failure`.
    pub fn record_login(&self, step: &'static str, outcome: &'static str) {
        self.logins.get_or_create(&LoginLabels { step, outcome }).inc();
    }

    /// The store's figures as just counted: users by MFA state, and active login sessions.
    pub fn set_store_figures(&self, users: &[(MfaStatus, u64)], active_sessions: u64) {
        for (state, n) in users {
            self.users.get_or_create(&MfaStateLabels { mfa_state: state.as_str() }).set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        self.active_sessions.set(i64::try_from(active_sessions).unwrap_or(i64::MAX));
    }

    /// Everything, in the OpenMetrics text format ([`CONTENT_TYPE`]), with the scheduled backups'
    /// figures when the server takes them (see [`crate::backup_schedule::BackupStatus::figures`]).
    pub fn render(&self, backups: Option<(i64, u64)>) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        let written = encode_registry(&mut out, &self.registry).and_then(|()| match backups {
            Some((last_success, failures)) => {
                let mut registry = Registry::default();
                let last = Gauge::<i64>::default();
                last.set(last_success);
                let failed = Counter::<u64>::default();
                failed.inc_by(failures);
                registry.register(
                    "mfadmin_backup_last_success_timestamp_seconds",
                    "When the last scheduled backup was written and checked (0: none yet)",
                    last,
                );
                registry.register("mfadmin_backup_failures", "Scheduled backups that failed", failed);
                encode_registry(&mut out, &registry)
            }
            None => Ok(()),
        });
        written.and_then(|()| encode_eof(&mut out)).expect("writing to a String cannot fail");
        out
    }
}

/// The `process_*` metrics Prometheus's own clients export, read from `/proc/self` at each scrape.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = process::read() else { return Ok(()) };
        let cpu = ConstCounter::new(p.cpu_seconds);
        cpu.encode(encoder.encode_descriptor("process_cpu_seconds", "Total user and system CPU time spent in seconds", None, cpu.metric_type())?)?;
        let gauges: [(&str, &str, f64); 5] = [
            ("process_resident_memory_bytes", "Resident memory size in bytes", p.resident_bytes as f64),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes", p.virtual_bytes as f64),
            ("process_open_fds", "Number of open file descriptors", p.open_fds as f64),
            ("process_max_fds", "Maximum number of open file descriptors", p.max_fds as f64),
            ("process_start_time_seconds", "Start time of the process since the Unix epoch in seconds", p.start_time_seconds),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

/// Reading this process's figures from `/proc` (Linux).
pub(crate) mod process {
    /// This process, as `/proc/self` describes it.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Figures {
        pub cpu_seconds: f64,
        pub resident_bytes: u64,
        pub virtual_bytes: u64,
        pub open_fds: u64,
        pub max_fds: u64,
        pub start_time_seconds: f64,
    }

    /// `None` where there is no `/proc` (or it cannot be read): the metrics are then left out.
    pub fn read() -> Option<Figures> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        // SAFETY: sysconf only reads a system setting.
        let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
        parse(&stat, &boot, &limits, open_fds, ticks.max(1) as f64, page.max(1) as u64)
    }

    /// The figures from the texts of `/proc/self/stat`, `/proc/stat` and `/proc/self/limits`.
    pub fn parse(stat: &str, boot: &str, limits: &str, open_fds: u64, ticks_per_second: f64, page_bytes: u64) -> Option<Figures> {
        // The command name (field 2) is in parentheses and may hold spaces: count from after it.
        let rest = &stat[stat.rfind(')')? + 2..];
        let field = |n: usize| -> Option<u64> { rest.split_whitespace().nth(n - 3)?.parse().ok() };
        let (utime, stime, start, vsize, rss) = (field(14)?, field(15)?, field(22)?, field(23)?, field(24)?);
        let boot_time: u64 = boot.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
        let max_fds = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|soft| soft.parse().ok())
            .unwrap_or(u64::MAX);
        Some(Figures {
            cpu_seconds: (utime + stime) as f64 / ticks_per_second,
            resident_bytes: rss * page_bytes,
            virtual_bytes: vsize,
            open_fds,
            max_fds,
            start_time_seconds: boot_time as f64 + start as f64 / ticks_per_second,
        })
    }
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
        let text = m.render(None);
        assert!(text.contains("mfadmin_http_requests_total{route=\"/a\",method=\"GET\",status=\"200\"} 2"), "{text}");
        assert!(text.contains("mfadmin_http_request_duration_seconds_bucket{le=\"0.001\",route=\"/a\"} 1"), "{text}");
        assert!(text.contains("mfadmin_http_request_duration_seconds_bucket{le=\"0.05\",route=\"/a\"} 2"), "{text}");
        assert!(text.contains("mfadmin_http_request_duration_seconds_bucket{le=\"10.0\",route=\"/a\"} 2"), "{text}");
        assert!(text.contains("mfadmin_http_request_duration_seconds_bucket{le=\"+Inf\",route=\"/a\"} 3"), "{text}");
        assert!(text.contains("mfadmin_mfa_resets_total{outcome=\"not_found\"} 0"), "{text}");
        assert!(text.contains(&format!("mfadmin_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn store_figures_and_process_metrics_are_served() {
        let m = Metrics::default();
        m.set_store_figures(&[(MfaStatus::Enrolled, 7), (MfaStatus::Locked, 1)], 3);
        let text = m.render(None);
        assert!(text.contains("mfadmin_users{mfa_state=\"enrolled\"} 7"), "{text}");
        assert!(text.contains("mfadmin_users{mfa_state=\"pending\"} 0"), "{text}");
        assert!(text.contains("mfadmin_active_sessions 3"), "{text}");
        for name in ["process_cpu_seconds_total ", "process_resident_memory_bytes ", "process_open_fds ", "process_max_fds ", "process_start_time_seconds "] {
            assert!(text.contains(name), "{name} in {text}");
        }
        let p = process::read().unwrap();
        assert!(p.resident_bytes > 1 << 20 && p.open_fds >= 3 && p.max_fds >= p.open_fds, "{p:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(p.start_time_seconds <= now + 1.0 && p.start_time_seconds > now - 86_400.0, "{p:?}");
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_is_skipped() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 4 0 1000 123456789 2048 18446744073709551615";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        let p = process::parse(stat, "cpu 1 2 3\nbtime 1700000000\n", limits, 12, 100.0, 4096).unwrap();
        assert_eq!(p, process::Figures { cpu_seconds: 3.0, resident_bytes: 2048 * 4096, virtual_bytes: 123_456_789, open_fds: 12, max_fds: 1024, start_time_seconds: 1_700_000_010.0 });
    }
}
