//! The user table's data: every user the admin may see, kept compact (a million users fit in
//! about 200 MB), a pre-lowered search index that holds each text once (an email's domain is kept
//! once for all its users, and a local part that is the user name is not repeated), the sort
//! order, the rows the filter shows, the marks and the cursor. Filtering searches the index in
//! memory order, on every core; a single character is answered from per-row character masks, a
//! growing text re-checks only the rows still shown from where the shorter text was found in
//! each, and a backspace gets a recent answer back — so a keystroke stays within a frame or so at
//! a million users.

use crate::domain::mfa::MfaStatus;
use crate::domain::role::Role;
use crate::domain::user::{rfc3339, Status, UserView};
use crate::service::{ResetOutcome, ResetReport, SortField};
use hashbrown::HashTable;
use memchr::memmem;
use rayon::iter::{IndexedParallelIterator, ParallelIterator};
use rayon::slice::ParallelSliceMut;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use uuid::Uuid;

/// Separates the fields of one row in the search index; typed text never contains it.
const SEP: char = '\u{1f}';
/// Tables of more rows than 64 times this are filtered on every core.
const PARALLEL_WORDS: usize = 1_024;
/// Rows still to search for a text are searched one by one while they are fewer than the rows
/// divided by this; more, and the whole index is searched at once.
const NARROW_ROW_BY_ROW: usize = 16;
/// Words of the bit set with fewer rows than this have their rows' index bytes read a word ahead
/// (see [`touch`]); denser ones are read in order, which the processor foresees by itself.
const TOUCH_BELOW: u32 = 40;
/// How many recent filter texts keep their answer, for backspaces.
const RECENT_TEXTS: usize = 16;
/// A timestamp the user does not have.
const NEVER: i64 = i64::MIN;

/// The columns the table can be sorted by, in the order `s` cycles through them.
pub const SORT_COLUMNS: [SortField; 7] = [
    SortField::Username,
    SortField::DisplayName,
    SortField::Email,
    SortField::Org,
    SortField::Role,
    SortField::Mfa,
    SortField::LastLogin,
];

/// What the table is filtered by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Case-insensitive text in user name, display name or email.
    pub text: String,
    pub role: Option<Role>,
    pub mfa: Option<MfaStatus>,
    /// Only confirmed factors nobody has used for a while.
    pub unused: Option<Unused>,
}

impl Query {
    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.role.is_none() && self.mfa.is_none() && self.unused.is_none()
    }
}

/// The quick filter for factors nobody uses: confirmed factors that have passed no check since
/// `since`, `days` days before the filter was set (a factor never used counts from its
/// enrollment, as in `mfadmin user list --unused-for`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unused {
    pub days: u32,
    /// Unix seconds: `days` before the clock when the filter was set.
    pub since: i64,
}

impl Unused {
    /// The filter for `days` days back from `now`.
    pub fn days_before(days: u32, now: i64) -> Unused {
        Unused { days, since: now.saturating_sub(i64::from(days) * 86_400) }
    }
}

/// One user, without its texts (they are in [`UserTable::index`] and [`UserTable::originals`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    id: Uuid,
    number: u64,
    /// Unix seconds, or [`NEVER`].
    created_at: i64,
    last_login_at: i64,
    mfa_enrolled_at: i64,
    mfa_last_used_at: i64,
    mfa_reset_at: i64,
    /// Where this row's fields that are not all lower case start in `originals`.
    original: u32,
    recovery_codes_left: u32,
    /// Index into `orgs`.
    org: u32,
    role: Role,
    status: Status,
    mfa: MfaStatus,
    /// Bit `i` set: field `i` (user name, display name, email) differs from its lower-cased form
    /// and is kept in `originals`, in field order, each followed by [`SEP`]. [`LOCAL_IS_NAME`]
    /// set: the email's local part is the user name, and is not in the index twice.
    differs: u8,
}

/// See [`Row::differs`].
const LOCAL_IS_NAME: u8 = 1 << 3;

/// What [`UserTable::put`] changed.
enum Put {
    Same,
    Changed,
    TextChanged,
}

#[derive(Debug, Clone, Default)]
pub struct UserTable {
    rows: Vec<Row>,
    /// Lower-cased `username SEP display name SEP local part SEP` of every row, in row order. The
    /// local part is the email up to its last `@`, left empty when it is the user name (as it
    /// mostly is); the rest of the email is in `domains`. So the index holds each text once.
    index: String,
    /// Per row: where its index text starts, and where its user name, display name and local
    /// part end.
    spans: Vec<[u32; 4]>,
    /// The ends of the emails, from the last `@` on, lower-cased, each once ("@acme.example"):
    /// a directory has few. A text found in one is found in every row whose email ends in it.
    domains: Texts,
    /// Per row: its email's end, as its number in `domains`.
    domain: Vec<u32>,
    /// The fields whose case the index lost (see [`Row::differs`]).
    originals: String,
    orgs: Texts,
    /// Row numbers, found by the row's id.
    by_id: HashTable<u32>,
    hasher: RandomState,
    /// Every row, in the sort order.
    order: Vec<u32>,
    /// Per row: which characters its index text holds (see [`char_bit`]).
    masks: Vec<u64>,
    /// The rows the query lets through, in the sort order.
    shown: Vec<u32>,
    /// The same rows as a bit set by row number.
    hits: Vec<u64>,
    /// Per row let through by the text in `first_for`: where in the index that text first occurs
    /// in the row's text. A longer text that starts with it cannot occur before.
    first_at: Vec<u32>,
    first_for: Option<String>,
    /// The bit sets of texts filtered by a moment ago, newest last, so that a backspace finds its
    /// answer again. Forgotten when anything but the text changes.
    recent: Vec<(String, Vec<u64>)>,
    marked: Vec<bool>,
    mark_count: usize,
    /// The lower-cased text `shown` was filtered by.
    applied_text: String,
    query: Query,
    sort: SortField,
    descending: bool,
    /// Position in `shown`.
    cursor: usize,
    /// First shown row on screen.
    offset: usize,
    /// Start of a range being marked (`v`), as a row.
    anchor: Option<u32>,
    pub loaded: bool,
}

impl UserTable {
    pub fn new() -> UserTable {
        UserTable::default()
    }

    /// Replace the rows with a fresh list from the store, keeping marks, cursor, sort and query.
    pub fn load(&mut self, rows: Vec<UserView>) {
        let marked = self.marked_ids();
        let cursor_id = self.cursor_id();
        let anchor_id = self.anchor.map(|r| self.rows[r as usize].id);
        let (sort, descending, query, applied) = (self.sort, self.descending, self.query.clone(), self.applied_text.clone());
        *self = UserTable { sort, descending, query, applied_text: applied, ..UserTable::default() };
        for view in &rows {
            let r = self.push(view);
            self.insert_id(r);
        }
        for id in marked {
            if let Some(r) = self.find(id) {
                self.set_mark(r, true);
            }
        }
        self.anchor = anchor_id.and_then(|id| self.find(id));
        self.loaded = true;
        self.resort();
        self.refilter();
        self.put_cursor_on(cursor_id);
    }

