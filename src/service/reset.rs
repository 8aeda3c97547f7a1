//! MFA resets: deciding each target, the batched path and the all-or-nothing path, around one per-user decision.

use crate::domain::audit::Outcome;
use crate::domain::mfa::MfaStatus;
use crate::domain::policy;
use crate::domain::role::Role;
use crate::domain::user::User;
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::store::{Change, UserWrite};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;
use super::{Actor, Service, about, draft};

/// One target of a reset and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResetResult {
    /// The target as it was given.
    pub target: String,
    pub user_id: Option<Uuid>,
    pub username: Option<String>,
    pub outcome: ResetOutcome,
    /// Why it was skipped, denied or failed.
    pub detail: Option<String>,
    /// The MFA state after the reset (or after it would have happened, in a dry run).
    pub mfa_after: Option<MfaStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResetOutcome {
    Reset,
    Skipped,
    Denied,
    NotFound,
    Failed,
    /// Not known: a remote reset whose answer was lost (never produced by the service itself).
    Unknown,
}

impl ResetOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ResetOutcome::Reset => "reset",
            ResetOutcome::Skipped => "skipped",
            ResetOutcome::Denied => "denied",
            ResetOutcome::NotFound => "not_found",
            ResetOutcome::Failed => "failed",
            ResetOutcome::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResetReport {
    pub dry_run: bool,
    pub results: Vec<ResetResult>,
}

impl ResetReport {
    pub fn count(&self, outcome: ResetOutcome) -> usize {
        self.results.iter().filter(|r| r.outcome == outcome).count()
    }
}

/// A rule above the role table for resetting someone else's MFA: a vendor's document names the
/// least role that may (its compatible route keeps to it), in the document's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetFloor {
    /// The least role that may reset another user's MFA (Owner is above Admin).
    pub minimum: Role,
    /// Why, in the vendor's words: the detail of a denial.
    pub rule: String,
}

impl ResetFloor {
    /// The rule's denial of `actor` resetting another user, if it denies it.
    fn denies(&self, actor: Role) -> Option<String> {
        (actor > self.minimum).then(|| self.rule.clone())
    }
}

/// What decides a reset beside the role table: whether the actor showed its password (without
/// which it may not reset itself), and a vendor route's floor for resetting others.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Rules<'a> {
    pub own_confirmed: bool,
    pub floor: Option<&'a ResetFloor>,
}

/// [`Service::decide_reset`] of a target already resolved to `user` (or to no one).
pub(super) fn decide_reset_of(
    actor: &Actor,
    rules: Rules<'_>,
    target: &str,
    user: Option<User>,
    reason: Option<&str>,
    enforcement: &HashMap<String, bool>,
    now: Timestamp,
) -> (ResetResult, Option<Change>) {
    let mut result = ResetResult {
        target: target.to_string(),
        user_id: None,
        username: None,
        outcome: ResetOutcome::NotFound,
        detail: None,
        mfa_after: None,
    };
    let user = match user {
        Some(u) if actor.sees(&u) => u,
        _ => return (result, None),
    };
    result.user_id = Some(user.id);
    result.username = Some(user.username.clone());
    let enforced = enforcement.get(&user.org).copied().unwrap_or(false);
    let mut event = about(draft(actor, "mfa.reset", now), &user);
    event.reason = reason.map(str::to_string);
    let is_self = actor.user_id() == Some(user.id);
    let floor = rules.floor.and_then(|f| f.denies(actor.role())).filter(|_| !is_self);
    let decision = match floor {
        Some(rule) => Err(policy::Denied(rule)),
        None => policy::may_reset(actor.role(), user.role, is_self),
    }
    .and_then(|()| {
        if is_self && !rules.own_confirmed {
            // A stolen session alone must not drop the account's second factor (see Service::reset_own_mfa).
            Err(policy::Denied(
                "resetting your own MFA needs your current password: use POST /api/v1/me/mfa/reset with current_password".into(),
            ))
        } else {
            Ok(())
        }
    });
    if let Err(policy::Denied(why)) = decision {
        result.outcome = ResetOutcome::Denied;
        result.detail = Some(why.clone());
        event.outcome = Outcome::Denied;
        event.detail = Some(why);
        return (result, Some(Change { audit: vec![event], ..Change::default() }));
    }
    let (id, version) = (user.id, user.version);
    let after = match user.into_reset_mfa(enforced, now) {
        Ok(after) => after,
        Err(user) => {
            result.outcome = ResetOutcome::Skipped;
            result.detail = Some("MFA was not set up".into());
            result.mfa_after = Some(user.mfa_status(enforced, now));
            return (result, None);
        }
    };
    let mfa_after = after.mfa_status(enforced, now);
    let after = User { version: version + 1, ..after };
    result.outcome = ResetOutcome::Reset;
    result.mfa_after = Some(mfa_after);
    event.detail = Some(format!("mfa now {mfa_after}"));
    let change = Change {
        users: vec![UserWrite { expected_version: Some(version), user: after }],
        revoke_sessions_of: vec![id],
        audit: vec![event],
        ..Change::default()
    };
    (result, Some(change))
}

