//! Bulk creation of users: CSV import and generated (demo) users.

use crate::domain::audit::AuditDraft;
use crate::domain::role::Role;
use crate::domain::user::{Status, User};
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::store::{Change, UserWrite};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use super::{Actor, DirectoryState, NewUser, Principal, Service, about, draft, may_create_users};
use crate::domain::directory::Summary;

/// A CSV row that cannot be imported: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RowError {
    /// The line of the CSV text (the header is line 1).
    pub line: u64,
    pub column: String,
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
    }
}

/// How a CSV import treats its rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Check every row, write nothing.
    pub check_only: bool,
    /// Import the valid rows and report the others, instead of importing nothing.
    pub skip_invalid: bool,
}

/// What a CSV import did (or, checking only, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// Nothing was written: `imported` is how many users would be.
    pub check_only: bool,
    pub imported: usize,
    /// The rows left out (only with `skip_invalid`), by line.
    pub skipped: Vec<RowError>,
}

/// Why one row of an import cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportProblem {
    pub row: usize,
    pub field: &'static str,
    pub message: String,
}

pub(super) const IMPORT_COLUMNS: [&str; 5] = ["username", "email", "display_name", "role", "org"];

/// The rows of a user CSV that parsed, each with its line, and those that did not.
pub type ParsedCsv = (Vec<(u64, NewUser)>, Vec<RowError>);

/// Parse user CSV (header `username,email,display_name,role,org`; other columns are ignored).
pub fn parse_user_csv(input: &[u8]) -> Result<ParsedCsv> {
    let (mut rows, mut errors) = (Vec::new(), Vec::new());
    each_user_row(input, |line, row| {
        match row {
            Ok((new, _)) => rows.push((line, new)),
            Err(e) => errors.push(e),
        }
        Ok(())
    })?;
    Ok((rows, errors))
}

/// The status of a row: its `status` column (as `user export` writes it), `active` when absent or empty.
fn status_of(value: &str) -> std::result::Result<Status, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "active" => Ok(Status::Active),
        "disabled" => Ok(Status::Disabled),
        other => Err(format!("{other:?} is not a status: use active or disabled")),
    }
}

/// A parsed row: the user, and the status it is imported with.
type Row = std::result::Result<(NewUser, Status), RowError>;

/// Parse user CSV row by row, handing each row (by its line) to `visit`, parsed or not: a million
/// rows need not be held at once.
fn each_user_row(input: &[u8], mut visit: impl FnMut(u64, Row) -> Result<()>) -> Result<()> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(input);
    let headers = reader.headers().map_err(|e| Error::invalid(format!("line 1: cannot read the CSV header: {e}")))?.clone();
    let index: Vec<usize> = IMPORT_COLUMNS
        .iter()
        .map(|c| {
            headers.iter().position(|h| h.eq_ignore_ascii_case(c)).ok_or_else(|| {
                Error::invalid(format!("line 1: the header has no column {c:?}; it must name username,email,display_name,role,org"))
            })
        })
        .collect::<Result<_>>()?;
    let status_column = headers.iter().position(|h| h.eq_ignore_ascii_case("status"));
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                visit(line, Err(RowError { line, column: "-".into(), message: format!("not valid CSV: {e}") }))?;
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    return Ok(());
                }
                continue;
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| super::csv_uncell(record.get(index[i]).unwrap_or("")).to_string();
        let missing = IMPORT_COLUMNS.iter().enumerate().find(|(i, _)| field(*i).is_empty());
        if let Some((_, column)) = missing {
            visit(line, Err(RowError { line, column: column.to_string(), message: "is empty".into() }))?;
            continue;
        }
        let row = match (field(3).parse::<Role>(), status_of(status_column.and_then(|i| record.get(i)).unwrap_or(""))) {
            (Ok(role), Ok(status)) => {
                Ok((NewUser { username: field(0), email: field(1), display_name: field(2), role, org: field(4), password: None }, status))
            }
            (Err(message), _) => Err(RowError { line, column: "role".into(), message }),
            (_, Err(message)) => Err(RowError { line, column: "status".into(), message }),
        };
        visit(line, row)?;
    }
}

/// How far an import is: `done` of `total` in its current stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportProgress {
    pub stage: ImportStage,
    pub done: usize,
    pub total: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportStage {
    /// Rows checked against the rules and the store.
    Checking,
    /// The users being written, all or none (`done` is 0 until it is over).
    Writing,
}

/// Rows between two progress reports.
const PROGRESS_EVERY: usize = 4_096;

/// The rows of an import checked so far: the users of those that pass, and the user names and
/// emails seen, to refuse a second row with either. Those are kept as 64-bit hashes pointing at
/// the user that has them (a million rows would otherwise hold two million more strings); a hash
/// met again is compared with that user, and the rare distinct text with the same hash is kept whole.
struct ImportCheck<'a> {
    service: &'a Service,
    actor: &'a Actor,
    now: Timestamp,
    users: Vec<User>,
    hasher: std::hash::RandomState,
    names: HashMap<u64, u32>,
    emails: HashMap<u64, u32>,
    other_texts: HashSet<(bool, String)>,
}