    /// Add rows that streamed in, and put fresher copies of rows already here in place; marks,
    /// cursor, sort and query stay. New rows are merged into the sort order, so a page costs
    /// about as much as one pass over the table.
    pub fn upsert(&mut self, rows: Vec<UserView>) {
        let mut resort = false;
        let mut text_changed = false;
        let first_new = self.rows.len() as u32;
        for view in &rows {
            match self.find(view.id) {
                Some(r) => match self.put(r, view) {
                    Put::Same => {}
                    Put::Changed => resort = true,
                    Put::TextChanged => (resort, text_changed) = (true, true),
                },
                None => {
                    let r = self.push(view);
                    self.insert_id(r);
                }
            }
        }
        self.loaded = true;
        let cursor_id = self.cursor_id();
        if text_changed {
            self.compact_text();
        }
        if resort {
            self.resort();
        } else {
            let mut fresh: Vec<u32> = (first_new..self.rows.len() as u32).collect();
            fresh.sort_unstable_by(|&a, &b| self.compare_in_order(a, b));
            let old = std::mem::take(&mut self.order);
            let mut merged = Vec::with_capacity(old.len() + fresh.len());
            let (mut i, mut j) = (0, 0);
            while i < old.len() && j < fresh.len() {
                if self.compare_in_order(old[i], fresh[j]) == Ordering::Greater {
                    merged.push(fresh[j]);
                    j += 1;
                } else {
                    merged.push(old[i]);
                    i += 1;
                }
            }
            merged.extend_from_slice(&old[i..]);
            merged.extend_from_slice(&fresh[j..]);
            self.order = merged;
        }
        self.refilter();
        self.put_cursor_on(cursor_id);
    }

    pub fn total(&self) -> usize {
        self.rows.len()
    }

    pub fn shown_len(&self) -> usize {
        self.shown.len()
    }

    pub fn mark_count(&self) -> usize {
        self.mark_count
    }

    pub fn query(&self) -> &Query {
        &self.query
    }

    pub fn sort(&self) -> (SortField, bool) {
        (self.sort, self.descending)
    }

    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn offset(&self) -> usize {
        self.offset
    }

    pub fn anchor(&self) -> Option<UserView> {
        self.anchor.map(|r| self.view(r))
    }

    /// The shown row at `position`, and whether it is marked.
    pub fn shown_row(&self, position: usize) -> Option<(UserView, bool)> {
        let r = *self.shown.get(position)?;
        Some((self.view(r), self.marked[r as usize]))
    }

