//! What can happen in the console: the commands a key can be bound to, and every other event that
//! changes the state (typed text, mouse, resize, and the results of work done off the UI thread).

use crate::backend::Credential;
use crate::domain::user::UserView;
use crate::service::{Actor, AuditView, Enrollment, OrgView, ResetReport, UserDetail, VerifyReport};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A bindable command. Its snake_case name is what the key map files use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    Quit,
    Help,
    CommandLine,
    NextView,
    PrevView,
    Refresh,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    ToggleMark,
    MarkRange,
    MarkAllShown,
    ClearMarks,
    Filter,
    ClearFilter,
    FilterRole,
    FilterMfa,
    FilterUnused,
    SortNext,
    SortReverse,
    Reset,
    Open,
    Enroll,
    ToggleStatus,
    Unlock,
    ToggleEnforcement,
    Submit,
    Back,
    NextField,
    PrevField,
    ToggleDetails,
    ToggleValidations,
    DeleteChar,
    DeleteWord,
    ClearInput,
    CursorLeft,
    CursorRight,
    LineStart,
    LineEnd,
    DeleteNext,
    Complete,
}

impl Command {
    pub const ALL: [Command; 44] = [
        Command::Quit,
        Command::Help,
        Command::CommandLine,
        Command::NextView,
        Command::PrevView,
        Command::Refresh,
        Command::Up,
        Command::Down,
        Command::PageUp,
        Command::PageDown,
        Command::Top,
        Command::Bottom,
        Command::ToggleMark,
        Command::MarkRange,
        Command::MarkAllShown,
        Command::ClearMarks,
        Command::Filter,
        Command::ClearFilter,
        Command::FilterRole,
        Command::FilterMfa,
        Command::FilterUnused,
        Command::SortNext,
        Command::SortReverse,
        Command::Reset,
        Command::Open,
        Command::Enroll,
        Command::ToggleStatus,
        Command::Unlock,
        Command::ToggleEnforcement,
        Command::Submit,
        Command::Back,
        Command::NextField,
        Command::PrevField,
        Command::ToggleDetails,
        Command::ToggleValidations,
        Command::DeleteChar,
        Command::DeleteWord,
        Command::ClearInput,
        Command::CursorLeft,
        Command::CursorRight,
        Command::LineStart,
        Command::LineEnd,
        Command::DeleteNext,
        Command::Complete,
    ];

    /// The name used in key map files.
    pub fn name(self) -> &'static str {
        match self {
            Command::Quit => "quit",
            Command::Help => "help",
            Command::CommandLine => "command_line",
            Command::NextView => "next_view",
            Command::PrevView => "prev_view",
            Command::Refresh => "refresh",
            Command::Up => "up",
            Command::Down => "down",
            Command::PageUp => "page_up",
            Command::PageDown => "page_down",
            Command::Top => "top",
            Command::Bottom => "bottom",
            Command::ToggleMark => "toggle_mark",
            Command::MarkRange => "mark_range",
            Command::MarkAllShown => "mark_all_shown",
            Command::ClearMarks => "clear_marks",
            Command::Filter => "filter",
            Command::ClearFilter => "clear_filter",
            Command::FilterRole => "filter_role",
            Command::FilterMfa => "filter_mfa",
            Command::FilterUnused => "filter_unused",
            Command::SortNext => "sort_next",
            Command::SortReverse => "sort_reverse",
            Command::Reset => "reset",
            Command::Open => "open",
            Command::Enroll => "enroll",
            Command::ToggleStatus => "toggle_status",
            Command::Unlock => "unlock",
            Command::ToggleEnforcement => "toggle_enforcement",
            Command::Submit => "submit",
            Command::Back => "back",
            Command::NextField => "next_field",
            Command::PrevField => "prev_field",
            Command::ToggleDetails => "toggle_details",
            Command::ToggleValidations => "toggle_validations",
            Command::DeleteChar => "delete_char",
            Command::DeleteWord => "delete_word",
            Command::ClearInput => "clear_input",
            Command::CursorLeft => "cursor_left",
            Command::CursorRight => "cursor_right",
            Command::LineStart => "line_start",
            Command::LineEnd => "line_end",
            Command::DeleteNext => "delete_next",
            Command::Complete => "complete",
        }
    }

    /// Does the command edit the focused text field or move its cursor?
    pub fn is_line_edit(self) -> bool {
        matches!(
            self,
            Command::DeleteChar
                | Command::DeleteWord
                | Command::ClearInput
                | Command::CursorLeft
                | Command::CursorRight
                | Command::LineStart
                | Command::LineEnd
                | Command::DeleteNext
        )
    }

    /// One line for the help overlay.
    pub fn describe(self) -> &'static str {
        match self {
            Command::Quit => "quit the console",
            Command::Help => "show this help",
            Command::CommandLine => "command line: :reset :filter role=admin :sort email :q",
            Command::NextView => "next view (users, audit, orgs)",
            Command::PrevView => "previous view",
            Command::Refresh => "reload from the store",
            Command::Up => "move up",
            Command::Down => "move down",
            Command::PageUp => "page up",
            Command::PageDown => "page down",
            Command::Top => "first row",
            Command::Bottom => "last row",
            Command::ToggleMark => "mark or unmark the row (and move down)",
            Command::MarkRange => "start a range; press again to mark it",
            Command::MarkAllShown => "mark every user the filter shows",
            Command::ClearMarks => "clear all marks",
            Command::Filter => "find: type to narrow by user name, name or email",
            Command::ClearFilter => "clear the filter",
            Command::FilterRole => "quick filter: next role",
            Command::FilterMfa => "quick filter: next MFA state",
            Command::FilterUnused => "quick filter: factors unused for 90, 180, 365 days, or off",
            Command::SortNext => "sort by the next column",
            Command::SortReverse => "reverse the sort order",
            Command::Reset => "reset MFA of the marked users (or the cursor row)",
            Command::Open => "open the user's detail",
            Command::Enroll => "enroll MFA now (QR code at the console)",
            Command::ToggleStatus => "disable or enable the user",
            Command::Unlock => "unlock a factor that wrong codes locked (it stays enrolled)",
            Command::ToggleEnforcement => "turn MFA enforcement on or off",
            Command::Submit => "confirm / next step",
            Command::Back => "close / go back",
            Command::NextField => "next field or button",
            Command::PrevField => "previous field or button",
            Command::ToggleDetails => "show or hide the per-user results",
            Command::ToggleValidations => "show or hide second-factor checks (mfa.validate)",
            Command::DeleteChar => "delete the character before the cursor",
            Command::DeleteWord => "delete the word before the cursor",
            Command::ClearInput => "clear the field",
            Command::CursorLeft => "cursor left (on a button: the previous one)",
            Command::CursorRight => "cursor right (on a button: the next one)",
            Command::LineStart => "cursor to the start",
            Command::LineEnd => "cursor to the end",
            Command::DeleteNext => "delete the character under the cursor",
            Command::Complete => "complete the command",
        }
    }
}