impl<'a> ImportCheck<'a> {
    fn new(service: &'a Service, actor: &'a Actor, now: Timestamp, rows: usize) -> ImportCheck<'a> {
        ImportCheck {
            service,
            actor,
            now,
            users: Vec::with_capacity(rows),
            hasher: std::hash::RandomState::new(),
            names: HashMap::with_capacity(rows),
            emails: HashMap::with_capacity(rows),
            other_texts: HashSet::new(),
        }
    }

    /// Check one row against the rules, the store and the rows before it: a problem (its field and
    /// what is wrong), or none and the user is kept.
    fn row(&mut self, new: &NewUser, status: Status) -> Result<Option<(&'static str, String)>> {
        let u = match self.service.prepare_user(self.actor, new, self.now) {
            Ok(u) => User { status, ..u },
            Err(("", e)) => return Err(e),
            Err((field, e)) => return Ok(Some((field, e.to_string()))),
        };
        let (name, email) = (u.username.to_lowercase(), u.email.to_lowercase());
        if self.seen(false, &name) {
            return Ok(Some(("username", format!("the user name {:?} appears twice in this import", u.username))));
        }
        if self.seen(true, &email) {
            return Ok(Some(("email", format!("the email {:?} appears twice in this import", u.email))));
        }
        let at = u32::try_from(self.users.len()).map_err(|_| Error::invalid("an import holds at most 4,294,967,295 rows"))?;
        self.note(false, name, at);
        self.note(true, email, at);
        self.users.push(u);
        Ok(None)
    }

    fn text_of(&self, email: bool, at: u32) -> String {
        let u = &self.users[at as usize];
        if email { u.email.to_lowercase() } else { u.username.to_lowercase() }
    }

    fn seen(&self, email: bool, text: &str) -> bool {
        let map = if email { &self.emails } else { &self.names };
        match map.get(&self.hasher.hash_one(text)) {
            Some(&at) if self.text_of(email, at) == text => true,
            Some(_) => self.other_texts.contains(&(email, text.to_string())),
            None => false,
        }
    }

    fn note(&mut self, email: bool, text: String, at: u32) {
        let hash = self.hasher.hash_one(&text);
        let map = if email { &mut self.emails } else { &mut self.names };
        if let std::collections::hash_map::Entry::Vacant(slot) = map.entry(hash) {
            slot.insert(at);
        } else {
            self.other_texts.insert((email, text));
        }
    }
}

impl Service {
    /// Import many users at once: all of them, or (with a problem in any) none. Problems come as
    /// (index into `rows`, field, message); nothing is written when there are any, nor when
    /// `check_only` (which answers how many would be imported).
    pub fn import_users(
        &self,
        actor: &Actor,
        rows: &[NewUser],
        check_only: bool,
        now: Timestamp,
    ) -> Result<std::result::Result<usize, Vec<ImportProblem>>> {
        may_create_users(actor)?;
        let mut check = ImportCheck::new(self, actor, now, rows.len());
        let mut problems = Vec::new();
        for (row, new) in rows.iter().enumerate() {
            if let Some((field, message)) = check.row(new, Status::Active)? {
                problems.push(ImportProblem { row, field, message });
            }
        }
        if !problems.is_empty() {
            return Ok(Err(problems));
        }
        if check_only {
            return Ok(Ok(check.users.len()));
        }
        self.write_import(actor, check.users, now, &mut |_| {}).map(Ok)
    }

    /// Import users from CSV text with the header `username,email,display_name,role,org` (other
    /// columns are ignored): every row, or (with a problem in any) none, and then the error names
    /// each bad row by line and column. `skip_invalid` imports the valid rows and reports the
    /// others; `check_only` writes nothing.
    pub fn import_csv(&self, actor: &Actor, csv: &[u8], options: ImportOptions, now: Timestamp) -> Result<ImportReport> {
        self.import_csv_with_progress(actor, csv, options, now, &mut |_| {})
    }

