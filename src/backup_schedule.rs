//! The backups `mfadmin serve` takes by itself (`[backup]` in the config, as kanidm's
//! `online_backup`): when (an interval, or a time of day in UTC), where, reading each one back to
//! check it, and keeping only the newest few.

use crate::backup::{take, write_new_file};
use crate::config::BackupConfig;
use crate::service::{Actor, Service};
use crate::store::backup::{verify, Counts};
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// When backups are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Every so many seconds, the first one that long after the server starts.
    Every(u64),
    /// Once a day at this many seconds after midnight UTC.
    DailyAt(u32),
}

impl Schedule {
    /// Read `schedule`: an interval of a number and a unit (`90s`, `30m`, `6h`, `1d`), or a time
    /// of day in UTC as `HH:MM` (`03:00`).
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let text = text.trim();
        let bad = || {
            format!("backup.schedule = {text:?}: write an interval such as \"6h\", \"30m\", \"1d\" or \"90s\", or a time of day in UTC such as \"03:00\"")
        };
        if let Some((h, m)) = text.split_once(':') {
            let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
            if h > 23 || m > 59 || text.len() != 5 {
                return Err(bad());
            }
            return Ok(Schedule::DailyAt(h * 3600 + m * 60));
        }
        let unit = text.chars().last().ok_or_else(bad)?;
        let scale = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        n.checked_mul(scale).map(Schedule::Every).ok_or_else(bad)
    }

    /// Seconds from `now` (Unix seconds) until the next backup.
    pub fn wait_from(&self, now: i64) -> u64 {
        match *self {
            Schedule::Every(secs) => secs,
            Schedule::DailyAt(at) => {
                let into_day = now.rem_euclid(86_400) as u64;
                let at = u64::from(at);
                if at > into_day { at - into_day } else { 86_400 - into_day + at }
            }
        }
    }
}

/// How the scheduled backups are going, for `/readyz` and `/metrics`.
#[derive(Debug, Default)]
pub struct BackupStatus {
    enabled: AtomicBool,
    /// Unix seconds of the last backup written and checked; 0 before the first.
    last_success: AtomicI64,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl BackupStatus {
    /// `off`, `pending` (none taken yet), `ok`, or `failing: …` when the last one failed.
    pub fn describe(&self) -> String {
        if !self.enabled.load(Ordering::Relaxed) {
            return "off".into();
        }
        if let Some(e) = self.last_error.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return format!("failing: {e}");
        }
        if self.last_success.load(Ordering::Relaxed) == 0 { "pending".into() } else { "ok".into() }
    }

