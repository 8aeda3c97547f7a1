//! Orgs and their MFA enforcement.

use crate::domain::mfa::MfaStatus;
use crate::domain::policy;
use crate::domain::user::{self, Org};
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::store::Change;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use super::{Actor, Principal, Service, draft};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrgView {
    pub name: String,
    pub mfa_enforced: bool,
    pub users: usize,
    pub enrolled: usize,
}

impl Service {
    /// Create an org. Only the console operator creates orgs.
    pub fn add_org(&self, actor: &Actor, name: &str, mfa_enforced: bool, now: Timestamp) -> Result<OrgView> {
        if !matches!(actor.principal, Principal::Console { .. }) {
            return Err(Error::Forbidden(
                "orgs are created by the console operator: run `mfadmin org add NAME` on the host that holds the \
                 store (the server's host, after stopping `mfadmin serve`)"
                    .into(),
            ));
        }
        user::validate_name("org name", name).map_err(Error::invalid)?;
        let key = user::org_key(name);
        if self.store.get_org(&key)?.is_some() {
            return Err(Error::Conflict(format!("the org {name:?} already exists")));
        }
        let org = Org { key: key.clone(), name: name.trim().to_string(), mfa_enforced, created_at: now };
        let mut event = draft(actor, "org.add", now);
        event.org = Some(key);
        self.commit(Change { orgs: vec![org.clone()], audit: vec![event], ..Change::default() })?;
        Ok(OrgView { name: org.name, mfa_enforced, users: 0, enrolled: 0 })
    }

    /// The orgs the actor can see, with user counts.
    pub fn orgs(&self, actor: &Actor, now: Timestamp) -> Result<Vec<OrgView>> {
        let counts: HashMap<String, (usize, usize)> = self.with_directory(|directory| {
            let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
            for s in directory.iter() {
                let c = counts.entry(s.org.clone()).or_default();
                c.0 += 1;
                if s.mfa_status(false, now) == MfaStatus::Enrolled {
                    c.1 += 1;
                }
            }
            counts
        })?;
        Ok(self
            .store
            .orgs()?
            .into_iter()
            .filter(|o| actor.org().is_none_or(|a| a == o.key))
            .map(|o| {
                let (users, enrolled) = counts.get(&o.key).copied().unwrap_or_default();
                OrgView { name: o.name, mfa_enforced: o.mfa_enforced, users, enrolled }
            })
            .collect())
    }

    /// Turn MFA enforcement on or off for an org (the actor's own, unless the console names one).
    pub fn set_mfa_enforced(&self, actor: &Actor, org: Option<&str>, enforced: bool, now: Timestamp) -> Result<OrgView> {
        let key = match (actor.org(), org) {
            (Some(own), Some(named)) if user::org_key(named) != own => {
                return Err(Error::not_found(format!("org {named:?}")));
            }
            (Some(own), _) => own.to_string(),
            (None, Some(named)) => user::org_key(named),
            (None, None) => {
                let orgs = self.store.orgs()?;
                match orgs.as_slice() {
                    [only] => only.key.clone(),
                    _ => return Err(Error::invalid("there are several orgs: name one with --org")),
                }
            }
        };
        if !policy::may_change_org(actor.role()) {
            return Err(Error::Forbidden(format!("{} cannot change org settings", actor.role().with_article())));
        }
        let mut org = self.store.get_org(&key)?.ok_or_else(|| Error::not_found(format!("org {key:?}")))?;
        org.mfa_enforced = enforced;
        let mut event = draft(actor, "org.enforce_mfa", now);
        event.org = Some(key.clone());
        event.detail = Some(if enforced { "on".into() } else { "off".into() });
        self.commit(Change { orgs: vec![org], audit: vec![event], ..Change::default() })?;
        self.orgs(actor, now)?
            .into_iter()
            .find(|o| user::org_key(&o.name) == key)
            .ok_or_else(|| Error::not_found("org"))
    }
}