    /// The rows on screen: at most `height` from the scroll offset. Only these are ever drawn.
    pub fn visible(&self, height: usize) -> impl Iterator<Item = (usize, UserView, bool)> + '_ {
        let end = self.offset.saturating_add(height).min(self.shown.len());
        let start = self.offset.min(end);
        self.shown[start..end].iter().enumerate().map(move |(i, &r)| (start + i, self.view(r), self.marked[r as usize]))
    }

    pub fn cursor_user(&self) -> Option<UserView> {
        self.shown.get(self.cursor).map(|&r| self.view(r))
    }

    pub fn user(&self, id: Uuid) -> Option<UserView> {
        self.find(id).map(|r| self.view(r))
    }

    /// The user name of a user in the table.
    pub fn username(&self, id: Uuid) -> Option<Cow<'_, str>> {
        self.find(id).map(|r| self.text(r, 0))
    }

    pub fn is_marked(&self, id: Uuid) -> bool {
        self.find(id).is_some_and(|r| self.marked[r as usize])
    }

    /// The marked users, in the table's sort order.
    pub fn marked_ids(&self) -> Vec<Uuid> {
        if self.mark_count == 0 {
            return Vec::new();
        }
        self.order.iter().filter(|&&r| self.marked[r as usize]).map(|&r| self.rows[r as usize].id).collect()
    }

    /// How many of `ids` the current filter hides (users not in the table count as hidden).
    pub fn hidden_among(&self, ids: &[Uuid]) -> usize {
        let mut shown = vec![false; self.rows.len()];
        for &r in &self.shown {
            shown[r as usize] = true;
        }
        ids.iter().filter(|id| self.find(**id).is_none_or(|r| !shown[r as usize])).count()
    }

    /// The orgs every one of whose users in the table is among `ids`, by name.
    pub fn whole_orgs_among(&self, ids: &[Uuid]) -> Vec<String> {
        let mut all = vec![0usize; self.orgs.all.len()];
        for row in &self.rows {
            all[row.org as usize] += 1;
        }
        let mut picked = vec![0usize; self.orgs.all.len()];
        let mut seen = std::collections::HashSet::new();
        for r in ids.iter().filter(|id| seen.insert(**id)).filter_map(|id| self.find(*id)) {
            picked[self.rows[r as usize].org as usize] += 1;
        }
        (0..all.len()).filter(|&o| all[o] > 0 && picked[o] == all[o]).map(|o| self.orgs.all[o].clone()).collect()
    }

    fn cursor_id(&self) -> Option<Uuid> {
        self.shown.get(self.cursor).map(|&r| self.rows[r as usize].id)
    }

    // ------------------------------------------------------------ storage

    fn find(&self, id: Uuid) -> Option<u32> {
        let rows = &self.rows;
        self.by_id.find(self.hasher.hash_one(id), |&r| rows[r as usize].id == id).copied()
    }

    fn insert_id(&mut self, r: u32) {
        let UserTable { rows, by_id, hasher, .. } = self;
        by_id.insert_unique(hasher.hash_one(rows[r as usize].id), r, |&x| hasher.hash_one(rows[x as usize].id));
    }

    /// The row for `view`, with its texts appended to the index and the originals, and the
    /// number of its email's domain.
    fn compact(&mut self, view: &UserView) -> (Row, [u32; 4], u32) {
        let original = self.originals.len() as u32;
        let mut differs = 0;
        let start = self.index.len() as u32;
        let mut ends = [0u32; 3];
        let (local, domain) = split_email(&view.email);
        let lowered_domain = if domain.bytes().any(|b| !b.is_ascii() || b.is_ascii_uppercase()) { Cow::Owned(domain.to_lowercase()) } else { Cow::Borrowed(domain) };
        for (i, field) in [view.username.as_str(), view.display_name.as_str(), local].into_iter().enumerate() {
            let lowered = push_lowered(&mut self.index, field);
            ends[i] = self.index.len() as u32;
            self.index.push(SEP);
            if lowered || (i == 2 && lowered_domain != domain) {
                differs |= 1 << i;
                self.originals.push_str(if i == 2 { &view.email } else { field });
                self.originals.push(SEP);
            }
        }
        let local_at = ends[1] as usize + 1;
        if self.index[local_at..ends[2] as usize] == self.index[start as usize..ends[0] as usize] {
            self.index.truncate(local_at);
            self.index.push(SEP);
            ends[2] = local_at as u32;
            differs |= LOCAL_IS_NAME;
        }
        let domain = self.domains.number(&lowered_domain);
        (self.row(view, original, differs), [start, ends[0], ends[1], ends[2]], domain)
    }

    /// The row for `view`, whose texts are already stored (at `original`, with `differs`).
    fn row(&mut self, view: &UserView, original: u32, differs: u8) -> Row {
        Row {
            id: view.id,
            number: view.number,
            created_at: parse_time(Some(&view.created_at)),
            last_login_at: parse_time(view.last_login_at.as_deref()),
            mfa_enrolled_at: parse_time(view.mfa_enrolled_at.as_deref()),
            mfa_last_used_at: parse_time(view.mfa_last_used_at.as_deref()),
            mfa_reset_at: parse_time(view.mfa_reset_at.as_deref()),
            original,
            recovery_codes_left: u32::try_from(view.recovery_codes_left).unwrap_or(u32::MAX),
            org: self.orgs.number(&view.org),
            role: view.role,
            status: view.status,
            mfa: view.mfa,
            differs,
        }
    }

    fn push(&mut self, view: &UserView) -> u32 {
        let r = u32::try_from(self.rows.len()).expect("fewer than 4 billion users");
        let (row, span, domain) = self.compact(view);
        self.rows.push(row);
        self.spans.push(span);
        self.domain.push(domain);
        self.masks.push(mask_of(&self.index.as_bytes()[span[0] as usize..span[3] as usize]));
        self.marked.push(false);
        r
    }

    /// Put a fresher copy of row `r` in place, and say what changed. New texts go to the end of
    /// the index: call [`UserTable::compact_text`] before filtering again.
    fn put(&mut self, r: u32, view: &UserView) -> Put {
        if self.same_text(r, view) {
            let (original, differs) = (self.rows[r as usize].original, self.rows[r as usize].differs);
            let row = self.row(view, original, differs);
            if row == self.rows[r as usize] {
                return Put::Same;
            }
            self.rows[r as usize] = row;
            return Put::Changed;
        }
        let (row, span, domain) = self.compact(view);
        self.rows[r as usize] = row;
        self.spans[r as usize] = span;
        self.domain[r as usize] = domain;
        self.masks[r as usize] = mask_of(&self.index.as_bytes()[span[0] as usize..span[3] as usize]);
        Put::TextChanged
    }

    fn same_text(&self, r: u32, view: &UserView) -> bool {
        *self.text(r, 0) == *view.username && *self.text(r, 1) == *view.display_name && *self.text(r, 2) == *view.email
    }

    /// Lay the index and the originals out again in row order, without the texts of replaced rows.
    fn compact_text(&mut self) {
        let mut index = String::with_capacity(self.index.len());
        let mut originals = String::with_capacity(self.originals.len());
        for r in 0..self.rows.len() as u32 {
            let start = index.len() as u32;
            let mut ends = [0u32; 3];
            let original = originals.len() as u32;
            for (i, end) in ends.iter_mut().enumerate() {
                index.push_str(self.field(r, i));
                *end = index.len() as u32;
                index.push(SEP);
                if self.rows[r as usize].differs & (1 << i) != 0 {
                    originals.push_str(&self.text(r, i));
                    originals.push(SEP);
                }
            }
            self.spans[r as usize] = [start, ends[0], ends[1], ends[2]];
            self.rows[r as usize].original = original;
        }
        self.index = index;
        self.originals = originals;
    }

    /// Field `which` (user name, display name, local part as stored) of row `r`'s index text.
    fn field(&self, r: u32, which: usize) -> &str {
        let s = self.spans[r as usize];
        let start = if which == 0 { s[0] } else { s[which] + 1 };
        &self.index[start as usize..s[which + 1] as usize]
    }

    /// Row `r`'s email, lower-cased, in two parts: up to its last `@`, and from there.
    fn email_parts(&self, r: u32) -> (&str, &str) {
        let local = if self.rows[r as usize].differs & LOCAL_IS_NAME != 0 { 0 } else { 2 };
        (self.field(r, local), &self.domains.all[self.domain[r as usize] as usize])
    }

    /// Field `which` (user name, display name, email) of row `r`, as it was given.
    fn text(&self, r: u32, which: usize) -> Cow<'_, str> {
        let row = &self.rows[r as usize];
        if row.differs & (1 << which) != 0 {
            let skip = (row.differs & ((1 << which) - 1)).count_ones() as usize;
            return Cow::Borrowed(self.originals[row.original as usize..].split(SEP).nth(skip).unwrap_or_default());
        }
        if which == 2 {
            let (local, domain) = self.email_parts(r);
            return Cow::Owned([local, domain].concat());
        }
        Cow::Borrowed(self.field(r, which))
    }

    /// Row `r` as the rest of the console sees users.
    fn view(&self, r: u32) -> UserView {
        let row = &self.rows[r as usize];
        let time = |t: i64| (t != NEVER).then(|| rfc3339(t));
        UserView {
            id: row.id,
            number: row.number,
            username: self.text(r, 0).into_owned(),
            email: self.text(r, 2).into_owned(),
            display_name: self.text(r, 1).into_owned(),
            org: self.orgs.all[row.org as usize].clone(),
            role: row.role,
            status: row.status,
            mfa: row.mfa,
            recovery_codes_left: row.recovery_codes_left as usize,
            created_at: time(row.created_at).unwrap_or_default(),
            last_login_at: time(row.last_login_at),
            mfa_enrolled_at: time(row.mfa_enrolled_at),
            mfa_last_used_at: time(row.mfa_last_used_at),
            // The table keeps no client names; the detail pane reads the user from the backend.
            mfa_last_client: None,
            mfa_reset_at: time(row.mfa_reset_at),
        }
    }

    // ------------------------------------------------------------ filtering and sorting

    fn passes_quick(&self, r: u32) -> bool {
        let row = &self.rows[r as usize];
        self.query.role.is_none_or(|q| q == row.role)
            && self.query.mfa.is_none_or(|m| m == row.mfa)
            && self.query.unused.is_none_or(|u| {
                // NEVER is the smallest time: a factor with neither time counts as unused.
                matches!(row.mfa, MfaStatus::Enrolled | MfaStatus::Locked) && row.mfa_last_used_at.max(row.mfa_enrolled_at) < u.since
            })
    }

    fn hit(&self, r: u32) -> bool {
        self.hits[r as usize / 64] & (1 << (r % 64)) != 0
    }

    /// Filter every row again after a change of sort, quick filter or data (which also makes the
    /// remembered answers of recent texts stale).
    fn refilter(&mut self) {
        self.recent.clear();
        self.filter_all();
    }

    /// Filter every row by the query: rows are tested in memory order, then the sort order is
    /// walked once to keep those that passed.
    fn filter_all(&mut self) {
        let needle = self.applied_text.as_bytes();
        let mut hits = vec![0u64; self.rows.len().div_ceil(64)];
        let mut first_at = std::mem::take(&mut self.first_at);
        first_at.resize(self.rows.len(), 0);
        let quick = self.query.role.is_some() || self.query.mfa.is_some() || self.query.unused.is_some();
        // One character with a bit of its own is answered by the masks alone; other texts are
        // searched for, noting where each row's match starts.
        let by_mask = needle.len() == 1 && char_bit(needle[0]) != OTHER_CHARS;
        let search = self.search(needle);
        on_every_core(&mut hits, &mut first_at, |first_word, words, firsts| {
            if needle.is_empty() {
                self.fill_all(first_word, words);
            } else if by_mask {
                let bit = 1u64 << char_bit(needle[0]);
                self.fill_row_by_row(first_word, words, |r| self.masks[r as usize] & bit != 0 || self.held_by_domain(r as usize, &search));
            } else {
                self.fill_all(first_word, words);
                self.keep_found(&search, false, first_word, words, firsts);
            }
            if quick {
                self.keep_rows(first_word, words, |r| self.passes_quick(r));
            }
        });
        self.first_at = first_at;
        self.first_for = (!by_mask && !needle.is_empty()).then(|| self.applied_text.clone());
        self.hits = hits;
        self.show_hits();
    }

    /// `needle` (lower-cased), ready to look for in the index and in each email domain.
    fn search<'a>(&self, needle: &'a [u8]) -> Search<'a> {
        let finder = memmem::Finder::new(needle);
        if needle.is_empty() {
            return Search { needle, finder, whole: Vec::new(), across: None, any_domain: false };
        }
        let whole: Vec<bool> = self.domains.all.iter().map(|d| memmem::find(d.as_bytes(), needle).is_some()).collect();
        let across = needle.iter().rposition(|&b| b == b'@').filter(|&k| k > 0).map(|k| (k, self.domains.all.iter().map(|d| d.as_bytes().starts_with(&needle[k..])).collect::<Vec<bool>>()));
        let any_domain = whole.contains(&true) || across.as_ref().is_some_and(|(_, begun)| begun.contains(&true));
        Search { needle, finder, whole, across, any_domain }
    }

    /// Does row `r`'s email hold the needle where its index text cannot show it: in its domain,
    /// or across its `@`?
    fn held_by_domain(&self, r: usize, search: &Search<'_>) -> bool {
        if !search.any_domain {
            return false;
        }
        let d = self.domain[r] as usize;
        search.whole[d] || search.across.as_ref().is_some_and(|(k, begun)| begun[d] && self.email_parts(r as u32).0.as_bytes().ends_with(&search.needle[..*k]))
    }

    /// `shown` from `hits`, in the sort order.
    fn show_hits(&mut self) {
        self.shown = self.order.iter().copied().filter(|&r| self.hit(r)).collect();
        self.clamp();
    }

    /// Set in `words` (the bit set's words from `first_word` on) the bit of every row whose text
    /// holds the needle, and in `firsts` where it first occurs, by searching the index once from
    /// the first of these rows' texts to the end of the last: one long search instead of a short
    /// one per row, whose set-up would dominate. After a match the search goes on at the next row.
    /// The texts lie in row order (every path that changes a text lays the index out again) and
    /// each ends in a separator the needle does not hold, so no match spans two rows.
    fn text_hits(&self, finder: &memmem::Finder<'_>, first_word: usize, words: &mut [u64], firsts: &mut [u32]) {
        let first = first_word * 64;
        let end = ((first_word + words.len()) * 64).min(self.rows.len());
        if first >= end {
            return;
        }
        let index = self.index.as_bytes();
        let stop = self.spans[end - 1][3] as usize;
        let (mut row, mut at) = (first, self.spans[first][0] as usize);
        while let Some(found) = finder.find(&index[at..stop]) {
            let p = at + found;
            row = self.first_row_ending_after(row, end, p);
            let start = self.spans[row][0] as usize;
            if p < start {
                // In text left between rows: look again from the row's own text.
                at = start;
                continue;
            }
            let bit = row - first;
            words[bit / 64] |= 1 << (bit % 64);
            firsts[bit] = p as u32;
            row += 1;
            if row == end {
                break;
            }
            at = self.spans[row][0] as usize;
        }
    }

    /// The first row from `from` (before `to`) whose text ends after byte `p` of the index:
    /// a galloping search, as matches usually lie a few rows apart.
    fn first_row_ending_after(&self, from: usize, to: usize, p: usize) -> usize {
        let (mut hi, mut step) = (from, 1);
        while hi < to && self.spans[hi][3] as usize <= p {
            hi = from + step;
            step *= 2;
        }
        from + self.spans[from..hi.min(to)].partition_point(|s| s[3] as usize <= p)
    }

    /// Keep in `words` the rows whose text holds `needle`, noting in `firsts` where it first
    /// occurs. With `resume`, `firsts` already holds for each row where a shorter text that
    /// starts the needle first occurs: the needle cannot occur before, and usually occurs right
    /// there, which settles the row at once. A row whose email's domain holds the needle is
    /// settled too (and noted as found at its start). The rows left are searched one by one when
    /// they are few; many are searched for in the whole index at once.
    fn keep_found(&self, search: &Search<'_>, resume: bool, first_word: usize, words: &mut [u64], firsts: &mut [u32]) {
        let needle = search.needle;
        let index = self.index.as_bytes();
        let mask = mask_of(needle);
        let first_row = first_word * 64;
        let mut rest = vec![0u64; words.len()];
        let mut left = 0;
        // Past this many rows left, the whole index is searched at the end anyway, and finds where
        // the needle first occurs in every row: a row is then no longer checked where the shorter
        // text was found (which would read the index once more).
        let many = words.len() * 64 / NARROW_ROW_BY_ROW;
        let whole_index = !needle.contains(&(SEP as u8));
        let mut touched = 0;
        for w in 0..words.len() {
            let resume = resume && !(whole_index && left > many);
            if resume
                && let Some(&ahead) = words.get(w + 1)
                && ahead.count_ones() < TOUCH_BELOW
            {
                touched ^= touch(index, firsts.get((w + 1) * 64..).unwrap_or_default(), ahead);
            }
            let word = &mut words[w];
            let mut bits = *word;
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let r = first_row + w * 64 + b;
                if self.held_by_domain(r, search) {
                    firsts[r - first_row] = self.spans[r][0];
                    continue;
                }
                let candidate = self.masks[r] & mask == mask;
                let at = firsts[r - first_row] as usize;
                let settled = candidate && resume && at + needle.len() <= self.spans[r][3] as usize && holds_at(index, needle, at);
                if !settled {
                    *word &= !(1 << b);
                    if candidate {
                        rest[w] |= 1 << b;
                        left += 1;
                    }
                }
            }
        }
        std::hint::black_box(touched);
        if whole_index && left > many {
            let mut found = vec![0u64; words.len()];
            self.text_hits(&search.finder, first_word, &mut found, firsts);
            words.iter_mut().zip(rest.iter().zip(found)).for_each(|(w, (r, f))| *w |= r & f);
            return;
        }
        for (w, (word, mut bits)) in words.iter_mut().zip(rest).enumerate() {
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let r = first_row + w * 64 + b;
                let span = self.spans[r];
                let from = if resume { firsts[r - first_row] as usize + 1 } else { span[0] as usize };
                if let Some(p) = find_from(index, needle, from, span[3] as usize) {
                    firsts[r - first_row] = p as u32;
                    *word |= 1 << b;
                }
            }
        }
    }

    /// Set in `words` the bit of every row (and none past the last: the bit set is walked by bit).
    fn fill_all(&self, first_word: usize, words: &mut [u64]) {
        words.fill(!0);
        let past = (first_word + words.len()) * 64;
        if past > self.rows.len()
            && let Some(last) = words.last_mut()
        {
            *last >>= past - self.rows.len();
        }
    }

    /// Set in `words` the bit of every row that passes `test`, one row at a time.
    fn fill_row_by_row(&self, first_word: usize, words: &mut [u64], test: impl Fn(u32) -> bool) {
        for (w, word) in words.iter_mut().enumerate() {
            let base = ((first_word + w) * 64) as u32;
            for r in base..(base + 64).min(self.rows.len() as u32) {
                if test(r) {
                    *word |= 1 << (r - base);
                }
            }
        }
    }

    /// Clear in `words` the bit of every set row that fails `test`.
    fn keep_rows(&self, first_word: usize, words: &mut [u64], test: impl Fn(u32) -> bool) {
        for (w, word) in words.iter_mut().enumerate() {
            let mut bits = *word;
            while bits != 0 {
                let b = bits.trailing_zeros();
                bits &= bits - 1;
                if !test(((first_word + w) * 64) as u32 + b) {
                    *word &= !(1 << b);
                }
            }
        }
    }

    /// Set the filter text. A longer text that contains the previous one only tests the rows
    /// already shown; a text filtered by a moment ago (a backspace) gets its answer back; anything
    /// else filters every row again. The cursor goes to the first match.
    pub fn set_text(&mut self, text: &str) {
        let lowered = text.to_lowercase();
        self.query.text = text.to_string();
        if lowered == self.applied_text {
            return;
        }
        let previous = std::mem::replace(&mut self.applied_text, lowered);
        self.recent.retain(|(text, _)| *text != previous);
        if self.recent.len() == RECENT_TEXTS {
            self.recent.remove(0);
        }
        self.recent.push((previous.clone(), self.hits.clone()));
        if !previous.is_empty() && self.applied_text.contains(previous.as_str()) {
            self.narrow();
        } else if let Some(at) = self.recent.iter().position(|(text, _)| *text == self.applied_text) {
            self.hits = self.recent.remove(at).1;
            self.first_for = None;
            self.show_hits();
        } else {
            self.filter_all();
        }
        self.cursor = 0;
        self.offset = 0;
    }

    /// Keep of the rows shown those whose text holds the (longer) filter text.
    fn narrow(&mut self) {
        let needle = self.applied_text.as_bytes();
        let resume = self.first_for.as_deref().is_some_and(|t| self.applied_text.starts_with(t));
        let mut hits = std::mem::take(&mut self.hits);
        let search = self.search(needle);
        let mut first_at = std::mem::take(&mut self.first_at);
        on_every_core(&mut hits, &mut first_at, |first_word, words, firsts| {
            self.keep_found(&search, resume, first_word, words, firsts);
        });
        self.first_at = first_at;
        self.first_for = Some(self.applied_text.clone());
        self.hits = hits;
        let mut shown = std::mem::take(&mut self.shown);
        shown.retain(|&r| self.hit(r));
        self.shown = shown;
    }

    pub fn set_role(&mut self, role: Option<Role>) {
        self.query.role = role;
        self.refilter_keeping_cursor();
    }

    pub fn set_mfa(&mut self, mfa: Option<MfaStatus>) {
        self.query.mfa = mfa;
        self.refilter_keeping_cursor();
    }

    pub fn set_unused(&mut self, unused: Option<Unused>) {
        self.query.unused = unused;
        self.refilter_keeping_cursor();
    }

    /// Clear the text and the quick filters.
    pub fn clear_query(&mut self) {
        self.query = Query::default();
        self.applied_text.clear();
        self.refilter_keeping_cursor();
    }

    pub fn set_sort(&mut self, field: SortField, descending: bool) {
        if (field, descending) == (self.sort, self.descending) {
            return;
        }
        let cursor_id = self.cursor_id();
        if field == self.sort {
            // Only the direction changed.
            self.order.reverse();
            self.shown.reverse();
            self.descending = descending;
        } else {
            self.sort = field;
            self.descending = descending;
            self.resort();
            self.refilter();
        }
        self.put_cursor_on(cursor_id);
    }

    fn refilter_keeping_cursor(&mut self) {
        let cursor_id = self.cursor_id();
        self.refilter();
        self.put_cursor_on(cursor_id);
    }

    /// The order of `list_users` (and so of `mfadmin user list --sort`): the field, then for
    /// org, role and MFA the user name, then the id.
    fn compare(&self, a: u32, b: u32) -> Ordering {
        let (ua, ub) = (&self.rows[a as usize], &self.rows[b as usize]);
        let by_name = || self.field(a, 0).cmp(self.field(b, 0));
        let primary = match self.sort {
            SortField::Username => by_name(),
            SortField::DisplayName => self.field(a, 1).cmp(self.field(b, 1)),
            SortField::Email => {
                let ((la, da), (lb, db)) = (self.email_parts(a), self.email_parts(b));
                la.bytes().chain(da.bytes()).cmp(lb.bytes().chain(db.bytes()))
            }
            SortField::Org => self.orgs.all[ua.org as usize].cmp(&self.orgs.all[ub.org as usize]).then_with(by_name),
            SortField::Role => (ua.role as u8).cmp(&(ub.role as u8)).then_with(by_name),
            SortField::Mfa => (ua.mfa as u8).cmp(&(ub.mfa as u8)).then_with(by_name),
            SortField::LastLogin => ua.last_login_at.cmp(&ub.last_login_at),
            SortField::Created => ua.created_at.cmp(&ub.created_at),
            SortField::Number => ua.number.cmp(&ub.number),
        };
        primary.then_with(|| ua.id.cmp(&ub.id))
    }

    /// [`UserTable::compare`] in the direction the table is sorted.
    fn compare_in_order(&self, a: u32, b: u32) -> Ordering {
        if self.descending { self.compare(b, a) } else { self.compare(a, b) }
    }

    fn resort(&mut self) {
        let mut order: Vec<u32> = (0..self.rows.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| self.compare(a, b));
        if self.descending {
            order.reverse();
        }
        self.order = order;
    }

    // ------------------------------------------------------------ cursor

    fn put_cursor_on(&mut self, id: Option<Uuid>) {
        let row = id.and_then(|id| self.find(id));
        if let Some(pos) = row.and_then(|r| self.shown.iter().position(|&s| s == r)) {
            self.cursor = pos;
        }
        self.clamp();
    }

    fn clamp(&mut self) {
        self.cursor = self.cursor.min(self.shown.len().saturating_sub(1));
        self.offset = self.offset.min(self.cursor);
    }

    /// Move the cursor to `position` and scroll so that it is on screen (`page` rows high).
    pub fn set_cursor(&mut self, position: usize, page: usize) {
        self.cursor = position.min(self.shown.len().saturating_sub(1));
        self.scroll_into_view(page);
    }

    pub fn move_cursor(&mut self, delta: isize, page: usize) {
        let target = self.cursor.saturating_add_signed(delta);
        self.set_cursor(target, page);
    }

    /// Keep the cursor on screen and the screen full after a resize or a shrinking filter.
    pub fn scroll_into_view(&mut self, page: usize) {
        let page = page.max(1);
        if self.cursor < self.offset {
            self.offset = self.cursor;
        } else if self.cursor >= self.offset + page {
            self.offset = self.cursor + 1 - page;
        }
        self.offset = self.offset.min(self.shown.len().saturating_sub(page));
    }

    // ------------------------------------------------------------ marks

    fn set_mark(&mut self, row: u32, on: bool) {
        let m = &mut self.marked[row as usize];
        if *m != on {
            *m = on;
            if on {
                self.mark_count += 1;
            } else {
                self.mark_count -= 1;
            }
        }
    }

    /// Mark or unmark the cursor row. Returns whether it is marked now.
    pub fn toggle_mark(&mut self) -> Option<bool> {
        let row = *self.shown.get(self.cursor)?;
        let on = !self.marked[row as usize];
        self.set_mark(row, on);
        Some(on)
    }

    /// First press: remember the cursor row. Second press: mark every shown row between it and the
    /// cursor. Returns how many rows the range held, or `None` after the first press.
    pub fn mark_range(&mut self) -> Result<Option<usize>, String> {
        let Some(&here) = self.shown.get(self.cursor) else {
            return Err("no row to start a range at".into());
        };
        let Some(anchor) = self.anchor.take() else {
            self.anchor = Some(here);
            return Ok(None);
        };
        let Some(start) = self.shown.iter().position(|&r| r == anchor) else {
            return Err("the start of the range is hidden by the filter; press v to start again".into());
        };
        let (a, b) = if start <= self.cursor { (start, self.cursor) } else { (self.cursor, start) };
        for i in a..=b {
            let row = self.shown[i];
            self.set_mark(row, true);
        }
        Ok(Some(b - a + 1))
    }

    pub fn cancel_range(&mut self) -> bool {
        self.anchor.take().is_some()
    }

    /// Mark every row the filter shows.
    pub fn mark_all_shown(&mut self) -> usize {
        for i in 0..self.shown.len() {
            let row = self.shown[i];
            self.set_mark(row, true);
        }
        self.shown.len()
    }

    pub fn clear_marks(&mut self) {
        self.marked.iter_mut().for_each(|m| *m = false);
        self.mark_count = 0;
        self.anchor = None;
    }

    // ------------------------------------------------------------ changes

    /// Put a fresher copy of one user in place.
    pub fn replace(&mut self, view: UserView) {
        if self.find(view.id).is_some() {
            self.upsert(vec![view]);
        }
    }

    /// Show what a reset did, in place: the new MFA state of every user it reset, whose mark is
    /// cleared. Users it denied or could not reset stay marked.
    pub fn apply_reset(&mut self, report: &ResetReport) {
        for r in &report.results {
            let Some(row) = r.user_id.and_then(|id| self.find(id)) else {
                continue;
            };
            if r.outcome == ResetOutcome::Reset {
                let u = &mut self.rows[row as usize];
                if let Some(m) = r.mfa_after {
                    u.mfa = m;
                }
                u.recovery_codes_left = 0;
            }
            if matches!(r.outcome, ResetOutcome::Reset | ResetOutcome::Skipped) {
                self.set_mark(row, false);
            }
        }
        self.refilter_keeping_cursor();
    }
}

