//! Reading, exporting and verifying the audit log.

use crate::domain::audit::{AuditEvent, BrokenLink, ChainCheck, ChainLinks, Linker, Outcome};
use crate::auth::seal::Sealer;
use crate::domain::policy;
use crate::domain::user;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use super::{Actor, Principal, Service, contains_ci, KEY_CHECK_PLAINTEXT, META_KEY_CHECK};

/// Walk the chain of `store` linked as `links`: how many events, and the last one.
fn walk_chain(store: &dyn crate::store::Store, links: ChainLinks) -> Result<std::result::Result<(u64, Option<AuditEvent>), BrokenLink>> {
    let mut check = ChainCheck::with_links(links);
    let mut broken: Option<BrokenLink> = None;
    let mut last = None;
    store.scan_audit(false, &mut |e| match check.step(&e) {
        Ok(()) => {
            last = Some(e);
            true
        }
        Err(b) => {
            broken = Some(b);
            false
        }
    })?;
    Ok(match broken {
        Some(b) => Err(b),
        None => check.finish(store.audit_head()?).map(|n| (n, last)),
    })
}

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
    /// The event as shown, with the link the event after it carries in a chain linked as `links`.
    pub fn new(e: &AuditEvent, links: &ChainLinks) -> AuditView {
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
            hash: hex::encode(links.link_after(e)),
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
    /// The room the store takes, when it can tell.
    #[serde(default)]
    pub space: Option<crate::store::StoreSpace>,
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

/// The first line of a signature file of `mfadmin audit export --signed`; the second is
/// `hmac-sha256 <hex>`, the MAC of the export's bytes under the key file's `audit-export` key.
pub const EXPORT_SIGNATURE_HEADER: &str = "mfadmin audit export signature v1";

/// Where the signature of the export at `path` is kept: beside it, with `.sig` added.
pub fn signature_path(path: &std::path::Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sig");
    name.into()
}

/// The MAC of everything `export` reads, under the key file's export key.
fn export_mac(sealer: &Sealer, export: &mut dyn std::io::Read) -> std::io::Result<crate::auth::seal::MacSha256> {
    use hmac::Mac;
    let mut mac = sealer.mac("audit-export");
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match export.read(&mut buf)? {
            0 => return Ok(mac),
            n => mac.update(&buf[..n]),
        }
    }
}

/// The text of the signature file for the export `export` reads.
pub fn sign_export(sealer: &Sealer, export: &mut dyn std::io::Read) -> std::io::Result<String> {
    use hmac::Mac;
    let tag = export_mac(sealer, export)?.finalize().into_bytes();
    Ok(format!("{EXPORT_SIGNATURE_HEADER}\nhmac-sha256 {}\n", hex::encode(tag)))
}