/// A user named by more than one target is reset once, for the first target that names them; the
/// later targets are skipped (and change nothing).
pub(super) fn skip_repeats(decided: &mut [(ResetResult, Option<Change>)]) {
    let mut seen = HashSet::new();
    for (result, change) in decided {
        if let Some(id) = result.user_id
            && !seen.insert(id)
        {
            result.outcome = ResetOutcome::Skipped;
            result.detail = Some("listed more than once".into());
            result.mfa_after = None;
            *change = None;
        }
    }
}

/// What [`Service::reset_mfa_all_or_nothing`] decided for each target, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllOrNothingReport {
    /// True when every reset was committed; false when an unknown or denied target stopped them all.
    pub committed: bool,
    pub results: Vec<ResetResult>,
}

impl Service {
    /// Reset the MFA of every target: one result per target. Each user's reset is one atomic unit
    /// (record, recovery codes, sessions, audit event); units are committed in batches and made
    /// durable before this returns. A dry run decides exactly the same way and changes nothing.
    pub fn reset_mfa(
        &self,
        actor: &Actor,
        targets: &[String],
        reason: Option<&str>,
        dry_run: bool,
        now: Timestamp,
    ) -> Result<ResetReport> {
        self.reset_mfa_with_progress(actor, targets, reason, dry_run, now, &mut |_, _| {})
    }

