//! Bulk creation of users: CSV import and generated (demo) users.

use crate::domain::audit::AuditDraft;
use crate::domain::role::Role;
use crate::domain::user::User;
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::store::{Change, UserWrite};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
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
    let (mut rows, mut errors) = (Vec::new(), Vec::new());
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(RowError { line, column: "-".into(), message: format!("not valid CSV: {e}") });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| super::csv_uncell(record.get(index[i]).unwrap_or("")).to_string();
        let missing = IMPORT_COLUMNS.iter().enumerate().find(|(i, _)| field(*i).is_empty());
        if let Some((_, column)) = missing {
            errors.push(RowError { line, column: column.to_string(), message: "is empty".into() });
            continue;
        }
        let role = match field(3).parse::<Role>() {
            Ok(r) => r,
            Err(message) => {
                errors.push(RowError { line, column: "role".into(), message });
                continue;
            }
        };
        rows.push((
            line,
            NewUser { username: field(0), email: field(1), display_name: field(2), role, org: field(4), password: None },
        ));
    }
    Ok((rows, errors))
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
    /// The users being written, in one transaction (`done` is 0 until it is over).
    Writing,
}

/// Rows between two progress reports.
const PROGRESS_EVERY: usize = 4_096;

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
        let (users, problems) = self.check_import(actor, rows.iter(), now, &mut |_| {})?;
        if !problems.is_empty() {
            return Ok(Err(problems));
        }
        if check_only {
            return Ok(Ok(users.len()));
        }
        self.write_import(actor, users, now, &mut |_| {}).map(Ok)
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
        let (rows, mut errors) = parse_user_csv(csv)?;
        // Every row is checked against the store before anything is written, so one run reports
        // every problem; the rows that pass are the users written.
        let (users, problems) = self.check_import(actor, rows.iter().map(|(_, u)| u), now, progress)?;
        errors.extend(problems.into_iter().map(|p| RowError { line: rows[p.row].0, column: p.field.into(), message: p.message }));
        drop(rows);
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

    /// Check each row (by its index) against the rules, the store and the rows before it: the
    /// users of the rows that pass, and a problem for each row that does not.
    fn check_import<'r>(
        &self,
        actor: &Actor,
        rows: impl ExactSizeIterator<Item = &'r NewUser>,
        now: Timestamp,
        progress: &mut dyn FnMut(ImportProgress),
    ) -> Result<(Vec<User>, Vec<ImportProblem>)> {
        let total = rows.len();
        let mut problems = Vec::new();
        let mut users = Vec::with_capacity(total);
        let (mut names, mut emails) = (HashSet::with_capacity(total), HashSet::with_capacity(total));
        progress(ImportProgress { stage: ImportStage::Checking, done: 0, total });
        for (row, new) in rows.enumerate() {
            let problem = |field: &'static str, message: String| ImportProblem { row, field, message };
            match self.prepare_user(actor, new, now) {
                Ok(u) => {
                    if !names.insert(u.username.to_lowercase()) {
                        problems.push(problem("username", format!("the user name {:?} appears twice in this import", u.username)));
                    } else if !emails.insert(u.email.to_lowercase()) {
                        problems.push(problem("email", format!("the email {:?} appears twice in this import", u.email)));
                    } else {
                        users.push(u);
                    }
                }
                Err(("", e)) => return Err(e),
                Err((field, e)) => problems.push(problem(field, e.to_string())),
            }
            if (row + 1) % PROGRESS_EVERY == 0 {
                progress(ImportProgress { stage: ImportStage::Checking, done: row + 1, total });
            }
        }
        progress(ImportProgress { stage: ImportStage::Checking, done: total, total });
        Ok((users, problems))
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
        self.store.add_users(&users, &|u| about(draft(actor, "user.add", now), u))?;
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