/// Check an export against its signature file's text, with the key file it was signed with.
pub fn check_export(sealer: &Sealer, export: &mut dyn std::io::Read, signature: &str) -> Result<()> {
    use hmac::Mac;
    let mut lines = signature.lines();
    let tag = match (lines.next(), lines.next().and_then(|l| l.strip_prefix("hmac-sha256 "))) {
        (Some(EXPORT_SIGNATURE_HEADER), Some(hex_tag)) => hex::decode(hex_tag.trim())
            .map_err(|_| Error::invalid("the signature file's MAC is not hexadecimal: the file is damaged"))?,
        _ => return Err(Error::invalid(format!("not a signature of `mfadmin audit export --signed` (it must begin with {EXPORT_SIGNATURE_HEADER:?})"))),
    };
    let mac = export_mac(sealer, export).map_err(|e| Error::Storage(format!("reading the export: {e}")))?;
    mac.verify_slice(&tag).map_err(|_| {
        Error::invalid(
            "the export does NOT match its signature: it was changed after it was exported, or it was signed with another key file",
        )
    })
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
        let links = self.chain_links()?;
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
                out.push(AuditView::new(&e, &links));
            }
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Every audit event the actor may see, oldest first, to `visit`.
    pub fn audit_export(&self, actor: &Actor, visit: &mut dyn FnMut(AuditView) -> Result<()>) -> Result<()> {
        self.may_read_audit(actor)?;
        let links = self.chain_links()?;
        let mut failure = None;
        self.store.scan_audit(false, &mut |e| {
            if actor.org().is_none_or(|o| e.draft.org.as_deref() == Some(o))
                && let Err(err) = visit(AuditView::new(&e, &links)) {
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
        Ok(StoreCheck { problems, chain, users: self.store.user_count()?, space: self.store.space()? })
    }

    /// Walk the whole chain and name the first broken link. A keyed chain is checked with the key
    /// file's chain key; a chain found plain where the key check says it was keyed is a rewrite.
    pub fn audit_verify(&self, actor: &Actor) -> Result<VerifyReport> {
        self.may_read_audit(actor)?;
        let links = self.chain_links()?;
        let result = match self.chain_anchored()? {
            Some(true) if links.linker_for(u64::MAX).is_plain() => Err(BrokenLink {
                seq: 1,
                why: "the key check says this store's audit chain is keyed, but the store's marker of where the keyed links \
                      begin is gone: the log was rewritten or the marker removed without the key file. Restore the store \
                      from a backup you trust"
                    .into(),
            }),
            _ => walk_chain(self.store.as_ref(), links)?.map(|(events, _)| events),
        };
        Ok(match result {
            Ok(events) => VerifyReport { events, ok: true, broken_at: None, problem: None },
            Err(b) => VerifyReport { events: b.seq.saturating_sub(1), ok: false, broken_at: Some(b.seq), problem: Some(b.why) },
        })
    }

    /// How the store's chain is linked now.
    pub(super) fn chain_links(&self) -> Result<ChainLinks> {
        self.store.chain_links(&self.chain_key)
    }

    /// Key a store's plain audit chain from its next event on, once the plain chain verifies: its
    /// last link is then keyed, and every later one, which protects every event before them (each
    /// hash covers the link before it). A chain that does not verify is left plain (keying it
    /// would vouch for a rewrite); `audit verify` names the break. `anchored` says whether the key
    /// check says the chain was keyed already: then a chain found plain is left so, to be reported.
    /// Returns how many plain events were checked, when the chain was keyed by this call.
    pub(super) fn key_audit_chain(&self, anchored: bool) -> Result<Option<u64>> {
        let keyed = !self.chain_links()?.linker_for(u64::MAX).is_plain();
        if keyed || anchored {
            if anchored && !keyed {
                tracing::error!("the key check says the audit chain is keyed but it is plain: the log was rewritten without the key file; `mfadmin audit verify` reports it");
            }
            if keyed && self.chain_anchored()? != Some(true) {
                self.anchor_keyed_chain()?;
            }
            return Ok(None);
        }
        let started = std::time::Instant::now();
        // The head may move between the walk and the keying (another node of a shared store):
        // then the walk is made again.
        for _ in 0..5 {
            let (events, last) = match walk_chain(self.store.as_ref(), ChainLinks::plain())? {
                Ok(walked) => walked,
                Err(broken) => {
                    tracing::error!(event = broken.seq, "the audit chain does not verify, so it is not keyed: {}", broken.why);
                    if self.chain_anchored()?.is_none() {
                        let check = self.sealer.seal(KEY_CHECK_PLAINTEXT, META_KEY_CHECK.as_bytes());
                        self.store.commit(&[crate::store::Change { meta_put: vec![(META_KEY_CHECK, check)], ..Default::default() }])?;
                        self.store.flush()?;
                    }
                    return Ok(None);
                }
            };
            let head = last.as_ref().map(|e| (e.seq, e.hash()));
            let keyed_head = last.as_ref().map(|e| Linker::Keyed(self.chain_key.clone()).hash(e));
            if self.store.begin_keyed_chain(head, keyed_head)? {
                self.anchor_keyed_chain()?;
                if events > 0 {
                    tracing::info!(events, ms = started.elapsed().as_millis() as u64, "the audit chain was checked and is keyed from its next event on");
                }
                return Ok(Some(events));
            }
        }
        Err(Error::Storage("the audit log kept growing while its chain was being keyed; open the store again".into()))
    }
}
