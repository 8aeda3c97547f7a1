//! API keys for scripts: create, list, revoke.

use crate::domain::policy;
use crate::domain::role::Role;
use crate::domain::user;
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::store::{Change, SessionKind, TokenHash};
use serde::{Deserialize, Serialize};
use super::{Actor, Principal, Service, about, draft};

/// An API key as listed: never the key itself, only an id derived from its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    /// 16 hex digits that name the key (the start of its hash).
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The user who created it.
    pub owner: String,
    pub org: String,
    pub created_at: String,
    pub expires_at: String,
    /// A key that can only check second factors (`/validate/check`), for RADIUS, PAM and apps.
    pub validate_only: bool,
}

pub(super) fn api_key_id(hash: &TokenHash) -> String {
    hex::encode(&hash[..8])
}

impl Service {
    /// Create a long-lived API key for the acting user, acting with `role` (never above the user's).
    pub fn create_api_key(&self, actor: &Actor, name: &str, role: Role, now: Timestamp) -> Result<(String, Timestamp)> {
        let Principal::User { id, .. } = &actor.principal else {
            return Err(Error::Forbidden("API keys are created by a logged-in Owner or Admin".into()));
        };
        if !policy::may_create_api_key(actor.role(), role) {
            return Err(Error::Forbidden(format!(
                "{} cannot create an API key with the role {role}",
                actor.role().with_article()
            )));
        }
        user::validate_name("API key name", name).map_err(Error::invalid)?;
        let user = self.store.get_user(*id)?.ok_or_else(|| Error::not_found("user"))?;
        self.refuse_taken_key_name(&user, name, now)?;
        let mut event = about(draft(actor, "apikey.create", now), &user);
        event.detail = Some(format!("key {name:?} with role {role}"));
        let kind = SessionKind::ApiKey { name: name.to_string(), role };
        self.put_token(&user, kind, self.policy.api_key_secs, now, &actor.source, Change { audit: vec![event], ..Change::default() })
    }

    /// Create a key that can only check second factors (`/validate/check`): for a RADIUS server, a
    /// PAM module or an application. It checks the users of the creator's org.
    pub fn create_validate_key(&self, actor: &Actor, name: &str, now: Timestamp) -> Result<(String, Timestamp)> {
        let Principal::User { id, .. } = &actor.principal else {
            return Err(Error::Forbidden("validate keys are created by a logged-in Owner or Admin".into()));
        };
        if !policy::may_create_api_key(actor.role(), Role::Member) {
            return Err(Error::Forbidden(format!("{} cannot create a validate key", actor.role().with_article())));
        }
        user::validate_name("API key name", name).map_err(Error::invalid)?;
        let user = self.store.get_user(*id)?.ok_or_else(|| Error::not_found("user"))?;
        self.refuse_taken_key_name(&user, name, now)?;
        let mut event = about(draft(actor, "apikey.create", now), &user);
        event.detail = Some(format!("validate-only key {name:?}"));
        let kind = SessionKind::ValidateKey { name: name.to_string() };
        self.put_token(&user, kind, self.policy.api_key_secs, now, &actor.source, Change { audit: vec![event], ..Change::default() })
    }

    /// A user's unexpired keys have different names, so a name in a list or a revocation means one key.
    fn refuse_taken_key_name(&self, user: &user::User, name: &str, now: Timestamp) -> Result<()> {
        let wanted = name.trim();
        for (hash, session) in self.store.sessions_of(user.id)? {
            let taken = match &session.kind {
                SessionKind::ApiKey { name, .. } | SessionKind::ValidateKey { name } => name.trim().eq_ignore_ascii_case(wanted),
                _ => false,
            };
            if taken && session.expires_at > now {
                return Err(Error::Conflict(format!(
                    "{} already has an API key named {wanted:?} (id {}): revoke it first (`mfadmin apikey revoke {}`) \
                     or choose another name",
                    user.username,
                    api_key_id(&hash),
                    api_key_id(&hash)
                )));
            }
        }
        Ok(())
    }

    /// The unexpired API keys of the actor's org (every org for the console), for an Owner or Admin.
    pub fn list_api_keys(&self, actor: &Actor, now: Timestamp) -> Result<Vec<ApiKeyView>> {
        if !policy::may_create_api_key(actor.role(), Role::Member) {
            return Err(Error::Forbidden(format!("{} cannot see API keys", actor.role().with_article())));
        }
        let mut owners = Vec::new();
        self.store.scan_users(&mut |u| {
            if actor.sees(&u) && policy::may_create_api_key(u.role, Role::Member) {
                owners.push(u);
            }
            true
        })?;
        let mut keys = Vec::new();
        for owner in owners {
            for (hash, session) in self.store.sessions_of(owner.id)? {
                let (name, role, validate_only) = match session.kind {
                    SessionKind::ApiKey { name, role } => (name, role, false),
                    SessionKind::ValidateKey { name } => (name, Role::Member, true),
                    _ => continue,
                };
                if session.expires_at > now {
                    keys.push(ApiKeyView {
                        id: api_key_id(&hash),
                        name,
                        role,
                        owner: owner.username.clone(),
                        org: owner.org.clone(),
                        created_at: user::rfc3339(session.created_at),
                        expires_at: user::rfc3339(session.expires_at),
                        validate_only,
                    });
                }
            }
        }
        keys.sort_by(|a, b| (&a.org, &a.owner, &a.name, &a.id).cmp(&(&b.org, &b.owner, &b.name, &b.id)));
        Ok(keys)
    }

    /// Revoke the API key with this id (from [`Service::list_api_keys`]). An Owner revokes any key
    /// of the org; an Admin its own keys and those of the users it may manage.
    pub fn revoke_api_key(&self, actor: &Actor, id: &str, now: Timestamp) -> Result<()> {
        let id = id.trim().to_lowercase();
        let not_found = || Error::not_found(format!("API key {id:?}"));
        let Some(key) = self.list_api_keys(actor, now)?.into_iter().find(|k| k.id == id) else {
            return Err(not_found());
        };
        let owner = self.resolve(&key.owner)?.ok_or_else(not_found)?;
        if actor.user_id() != Some(owner.id) && !policy::may_manage_user(actor.role(), owner.role) {
            return Err(Error::Forbidden(format!(
                "{} cannot revoke the API keys of {}",
                actor.role().with_article(),
                owner.role.with_article()
            )));
        }
        let hash = self
            .store
            .sessions_of(owner.id)?
            .into_iter()
            .map(|(h, _)| h)
            .find(|h| api_key_id(h) == id)
            .ok_or_else(not_found)?;
        let mut event = about(draft(actor, "apikey.revoke", now), &owner);
        event.detail = Some(format!("key {:?} ({id})", key.name));
        self.commit(Change { sessions_delete: vec![hash], audit: vec![event], ..Change::default() })
    }
}
