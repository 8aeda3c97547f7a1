//! Users: adding, changing, reading and listing them (from the in-memory directory).

use crate::auth::password;
use crate::domain::directory::{Cursor, Directory, Filter};
use crate::domain::mfa::{MfaState, MfaStatus};
use crate::domain::policy;
use crate::domain::role::Role;
use crate::domain::text;
use crate::domain::user::{self, Status, User, UserView};
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::store::{Change, UserWrite};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use super::{Actor, AuditView, DirectoryState, Principal, Service, about, draft};

/// Users handed over at a time by [`Service::stream_users`].
pub(super) const STREAM_BATCH: usize = 2_000;

/// A user to create.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub org: String,
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
}

pub use crate::domain::directory::SortField;

/// Which users to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserQuery {
    /// Case-insensitive substring of user name, display name or email.
    pub text: Option<String>,
    pub role: Option<Role>,
    pub org: Option<String>,
    pub mfa: Option<MfaStatus>,
    pub status: Option<Status>,
    /// Only users with a confirmed factor that has passed no check for this many seconds (one
    /// never used counts from its enrollment): factors nobody uses, to reset.
    pub unused_for: Option<u64>,
    pub sort: SortField,
    pub descending: bool,
    /// Continue after this cursor (from a previous page).
    pub cursor: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserPage {
    pub users: Vec<UserView>,
    pub next_cursor: Option<String>,
    /// How many users match the query in all.
    pub total: usize,
}

/// A user with what the detail views show beside the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserDetail {
    pub user: UserView,
    pub recent_audit: Vec<AuditView>,
    /// The user has a password (without one it cannot log in; set one with `user set-password`).
    #[serde(default)]
    pub password_set: bool,
    /// While wrong codes keep the second factor locked: when it unlocks by itself (RFC 3339).
    #[serde(default)]
    pub mfa_locked_until: Option<String>,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("email", &self.email)
            .field("display_name", &self.display_name)
            .field("role", &self.role)
            .field("org", &self.org)
            .field("password", &self.password.as_ref().map(|_| "<password>"))
            .finish()
    }
}

/// An import is refused as a whole to a role that may create no user at all; other rows that ask
/// for a role above the actor's are refused row by row.
pub(super) fn may_create_users(actor: &Actor) -> Result<()> {
    if Role::ALL.iter().any(|&r| policy::may_manage_user(actor.role(), r)) {
        Ok(())
    } else {
        Err(Error::Forbidden(format!("{} cannot create users", actor.role().with_article())))
    }
}

/// The longest "unused for": a hundred years (longer ones are surely typos).
pub const MAX_UNUSED_FOR: u64 = 100 * 365 * 86_400;

/// An age such as `180d`, `26w` or `12h` (days, weeks, hours), in seconds; with `bare_seconds`, a
/// plain number is seconds (what the HTTP API takes), else it is refused as ambiguous.
pub fn parse_unused_for(text: &str, bare_seconds: bool) -> std::result::Result<u64, String> {
    let t = text.trim();
    let usage = "use a number of days, weeks or hours such as 180d, 26w or 12h";
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    if number.is_empty() {
        return Err(format!("{text:?} is not an age: {usage}"));
    }
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is too long ago: at most {}d", MAX_UNUSED_FOR / 86_400))?;
    let per = match unit.trim().to_ascii_lowercase().as_str() {
        "d" => 86_400,
        "w" => 7 * 86_400,
        "h" => 3_600,
        "" if bare_seconds => 1,
        "" => return Err(format!("{text:?} has no unit: {usage}")),
        _ => return Err(format!("{text:?} has an unknown unit {unit:?}: {usage}")),
    };
    match n.checked_mul(per) {
        Some(0) => Err(format!("{text:?} is no time at all: {usage}")),
        Some(secs) if secs <= MAX_UNUSED_FOR => Ok(secs),
        _ => Err(format!("{text:?} is too long ago: at most {}d", MAX_UNUSED_FOR / 86_400)),
    }
}