/// Texts many rows share (org names, email domains), each kept once and known by its number.
#[derive(Debug, Clone, Default)]
struct Texts {
    all: Vec<String>,
    numbers: HashMap<String, u32>,
}

impl Texts {
    /// The number of `text`, given it now if it has none.
    fn number(&mut self, text: &str) -> u32 {
        if let Some(&n) = self.numbers.get(text) {
            return n;
        }
        let n = u32::try_from(self.all.len()).expect("fewer than 4 billion shared texts");
        self.all.push(text.to_string());
        self.numbers.insert(text.to_string(), n);
        n
    }
}

/// A filter text, and what it makes of each email domain (see [`UserTable::domains`]).
struct Search<'a> {
    needle: &'a [u8],
    finder: memmem::Finder<'a>,
    /// Per domain: the text is in it.
    whole: Vec<bool>,
    /// For a text with an `@` after its start: where its last `@` is, and per domain whether the
    /// text from there begins the domain. A row whose local part ends in the text before that
    /// `@` then holds the text across its own.
    across: Option<(usize, Vec<bool>)>,
    /// Some domain holds the text, or may across the `@`: only then are rows asked.
    any_domain: bool,
}

/// Read the index byte at `firsts[b]` for each row `b` set in `word`. Nothing waits on these
/// loads, so the processor overlaps them, and the checks of that word a moment later find their
/// bytes in cache: rows a few apart defeat its own prefetching, and each check would otherwise
/// wait for memory in turn.
fn touch(index: &[u8], firsts: &[u32], word: u64) -> u8 {
    let mut bits = word;
    let mut sum = 0;
    while bits != 0 {
        let b = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        sum ^= firsts.get(b).and_then(|&at| index.get(at as usize)).copied().unwrap_or(0);
    }
    sum
}

