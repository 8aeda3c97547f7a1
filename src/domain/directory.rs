//! An in-memory directory of user summaries for listing and filtering without reading every record
//! from the store. The service keeps it in step with every write; the match lists of recent
//! filters are cached and updated by the same writes, so a page is a seek, never a full scan.

use super::mfa::{Factor, MfaStatus};
use super::role::Role;
use super::search_index::SearchIndex;
use super::user::{rfc3339, Status, User, UserView};
use super::Timestamp;
use base64::Engine as _;
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use uuid::Uuid;

/// What listing needs of a user: everything a [`UserView`] shows, and no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub id: Uuid,
    pub number: u64,
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub org: String,
    pub role: Role,
    pub status: Status,
    pub factor: Factor,
    pub locked_until: Option<Timestamp>,
    pub recovery_codes_left: usize,
    pub created_at: Timestamp,
    pub last_login_at: Option<Timestamp>,
    pub mfa_enrolled_at: Option<Timestamp>,
    pub mfa_last_used_at: Option<Timestamp>,
    pub mfa_last_client: Option<Box<str>>,
    pub mfa_reset_at: Option<Timestamp>,
    /// The stored record's version this summary was taken from.
    pub version: u64,
    /// User name, display name and email, lower-cased and joined by newlines, for text filters.
    pub haystack: String,
}

impl UserView {
    pub fn new(user: &User, org_enforces_mfa: bool, now: Timestamp) -> UserView {
        Summary::of(user).view(org_enforces_mfa, now)
    }
}

impl Summary {
    pub fn of(user: &User) -> Summary {
        Summary {
            id: user.id,
            number: user.number,
            username: user.username.clone(),
            email: user.email.clone(),
            display_name: user.display_name.clone(),
            org: user.org.clone(),
            role: user.role,
            status: user.status,
            factor: Factor::of(&user.mfa),
            locked_until: user.lockout.locked_until,
            recovery_codes_left: user.recovery_codes.len(),
            created_at: user.created_at,
            last_login_at: user.last_login_at,
            mfa_enrolled_at: user.mfa_enrolled_at,
            mfa_last_used_at: user.mfa_last_used_at,
            mfa_last_client: user.mfa_last_client.as_deref().map(Box::from),
            mfa_reset_at: user.mfa_reset_at,
            version: user.version,
            haystack: format!("{}\n{}\n{}", user.username, user.display_name, user.email).to_lowercase(),
        }
    }

    pub fn mfa_status(&self, org_enforces_mfa: bool, now: Timestamp) -> MfaStatus {
        self.factor.status(self.locked_until, org_enforces_mfa, now)
    }

    /// Is there a confirmed factor that has not passed a check since `since`? A factor never used
    /// counts from its enrollment (a factor enrolled again counts from then, not from the old
    /// one's last use); one with neither time known counts as unused.
    pub fn factor_unused_since(&self, since: Timestamp) -> bool {
        self.factor == Factor::Enrolled && self.mfa_last_used_at.max(self.mfa_enrolled_at).is_none_or(|t| t < since)
    }

    pub fn view(&self, org_enforces_mfa: bool, now: Timestamp) -> UserView {
        UserView {
            id: self.id,
            number: self.number,
            username: self.username.clone(),
            email: self.email.clone(),
            display_name: self.display_name.clone(),
            org: self.org.clone(),
            role: self.role,
            status: self.status,
            mfa: self.mfa_status(org_enforces_mfa, now),
            recovery_codes_left: self.recovery_codes_left,
            created_at: rfc3339(self.created_at),
            last_login_at: self.last_login_at.map(rfc3339),
            mfa_enrolled_at: self.mfa_enrolled_at.map(rfc3339),
            mfa_last_used_at: self.mfa_last_used_at.map(rfc3339),
            mfa_last_client: self.mfa_last_client.as_deref().map(str::to_string),
            mfa_reset_at: self.mfa_reset_at.map(rfc3339),
        }
    }

    /// The lower-cased user name, display name or email (parts of the haystack).
    fn lowered(&self, part: usize) -> &str {
        self.haystack.split('\n').nth(part).unwrap_or("")
    }

    /// The key this summary sorts by under `field` (ties are broken by id).
    fn sort_key(&self, field: SortField, enforced: bool, now: Timestamp) -> Cow<'_, str> {
        let name = || self.lowered(0);
        match field {
            SortField::Username => Cow::Borrowed(name()),
            SortField::DisplayName => Cow::Borrowed(self.lowered(1)),
            SortField::Email => Cow::Borrowed(self.lowered(2)),
            SortField::Org => Cow::Owned(format!("{}\0{}", self.org, name())),
            SortField::Role => Cow::Owned(format!("{}\0{}", self.role as u8, name())),
            SortField::Mfa => Cow::Owned(format!("{}\0{}", self.mfa_status(enforced, now) as u8, name())),
            SortField::LastLogin => Cow::Owned(format!("{:020}", self.last_login_at.map_or(0, |t| t.saturating_add(1 << 40)))),
            SortField::Created => Cow::Owned(format!("{:020}", self.created_at.saturating_add(1 << 40))),
            SortField::Number => Cow::Owned(format!("{:020}", self.number)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortField {
    #[default]
    Username,
    DisplayName,
    Email,
    Org,
    Role,
    Mfa,
    LastLogin,
    Created,
    Number,
}

impl SortField {
    /// Every field, in declaration order (`field as u8` indexes it).
    pub const ALL: [SortField; 9] = [
        SortField::Username,
        SortField::DisplayName,
        SortField::Email,
        SortField::Org,
        SortField::Role,
        SortField::Mfa,
        SortField::LastLogin,
        SortField::Created,
        SortField::Number,
    ];
}

impl std::str::FromStr for SortField {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let s = s.trim().to_lowercase().replace('-', "_");
        Ok(match s.as_str() {
            "username" | "name" => SortField::Username,
            "display_name" => SortField::DisplayName,
            "email" => SortField::Email,
            "org" => SortField::Org,
            "role" => SortField::Role,
            "mfa" => SortField::Mfa,
            "last_login" => SortField::LastLogin,
            "created" => SortField::Created,
            "number" => SortField::Number,
            _ => {
                return Err(format!(
                    "cannot sort by {s:?}: use username, display_name, email, org, role, mfa, last_login, created or number"
                ));
            }
        })
    }
}

/// Which summaries a listing wants, and in which order (ascending; a descending page walks it
/// backwards). Built by the service from the query and the actor's scope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Filter {
    /// Only users of this org (the actor's own org, or one named in the query)...
    pub orgs: Vec<String>,
    /// ...and only this user (an actor who may see nobody but itself).
    pub only: Option<Uuid>,
    pub role: Option<Role>,
    pub status: Option<Status>,
    /// Lower-cased text to find in the haystack.
    pub needle: Option<String>,
    pub mfa: Option<MfaStatus>,
    /// Only users whose factor has not been used since this time (see
    /// [`Summary::factor_unused_since`]). Never part of a cached filter: the time moves with the
    /// clock, so every listing would cache a list of its own. The rest of the filter is cached,
    /// and this check runs over its matches.
    pub unused_since: Option<Timestamp>,
    pub sort: SortField,
}

impl Filter {
    /// Does the answer depend on the clock (a lockout ends by itself; "unused since" is computed
    /// from it)? Such filters are not cached.
    fn depends_on_time(&self) -> bool {
        self.mfa.is_some() || self.sort == SortField::Mfa || self.unused_since.is_some()
    }
}

/// Where the previous page ended: the sort key and id of its last row. Seeking by key, not by
/// position, keeps paging stable while rows are inserted, changed or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub sort: SortField,
    pub key: String,
    pub id: Uuid,
}