    /// [`Service::reset_mfa`], calling `progress(done, total)` after each batch.
    pub fn reset_mfa_with_progress(
        &self,
        actor: &Actor,
        targets: &[String],
        reason: Option<&str>,
        dry_run: bool,
        now: Timestamp,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<ResetReport> {
        self.run_resets(actor, Rules::default(), targets, reason, dry_run, false, now, progress)
    }

    /// [`Service::reset_mfa_with_progress`], unless a target names no user the actor can see: then
    /// nothing changes, and the answer is the dry run's report (which says who). Each target is
    /// decided once, not once for a dry run and again for the reset.
    pub fn reset_mfa_if_all_found(
        &self,
        actor: &Actor,
        targets: &[String],
        reason: Option<&str>,
        now: Timestamp,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<ResetReport> {
        self.run_resets(actor, Rules::default(), targets, reason, false, true, now, progress)
    }

    /// [`Service::reset_mfa`] where `floor`, when given, also decides who may reset someone else
    /// (a vendor-compatible route keeps to its vendor's documented minimum role).
    pub fn reset_mfa_floored(
        &self,
        actor: &Actor,
        targets: &[String],
        reason: Option<&str>,
        floor: Option<&ResetFloor>,
        now: Timestamp,
    ) -> Result<ResetReport> {
        self.run_resets(actor, Rules { own_confirmed: false, floor }, targets, reason, false, false, now, &mut |_, _| {})
    }

    /// Reset the actor's own MFA, after checking its current password (ASVS 2.1.6); the console
    /// operator has no account of its own here and uses [`Service::reset_mfa`].
    pub fn reset_own_mfa(
        &self,
        actor: &Actor,
        current_password: Option<&str>,
        reason: Option<&str>,
        dry_run: bool,
        now: Timestamp,
    ) -> Result<ResetReport> {
        let id = actor.user_id().ok_or_else(|| Error::invalid("only a logged-in user has MFA of its own to reset"))?;
        let user = self.store.get_user(id)?.ok_or_else(|| Error::Unauthenticated("the account is gone".into()))?;
        if let Err(policy::Denied(why)) = policy::may_reset(actor.role(), user.role, true) {
            return Err(Error::Forbidden(why));
        }
        self.step_up(actor, &user, current_password, "reset your own MFA", now)?;
        let rules = Rules { own_confirmed: true, floor: None };
        self.run_resets(actor, rules, &[id.to_string()], reason, dry_run, false, now, &mut |_, _| {})
    }

    /// [`Service::reset_mfa_with_progress`] under `rules`: whether the actor showed its password
    /// (without which it may not reset itself), and a vendor route's floor. With `if_all_found`, a
    /// target that names no one makes it a dry run.
    #[allow(clippy::too_many_arguments)]
    fn run_resets(
        &self,
        actor: &Actor,
        rules: Rules<'_>,
        targets: &[String],
        reason: Option<&str>,
        dry_run: bool,
        if_all_found: bool,
        now: Timestamp,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<ResetReport> {
        let reason = self.check_reason(reason)?;
        if targets.is_empty() {
            return Err(Error::invalid("no users given to reset"));
        }
        let mut decided = self.decide_resets(actor, rules, targets, reason.as_deref(), now)?;
        skip_repeats(&mut decided);
        if if_all_found && decided.iter().any(|(r, _)| r.outcome == ResetOutcome::NotFound) {
            return Ok(ResetReport { dry_run: true, results: decided.into_iter().map(|(r, _)| r).collect() });
        }
        let mut results: Vec<ResetResult> = Vec::with_capacity(targets.len());
        // Index into `results` of each unit waiting to be committed.
        let mut pending: Vec<(usize, Change)> = Vec::new();
        for (result, change) in decided {
            if let Some(change) = change {
                pending.push((results.len(), change));
            }
            results.push(result);
        }
        let total = pending.len();
        if dry_run {
            // Denials are decided but, like everything in a dry run, not recorded.
            progress(total, total);
            return Ok(ResetReport { dry_run, results });
        }
        let batch_size = self.policy.batch_size.max(1);
        // One batch (a single reset, say) shares its commit and flush with concurrent callers;
        // several are committed one after the other and flushed once, at the end.
        let shared = pending.len() <= batch_size;
        let (mut done, mut flush) = (0, !shared);
        let mut pending = pending.into_iter().peekable();
        while pending.peek().is_some() {
            let (indexes, changes): (Vec<usize>, Vec<Change>) = pending.by_ref().take(batch_size).unzip();
            let committed = if shared { self.commit_durable(changes) } else { self.store_commit(&changes) };
            if committed.is_err() {
                // Someone changed one of these users meanwhile: decide each one again, alone.
                for &i in &indexes {
                    let target = results[i].target.clone();
                    results[i] = self.reset_one_again(actor, rules, &target, reason.as_deref(), now);
                }
                flush = true;
            }
            done += indexes.len();
            progress(done, total);
        }
        if flush {
            self.store.flush()?;
        }
        Ok(ResetReport { dry_run, results })
    }

    pub(super) fn reset_one_again(&self, actor: &Actor, rules: Rules<'_>, target: &str, reason: Option<&str>, now: Timestamp) -> ResetResult {
        let mut last_error = String::new();
        for _ in 0..5 {
            let attempt = self.enforcement_map().and_then(|enf| {
                let (result, change) = self.decide_reset(actor, rules, target, reason, &enf, now)?;
                if let Some(change) = change {
                    self.store_commit(&[change])?;
                }
                Ok(result)
            });
            match attempt {
                Ok(result) => return result,
                Err(Error::WriteConflict) => continue,
                Err(e) => {
                    last_error = e.to_string();
                    break;
                }
            }
        }
        ResetResult {
            target: target.into(),
            user_id: None,
            username: None,
            outcome: ResetOutcome::Failed,
            detail: Some(if last_error.is_empty() { "the user kept changing; try again".into() } else { last_error }),
            mfa_after: None,
        }
    }

    /// [`Service::decide_reset`] of every target, in order, with whether each org enforces MFA
    /// read now; the first error (in target order) is the answer. Deciding only reads, so a long
    /// list is decided on every core, in contiguous shares; the report and the units are the same
    /// as one thread's.
    pub(super) fn decide_resets(
        &self,
        actor: &Actor,
        rules: Rules<'_>,
        targets: &[String],
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<(ResetResult, Option<Change>)>> {
        /// Fewer targets than this a thread are not worth one.
        const SHARE: usize = 4096;
        // (Asking for the cores reads cgroup files: not for every single reset.)
        let threads = if targets.len() < 2 * SHARE {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get()).min(targets.len() / SHARE).max(1)
        };
        let decided = |users: Vec<Option<User>>, share: &[String], enforcement: &HashMap<String, bool>| -> Vec<(ResetResult, Option<Change>)> {
            share.iter().zip(users).map(|(target, user)| decide_reset_of(actor, rules, target, user, reason, enforcement, now)).collect()
        };
        if threads == 1 {
            // The users and the orgs in one read (a single reset: one round trip to a database).
            let (users, enforcement) = self.resolve_many_and_enforcement(targets)?;
            return Ok(decided(users, targets, &enforcement));
        }
        let enforcement = &self.enforcement_map()?;
        let decide = |share: &[String]| -> Result<Vec<(ResetResult, Option<Change>)>> { Ok(decided(self.resolve_many(share)?, share, enforcement)) };
        let (first, rest) = targets.split_at(targets.len().div_ceil(threads));
        std::thread::scope(|scope| {
            let others: Vec<_> = rest.chunks(first.len()).map(|share| scope.spawn(move || decide(share))).collect();
            let mut decided = decide(first)?;
            decided.reserve(rest.len());
            for other in others {
                decided.extend(other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?);
            }
            Ok(decided)
        })
    }

    /// Decide what a reset does to one target, and the unit of work that does it. A target listed
    /// more than once is the caller's to notice (by the user id of the result).
    pub(super) fn decide_reset(
        &self,
        actor: &Actor,
        rules: Rules<'_>,
        target: &str,
        reason: Option<&str>,
        enforcement: &HashMap<String, bool>,
        now: Timestamp,
    ) -> Result<(ResetResult, Option<Change>)> {
        Ok(decide_reset_of(actor, rules, target, self.resolve(target)?, reason, enforcement, now))
    }

    /// Reset the MFA of every target, or of none. Each target is decided as in
    /// [`Service::reset_mfa`]; when any target is unknown in the actor's org (`not_found`) or may not
    /// be reset by the actor (`denied`), no user changes (the denials are audited, as in any reset)
    /// and `committed` is false. Otherwise every unit is committed in one transaction, then flushed.
    /// Targets without a factor, or listed twice, are skipped and do not stop the others.
    pub fn reset_mfa_all_or_nothing(
        &self,
        actor: &Actor,
        targets: &[String],
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<AllOrNothingReport> {
        self.reset_mfa_all_or_nothing_floored(actor, targets, reason, None, now)
    }

    /// [`Service::reset_mfa_all_or_nothing`] with a [`ResetFloor`] over the role table.
    pub fn reset_mfa_all_or_nothing_floored(
        &self,
        actor: &Actor,
        targets: &[String],
        reason: Option<&str>,
        floor: Option<&ResetFloor>,
        now: Timestamp,
    ) -> Result<AllOrNothingReport> {
        let reason = self.check_reason(reason)?;
        if targets.is_empty() {
            return Err(Error::invalid("no users given to reset"));
        }
        // A user changed between deciding and committing: decide everything again.
        for _ in 0..5 {
            let rules = Rules { own_confirmed: false, floor };
            let mut decided = self.decide_resets(actor, rules, targets, reason.as_deref(), now)?;
            skip_repeats(&mut decided);
            let mut results = Vec::with_capacity(targets.len());
            let (mut resets, mut denials) = (Vec::new(), Vec::new());
            for (result, change) in decided {
                match (result.outcome, change) {
                    (ResetOutcome::Denied, Some(change)) => denials.push(change),
                    (_, Some(change)) => resets.push(change),
                    (_, None) => {}
                }
                results.push(result);
            }
            let refused = results.iter().any(|r| matches!(r.outcome, ResetOutcome::NotFound | ResetOutcome::Denied));
            let changes = if refused { denials } else { resets };
            if !changes.is_empty() {
                match self.store_commit(&changes) {
                    Ok(()) => self.store.flush()?,
                    Err(Error::WriteConflict) => continue,
                    Err(e) => return Err(e),
                }
            }
            return Ok(AllOrNothingReport { committed: !refused, results });
        }
        Err(Error::WriteConflict)
    }
}