impl std::str::FromStr for Command {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_lowercase().replace('-', "_");
        Command::ALL.into_iter().find(|c| c.name() == wanted).ok_or_else(|| {
            let names: Vec<&str> = Command::ALL.iter().map(|c| c.name()).collect();
            format!("unknown action {s:?}; known actions: {}", names.join(", "))
        })
    }
}

/// The logged-in admin, as the login flow or `--demo` produced it.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    /// Who acts, and what proves it to the backend (a session token after a password login,
    /// ended when the console quits).
    pub who: Credential,
    /// Recovery codes from an enrollment during login, shown once.
    pub recovery_codes: Vec<String>,
}

impl Session {
    /// A session acting as `actor` on an in-process store (`--demo`, tests).
    pub fn acting(actor: Actor) -> Session {
        Session { who: Credential::acting(actor), recovery_codes: Vec::new() }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Session({:?}, <{} recovery codes>)", self.who, self.recovery_codes.len())
    }
}

/// What a bulk reset did, batch by batch: the results of the batches that ran, and the targets
/// it never sent (it was stopped, or a batch failed).
#[derive(Debug, Clone)]
pub struct ResetRun {
    pub report: ResetReport,
    pub untouched: Vec<Uuid>,
    /// The admin stopped it.
    pub stopped: bool,
    /// Why a batch failed (the batches after it were not sent).
    pub error: Option<String>,
}

/// Everything that updates the state. Results carry the error as text, ready to show.
#[derive(Debug, Clone)]
pub enum Action {
    Command(Command),
    /// A character typed into the focused text field.
    Type(char),
    Paste(String),
    Click { column: u16, row: u16 },
    Scroll(i32),
    Resize(u16, u16),
    /// The clock, at `now`: the spinner turns and an old message fades.
    Tick(std::time::Instant),
    /// How many background jobs are running.
    Busy(usize),

    LoginNeedsCode { challenge: String },
    LoginNeedsEnrollment { challenge: String },
    LoginEnrollment(Result<Enrollment, String>),
    LoggedIn(Box<Session>),
    LoginFailed(String),

    /// Every user, at once (replaces the table's rows).
    UsersLoaded(Result<Vec<UserView>, String>),
    /// One page of a load that streams in: added to the table (rows already there are updated).
    /// `total` is how many users the load goes through (those its query finds, or every user of
    /// the store when it streams), `read` how many of them it went through so far; `done` is
    /// true on its last page.
    UsersPage { generation: u64, result: Result<Vec<UserView>, String>, read: usize, total: usize, done: bool },
    /// The backend does not answer (`Some(why)`, retrying), or answers again (`None`).
    Connection(Option<String>),
    /// The session ended (token expired or revoked): log in again; marks and filter stay.
    SessionEnded(String),
    DetailLoaded(Result<Box<UserDetail>, String>),
    ResetPlanned(Result<ResetReport, String>),
    /// A bulk reset went through another batch: `reset` users were reset so far.
    ResetProgress { reset: usize },
    ResetDone(ResetRun),
    EnrollmentBegun(Result<Enrollment, String>),
    EnrollmentConfirmed(Result<Vec<String>, String>),
    UserChanged(Result<Box<UserView>, String>),
    /// The answer to an unlock: the user as it is now.
    Unlocked(Result<Box<UserView>, String>),
    AuditLoaded { generation: u64, result: Result<Vec<AuditView>, String> },
    AuditVerified(Result<VerifyReport, String>),
    OrgsLoaded(Result<Vec<OrgView>, String>),
    OrgChanged(Result<OrgView, String>),
    /// A background job panicked: a bug. The console quits with this message.
    Crashed(String),
}

impl From<Command> for Action {
    fn from(c: Command) -> Self {
        Action::Command(c)
    }
}