/// Run `fill(first_word, words, firsts)` over a bit set of rows and its per-row places, split
/// over the cores when it is large (`firsts` holds the rows of `words`).
fn on_every_core(hits: &mut [u64], first_at: &mut [u32], fill: impl Fn(usize, &mut [u64], &mut [u32]) + Sync) {
    let threads = if hits.len() < PARALLEL_WORDS { 1 } else { std::thread::available_parallelism().map_or(1, |n| n.get().min(8)) };
    if threads == 1 {
        return fill(0, hits, first_at);
    }
    // On rayon's lasting threads, rather than threads started and ended for every keystroke.
    let per = hits.len().div_ceil(threads);
    hits.par_chunks_mut(per).zip(first_at.par_chunks_mut(per * 64)).enumerate().for_each(|(i, (words, firsts))| fill(i * per, words, firsts));
}

/// A bit of its own for each lower-case letter, digit and the punctuation common in names and
/// addresses; every other byte (including those of non-ASCII characters) shares [`OTHER_CHARS`].
fn char_bit(b: u8) -> u32 {
    match b {
        b'a'..=b'z' => u32::from(b - b'a'),
        b'0'..=b'9' => 26 + u32::from(b - b'0'),
        b'.' => 36,
        b'@' => 37,
        b'-' => 38,
        b'_' => 39,
        b' ' => 40,
        b'\'' => 41,
        b'+' => 42,
        _ => OTHER_CHARS,
    }
}