/// Starts every cursor, so that none can be mistaken for a user id (which older cursors were).
const CURSOR_MARK: &str = "p";

impl Cursor {
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(17 + self.key.len());
        bytes.push(self.sort as u8);
        bytes.extend_from_slice(self.id.as_bytes());
        bytes.extend_from_slice(self.key.as_bytes());
        format!("{CURSOR_MARK}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    /// A cursor from [`Cursor::encode`]; `None` when the text is not one.
    pub fn decode(text: &str) -> Option<Cursor> {
        let text = text.trim().strip_prefix(CURSOR_MARK)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()?;
        if bytes.len() < 17 {
            return None;
        }
        let sort = *SortField::ALL.get(bytes[0] as usize)?;
        let id = Uuid::from_slice(&bytes[1..17]).ok()?;
        let key = String::from_utf8(bytes[17..].to_vec()).ok()?;
        Some(Cursor { sort, key, id })
    }
}

/// One page of a listing.
#[derive(Debug)]
pub struct Page<'a> {
    pub rows: Vec<&'a Summary>,
    /// How many summaries match in all.
    pub total: usize,
    /// Where the next page starts, when there is one.
    pub next: Option<Cursor>,
}

/// The summaries matching one filter, in the filter's order.
#[derive(Debug, Clone)]
enum MatchList {
    /// Slots in the filter's order.
    Listed(Vec<u32>),
    /// The matching slots of a filter in user-name order that many users match: a page walks the
    /// name order and picks them out, so no list of hundreds of thousands of slots is built and
    /// sorted for the fifty a page shows.
    Named(RoaringBitmap),
}

impl MatchList {
    fn len(&self) -> usize {
        match self {
            MatchList::Listed(slots) => slots.len(),
            MatchList::Named(set) => set.len() as usize,
        }
    }

    /// What it holds in memory, counted in slots (4 bytes), for the cache's bound.
    fn weight(&self) -> usize {
        match self {
            MatchList::Listed(slots) => slots.len(),
            MatchList::Named(set) => set.serialized_size() / 4,
        }
    }
}

/// Match lists of recent filters, each with the [`MatchCache::clock`] of its last use (for
/// eviction); writes update them in place (see [`Directory::upsert`]).
#[derive(Debug, Default)]
struct MatchCache {
    lists: HashMap<Filter, (Arc<MatchList>, u64)>,
    clock: u64,
}

/// At most this many slots are held in cached match lists (4 bytes each), over all filters.
const CACHE_SLOTS: usize = 8 << 20;
/// At most this many filters have a cached match list (every write visits each of them).
const CACHE_FILTERS: usize = 64;
/// Matches of more than one in this many users are kept as a set and paged by walking the name
/// order (a page of 50 then tests at most 50 × this many users); fewer are sorted by name.
const DENSE_SHARE: usize = 256;
/// A page of a set in user-name order walks this many users of the name order at most; a set
/// whose members are further away (a name piece that starts many names far down the order) is
/// paged by its members' places instead.
const WALK_BUDGET: usize = 1 << 14;
/// Checking more candidates than this against a filter is split over every core.
const PARALLEL_CHECK: u64 = 1 << 16;
/// A batch of more writes than this re-sorts the directory once instead of note by note.
const BULK_UPSERT: usize = 1024;

/// Summaries of every user, the org enforcement they are shown with, and cached match lists.
#[derive(Debug, Default)]
pub struct Directory {
    summaries: Vec<Summary>,
    slot_of: HashMap<Uuid, u32>,
    /// Every slot, in (lower-cased user name, id) order.
    by_name: Vec<u32>,
    /// Each slot's place in `by_name`; computed again when first needed after the order changed.
    places: OnceLock<Vec<u32>>,
    /// Org key → does the org enforce MFA.
    enforced: HashMap<String, bool>,
    cache: Mutex<MatchCache>,
    /// Held while a match list is computed for the cache.
    computing: Mutex<()>,
    /// Which slots hold a text or belong to an org, so a new filter reads only its candidates.
    index: Box<SearchIndex>,
}

impl Directory {
    /// A directory over `summaries` (newest version of each user wins), with the orgs' enforcement.
    pub fn build(summaries: Vec<Summary>, enforced: HashMap<String, bool>) -> Directory {
        let mut d = Directory { enforced, ..Directory::default() };
        d.upsert_many(summaries);
        d
    }

    pub fn len(&self) -> usize {
        self.summaries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.summaries.is_empty()
    }