/// The directory filter of a listing at `now`: the query within what the actor may see; and its
/// cursor.
pub(super) fn list_filter<'q>(actor: &Actor, query: &'q UserQuery, now: Timestamp) -> (Filter, Option<&'q str>) {
    let needle = query.text.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_lowercase);
    let mut orgs: Vec<String> = actor.org().map(str::to_string).into_iter().collect();
    if let Some(named) = query.org.as_deref().map(user::org_key)
        && !orgs.contains(&named)
    {
        orgs.push(named);
    }
    let filter = Filter {
        orgs,
        only: if policy::may_read_users(actor.role()) { None } else { Some(actor.user_id().unwrap_or(Uuid::nil())) },
        role: query.role,
        status: query.status,
        needle,
        mfa: query.mfa,
        unused_since: query.unused_for.map(|secs| now.saturating_sub(secs.min(MAX_UNUSED_FOR) as Timestamp)),
        sort: query.sort,
    };
    (filter, query.cursor.as_deref().map(str::trim).filter(|c| !c.is_empty()))
}

pub(super) fn list_cursor(directory: &Directory, filter: &Filter, cursor: Option<&str>, now: Timestamp) -> Result<Option<Cursor>> {
    Ok(match cursor {
        None => None,
        // A cursor from an older release names only the last user of its page.
        Some(c) if Uuid::parse_str(c).is_ok() => Uuid::parse_str(c).ok().and_then(|id| directory.cursor_at(filter, id, now)),
        Some(c) => match Cursor::decode(c) {
            Some(cursor) if cursor.sort == filter.sort => Some(cursor),
            Some(_) => return Err(Error::invalid(format!("{c:?} is a cursor of a list in another order"))),
            None => return Err(Error::invalid(format!("{c:?} is not a cursor from a previous page"))),
        },
    })
}

pub(super) fn user_page(directory: &Directory, page: crate::domain::directory::Page<'_>, now: Timestamp) -> UserPage {
    let users = page.rows.iter().map(|s| s.view(directory.enforces(&s.org), now)).collect();
    UserPage { users, next_cursor: page.next.map(|c| c.encode()), total: page.total }
}

impl Service {
    /// How many users are in each MFA state at `now`, as the user list shows them (for `/metrics`).
    pub fn users_by_mfa_state(&self, now: Timestamp) -> Result<Vec<(crate::domain::mfa::MfaStatus, u64)>> {
        use crate::domain::mfa::MfaStatus;
        self.with_directory(|directory| {
            let mut counts = [0u64; MfaStatus::ALL.len()];
            for s in directory.iter() {
                let state = s.mfa_status(directory.enforces(&s.org), now);
                if let Some(i) = MfaStatus::ALL.iter().position(|m| *m == state) {
                    counts[i] += 1;
                }
            }
            MfaStatus::ALL.into_iter().zip(counts).collect()
        })
    }

    /// Create a user (and, with a password, let it log in).
    pub fn add_user(&self, actor: &Actor, new: NewUser, now: Timestamp) -> Result<UserView> {
        let user = self.prepare_user(actor, &new, now).map_err(|(_, e)| e)?;
        let number = self.store.allocate_numbers(1)?;
        let user = User { number, ..user };
        let event = about(draft(actor, "user.add", now), &user);
        self.commit(Change {
            users: vec![UserWrite { user: user.clone(), expected_version: None }],
            audit: vec![event],
            ..Change::default()
        })?;
        self.view(&user, now)
    }

