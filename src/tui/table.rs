//! The user table's data: every user the admin may see, a pre-lowered search index, the sort
//! order, the rows the filter shows, the marks and the cursor. Filtering narrows incrementally
//! while the filter text grows, so a keystroke stays well within one frame at 100,000 users.

use crate::domain::mfa::MfaStatus;
use crate::domain::role::Role;
use crate::domain::user::UserView;
use crate::service::{ResetOutcome, ResetReport, SortField};
use memchr::memmem;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// Separates the fields of one row in the search index; typed text never contains it.
const SEP: char = '\u{1f}';

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
}

impl Query {
    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.role.is_none() && self.mfa.is_none()
    }
}

#[derive(Debug, Clone, Default)]
pub struct UserTable {
    rows: Vec<UserView>,
    /// Lower-cased `username SEP display name SEP email` of every row, one after the other.
    index: String,
    /// Per row: where its index text starts, and where its user name, display name and email end.
    spans: Vec<[u32; 4]>,
    by_id: HashMap<Uuid, u32>,
    /// Every row, in the sort order.
    order: Vec<u32>,
    /// The rows the query lets through, in the sort order.
    shown: Vec<u32>,
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
        let marked: HashSet<Uuid> = self.marked_ids().into_iter().collect();
        let cursor_id = self.cursor_user().map(|u| u.id);
        let anchor_id = self.anchor.map(|r| self.rows[r as usize].id);
        self.index.clear();
        self.spans.clear();
        self.by_id.clear();
        for (i, row) in rows.iter().enumerate() {
            self.spans.push(push_index(&mut self.index, row));
            self.by_id.insert(row.id, i as u32);
        }
        self.marked = rows.iter().map(|r| marked.contains(&r.id)).collect();
        self.mark_count = self.marked.iter().filter(|m| **m).count();
        self.rows = rows;
        self.anchor = anchor_id.and_then(|id| self.by_id.get(&id).copied());
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
        let mut rebuild_index = false;
        let first_new = self.rows.len() as u32;
        for row in rows {
            match self.by_id.get(&row.id) {
                Some(&r) => {
                    let old = &self.rows[r as usize];
                    if *old != row {
                        resort = true;
                        rebuild_index |= (&old.username, &old.display_name, &old.email) != (&row.username, &row.display_name, &row.email);
                        self.rows[r as usize] = row;
                    }
                }
                None => {
                    let r = self.rows.len() as u32;
                    self.spans.push(push_index(&mut self.index, &row));
                    self.by_id.insert(row.id, r);
                    self.marked.push(false);
                    self.rows.push(row);
                }
            }
        }
        self.loaded = true;
        let cursor_id = self.cursor_user().map(|u| u.id);
        if rebuild_index {
            self.index.clear();
            self.spans.clear();
            for row in &self.rows {
                self.spans.push(push_index(&mut self.index, row));
            }
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

    pub fn anchor(&self) -> Option<&UserView> {
        self.anchor.map(|r| &self.rows[r as usize])
    }

    /// The shown row at `position`, and whether it is marked.
    pub fn shown_row(&self, position: usize) -> Option<(&UserView, bool)> {
        let r = *self.shown.get(position)? as usize;
        Some((&self.rows[r], self.marked[r]))
    }

    /// The rows on screen: at most `height` from the scroll offset. Only these are ever drawn.
    pub fn visible(&self, height: usize) -> impl Iterator<Item = (usize, &UserView, bool)> {
        let end = self.offset.saturating_add(height).min(self.shown.len());
        let start = self.offset.min(end);
        self.shown[start..end].iter().enumerate().map(move |(i, &r)| (start + i, &self.rows[r as usize], self.marked[r as usize]))
    }

    pub fn cursor_user(&self) -> Option<&UserView> {
        self.shown.get(self.cursor).map(|&r| &self.rows[r as usize])
    }

    pub fn user(&self, id: Uuid) -> Option<&UserView> {
        self.by_id.get(&id).map(|&r| &self.rows[r as usize])
    }

    pub fn is_marked(&self, id: Uuid) -> bool {
        self.by_id.get(&id).is_some_and(|&r| self.marked[r as usize])
    }

    /// The marked users, in the table's sort order.
    pub fn marked_ids(&self) -> Vec<Uuid> {
        if self.mark_count == 0 {
            return Vec::new();
        }
        self.order.iter().filter(|&&r| self.marked[r as usize]).map(|&r| self.rows[r as usize].id).collect()
    }

    // ------------------------------------------------------------ filtering and sorting

    fn field(&self, row: u32, which: usize) -> &str {
        let s = self.spans[row as usize];
        let start = if which == 0 { s[0] } else { s[which] + 1 };
        &self.index[start as usize..s[which + 1] as usize]
    }

    fn haystack(&self, row: u32) -> &[u8] {
        let s = self.spans[row as usize];
        &self.index.as_bytes()[s[0] as usize..s[3] as usize]
    }

    fn passes_quick(&self, row: u32) -> bool {
        let u = &self.rows[row as usize];
        self.query.role.is_none_or(|r| r == u.role) && self.query.mfa.is_none_or(|m| m == u.mfa)
    }

    /// Filter every row again (after a change of sort, quick filter or data).
    fn refilter(&mut self) {
        let finder = memmem::Finder::new(self.applied_text.as_bytes());
        let needle_empty = self.applied_text.is_empty();
        let shown: Vec<u32> = self
            .order
            .iter()
            .copied()
            .filter(|&r| self.passes_quick(r) && (needle_empty || finder.find(self.haystack(r)).is_some()))
            .collect();
        self.shown = shown;
        self.clamp();
    }

    /// Set the filter text. A longer text that contains the previous one only narrows the rows
    /// already shown; anything else filters every row again. The cursor goes to the first match.
    pub fn set_text(&mut self, text: &str) {
        let lowered = text.to_lowercase();
        self.query.text = text.to_string();
        if lowered == self.applied_text {
            return;
        }
        let narrowing = lowered.contains(self.applied_text.as_str());
        self.applied_text = lowered;
        if narrowing {
            let finder = memmem::Finder::new(self.applied_text.as_bytes());
            let mut shown = std::mem::take(&mut self.shown);
            shown.retain(|&r| finder.find(self.haystack(r)).is_some());
            self.shown = shown;
        } else {
            self.refilter();
        }
        self.cursor = 0;
        self.offset = 0;
    }

    pub fn set_role(&mut self, role: Option<Role>) {
        self.query.role = role;
        self.refilter_keeping_cursor();
    }

    pub fn set_mfa(&mut self, mfa: Option<MfaStatus>) {
        self.query.mfa = mfa;
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
        self.sort = field;
        self.descending = descending;
        let cursor_id = self.cursor_user().map(|u| u.id);
        self.resort();
        self.refilter();
        self.put_cursor_on(cursor_id);
    }

    fn refilter_keeping_cursor(&mut self) {
        let cursor_id = self.cursor_user().map(|u| u.id);
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
            SortField::Email => self.field(a, 2).cmp(self.field(b, 2)),
            SortField::Org => ua.org.cmp(&ub.org).then_with(by_name),
            SortField::Role => (ua.role as u8).cmp(&(ub.role as u8)).then_with(by_name),
            SortField::Mfa => (ua.mfa as u8).cmp(&(ub.mfa as u8)).then_with(by_name),
            SortField::LastLogin => ua.last_login_at.as_deref().unwrap_or("").cmp(ub.last_login_at.as_deref().unwrap_or("")),
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
        let row = id.and_then(|id| self.by_id.get(&id).copied());
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
        let Some(&row) = self.by_id.get(&view.id) else {
            return;
        };
        let old = &self.rows[row as usize];
        let text_changed = (&old.username, &old.display_name, &old.email) != (&view.username, &view.display_name, &view.email);
        self.rows[row as usize] = view;
        if text_changed {
            let rows = std::mem::take(&mut self.rows);
            self.load(rows);
        } else {
            self.refilter_keeping_cursor();
        }
    }

    /// Show what a reset did, in place: the new MFA state of every user it reset, whose mark is
    /// cleared. Users it denied or could not reset stay marked.
    pub fn apply_reset(&mut self, report: &ResetReport) {
        for r in &report.results {
            let Some(&row) = r.user_id.as_ref().and_then(|id| self.by_id.get(id)) else {
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

fn push_index(index: &mut String, row: &UserView) -> [u32; 4] {
    let start = index.len() as u32;
    let u = push_lowered(index, &row.username);
    index.push(SEP);
    let d = push_lowered(index, &row.display_name);
    index.push(SEP);
    let e = push_lowered(index, &row.email);
    [start, u, d, e]
}

fn push_lowered(index: &mut String, s: &str) -> u32 {
    if s.is_ascii() {
        index.extend(s.chars().map(|c| c.to_ascii_lowercase()));
    } else {
        index.push_str(&s.to_lowercase());
    }
    index.len() as u32
}