    /// [`Service::import_csv`], reporting how far it is on the way.
    pub fn import_csv_with_progress(
        &self,
        actor: &Actor,
        csv: &[u8],
        options: ImportOptions,
        now: Timestamp,
        progress: &mut dyn FnMut(ImportProgress),
    ) -> Result<ImportReport> {
        may_create_users(actor)?;
        // About one row a line (a quoted line break is rare): enough for a progress bar.
        let total = memchr::memchr_iter(b'\n', csv).count().saturating_sub(1);
        let mut check = ImportCheck::new(self, actor, now, total);
        let mut errors = Vec::new();
        let mut done = 0;
        progress(ImportProgress { stage: ImportStage::Checking, done, total });
        // Every row is checked against the store before anything is written, so one run reports
        // every problem; the rows that pass are the users written.
        each_user_row(csv, |line, row| {
            match row {
                Ok((new, status)) => {
                    if let Some((field, message)) = check.row(&new, status)? {
                        errors.push(RowError { line, column: field.into(), message });
                    }
                }
                Err(e) => errors.push(e),
            }
            done += 1;
            if done % PROGRESS_EVERY == 0 {
                progress(ImportProgress { stage: ImportStage::Checking, done, total: total.max(done) });
            }
            Ok(())
        })?;
        progress(ImportProgress { stage: ImportStage::Checking, done, total: done });
        errors.sort_by_key(|e| e.line);
        if !errors.is_empty() && !options.skip_invalid {
            let list: Vec<String> = errors.iter().map(RowError::to_string).collect();
            let rows = if errors.len() == 1 { "1 row".to_string() } else { format!("{} rows", errors.len()) };
            return Err(Error::invalid(format!(
                "nothing was imported: fix {rows}, or import the others alone (--skip-invalid; over HTTP \
                 skip_invalid=true):\n{}",
                list.join("\n")
            )));
        }
        let users = check.users;
        let imported = if options.check_only {
            users.len()
        } else {
            self.write_import(actor, users, now, progress).map_err(|e| match e {
                // Checked free a moment ago: someone else took the name or email since.
                Error::Conflict(why) => {
                    Error::Conflict(format!("the store changed during the import ({why}); nothing was imported, run it again"))
                }
                e => e,
            })?
        };
        Ok(ImportReport { check_only: options.check_only, imported, skipped: errors })
    }

    /// Write checked users, each with its audit event, in one unit of work: all or none.
    fn write_import(&self, actor: &Actor, users: Vec<User>, now: Timestamp, progress: &mut dyn FnMut(ImportProgress)) -> Result<usize> {
        let total = users.len();
        progress(ImportProgress { stage: ImportStage::Writing, done: 0, total });
        let first = self.store.allocate_numbers(total as u64)?;
        let mut users = users;
        for (i, u) in users.iter_mut().enumerate() {
            u.number = first + i as u64;
            u.version = 1;
        }
        self.store.add_users(&users, &|u| {
            let mut event = about(draft(actor, "user.add", now), u);
            if u.status == Status::Disabled {
                event.detail = Some("imported disabled".into());
            }
            event
        })?;
        self.note_in_directory(|| users.iter().map(Summary::of).collect(), std::iter::empty());
        progress(ImportProgress { stage: ImportStage::Writing, done: total, total });
        Ok(total)
    }

    /// Write many prepared users (demo data) in batches, with one audit event for all of them.
    pub fn insert_generated_users(&self, actor: &Actor, mut users: Vec<User>, what: &str, now: Timestamp) -> Result<usize> {
        let count = users.len();
        let event = self.prepare_generated_users(actor, &mut users, what, now)?;
        // In key order, the store appends records instead of rewriting the same pages again and again.
        users.sort_unstable_by_key(|u| u.id);
        let mut batch = Vec::new();
        for u in users {
            batch.push(UserWrite { user: u, expected_version: None });
            if batch.len() == 2_000 {
                self.store_commit(&[Change { users: std::mem::take(&mut batch), ..Change::default() }])?;
            }
        }
        self.store_commit(&[Change { users: batch, audit: vec![event], ..Change::default() }])?;
        self.store.flush()?;
        Ok(count)
    }

    /// [`Service::insert_generated_users`] into a store created for them moments ago, which no one
    /// else uses yet (a new demo store): the store writes them tree by tree instead of in
    /// transactions (see [`Store::load_new_users`]).
    pub fn load_generated_users_into_new_store(&self, actor: &Actor, mut users: Vec<User>, what: &str, now: Timestamp) -> Result<usize> {
        let count = users.len();
        let event = self.prepare_generated_users(actor, &mut users, what, now)?;
        self.store.load_new_users(users)?;
        // The users went around the directory: whoever lists next reads them from the store.
        *self.directory.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = DirectoryState::NotBuilt;
        self.store_commit(&[Change { audit: vec![event], ..Change::default() }])?;
        self.store.flush()?;
        Ok(count)
    }

    /// Only the console operator generates users; each gets a fresh number, and all of them one
    /// audit event (returned, to be committed with the last of them).
    pub(super) fn prepare_generated_users(&self, actor: &Actor, users: &mut [User], what: &str, now: Timestamp) -> Result<AuditDraft> {
        if !matches!(actor.principal, Principal::Console { .. }) {
            return Err(Error::Forbidden("only the console operator can generate users".into()));
        }
        let first = self.store.allocate_numbers(users.len() as u64)?;
        for (i, u) in users.iter_mut().enumerate() {
            u.number = first + i as u64;
        }
        let mut event = draft(actor, "user.generate", now);
        event.detail = Some(format!("{} {what}", users.len()));
        Ok(event)
    }
}