/// The bit [`char_bit`] gives every byte without a bit of its own.
const OTHER_CHARS: u32 = 63;

/// The characters `text` holds, as [`char_bit`]s; the field separator counts for none, so a
/// text holds every character of a needle it contains.
fn mask_of(text: &[u8]) -> u64 {
    text.iter().filter(|&&b| b != SEP as u8).fold(0, |m, &b| m | 1 << char_bit(b))
}

/// Where `needle` (not empty) first occurs in `index[from..end]`, as a place in `index`. Row
/// texts are short, so a scan for the first byte beats setting up a substring searcher; the
/// place `from` itself is tried first, as it is where a shorter text that starts the needle was
/// found. Bytes are compared in line: a call to `memcmp` per candidate costs more than the
/// comparison.
fn find_from(index: &[u8], needle: &[u8], from: usize, end: usize) -> Option<usize> {
    let hay = index.get(from..end)?;
    let last = hay.len().checked_sub(needle.len())?;
    if holds_at(hay, needle, 0) {
        return Some(from);
    }
    memchr::memchr_iter(needle[0], &hay[1..=last]).map(|q| q + 1).find(|&q| holds_at(hay, needle, q)).map(|q| from + q)
}

/// Does `text` hold `needle` at `at`? Compared in line (see [`find_from`]).
fn holds_at(text: &[u8], needle: &[u8], at: usize) -> bool {
    text.get(at..at + needle.len()).is_some_and(|t| t.iter().zip(needle).all(|(a, b)| a == b))
}