    /// Validate a new user against the rules and the store; numbers are assigned by the caller.
    /// A problem comes with the name of the field it is about.
    pub(super) fn prepare_user(&self, actor: &Actor, new: &NewUser, now: Timestamp) -> std::result::Result<User, (&'static str, Error)> {
        let invalid = |field| move |msg: String| (field, Error::invalid(msg));
        let storage = |e: Error| ("", e);
        user::validate_username(&new.username).map_err(invalid("username"))?;
        user::validate_email(&new.email).map_err(invalid("email"))?;
        user::validate_name("display name", &new.display_name).map_err(invalid("display_name"))?;
        text::check_username_form(&new.username).map_err(invalid("username"))?;
        text::check_email_text(&new.email).and_then(|()| text::check_reason_text(&new.email)).map_err(invalid("email"))?;
        text::check_display_text("display name", &new.display_name).map_err(invalid("display_name"))?;
        let org_key = user::org_key(&new.org);
        let no_org = || ("org", Error::not_found(format!("org {:?} (create it with `mfadmin org add`)", new.org)));
        if actor.org().is_some_and(|o| o != org_key) {
            return Err(no_org());
        }
        let org = self.store.get_org(&org_key).map_err(storage)?.ok_or_else(no_org)?;
        if !policy::may_manage_user(actor.role(), new.role) {
            let why = format!("{} cannot create {}", actor.role().with_article(), new.role.with_article());
            return Err(("role", Error::Forbidden(why)));
        }
        if self.store.user_id_by_name(&new.username).map_err(storage)?.is_some() {
            return Err(("username", Error::Conflict(format!("the user name {:?} is already taken", new.username))));
        }
        if self.store.user_id_by_email(&new.email).map_err(storage)?.is_some() {
            return Err(("email", Error::Conflict(format!("the email {:?} is already used by another user", new.email))));
        }
        // Names and emails are both references: neither may be the other kind of another user.
        if self.store.user_id_by_name(new.email.trim()).map_err(storage)?.is_some() {
            return Err(("email", Error::Conflict(format!("the email {:?} is another user's name", new.email))));
        }
        if self.store.user_id_by_email(new.username.trim()).map_err(storage)?.is_some() {
            return Err(("username", Error::Conflict(format!("the user name {:?} is another user's email", new.username))));
        }
        let password_hash = match &new.password {
            Some(p) => {
                password::check_strength(p).map_err(invalid("password"))?;
                Some(password::hash(p))
            }
            None => None,
        };
        Ok(User {
            id: Uuid::new_v4(),
            number: 0,
            username: new.username.trim().to_string(),
            email: new.email.trim().to_string(),
            display_name: new.display_name.trim().to_string(),
            org: org.key,
            role: new.role,
            status: Status::Active,
            password_hash,
            mfa: MfaState::NotEnrolled,
            lockout: Default::default(),
            recovery_codes: Vec::new(),
            created_at: now,
            last_login_at: None,
            mfa_enrolled_at: None,
            mfa_last_used_at: None,
            mfa_last_client: None,
            mfa_reset_at: None,
            version: 0,
        })
    }

    /// Set a user's password. One's own (from a session) needs `current_password` as well.
    pub fn set_password(
        &self,
        actor: &Actor,
        reference: &str,
        new_password: &str,
        current_password: Option<&str>,
        now: Timestamp,
    ) -> Result<()> {
        let user = self.visible_user(actor, reference)?;
        if actor.user_id() != Some(user.id) && !policy::may_manage_user(actor.role(), user.role) {
            return Err(Error::Forbidden(format!("{} cannot set the password of {}", actor.role().with_article(), user.username)));
        }
        self.step_up(actor, &user, current_password, "change your own password", now)?;
        password::check_strength(new_password).map_err(Error::invalid)?;
        let mut next = user.clone();
        next.password_hash = Some(password::hash(new_password));
        self.commit(Change {
            users: vec![UserWrite { expected_version: Some(user.version), user: next }],
            revoke_sessions_of: vec![user.id],
            audit: vec![about(draft(actor, "user.set_password", now), &user)],
            ..Change::default()
        })
    }

