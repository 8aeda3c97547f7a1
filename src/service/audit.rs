//! Reading, exporting and verifying the audit log.

use crate::domain::audit::{AuditEvent, BrokenLink, ChainCheck, Outcome};
use crate::domain::policy;
use crate::domain::user;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use super::{Actor, Principal, Service, contains_ci};

/// Which way the audit log is exported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuditFormat {
    /// One JSON object a line.
    #[default]
    Jsonl,
    /// CSV with a header line.
    Csv,
}

/// An audit event as shown and exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditView {
    pub seq: u64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub target_id: Option<Uuid>,
    pub org: Option<String>,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub detail: Option<String>,
    pub source: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditView {
    pub fn new(e: &AuditEvent) -> AuditView {
        let d = &e.draft;
        AuditView {
            seq: e.seq,
            at: user::rfc3339(d.at),
            actor: d.actor.clone(),
            action: d.action.clone(),
            target: d.target.clone(),
            target_id: d.target_id,
            org: d.org.clone(),
            outcome: d.outcome,
            reason: d.reason.clone(),
            detail: d.detail.clone(),
            source: d.source.clone(),
            prev_hash: hex::encode(e.prev_hash),
            hash: hex::encode(e.hash()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Case-insensitive substring of actor, action, target or reason.
    pub text: Option<String>,
    pub limit: Option<usize>,
    /// Actions to leave out, such as `mfa.validate` (a VPN writes one per login, and they would
    /// push everything else out of a page).
    pub skip_actions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerifyReport {
    pub events: u64,
    pub ok: bool,
    /// The first broken link, when there is one.
    pub broken_at: Option<u64>,
    pub problem: Option<String>,
}

/// What the store check found (`mfadmin check`, `GET /api/v1/check`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoreCheck {
    /// Index entries that do not match their records.
    pub problems: Vec<String>,
    pub chain: VerifyReport,
    pub users: usize,
}

pub const AUDIT_CSV_HEADER: [&str; 13] =
    ["seq", "at", "actor", "action", "target", "target_id", "org", "outcome", "reason", "detail", "source", "prev_hash", "hash"];

/// An audit event as a CSV row under [`AUDIT_CSV_HEADER`], no cell able to start a formula.
pub fn audit_csv_row(e: &AuditView) -> Vec<String> {
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    super::csv_row([
        e.seq.to_string(),
        e.at.clone(),
        e.actor.clone(),
        e.action.clone(),
        opt(&e.target),
        e.target_id.map(|i| i.to_string()).unwrap_or_default(),
        opt(&e.org),
        e.outcome.as_str().into(),
        opt(&e.reason),
        opt(&e.detail),
        e.source.clone(),
        e.prev_hash.clone(),
        e.hash.clone(),
    ])
}

impl Service {
    pub(super) fn may_read_audit(&self, actor: &Actor) -> Result<()> {
        if policy::may_read_audit(actor.role()) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!("{} cannot read the audit log", actor.role().with_article())))
        }
    }

    /// Audit events the actor may see, newest first.
    pub fn audit_list(&self, actor: &Actor, query: &AuditQuery) -> Result<Vec<AuditView>> {
        self.may_read_audit(actor)?;
        let needle = query.text.as_deref().map(str::to_lowercase).filter(|t| !t.is_empty());
        let limit = query.limit.unwrap_or(100);
        let mut out = Vec::new();
        self.store.scan_audit(true, &mut |e| {
            let d = &e.draft;
            let visible = actor.org().is_none_or(|o| d.org.as_deref() == Some(o));
            let matches = needle.as_deref().is_none_or(|n| {
                [Some(&d.actor), Some(&d.action), d.target.as_ref(), d.reason.as_ref(), d.detail.as_ref()]
                    .into_iter()
                    .flatten()
                    .any(|s| contains_ci(s, n))
            });
            let skipped = query.skip_actions.contains(&d.action);
            if visible && matches && !skipped {
                out.push(AuditView::new(&e));
            }
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Every audit event the actor may see, oldest first, to `visit`.
    pub fn audit_export(&self, actor: &Actor, visit: &mut dyn FnMut(AuditView) -> Result<()>) -> Result<()> {
        self.may_read_audit(actor)?;
        let mut failure = None;
        self.store.scan_audit(false, &mut |e| {
            if actor.org().is_none_or(|o| e.draft.org.as_deref() == Some(o))
                && let Err(err) = visit(AuditView::new(&e)) {
                    failure = Some(err);
                    return false;
                }
            true
        })?;
        failure.map_or(Ok(()), Err)
    }

    /// Every audit event the actor may see, oldest first, written to `out` as JSON Lines or as CSV
    /// under a header. Returns how many events were written.
    pub fn audit_export_to(&self, actor: &Actor, format: AuditFormat, out: &mut dyn std::io::Write) -> Result<u64> {
        self.may_read_audit(actor)?;
        let written = |e: std::io::Error| Error::Storage(format!("writing the export: {e}"));
        let mut count = 0u64;
        match format {
            AuditFormat::Jsonl => self.audit_export(actor, &mut |e| {
                count += 1;
                serde_json::to_writer(&mut *out, &e).map_err(|e| written(e.into()))?;
                out.write_all(b"\n").map_err(written)
            })?,
            AuditFormat::Csv => {
                let mut w = csv::Writer::from_writer(&mut *out);
                let csv_failed = |e: csv::Error| written(e.into());
                w.write_record(AUDIT_CSV_HEADER).map_err(csv_failed)?;
                self.audit_export(actor, &mut |e| {
                    count += 1;
                    w.write_record(audit_csv_row(&e)).map_err(csv_failed)
                })?;
                w.flush().map_err(written)?;
            }
        }
        Ok(count)
    }

    /// Check the store offline: indexes agree with the records, and the audit chain verifies.
    pub fn check(&self, actor: &Actor) -> Result<(Vec<String>, VerifyReport)> {
        if !matches!(actor.principal, Principal::Console { .. }) {
            return Err(Error::Forbidden("the store check is for the console operator".into()));
        }
        Ok((self.store.check_indexes()?, self.audit_verify(actor)?))
    }

    /// [`Service::check`], with the number of users, as one report.
    pub fn check_store(&self, actor: &Actor) -> Result<StoreCheck> {
        let (problems, chain) = self.check(actor)?;
        Ok(StoreCheck { problems, chain, users: self.store.user_count()? })
    }

    /// Walk the whole chain and name the first broken link.
    pub fn audit_verify(&self, actor: &Actor) -> Result<VerifyReport> {
        self.may_read_audit(actor)?;
        let mut check = ChainCheck::new();
        let mut broken: Option<BrokenLink> = None;
        self.store.scan_audit(false, &mut |e| match check.step(&e) {
            Ok(()) => true,
            Err(b) => {
                broken = Some(b);
                false
            }
        })?;
        let result = match broken {
            Some(b) => Err(b),
            None => check.finish(self.store.audit_head()?),
        };
        Ok(match result {
            Ok(events) => VerifyReport { events, ok: true, broken_at: None, problem: None },
            Err(b) => VerifyReport { events: b.seq.saturating_sub(1), ok: false, broken_at: Some(b.seq), problem: Some(b.why) },
        })
    }
}