    /// Prometheus lines: when the last good backup was taken, and how many failed.
    pub fn render_metrics(&self) -> String {
        if !self.enabled.load(Ordering::Relaxed) {
            return String::new();
        }
        format!(
            "# HELP mfadmin_backup_last_success_timestamp_seconds When the last scheduled backup was written and checked (0: none yet).\n\
             # TYPE mfadmin_backup_last_success_timestamp_seconds gauge\n\
             mfadmin_backup_last_success_timestamp_seconds {}\n\
             # HELP mfadmin_backup_failures_total Scheduled backups that failed.\n\
             # TYPE mfadmin_backup_failures_total counter\n\
             mfadmin_backup_failures_total {}\n",
            self.last_success.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed)
        )
    }

    fn succeeded(&self, at: i64) {
        self.last_success.store(at, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn failed(&self, why: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }
}

/// The thread taking scheduled backups; stopped (after the backup in progress, if any) by
/// [`Scheduler::stop`].
pub struct Scheduler {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: std::thread::JoinHandle<()>,
}

impl Scheduler {
    pub fn stop(self) {
        let (flag, wake) = &*self.stop;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        let _ = self.thread.join();
    }
}

/// Start taking backups as `config` says, or nothing when it names no directory. The directory is
/// made (mode 0700) now, so that a wrong one stops the server at once rather than at 3 a.m.
pub fn start(service: Arc<Service>, config: &BackupConfig, status: Arc<BackupStatus>) -> anyhow::Result<Option<Scheduler>> {
    let Some(dir) = config.directory.clone() else { return Ok(None) };
    let schedule = Schedule::parse(&config.schedule).map_err(anyhow::Error::msg)?;
    crate::store::private::make_private(&dir).with_context(|| format!("backup.directory {}", dir.display()))?;
    remove_partial(&dir);
    status.enabled.store(true, Ordering::Relaxed);
    let keep = config.keep;
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let stopping = stop.clone();
    tracing::info!(directory = %dir.display(), schedule = %config.schedule, keep, "scheduled backups on");
    let thread = std::thread::Builder::new()
        .name("backups".into())
        .spawn(move || {
            loop {
                let wait = Duration::from_secs(schedule.wait_from(crate::app::now()));
                let (flag, wake) = &*stopping;
                let guard = flag.lock().unwrap_or_else(|p| p.into_inner());
                let (guard, _) = wake.wait_timeout_while(guard, wait, |stop| !*stop).unwrap_or_else(|p| p.into_inner());
                if *guard {
                    return;
                }
                drop(guard);
                run_once(&service, &dir, keep, &status);
            }
        })
        .context("starting the backup thread")?;
    Ok(Some(Scheduler { stop, thread }))
}

/// Take one backup, check it, prune, and say how it went (loudly when it failed).
fn run_once(service: &Service, dir: &Path, keep: usize, status: &BackupStatus) {
    let now = crate::app::now();
    match take_checked(service, dir, now) {
        Ok((path, counts)) => {
            status.succeeded(now);
            tracing::info!(file = %path.display(), users = counts.users, audit_events = counts.audit_events, "scheduled backup written and checked");
            if let Err(e) = prune(dir, keep) {
                tracing::error!("SCHEDULED BACKUP: removing old backups in {} failed: {e:#}", dir.display());
            }
        }
        Err(e) => {
            tracing::error!("SCHEDULED BACKUP FAILED: {e:#} (nothing was kept of it; the next one is tried as scheduled)");
            status.failed(format!("{e:#}"));
        }
    }
}

/// Write a backup into `dir` and read it back: its code, every record, and the counts it was
/// written with. Returns the file and the counts.
pub fn take_checked(service: &Service, dir: &Path, now: i64) -> anyhow::Result<(PathBuf, Counts)> {
    let path = dir.join(file_name(now));
    let written = std::cell::Cell::new(None);
    let console = Actor::console("serve:backup");
    let counts = write_new_file(
        &path,
        |out| {
            written.set(Some(take(service, &console, now, out)?));
            Ok(())
        },
        |file| {
            let read = std::fs::File::open(file).with_context(|| format!("cannot read {} back", file.display()))?;
            let summary = verify(std::io::BufReader::new(read), Some(service.sealer())).context("the backup read back does not check out")?;
            match written.get() {
                Some(counts) if counts == summary.counts => Ok(counts),
                counts => anyhow::bail!("the backup read back holds {:?}, but {counts:?} were written", summary.counts),
            }
        },
    )?;
    Ok((path, counts))
}

/// `mfadmin-YYYYMMDDTHHMMSSZ.backup`: names that sort by time.
fn file_name(now: i64) -> String {
    let at = chrono::DateTime::from_timestamp(now, 0).unwrap_or_default();
    format!("mfadmin-{}.backup", at.format("%Y%m%dT%H%M%SZ"))
}

/// Is `name` one of ours?
fn is_scheduled_backup(name: &str) -> bool {
    name.strip_prefix("mfadmin-").and_then(|rest| rest.strip_suffix(".backup")).is_some_and(|at| at.len() == 16 && at.ends_with('Z'))
}

/// Delete the oldest scheduled backups in `dir` beyond the newest `keep` (no other file).
fn prune(dir: &Path, keep: usize) -> anyhow::Result<()> {
    let mut ours: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| is_scheduled_backup(name))
        .collect();
    ours.sort();
    let extra = ours.len().saturating_sub(keep);
    for name in &ours[..extra] {
        std::fs::remove_file(dir.join(name)).with_context(|| format!("cannot remove {name}"))?;
        tracing::info!(file = %name, "old scheduled backup removed");
    }
    Ok(())
}

/// A backup left half-written by a server that was killed never took its name: remove it.
fn remove_partial(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.strip_suffix(".partial").is_some_and(|n| is_scheduled_backup(&format!("{n}.backup"))) {
            tracing::warn!(file = %name, "removing a backup left unfinished");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_read_and_wait_as_written() {
        assert_eq!(Schedule::parse("6h"), Ok(Schedule::Every(6 * 3600)));
        assert_eq!(Schedule::parse(" 90s "), Ok(Schedule::Every(90)));
        assert_eq!(Schedule::parse("1d"), Ok(Schedule::Every(86_400)));
        assert_eq!(Schedule::parse("03:00"), Ok(Schedule::DailyAt(3 * 3600)));
        for bad in ["", "0h", "6", "h", "6w", "24:00", "3:00", "03:60", "-1h", "99999999999999999999d"] {
            let err = Schedule::parse(bad).unwrap_err();
            assert!(err.contains("backup.schedule"), "{bad}: {err}");
        }
        let midnight = 1_800_000_000 - 1_800_000_000 % 86_400;
        assert_eq!(Schedule::DailyAt(3 * 3600).wait_from(midnight + 3600), 2 * 3600);
        assert_eq!(Schedule::DailyAt(3 * 3600).wait_from(midnight + 3 * 3600), 86_400, "just taken: tomorrow");
        assert_eq!(Schedule::DailyAt(3600).wait_from(midnight + 23 * 3600), 2 * 3600);
        assert_eq!(Schedule::Every(30).wait_from(midnight), 30);
    }

    #[test]
    fn only_the_newest_of_our_backups_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..5).map(|i| file_name(1_800_000_000 + i * 3600)).collect();
        for n in &names {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        prune(dir.path(), 2).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, vec![names[3].clone(), names[4].clone(), "notes.txt".into()]);
    }
}