    /// A session acting on its own account must show the account's current password (ASVS 2.1.6),
    /// so a stolen session cannot change the password or drop the second factor. The console
    /// operator is at the machine and API keys never act on themselves, so only sessions are asked.
    /// A wrong password is audited, like a failed login.
    pub(super) fn step_up(&self, actor: &Actor, user: &User, current_password: Option<&str>, what: &str, now: Timestamp) -> Result<()> {
        if actor.user_id() != Some(user.id) {
            return Ok(());
        }
        let Some(given) = current_password else {
            return Err(Error::Forbidden(format!("to {what}, give your current password as well (current_password)")));
        };
        if user.password_hash.as_deref().is_some_and(|hash| password::verify(given, hash)) {
            return Ok(());
        }
        let mut event = about(draft(actor, "user.step_up", now), user);
        event.outcome = crate::domain::audit::Outcome::Denied;
        event.detail = Some(format!("wrong current password to {what}"));
        self.commit(Change { audit: vec![event], ..Change::default() })?;
        Err(Error::Forbidden(format!("the current password is wrong: you cannot {what} without it")))
    }

    /// Disable or enable a user. Disabling also ends the user's sessions.
    pub fn set_status(&self, actor: &Actor, reference: &str, status: Status, now: Timestamp) -> Result<UserView> {
        let user = self.visible_user(actor, reference)?;
        if !policy::may_manage_user(actor.role(), user.role) || actor.user_id() == Some(user.id) {
            return Err(Error::Forbidden(format!(
                "{} cannot change the status of {}",
                actor.role().with_article(),
                user.username
            )));
        }
        if status == Status::Disabled && user.role == Role::Owner && user.status == Status::Active {
            let others = self.with_directory(|directory| {
                directory.iter().any(|s| s.org == user.org && s.role == Role::Owner && s.status == Status::Active && s.id != user.id)
            })?;
            if !others {
                let org = self.store.get_org(&user.org)?.map_or_else(|| user.org.clone(), |o| o.name);
                return Err(Error::Conflict(format!(
                    "{} is the last active Owner of the org {:?}: make another user Owner (or enable one) first, \
                     or the org would have no one who may manage its Owners",
                    user.username, org
                )));
            }
        }
        let mut next = user.clone();
        next.status = status;
        let action = if status == Status::Active { "user.enable" } else { "user.disable" };
        self.commit(Change {
            users: vec![UserWrite { expected_version: Some(user.version), user: next.clone() }],
            revoke_sessions_of: if status == Status::Disabled { vec![user.id] } else { vec![] },
            audit: vec![about(draft(actor, action, now), &user)],
            ..Change::default()
        })?;
        self.view(&next, now)
    }

    /// The user behind the actor: itself, or for an API key the user who created it.
    pub fn whoami(&self, actor: &Actor, now: Timestamp) -> Result<UserView> {
        let id = match &actor.principal {
            Principal::User { id, .. } => *id,
            Principal::ApiKey { user_id, .. } => *user_id,
            Principal::Console { .. } | Principal::Validator { .. } => {
                return Err(Error::not_found("a user for the console operator or a validator"));
            }
        };
        let user = self.store.get_user(id)?.filter(|u| actor.sees(u)).ok_or_else(|| Error::not_found("user"))?;
        self.view(&user, now)
    }

    pub fn get_user(&self, actor: &Actor, reference: &str, now: Timestamp) -> Result<UserDetail> {
        let user = self.visible_user(actor, reference)?;
        if actor.user_id() != Some(user.id) && !policy::may_read_users(actor.role()) {
            return Err(Error::not_found(format!("user {reference:?}")));
        }
        let mut recent = Vec::new();
        if policy::may_read_audit(actor.role()) || actor.user_id() == Some(user.id) {
            let links = self.chain_links()?;
            self.store.scan_audit(true, &mut |e| {
                if e.draft.target_id == Some(user.id) {
                    recent.push(AuditView::new(&e, &links));
                }
                recent.len() < 10
            })?;
        }
        let mfa_locked_until = user.lockout.locked_until.filter(|t| *t > now).map(crate::domain::user::rfc3339);
        Ok(UserDetail { user: self.view(&user, now)?, recent_audit: recent, password_set: user.password_hash.is_some(), mfa_locked_until })
    }