/// An email's local part (up to its last `@`) and the rest; without an `@`, all and nothing.
fn split_email(email: &str) -> (&str, &str) {
    email.rfind('@').map_or((email, ""), |at| email.split_at(at))
}

/// Append `s` lower-cased; true when that changed it.
fn push_lowered(index: &mut String, s: &str) -> bool {
    if s.is_ascii() {
        let start = index.len();
        index.extend(s.chars().map(|c| c.to_ascii_lowercase()));
        index[start..] != *s
    } else {
        let lowered = s.to_lowercase();
        let differs = lowered != s;
        index.push_str(&lowered);
        differs
    }
}

/// Unix seconds of an RFC 3339 time (as [`rfc3339`] writes it, read without chrono's general
/// parser; other forms through it); [`NEVER`] for none or one that cannot be read.
fn parse_time(text: Option<&str>) -> i64 {
    let Some(text) = text else {
        return NEVER;
    };
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        b[range].iter().try_fold(0i64, |n, &c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
    };
    let fast = (b.len() == 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':' && b[19] == b'Z')
        .then(|| {
            let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
            let (h, mi, s) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
            ((1..=12).contains(&m) && (1..=31).contains(&d) && h < 24 && mi < 60 && s < 61)
                .then(|| days_from_civil(y, m, d) * 86_400 + h * 3_600 + mi * 60 + s)
        })
        .flatten();
    fast.or_else(|| chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp())).unwrap_or(NEVER)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: u128, username: &str, display_name: &str, email: &str) -> UserView {
        UserView {
            id: Uuid::from_u128(n),
            number: n as u64,
            username: username.into(),
            email: email.into(),
            display_name: display_name.into(),
            org: if n.is_multiple_of(2) { "acme".into() } else { "globex".into() },
            role: Role::Member,
            status: Status::Active,
            mfa: MfaStatus::Enrolled,
            recovery_codes_left: n as usize,
            created_at: rfc3339(1_700_000_000 + n as i64),
            last_login_at: (!n.is_multiple_of(3)).then(|| rfc3339(1_750_000_000 + n as i64)),
            mfa_enrolled_at: None,
            mfa_last_used_at: None,
            mfa_last_client: None,
            mfa_reset_at: Some(rfc3339(1_760_000_000)),
        }
    }

    #[test]
    fn users_come_out_as_they_went_in_and_filters_find_their_lower_cased_text() {
        let users = vec![
            user(1, "ann", "Ann Lee", "ann@acme.example"),
            user(2, "Bob.Smith", "BOB", "Bob@Acme.example"),
            user(3, "zoë", "Zoë Ünder", "zoe@acme.example"),
            user(4, "carl", "carl", "carl@acme.example"),
        ];
        let mut t = UserTable::new();
        t.load(users.clone());
        for u in &users {
            assert_eq!(t.user(u.id).as_ref(), Some(u));
        }
        t.set_text("ÜND");
        assert_eq!(t.cursor_user().map(|u| u.username), Some("zoë".to_string()));
        t.set_text("bob@");
        assert_eq!(t.shown_len(), 1);

        // A rename is found by its new text, not its old; the others keep theirs.
        let mut renamed = users[1].clone();
        renamed.username = "Robert".into();
        renamed.email = "robert@acme.example".into();
        t.replace(renamed.clone());
        assert_eq!(t.shown_len(), 0);
        t.set_text("ROBERT@");
        assert_eq!(t.user(renamed.id), Some(renamed));
        assert_eq!(t.shown_len(), 1);
        for u in users.iter().filter(|u| u.id != Uuid::from_u128(2)) {
            assert_eq!(t.user(u.id).as_ref(), Some(u));
        }
        t.set_text("");
        assert_eq!(t.shown_len(), 4);

        // Turning the order round keeps the cursor's user under the cursor.
        t.set_cursor(1, 10);
        let here = t.cursor_user().unwrap().id;
        t.set_sort(SortField::Username, true);
        assert_eq!(t.cursor_user().unwrap().id, here);
        let names: Vec<String> = (0..4).map(|i| t.shown_row(i).unwrap().0.username).collect();
        assert_eq!(names, ["zoë", "Robert", "carl", "ann"]);
    }

    #[test]
    fn rows_found_in_their_email_domain_narrow_like_any_other() {
        // Two rows, so each is searched on its own. A domain holds "hx", a user name "hx1" and
        // a display name "ek"; "ek" leaves where it was found behind.
        let users = vec![user(1, "hx1zed", "Hans Ek", "hans@HX.example"), user(2, "ann", "Ann Ek", "ann@acme.example")];
        let mut t = UserTable::new();
        t.load(users);
        let names = |t: &UserTable| (0..t.shown_len()).map(|i| t.shown_row(i).unwrap().0.username).collect::<Vec<_>>();
        for (typed, expected) in [
            ("ek", &["ann", "hx1zed"][..]),
            ("hx", &["hx1zed"]),
            ("hx1", &["hx1zed"]),
            ("hx1z", &["hx1zed"]),
            ("n@", &["ann"]),
            ("s@", &["hx1zed"]),
            ("s@h", &["hx1zed"]),
            ("@", &["ann", "hx1zed"]),
            ("x.e", &["hx1zed"]),
            (".example", &["ann", "hx1zed"]),
        ] {
            t.set_text(typed);
            assert_eq!(names(&t), expected, "{typed:?}");
        }
    }

    /// The ids shown, in order, and the ids a plain test of each user's lower-cased texts finds.
    fn shown_and_expected(t: &UserTable, users: &[UserView], role: Option<Role>) -> (Vec<Uuid>, Vec<Uuid>) {
        let shown: Vec<Uuid> = (0..t.shown_len()).map(|i| t.shown_row(i).unwrap().0.id).collect();
        let needle = t.query().text.to_lowercase();
        let mut expected: Vec<&UserView> = users
            .iter()
            .filter(|u| role.is_none_or(|r| r == u.role))
            .filter(|u| [&u.username, &u.display_name, &u.email].iter().any(|f| f.to_lowercase().contains(&needle)))
            .collect();
        expected.sort_by(|a, b| a.username.to_lowercase().cmp(&b.username.to_lowercase()).then(a.id.cmp(&b.id)));
        (shown, expected.into_iter().map(|u| u.id).collect())
    }

    #[test]
    fn a_large_table_shows_exactly_the_rows_whose_text_holds_the_filter() {
        // Enough rows that filtering runs on every core and narrowing searches the whole index.
        let words = ["smith", "Jones", "ÅSA", "li", "o'brien", "x"];
        // Emails of every shape the index stores apart: a local part of its own or the user
        // name's (in another case too), none or two `@`, and domains in either case.
        let domains = ["@Acme.example", "@globex.example", "@ÅSA.example", "@x.smith"];
        let mut users: Vec<UserView> = (0..70_000u128)
            .map(|n| {
                let (a, b) = (words[n as usize % 6], words[n as usize / 6 % 6]);
                let domain = domains[n as usize / 36 % 4];
                let email = match n % 5 {
                    0 => format!("{b}.{n}{domain}"),
                    1 => format!("{a}{n}{domain}"),
                    2 => format!("{}{n}{domain}", a.to_uppercase()),
                    3 => format!("{a}{n}.example"),
                    _ => format!("\"{b}@{n}\"{domain}"),
                };
                let mut u = user(n, &format!("{a}{n}"), &format!("{b} {a}"), &email);
                u.role = if n % 5 == 0 { Role::Admin } else { Role::Member };
                u
            })
            .collect();
        let mut t = UserTable::new();
        t.load(users.clone());
        // A rename lays the index out again; the search must find the new text only.
        users[7].username = "Renamed-SMITH".into();
        users[7].email = "renamed-smith@New.Example".into();
        t.replace(users[7].clone());
        for u in &users {
            assert_eq!(t.user(u.id).as_ref(), Some(u));
        }
        let typed = [
            "s", "sm", "smi", "smith1", "smith12", "smith1", "h", "åsa", "ÅS", "a", "ac", "n\u{1}", "", "1@a", "zzz", "e", "ex", "exa", "example", "@", "@g",
            "@gl", "1", "1@", "1@a", "1@ac", "1@åsa", "1\"@x.s", "\"@", "s@1", "s@1\"", "s@1\"@", "h1", "h1@", "h1@x", "h1@x.smith", "smith", "x.smith", "ith",
        ];
        for typed in typed {
            t.set_text(typed);
            let (shown, expected) = shown_and_expected(&t, &users, None);
            assert_eq!(shown.len(), expected.len(), "{typed:?}");
            assert!(shown == expected, "{typed:?}: rows differ");
        }
        // A backspace after the data changed filters again instead of reusing an older answer.
        t.set_text("smith");
        t.set_text("smith6");
        users[8].display_name = "Smith6 Newly".into();
        t.replace(users[8].clone());
        t.set_text("smith");
        let (shown, expected) = shown_and_expected(&t, &users, None);
        assert!(shown == expected, "after a change: rows differ");
        t.set_role(Some(Role::Admin));
        for typed in ["o", "o'", "o'b", "jones", ""] {
            t.set_text(typed);
            let (shown, expected) = shown_and_expected(&t, &users, Some(Role::Admin));
            assert!(!expected.is_empty() || typed == "o'b");
            assert!(shown == expected, "{typed:?} with the admin role: rows differ");
        }
        // Sorted by email: as the lower-cased emails sort.
        t.set_role(None);
        t.set_sort(SortField::Email, false);
        let emails: Vec<String> = (0..t.shown_len()).map(|i| t.shown_row(i).unwrap().0.email.to_lowercase()).collect();
        assert_eq!(emails.len(), users.len());
        assert!(emails.is_sorted());
    }

    #[test]
    fn times_read_back_as_written() {
        for t in [0, 1, 951_782_400, 1_750_000_000, 4_102_444_800, -86_400] {
            assert_eq!(parse_time(Some(&rfc3339(t))), t, "{}", rfc3339(t));
        }
        assert_eq!(parse_time(Some("2026-11-06T19:31:00+01:00")), parse_time(Some("2026-11-06T18:31:00Z")));
        assert_eq!(parse_time(Some("not a time")), NEVER);
        assert_eq!(parse_time(None), NEVER);
    }
}