    /// Every summary, in user-name order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Summary> {
        self.by_name.iter().map(|&s| &self.summaries[s as usize])
    }

    pub fn get(&self, id: Uuid) -> Option<&Summary> {
        self.slot_of.get(&id).map(|&s| &self.summaries[s as usize])
    }

    pub fn enforces(&self, org: &str) -> bool {
        self.enforced.get(org).copied().unwrap_or(false)
    }

    /// Note an org's enforcement; cached lists are dropped when it changes (MFA states change).
    pub fn set_enforced(&mut self, org: &str, enforced: bool) {
        if self.enforced.insert(org.to_string(), enforced) != Some(enforced) {
            self.cache_mut().lists.clear();
        }
    }

    fn cache_mut(&mut self) -> &mut MatchCache {
        self.cache.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn matches(&self, f: &Filter, s: &Summary, now: Timestamp) -> bool {
        let finder = f.needle.as_deref().map(memchr::memmem::Finder::new);
        self.matches_with(f, finder.as_ref(), s, now)
    }

    /// [`Directory::matches`] with the text searcher built once for many summaries.
    fn matches_with(&self, f: &Filter, finder: Option<&memchr::memmem::Finder<'_>>, s: &Summary, now: Timestamp) -> bool {
        f.orgs.iter().all(|o| *o == s.org)
            && f.only.is_none_or(|id| id == s.id)
            && f.role.is_none_or(|r| r == s.role)
            && f.status.is_none_or(|st| st == s.status)
            && finder.is_none_or(|n| n.find(s.haystack.as_bytes()).is_some())
            && f.mfa.is_none_or(|m| m == s.mfa_status(self.enforces(&s.org), now))
            && f.unused_since.is_none_or(|since| s.factor_unused_since(since))
    }

    fn key_of<'a>(&self, s: &'a Summary, field: SortField, now: Timestamp) -> Cow<'a, str> {
        s.sort_key(field, self.enforces(&s.org), now)
    }

    /// Where (key, id) goes in `slots`, which are in `field` order.
    fn position(&self, slots: &[u32], field: SortField, key: &str, id: Uuid, now: Timestamp) -> Result<usize, usize> {
        slots.binary_search_by(|&slot| {
            let s = &self.summaries[slot as usize];
            self.key_of(s, field, now).as_ref().cmp(key).then(s.id.cmp(&id))
        })
    }

    /// Add or replace a user's summary, unless the directory already holds a newer version
    /// (writes may be noted out of order by concurrent callers). Cached match lists follow; a list
    /// (or the name order) where the user keeps its place is not touched, so the common write — a
    /// reset, a login — moves nothing in million-entry orders.
    pub fn upsert(&mut self, summary: Summary) {
        let slot = match self.slot_of.get(&summary.id) {
            Some(&slot) if self.summaries[slot as usize].version >= summary.version => return,
            Some(&slot) => Some(slot),
            None => None,
        };
        let mut cache = std::mem::take(self.cache_mut());
        // Out of every list the user leaves or moves within, while the slot still holds the old
        // summary (the search compares against it)...
        let mut touched: Vec<(Filter, (Arc<MatchList>, u64), bool)> = Vec::new();
        for (filter, (mut list, used)) in cache.lists.drain() {
            let new_key = self.matches(&filter, &summary, 0).then(|| self.key_of(&summary, filter.sort, 0).into_owned());
            let mut stays = false;
            if let Some(slot) = slot {
                let old = &self.summaries[slot as usize];
                if self.matches(&filter, old, 0) {
                    let key = self.key_of(old, filter.sort, 0);
                    stays = new_key.as_deref() == Some(key.as_ref());
                    if !stays {
                        self.leave(&mut list, filter.sort, &key, old.id, slot);
                    }
                }
            }
            touched.push((filter, (list, used), new_key.is_some() && !stays));
        }
        let renamed = slot.is_none_or(|s| self.summaries[s as usize].lowered(0) != summary.lowered(0));
        if renamed
            && let Some(slot) = slot
            && let Ok(at) = self.position(&self.by_name, SortField::Username, self.summaries[slot as usize].lowered(0), summary.id, 0)
        {
            self.by_name.remove(at);
            self.places = OnceLock::new();
        }
        self.index.replace(slot.unwrap_or(self.summaries.len() as u32), slot.map(|s| &self.summaries[s as usize]), &summary);
        let slot = match slot {
            Some(slot) => {
                self.summaries[slot as usize] = summary;
                slot
            }
            None => {
                let slot = u32::try_from(self.summaries.len()).expect("fewer than 4 billion users");
                self.slot_of.insert(summary.id, slot);
                self.summaries.push(summary);
                slot
            }
        };
        // ...and into every list it enters or moved within.
        let new = &self.summaries[slot as usize];
        if renamed && let Err(at) = self.position(&self.by_name, SortField::Username, new.lowered(0), new.id, 0) {
            self.by_name.insert(at, slot);
            self.places = OnceLock::new();
        }
        for (filter, (mut list, used), enters) in touched {
            if enters {
                let key = self.key_of(new, filter.sort, 0).into_owned();
                self.enter(&mut list, filter.sort, &key, new.id, slot);
            }
            cache.lists.insert(filter, (list, used));
        }
        *self.cache_mut() = cache;
    }

    /// Take `slot` (whose summary has `key` and `id`) out of a match list.
    fn leave(&self, list: &mut Arc<MatchList>, sort: SortField, key: &str, id: Uuid, slot: u32) {
        match &**list {
            MatchList::Listed(slots) => {
                if let Ok(at) = self.position(slots, sort, key, id, 0)
                    && let MatchList::Listed(slots) = Arc::make_mut(list)
                {
                    slots.remove(at);
                }
            }
            MatchList::Named(set) if set.contains(slot) => {
                if let MatchList::Named(set) = Arc::make_mut(list) {
                    set.remove(slot);
                }
            }
            MatchList::Named(_) => {}
        }
    }

    /// Put `slot` (whose summary has `key` and `id`) into a match list, in its place.
    fn enter(&self, list: &mut Arc<MatchList>, sort: SortField, key: &str, id: Uuid, slot: u32) {
        match &**list {
            MatchList::Listed(slots) => {
                if let Err(at) = self.position(slots, sort, key, id, 0)
                    && let MatchList::Listed(slots) = Arc::make_mut(list)
                {
                    slots.insert(at, slot);
                }
            }
            MatchList::Named(set) if !set.contains(slot) => {
                if let MatchList::Named(set) = Arc::make_mut(list) {
                    set.insert(slot);
                }
            }
            MatchList::Named(_) => {}
        }
    }

    /// [`Directory::upsert`] for many summaries; a large batch re-sorts once and drops the cache.
    pub fn upsert_many(&mut self, summaries: Vec<Summary>) {
        if summaries.len() <= BULK_UPSERT {
            for s in summaries {
                self.upsert(s);
            }
            return;
        }
        // The name order is rebuilt only when a user was added or renamed.
        let mut moved = false;
        // Slots from here on are new: the index notes them at the end, in one pass.
        let first_new = self.summaries.len();
        for summary in summaries {
            match self.slot_of.get(&summary.id) {
                Some(&slot) if self.summaries[slot as usize].version >= summary.version => {}
                Some(&slot) => {
                    if (slot as usize) < first_new {
                        self.index.replace(slot, Some(&self.summaries[slot as usize]), &summary);
                    }
                    let old = &mut self.summaries[slot as usize];
                    moved |= old.lowered(0) != summary.lowered(0);
                    *old = summary;
                }
                None => {
                    let slot = u32::try_from(self.summaries.len()).expect("fewer than 4 billion users");
                    self.slot_of.insert(summary.id, slot);
                    self.summaries.push(summary);
                    moved = true;
                }
            }
        }
        self.index.extend(&self.summaries, first_new);
        self.cache_mut().lists.clear();
        if !moved {
            return;
        }
        let summaries = &self.summaries;
        let mut by_name: Vec<u32> = (0..summaries.len() as u32).collect();
        // Each name is cut out of its haystack once, not at every comparison.
        by_name.sort_by_cached_key(|&s| (summaries[s as usize].lowered(0), summaries[s as usize].id));
        self.by_name = by_name;
        self.places = OnceLock::new();
    }

    /// Each slot's place in the name order.
    fn places(&self) -> &[u32] {
        self.places.get_or_init(|| {
            let mut places = vec![0u32; self.summaries.len()];
            for (place, &slot) in self.by_name.iter().enumerate() {
                places[slot as usize] = place as u32;
            }
            places
        })
    }

    /// Every slot matching `filter`, in its order.
    fn compute(&self, filter: &Filter, now: Timestamp) -> MatchList {
        if let Some(id) = filter.only {
            let slot = self.slot_of.get(&id).copied().filter(|&s| self.matches(filter, &self.summaries[s as usize], now));
            return MatchList::Listed(slot.into_iter().collect());
        }
        let mut slots = match self.narrowed(filter) {
            Some((candidates, text_checked, sure)) => {
                let matched = self.check(filter, candidates, text_checked, &sure, now);
                if filter.sort == SortField::Username {
                    if matched.len() as usize * DENSE_SHARE > self.by_name.len() {
                        return MatchList::Named(matched);
                    }
                    let places = self.places();
                    let mut slots: Vec<u32> = matched.iter().collect();
                    slots.sort_unstable_by_key(|&s| places[s as usize]);
                    return MatchList::Listed(slots);
                }
                matched.iter().collect()
            }
            // In user-name order.
            None => self.scan(filter, now),
        };
        if filter.sort != SortField::Username {
            slots.sort_by_cached_key(|&s| {
                let summary = &self.summaries[s as usize];
                (self.key_of(summary, filter.sort, now).into_owned(), summary.id)
            });
        }
        MatchList::Listed(slots)
    }

    /// Every slot matching `filter` (without `only`), in user-name order, read one by one.
    fn scan(&self, filter: &Filter, now: Timestamp) -> Vec<u32> {
        let finder = filter.needle.as_deref().map(memchr::memmem::Finder::new);
        self.by_name
            .iter()
            .copied()
            .filter(|&s| self.matches_with(filter, finder.as_ref(), &self.summaries[s as usize], now))
            .collect()
    }

    /// The slots the index narrows `filter` to by its text and orgs, whether they all hold the
    /// text (or it still has to be checked), and slots known to hold it; `None` when the index
    /// cannot narrow it.
    fn narrowed(&self, filter: &Filter) -> Option<(RoaringBitmap, bool, RoaringBitmap)> {
        let text = filter.needle.as_deref().and_then(|n| self.index.text(n.as_bytes()));
        let text_checked = filter.needle.is_none() || text.as_ref().is_some_and(|c| c.exact);
        let (mut slots, sure) = match text {
            Some(c) => (Some(c.slots), c.sure),
            None => (None, RoaringBitmap::new()),
        };
        let none = RoaringBitmap::new();
        for org in &filter.orgs {
            let members = self.index.org(org).unwrap_or(&none);
            slots = Some(match slots {
                Some(slots) => slots & members,
                None => members.clone(),
            });
        }
        slots.map(|slots| (slots, text_checked, sure))
    }

    /// The candidates that pass the rest of `filter`: its text unless `text_checked` (those in
    /// `sure` hold it), and every condition but the orgs (the candidates are in them). Many
    /// candidates are checked in parts, on every core.
    fn check(&self, filter: &Filter, candidates: RoaringBitmap, text_checked: bool, sure: &RoaringBitmap, now: Timestamp) -> RoaringBitmap {
        let rest = Filter { orgs: Vec::new(), needle: filter.needle.clone().filter(|_| !text_checked), ..filter.clone() };
        if rest == (Filter { sort: rest.sort, ..Filter::default() }) {
            return candidates;
        }
        if rest.needle.is_some() && !sure.is_empty() {
            let held = &candidates & sure;
            let unsure = candidates - &held;
            let none = RoaringBitmap::new();
            return self.check(filter, held, true, &none, now) | self.check(filter, unsure, false, &none, now);
        }
        let finder = rest.needle.as_deref().map(memchr::memmem::Finder::new);
        // When only the text is left to check, nothing of a candidate but its haystack is read.
        let text_only = rest == (Filter { sort: rest.sort, needle: rest.needle.clone(), ..Filter::default() });
        let passes = |s: u32| {
            let summary = &self.summaries[s as usize];
            match &finder {
                Some(finder) if text_only => finder.find(summary.haystack.as_bytes()).is_some(),
                _ => self.matches_with(&rest, finder.as_ref(), summary, now),
            }
        };
        let passing = |slots: roaring::bitmap::Iter<'_>| {
            RoaringBitmap::from_sorted_iter(slots.filter(|&s| passes(s))).expect("a bitmap iterates in ascending order")
        };
        if candidates.len() < PARALLEL_CHECK {
            return passing(candidates.iter());
        }
        use rayon::iter::{IntoParallelIterator, ParallelIterator};
        // Slots are below the directory's length, which fits a u32.
        let (users, parts) = (self.summaries.len() as u32, rayon::current_num_threads() as u32 * 4);
        let span = users.div_ceil(parts);
        (0..parts)
            .into_par_iter()
            .map(|part| passing(candidates.range(part.saturating_mul(span)..(part + 1).saturating_mul(span).min(users))))
            .reduce(RoaringBitmap::new, |a, b| a | b)
    }

    /// The match list of `filter`: from the cache, or computed (and cached unless it depends on
    /// the clock).
    fn match_list(&self, filter: &Filter, now: Timestamp) -> Arc<MatchList> {
        if let Some(since) = filter.unused_since {
            // A cheap check of two times per match of the rest of the filter, which is cached.
            let rest = self.match_list(&Filter { unused_since: None, ..filter.clone() }, now);
            let summaries = &self.summaries;
            let unused = |&s: &u32| summaries[s as usize].factor_unused_since(since);
            return Arc::new(match &*rest {
                MatchList::Listed(slots) => MatchList::Listed(slots.iter().copied().filter(unused).collect()),
                MatchList::Named(set) => MatchList::Named(set.iter().filter(unused).collect()),
            });
        }
        if filter.depends_on_time() {
            return Arc::new(self.compute(filter, now));
        }
        {
            let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            cache.clock += 1;
            let clock = cache.clock;
            if let Some((list, used)) = cache.lists.get_mut(filter) {
                *used = clock;
                return list.clone();
            }
        }
        // One computation at a time: callers missing the same filter at once wait for the first
        // one's list instead of all reading every summary (a herd of 64 would take 64 times longer).
        let _computing = self.computing.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        {
            let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let clock = cache.clock;
            if let Some((list, used)) = cache.lists.get_mut(filter) {
                *used = clock;
                return list.clone();
            }
        }
        let list = Arc::new(self.compute(filter, now));
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let clock = cache.clock;
        // Evict the least recently used lists until this one fits.
        let mut held: usize = cache.lists.values().map(|(l, _)| l.weight()).sum();
        while (held + list.weight() > CACHE_SLOTS || cache.lists.len() >= CACHE_FILTERS) && !cache.lists.is_empty() {
            let oldest = cache.lists.iter().min_by_key(|(_, (_, used))| *used).map(|(f, _)| f.clone());
            if let Some(f) = oldest
                && let Some((l, _)) = cache.lists.remove(&f)
            {
                held -= l.weight();
            }
        }
        if list.weight() <= CACHE_SLOTS {
            cache.lists.insert(filter.clone(), (list.clone(), clock));
        }
        list
    }

    /// Up to `limit` summaries matching `filter` after `after` (ascending, or descending), with the
    /// total and the cursor of the next page.
    pub fn page(&self, filter: &Filter, after: Option<&Cursor>, descending: bool, limit: usize, now: Timestamp) -> Page<'_> {
        let list = self.match_list(filter, now);
        self.page_of(&list, filter, after, descending, limit, now)
    }

    /// [`Directory::page`] when it needs no scan (the filter's matches are cached), else `None`.
    pub fn page_if_cached(
        &self,
        filter: &Filter,
        after: Option<&Cursor>,
        descending: bool,
        limit: usize,
        now: Timestamp,
    ) -> Option<Page<'_>> {
        if filter.depends_on_time() {
            return None;
        }
        let list = {
            let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            cache.clock += 1;
            let clock = cache.clock;
            let (list, used) = cache.lists.get_mut(filter)?;
            *used = clock;
            list.clone()
        };
        Some(self.page_of(&list, filter, after, descending, limit, now))
    }

    fn page_of(&self, list: &MatchList, filter: &Filter, after: Option<&Cursor>, descending: bool, limit: usize, now: Timestamp) -> Page<'_> {
        let total = list.len();
        let (picked, more) = match list {
            MatchList::Listed(slots) => self.cut(slots, filter, after, descending, limit, now),
            MatchList::Named(set) => self.walk(set, after, descending, limit),
        };
        let rows: Vec<&Summary> = picked.iter().map(|&s| &self.summaries[s as usize]).collect();
        let next = match rows.last() {
            Some(last) if more => {
                Some(Cursor { sort: filter.sort, key: self.key_of(last, filter.sort, now).into_owned(), id: last.id })
            }
            _ => None,
        };
        Page { rows, total, next }
    }

    /// Up to `limit` slots of `slots` (in `filter`'s order) after `after`, or before it when
    /// `descending`, and whether more follow.
    fn cut(&self, slots: &[u32], filter: &Filter, after: Option<&Cursor>, descending: bool, limit: usize, now: Timestamp) -> (Vec<u32>, bool) {
        let seek = |c: &Cursor| match self.position(slots, filter.sort, &c.key, c.id, now) {
            Ok(at) => (at + 1, at),
            Err(at) => (at, at),
        };
        // Ascending pages run over [start, total); descending ones over [0, end) backwards.
        if descending {
            let end = after.map_or(slots.len(), |c| seek(c).1);
            let picked: Vec<u32> = slots[..end].iter().rev().take(limit).copied().collect();
            let more = end > picked.len();
            (picked, more)
        } else {
            let start = after.map_or(0, |c| seek(c).0);
            let picked: Vec<u32> = slots[start..].iter().take(limit).copied().collect();
            let more = start + picked.len() < slots.len();
            (picked, more)
        }
    }

    /// [`Directory::cut`] for a set of slots in user-name order: the name order is walked from the
    /// cursor and the members picked out, or, when they are not near, the members are taken in the
    /// order of their places.
    fn walk(&self, set: &RoaringBitmap, after: Option<&Cursor>, descending: bool, limit: usize) -> (Vec<u32>, bool) {
        let seek = |c: &Cursor| match self.position(&self.by_name, SortField::Username, &c.key, c.id, 0) {
            Ok(at) => (at + 1, at),
            Err(at) => (at, at),
        };
        let wanted = limit.saturating_add(1);
        // The places a page may come from: [start, end), read forwards or backwards.
        let (start, end) = match (after, descending) {
            (None, _) => (0, self.by_name.len()),
            (Some(c), false) => (seek(c).0, self.by_name.len()),
            (Some(c), true) => (0, seek(c).1),
        };
        let span = &self.by_name[start..end];
        let walked = span.len().min(WALK_BUDGET);
        let near = if descending { &span[span.len() - walked..] } else { &span[..walked] };
        let mut picked: Vec<u32> = Vec::new();
        let mut take = |s: &u32| {
            if set.contains(*s) {
                picked.push(*s);
            }
            picked.len() < wanted
        };
        if descending {
            near.iter().rev().all(&mut take);
        } else {
            near.iter().all(&mut take);
        }
        if picked.len() < wanted && walked < span.len() {
            let places = self.places();
            let mut inside: Vec<u32> = set.iter().map(|s| places[s as usize]).filter(|&p| (start..end).contains(&(p as usize))).collect();
            if descending {
                inside.iter_mut().for_each(|p| *p = u32::MAX - *p);
            }
            if inside.len() > wanted {
                inside.select_nth_unstable(wanted - 1);
                inside.truncate(wanted);
            }
            inside.sort_unstable();
            picked = inside.into_iter().map(|p| self.by_name[(if descending { u32::MAX - p } else { p }) as usize]).collect();
        }
        let more = picked.len() > limit;
        picked.truncate(limit);
        (picked, more)
    }

    /// The cursor just after `id` in `filter`'s order, for a cursor that names only a user.
    pub fn cursor_at(&self, filter: &Filter, id: Uuid, now: Timestamp) -> Option<Cursor> {
        let s = self.get(id)?;
        Some(Cursor { sort: filter.sort, key: self.key_of(s, filter.sort, now).into_owned(), id })
    }

    /// How many filters have a cached match list (for tests).
    pub fn cached_filters(&self) -> usize {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).lists.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::mfa::{Lockout, MfaState};

    pub(crate) fn user(name: &str, version: u64) -> User {
        User {
            id: Uuid::from_u128(name.len() as u128),
            number: 1,
            username: name.into(),
            email: format!("{name}@x.example"),
            display_name: name.to_uppercase(),
            org: "acme".into(),
            role: Role::Member,
            status: Status::Active,
            password_hash: None,
            mfa: MfaState::NotEnrolled,
            lockout: Lockout::default(),
            recovery_codes: vec![],
            created_at: 0,
            last_login_at: None,
            mfa_enrolled_at: None,
            mfa_last_used_at: None,
            mfa_last_client: None,
            mfa_reset_at: None,
            version,
        }
    }

    fn numbered(i: u128, name: &str, version: u64) -> Summary {
        let mut u = user(name, version);
        u.id = Uuid::from_u128(i);
        u.number = i as u64;
        Summary::of(&u)
    }

    fn names(page: &Page<'_>) -> Vec<String> {
        page.rows.iter().map(|s| s.username.clone()).collect()
    }

    #[test]
    fn keeps_name_order_and_refuses_older_versions() {
        let mut d = Directory::default();
        d.upsert(Summary::of(&user("bob", 2)));
        d.upsert(Summary::of(&user("Al", 1)));
        let names: Vec<_> = d.iter().map(|s| s.username.as_str()).collect();
        assert_eq!(names, ["Al", "bob"]);
        let mut renamed = user("bob", 1);
        renamed.username = "zed".into();
        d.upsert(Summary::of(&renamed));
        assert_eq!(d.iter().last().unwrap().username, "bob", "version 1 is older than the held 2");
        renamed.version = 3;
        d.upsert(Summary::of(&renamed));
        assert_eq!(d.iter().last().unwrap().username, "zed");
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn a_view_from_a_summary_equals_a_view_from_the_record() {
        let mut u = user("carol", 4);
        u.mfa = MfaState::NotEnrolled;
        for enforced in [false, true] {
            assert_eq!(Summary::of(&u).view(enforced, 10), UserView::new(&u, enforced, 10));
        }
    }

    #[test]
    fn a_cached_match_list_follows_every_write() {
        let mut d = Directory::build((1..=5).map(|i| numbered(i, &format!("smith{i}"), 1)).collect(), HashMap::new());
        let f = Filter { needle: Some("smith".into()), ..Filter::default() };
        assert_eq!(d.page(&f, None, false, 10, 0).total, 5);
        assert_eq!(d.cached_filters(), 1);
        // A rename out of the filter, a rename into it, and a new user: the cached list follows.
        d.upsert(numbered(2, "jones2", 2));
        d.upsert(numbered(9, "asmith9", 1));
        d.upsert(numbered(3, "zz-smith", 2));
        let page = d.page(&f, None, false, 10, 0);
        assert_eq!(names(&page), ["asmith9", "smith1", "smith4", "smith5", "zz-smith"]);
        assert_eq!(d.cached_filters(), 1, "answered from the updated cache");
        let fresh = Directory::build(d.iter().cloned().collect(), HashMap::new());
        assert_eq!(names(&fresh.page(&f, None, false, 10, 0)), names(&page), "same answer as a fresh scan");
        // An older version noted late changes nothing.
        d.upsert(numbered(2, "smith2", 1));
        assert_eq!(d.page(&f, None, false, 10, 0).total, 5);
    }

    #[test]
    fn writes_that_keep_a_users_place_and_writes_that_move_it_give_a_fresh_scans_answer() {
        let with_role = |i: u128, name: &str, role: Role, version: u64| {
            let mut s = numbered(i, name, version);
            s.role = role;
            s
        };
        let roles = [Role::Member, Role::Admin, Role::Helpdesk];
        let mut d = Directory::build((0..300).map(|i| with_role(i, &format!("u{i:03}"), Role::Member, 1)).collect(), HashMap::new());
        let filters = [
            Filter { needle: Some("u1".into()), ..Filter::default() },
            Filter { sort: SortField::Role, ..Filter::default() },
            Filter { role: Some(Role::Admin), ..Filter::default() },
        ];
        for f in &filters {
            d.page(f, None, false, 500, 0);
        }
        // One by one: the same name with a new role (the user stays in the name order but moves
        // within the role order and into or out of the admin list), a plain version bump, a rename.
        for i in 0..300u128 {
            let name = if i % 50 == 7 { format!("r{i:03}") } else { format!("u{i:03}") };
            d.upsert(with_role(i, &name, roles[i as usize % 3], 2));
        }
        assert_eq!(d.cached_filters(), filters.len());
        let fresh = Directory::build(d.iter().cloned().collect(), HashMap::new());
        for f in &filters {
            assert_eq!(names(&d.page(f, None, false, 500, 0)), names(&fresh.page(f, None, false, 500, 0)), "{f:?}");
        }
        // A batch too large to note one by one, with no rename: the name order is kept as it is.
        let mut d = Directory::build((0..2000).map(|i| with_role(i, &format!("u{i:04}"), Role::Member, 1)).collect(), HashMap::new());
        d.upsert_many((0..2000).map(|i| with_role(i, &format!("u{i:04}"), roles[i as usize % 3], 2)).collect());
        let fresh = Directory::build(d.iter().cloned().collect(), HashMap::new());
        for f in &filters {
            assert_eq!(names(&d.page(f, None, false, 2000, 0)), names(&fresh.page(f, None, false, 2000, 0)), "{f:?}");
        }
        assert_eq!(d.page(&filters[2], None, false, 2000, 0).total, 667);
    }

    #[test]
    fn cursor_paging_is_stable_while_rows_change() {
        // Every user, read from a list; and a text every user holds, read from a set in name order.
        let everyone = Filter::default();
        let text = Filter { needle: Some("u".into()), ..Filter::default() };
        for f in [everyone, text] {
            let mut d = Directory::build((0..100).map(|i| numbered(i, &format!("u{i:03}"), 1)).collect(), HashMap::new());
            let first = d.page(&f, None, false, 10, 0);
            assert_eq!(first.rows.last().unwrap().username, "u009");
            let cursor = first.next.clone().unwrap();
            let cursor = Cursor::decode(&cursor.encode()).unwrap();
            // The last row of the page is renamed away, and a row is added before the cursor.
            d.upsert(numbered(9, "zzz", 2));
            d.upsert(numbered(500, "a-new-u", 1));
            let second = d.page(&f, Some(&cursor), false, 10, 0);
            assert_eq!(second.rows.first().unwrap().username, "u010", "continues after the cursor's key");
            // Walking every page, ascending and descending, yields every matching row once.
            for descending in [false, true] {
                let (mut seen, mut after) = (Vec::new(), None);
                loop {
                    let page = d.page(&f, after.as_ref(), descending, 7, 0);
                    seen.extend(names(&page));
                    match page.next {
                        Some(c) => after = Some(c),
                        None => break,
                    }
                }
                let mut expected: Vec<String> = d.iter().filter(|s| d.matches(&f, s, 0)).map(|s| s.username.clone()).collect();
                if descending {
                    expected.reverse();
                }
                assert_eq!(seen, expected, "{f:?}");
                assert_eq!(d.page(&f, None, descending, 7, 0).total, expected.len());
            }
        }
    }

    #[test]
    fn a_set_far_down_the_name_order_pages_as_a_list_would() {
        // The users holding "zed" are all past the walk's reach from either end of the order.
        let count = WALK_BUDGET as u128 * 2 + 600;
        let name = |i: u128| match i {
            _ if i >= count - 600 => format!("m-zed{i:06}"),
            _ if i % 2 == 0 => format!("a{i:06}"),
            _ => format!("z{i:06}"),
        };
        let d = Directory::build((0..count).map(|i| numbered(i, &name(i), 1)).collect(), HashMap::new());
        let f = Filter { needle: Some("zed".into()), ..Filter::default() };
        assert!(matches!(*d.match_list(&f, 0), MatchList::Named(_)), "paged from a set");
        for descending in [false, true] {
            let (mut seen, mut after) = (Vec::new(), None);
            loop {
                let page = d.page(&f, after.as_ref(), descending, 37, 0);
                assert_eq!(page.total, 600);
                seen.extend(names(&page));
                match page.next {
                    Some(c) => after = Some(c),
                    None => break,
                }
            }
            let mut expected: Vec<String> = d.iter().filter(|s| s.username.contains("zed")).map(|s| s.username.clone()).collect();
            if descending {
                expected.reverse();
            }
            assert_eq!(seen, expected);
        }
    }

    #[test]
    fn many_candidates_are_checked_in_parts_as_one_check_would() {
        // More candidates than one thread checks: every user holds the three-byte pieces of "exam",
        // one in seven the text itself.
        let people: Vec<Summary> = (0..(PARALLEL_CHECK as u128 + 5000))
            .map(|i| {
                let display = if i % 7 == 0 { "Example" } else { "Exa Xam" };
                person(i, &format!("p{i}"), display, &format!("p{i}@x.org"), ORGS[i as usize % 3], ROLES[i as usize % 3], 1)
            })
            .collect();
        let d = Directory::build(people, HashMap::new());
        let needles: Vec<String> = ["exam", "p1@x"].map(String::from).to_vec();
        assert_index_answers_as_a_scan(&d, &needles);
        let f = Filter { needle: Some("exam".into()), ..Filter::default() };
        assert_eq!(d.page(&f, None, false, 50, 0).total, (PARALLEL_CHECK as usize + 5000).div_ceil(7));
    }

    #[test]
    fn every_sort_field_survives_a_cursor() {
        for (i, sort) in SortField::ALL.into_iter().enumerate() {
            assert_eq!(sort as usize, i);
            let c = Cursor { sort, key: "k\u{e9}y".into(), id: Uuid::from_u128(7) };
            assert_eq!(Cursor::decode(&c.encode()), Some(c));
        }
    }

    #[test]
    fn other_sort_orders_and_cursors_that_are_not_ours() {
        let d = Directory::build((0..20).map(|i| numbered(i, &format!("u{:02}", 19 - i), 1)).collect(), HashMap::new());
        let f = Filter { sort: SortField::Number, ..Filter::default() };
        let page = d.page(&f, None, false, 3, 0);
        assert_eq!(page.rows.iter().map(|s| s.number).collect::<Vec<_>>(), [0, 1, 2]);
        let next = d.page(&f, page.next.as_ref(), false, 3, 0);
        assert_eq!(next.rows.iter().map(|s| s.number).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(Cursor::decode("zzz"), None);
        assert_eq!(Cursor::decode(""), None);
    }

    /// A summary with every text the index reads chosen by the test.
    fn person(i: u128, name: &str, display: &str, email: &str, org: &str, role: Role, version: u64) -> Summary {
        let mut u = user(name, version);
        u.id = Uuid::from_u128(i);
        u.number = i as u64;
        u.display_name = display.into();
        u.email = email.into();
        u.org = org.into();
        u.role = role;
        Summary::of(&u)
    }

    const ORGS: [&str; 3] = ["acme", "globex", "initech"];
    const ROLES: [Role; 3] = [Role::Member, Role::Admin, Role::Helpdesk];

    /// Filters over every needle given, alone and with orgs, a role and other sort orders.
    fn filters(needles: &[String]) -> Vec<Filter> {
        let mut filters = vec![Filter::default(), Filter { orgs: vec!["acme".into()], ..Filter::default() }];
        for n in needles {
            let needle = Some(n.to_lowercase());
            filters.push(Filter { needle: needle.clone(), ..Filter::default() });
            filters.push(Filter { needle: needle.clone(), orgs: vec!["globex".into()], ..Filter::default() });
            filters.push(Filter { needle: needle.clone(), orgs: vec!["acme".into(), "globex".into()], ..Filter::default() });
            filters.push(Filter { needle: needle.clone(), role: Some(Role::Admin), sort: SortField::Email, ..Filter::default() });
            filters.push(Filter { needle, orgs: vec!["initech".into()], sort: SortField::DisplayName, ..Filter::default() });
        }
        filters
    }

    /// The index's answer to every filter is the one a read of every summary gives.
    fn assert_index_answers_as_a_scan(d: &Directory, needles: &[String]) {
        for f in filters(needles) {
            let mut scanned = d.scan(&f, 0);
            if f.sort != SortField::Username {
                scanned.sort_by_cached_key(|&s| {
                    let summary = &d.summaries[s as usize];
                    (d.key_of(summary, f.sort, 0).into_owned(), summary.id)
                });
            }
            let computed = match d.compute(&f, 0) {
                MatchList::Listed(slots) => slots,
                MatchList::Named(set) => d.by_name.iter().copied().filter(|&s| set.contains(s)).collect(),
            };
            assert_eq!(computed, scanned, "{f:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_index_answers_exactly_as_a_full_scan_after_any_writes(
            people in proptest::collection::vec(("[abAB\\.ñ]{1,5}", "[abñ Ä]{0,5}", "[ab.@]{1,6}", 0..3usize), 1..40),
            writes in proptest::collection::vec((0..50u128, "[abAB\\.ñ]{1,5}", "[ab.@]{1,6}", 0..3usize), 0..40),
            needles in proptest::collection::vec("[abAB\\.@ ñä\\n]{1,5}", 1..8),
        ) {
            let summary = |i: usize, name: &str, display: &str, email: &str, k: usize, version: u64| {
                person(i as u128, name, display, email, ORGS[k], ROLES[(i + k) % 3], version)
            };
            let mut d = Directory::build(
                people.iter().enumerate().map(|(i, (n, dn, e, k))| summary(i, n, dn, e, *k, 1)).collect(),
                HashMap::new(),
            );
            assert_index_answers_as_a_scan(&d, &needles);
            // Renames, moves between orgs, new users, one by one.
            for (version, (i, n, e, k)) in writes.iter().enumerate() {
                d.upsert(summary(*i as usize, n, "Ä", e, *k, 2 + version as u64));
            }
            assert_index_answers_as_a_scan(&d, &needles);
        }
    }

    #[test]
    fn the_index_answers_as_a_scan_after_bulk_writes() {
        // Names of three letters over a small alphabet, so that needles match many users or few.
        let mut seed = 7u64;
        let mut word = |len: usize| -> String {
            (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ['a', 'b', 'c', 'D', 'é'][(seed >> 33) as usize % 5]
                })
                .collect()
        };
        let people: Vec<Summary> = (0..3000)
            .map(|i| person(i, &word(4), &word(3), &format!("{}@{}", word(3), word(2)), ORGS[i as usize % 3], ROLES[i as usize % 3], 1))
            .collect();
        let mut d = Directory::build(people, HashMap::new());
        let needles: Vec<String> = ["a", "é", "ab", "cd", "bca", "aaaa", "dé@", "@", "abcab", "x", "a\nb"]
            .map(String::from)
            .to_vec();
        assert_index_answers_as_a_scan(&d, &needles);
        // A bulk batch: renames, org moves, unchanged texts, and new users.
        let batch: Vec<Summary> = (1500..4500)
            .map(|i| {
                let name = if i % 3 == 0 { word(5) } else { format!("u{i}") };
                person(i, &name, &word(2), &format!("{}@x", word(3)), ORGS[(i as usize + 1) % 3], ROLES[i as usize % 3], 2)
            })
            .collect();
        d.upsert_many(batch);
        assert_index_answers_as_a_scan(&d, &needles);
    }
}