    /// The users the actor may see that match `query`, sorted and paged. The directory keeps the
    /// matches of recent filters, so a page is a seek by the cursor's key, not a scan.
    pub fn list_users(&self, actor: &Actor, query: &UserQuery, now: Timestamp) -> Result<UserPage> {
        let (filter, cursor) = list_filter(actor, query, now);
        self.with_directory(|directory| {
            let after = list_cursor(directory, &filter, cursor, now)?;
            let page = directory.page(&filter, after.as_ref(), query.descending, query.limit.unwrap_or(usize::MAX), now);
            Ok(user_page(directory, page, now))
        })?
    }

    /// [`Service::list_users`] when it can answer from memory at once — the directory is built and
    /// the filter's matches are cached — else `None` (then call `list_users` where blocking is fine).
    /// With a store shared with other nodes it is always `None`: a listing first catches up, which
    /// reads the database.
    pub fn list_users_in_memory(&self, actor: &Actor, query: &UserQuery, now: Timestamp) -> Option<Result<UserPage>> {
        if self.shared {
            return None;
        }
        let (filter, cursor) = list_filter(actor, query, now);
        let guard = self.directory.try_read().ok()?;
        let DirectoryState::Built(directory) = &*guard else {
            return None;
        };
        let after = match list_cursor(directory, &filter, cursor, now) {
            Ok(after) => after,
            Err(e) => return Some(Err(e)),
        };
        let page = directory.page_if_cached(&filter, after.as_ref(), query.descending, query.limit.unwrap_or(usize::MAX), now)?;
        Some(Ok(user_page(directory, page, now)))
    }

    /// Every user the actor may see, for a console that keeps a table of its own: first up to
    /// `first` users in user-name order (through the name index, so they come at once), then every
    /// user in the store's order, those first ones again too. `emit(users, read, of)` gets the
    /// batches, with how many of the store's `of` users were read so far, and returns false to
    /// stop. It reads the store, so a console never builds the directory beside its own table.
    pub fn stream_users(
        &self,
        actor: &Actor,
        first: usize,
        now: Timestamp,
        emit: &mut dyn FnMut(Vec<UserView>, usize, usize) -> bool,
    ) -> Result<()> {
        let (filter, _) = list_filter(actor, &UserQuery::default(), now);
        let visible = |u: &User| filter.orgs.iter().all(|o| *o == u.org);
        let enforced = self.enforcement_map()?;
        let view = |u: &User| UserView::new(u, enforced.get(&u.org).copied().unwrap_or(false), now);
        let of = self.store.user_count_bound()?;
        if let Some(only) = filter.only {
            let me = self.store.get_user(only)?.filter(visible).map(|u| view(&u));
            emit(me.into_iter().collect(), of, of);
            return Ok(());
        }
        let mut batch = Vec::new();
        let mut failed = None;
        // A small org is sought among many names: give up on the first page after a while.
        let mut tries = first.saturating_mul(50);
        let name_order = if first == 0 { Ok(()) } else { self.store.scan_ids_by_name(&mut |id| {
            match self.store.get_user(id) {
                Ok(Some(u)) if visible(&u) => batch.push(view(&u)),
                Ok(_) => {}
                Err(e) => failed = Some(e),
            }
            tries = tries.saturating_sub(1);
            failed.is_none() && batch.len() < first && tries > 0
        }) };
        name_order?;
        if let Some(e) = failed {
            return Err(e);
        }
        if !emit(std::mem::take(&mut batch), 0, of) {
            return Ok(());
        }
        let (mut read, mut going) = (0, true);
        self.store.scan_users(&mut |u| {
            read += 1;
            if visible(&u) {
                batch.push(view(&u));
            }
            if batch.len() >= STREAM_BATCH {
                going = emit(std::mem::take(&mut batch), read, of);
            }
            going
        })?;
        if going {
            emit(batch, read, read);
        }
        Ok(())
    }
}
