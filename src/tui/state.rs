//! Everything the console shows, as plain data. [`super::update::update`] changes it; the views
//! only read it.

use super::action::{Action, Session};
use super::keymap::{Key, KeyMap, Section};
use super::layout;
use super::table::{Query, UserTable};
use super::theme::Theme;
use crate::domain::policy;
use crate::domain::role::Role;
use crate::domain::user::Status;
use crate::service::{AuditView, Enrollment, OrgView, ResetOutcome, ResetReport, UserDetail, VerifyReport};
use ratatui::layout::Rect;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Above this many users a reset also asks the admin to type the count.
pub const TYPE_COUNT_ABOVE: usize = 20;

/// How the console was started.
#[derive(Debug, Clone)]
pub struct Options {
    pub keymap: KeyMap,
    pub color: bool,
    pub reason_required: bool,
    /// How many users a bulk reset sends at a time; it can be stopped between batches.
    pub batch_size: usize,
    pub mouse: bool,
    /// Where the store is, shown on the login screen.
    pub store: String,
    /// Shown in the top line when the data is elsewhere (`remote: <url>`).
    pub badge: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options { keymap: KeyMap::default(), color: true, reason_required: true, batch_size: 500, mouse: false, store: String::new(), badge: None }
    }
}

/// Where loading the users stands. Users stream in page by page; a filter set before they are
/// all here is sent to the backend, which finds the rest.
#[derive(Debug, Clone, Default)]
pub struct UserLoad {
    /// The newest load asked for; pages of older ones are dropped.
    pub generation: u64,
    /// What the newest load asks the backend for.
    pub query: Query,
    pub running: bool,
    /// How many users the newest load's query finds, and how many of them came so far.
    pub total: usize,
    pub received: usize,
    /// A load of every user finished: filtering needs the backend no more.
    pub complete: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Users,
    Audit,
    Orgs,
}

impl View {
    pub const ALL: [View; 3] = [View::Users, View::Audit, View::Orgs];

    pub fn title(self) -> &'static str {
        match self {
            View::Users => "Users",
            View::Audit => "Audit",
            View::Orgs => "Orgs",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginStep {
    /// User name and password.
    Password,
    /// A TOTP or recovery code for the challenge.
    Code { challenge: String },
    /// The org requires MFA and the user has none: enroll right here.
    Enroll { challenge: String, enrollment: Option<Enrollment> },
    /// Enrolled during login: the recovery codes, shown once, then on to the console.
    RecoveryCodes { session: Box<Session> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginForm {
    pub step: LoginStep,
    pub username: String,
    pub password: String,
    pub code: String,
    /// 0 = user name, 1 = password (on the password step).
    pub focus: usize,
    pub error: Option<String>,
    pub waiting: bool,
}

impl LoginForm {
    pub fn new() -> LoginForm {
        LoginForm {
            step: LoginStep::Password,
            username: String::new(),
            password: String::new(),
            code: String::new(),
            focus: 0,
            error: None,
            waiting: false,
        }
    }
}

impl Default for LoginForm {
    fn default() -> Self {
        LoginForm::new()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    Login(Box<LoginForm>),
    Main,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Error,
}

/// How long a message stays on the status line before the key hints come back.
pub const INFO_LIFETIME: Duration = Duration::from_secs(4);
/// Errors stay longer: they are worth reading twice.
pub const ERROR_LIFETIME: Duration = Duration::from_secs(8);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub level: Level,
    /// The first clock tick that saw the message; it fades a lifetime after that.
    pub seen: Option<Instant>,
}

impl Message {
    /// Whether the message has been shown for its whole lifetime at `now`.
    pub fn faded(&self, now: Instant) -> bool {
        let lifetime = match self.level {
            Level::Info => INFO_LIFETIME,
            Level::Error => ERROR_LIFETIME,
        };
        self.seen.is_some_and(|seen| now.saturating_duration_since(seen) >= lifetime)
    }
}

#[derive(Debug, Clone)]
pub struct AuditPane {
    pub events: Vec<AuditView>,
    pub loaded: bool,
    pub error: Option<String>,
    pub filter: String,
    pub editing: bool,
    /// Results of older queries than this are dropped.
    pub generation: u64,
    pub cursor: usize,
    pub offset: usize,
    pub verify: Option<Result<VerifyReport, String>>,
    /// Are second-factor checks (`mfa.validate`, one per VPN or SSH login) shown? Hidden at
    /// first: they would bury every other event.
    pub validations: bool,
    /// How many of the newest events are asked for; moving past the last one asks for more.
    pub limit: usize,
}

impl Default for AuditPane {
    fn default() -> Self {
        AuditPane {
            events: Vec::new(),
            loaded: false,
            error: None,
            filter: String::new(),
            editing: false,
            generation: 0,
            cursor: 0,
            offset: 0,
            verify: None,
            validations: false,
            limit: AUDIT_PAGE,
        }
    }
}

/// How many more audit events the view asks for each time it reaches the end of those it has.
pub const AUDIT_PAGE: usize = 1_000;

impl AuditPane {
    /// Did the last load bring fewer than it asked for, so that there are no older ones?
    pub fn all_loaded(&self) -> bool {
        self.loaded && self.events.len() < self.limit
    }
}

#[derive(Debug, Clone, Default)]
pub struct OrgsPane {
    pub orgs: Vec<OrgView>,
    pub loaded: bool,
    pub error: Option<String>,
    pub cursor: usize,
}

#[derive(Debug, Clone)]
pub struct DetailPane {
    pub user: Uuid,
    pub detail: Option<Box<UserDetail>>,
    pub error: Option<String>,
    pub scroll: usize,
}

/// Where the focus is in the reset dialog. It opens on Cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetFocus {
    Reason,
    Count,
    Cancel,
    Confirm,
}

/// The reset confirmation: who, what a dry run says will happen, the reason, and for a bulk the
/// typed count. Only its Confirm button starts the reset.
#[derive(Debug, Clone)]
pub struct ConfirmReset {
    pub targets: Vec<Uuid>,
    /// The user names of the targets, in table order.
    pub names: Vec<String>,
    pub plan: Option<Result<ResetReport, String>>,
    pub reason: String,
    pub count: String,
    pub focus: ResetFocus,
    pub error: Option<String>,
    /// How many of the targets the filter hides: marked earlier, not on screen now.
    pub hidden: usize,
    /// The logged-in admin is among the targets.
    pub includes_operator: bool,
    /// Orgs every one of whose users is among the targets.
    pub whole_orgs: Vec<String>,
}

impl ConfirmReset {
    pub fn new(targets: Vec<Uuid>, names: Vec<String>) -> ConfirmReset {
        ConfirmReset {
            targets,
            names,
            hidden: 0,
            includes_operator: false,
            whole_orgs: Vec::new(),
            plan: None,
            reason: String::new(),
            count: String::new(),
            focus: ResetFocus::Cancel,
            error: None,
        }
    }

    /// Must the count be typed? Above [`TYPE_COUNT_ABOVE`] users to reset (or, until the dry run
    /// is back, users chosen).
    pub fn needs_count(&self) -> bool {
        self.will_reset().unwrap_or(self.targets.len()) > TYPE_COUNT_ABOVE
    }

    /// The focus stops in Tab order.
    pub fn focus_order(&self) -> Vec<ResetFocus> {
        let mut order = vec![ResetFocus::Reason];
        if self.needs_count() {
            order.push(ResetFocus::Count);
        }
        order.extend([ResetFocus::Cancel, ResetFocus::Confirm]);
        order
    }

    /// How many the dry run says will be reset, once it is back.
    pub fn will_reset(&self) -> Option<usize> {
        match &self.plan {
            Some(Ok(plan)) => Some(plan.count(ResetOutcome::Reset)),
            _ => None,
        }
    }
}

/// A bulk reset running: how many users it reset so far of how many it will.
#[derive(Debug, Clone)]
pub struct ResetProgress {
    pub reset: usize,
    pub total: usize,
    /// "Stop after the current batch?" is asked (the reset waits meanwhile); true while Stop has
    /// the focus.
    pub asking: Option<bool>,
    /// The admin said stop: the batch that runs is the last.
    pub stopping: bool,
    /// The admin quit meanwhile: once the batch ends, the console closes and prints the results.
    pub quit_after: bool,
}

impl ResetProgress {
    pub fn new(total: usize) -> ResetProgress {
        ResetProgress { reset: 0, total, asking: None, stopping: false, quit_after: false }
    }
}

#[derive(Debug, Clone)]
pub struct ResetResultView {
    pub report: ResetReport,
    /// Targets never sent (the reset was stopped, or a batch failed), by user name.
    pub untouched: Vec<String>,
    pub stopped: bool,
    /// Why a batch failed.
    pub error: Option<String>,
    pub details: bool,
    pub scroll: usize,
}

/// A step that needs a yes, waiting in a [`Confirm`] dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingOp {
    SetStatus { user: Uuid, username: String, status: Status },
    Unlock { user: Uuid },
    SetEnforced { org: String, on: bool },
}

/// A yes/no question with Cancel focused.
#[derive(Debug, Clone)]
pub struct Confirm {
    pub title: String,
    pub lines: Vec<String>,
    pub yes_label: String,
    pub op: PendingOp,
    pub focus_yes: bool,
}

/// Enrolling a user's phone at the console: the QR code, then the first code, then the
/// recovery codes.
#[derive(Debug, Clone)]
pub struct EnrollDialog {
    pub user: Uuid,
    pub username: String,
    pub enrollment: Option<Enrollment>,
    pub code: String,
    pub recovery_codes: Option<Vec<String>>,
    pub error: Option<String>,
    pub waiting: bool,
}

#[derive(Debug, Clone)]
pub enum Overlay {
    /// The keys, those of `first` (where it was opened) first.
    Help { scroll: usize, first: Section },
    /// One audit event in full (its index in the audit view's events).
    AuditEvent(usize),
    CommandLine { input: String },
    Detail(DetailPane),
    ConfirmReset(ConfirmReset),
    Progress(ResetProgress),
    ResetResult(ResetResultView),
    Confirm(Confirm),
    Enroll(EnrollDialog),
}

/// Something the console offers that not every role may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Reset,
    Enroll,
    SetStatus,
    /// Lift a factor's lockout (offered only while it is locked).
    Unlock,
    ChangeOrg,
}

/// The order of the help's sections when opened from `first`: that one and the ones used with
/// it, then everywhere, then the rest.
pub fn help_sections(first: Section) -> Vec<Section> {
    use Section as S;
    let lead: &[Section] = match first {
        S::Users | S::Filter => &[S::Users, S::Filter, S::Input],
        S::Command => &[S::Command, S::Input],
        S::Dialog => &[S::Dialog, S::Input],
        S::Login => &[S::Login, S::Input],
        S::Detail => &[S::Detail],
        S::Audit => &[S::Audit],
        S::Orgs => &[S::Orgs],
        S::Progress => &[S::Progress],
        S::Result => &[S::Result],
        S::Help => &[S::Help],
        S::Input => &[S::Input],
        S::Global => &[S::Global],
    };
    let rest = [S::Global, S::Users, S::Filter, S::Input, S::Detail, S::Dialog, S::Result, S::Audit, S::Orgs, S::Command, S::Help, S::Login, S::Progress];
    let mut order = lead.to_vec();
    order.extend(rest.into_iter().filter(|s| !lead.contains(s)));
    order
}

/// What keys mean right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Login,
    Users,
    Filter,
    Detail,
    Audit,
    Orgs,
    Dialog,
    Progress,
    Result,
    Help,
    Command,
}

impl Mode {
    /// The key map sections that apply, first match wins.
    pub fn sections(self) -> &'static [Section] {
        match self {
            Mode::Login => &[Section::Login, Section::Input, Section::Global],
            Mode::Users => &[Section::Users, Section::Global],
            Mode::Filter => &[Section::Filter, Section::Input, Section::Global],
            Mode::Detail => &[Section::Detail, Section::Global],
            Mode::Audit => &[Section::Audit, Section::Global],
            Mode::Orgs => &[Section::Orgs, Section::Global],
            Mode::Dialog => &[Section::Dialog, Section::Input, Section::Global],
            Mode::Progress => &[Section::Progress, Section::Global],
            Mode::Result => &[Section::Result, Section::Global],
            Mode::Help => &[Section::Help, Section::Global],
            Mode::Command => &[Section::Command, Section::Input, Section::Global],
        }
    }

    /// Do unbound letters go into a text field?
    pub fn takes_text(self) -> bool {
        matches!(self, Mode::Login | Mode::Filter | Mode::Dialog | Mode::Command)
    }
}

#[derive(Debug, Clone)]
pub struct State {
    pub keymap: KeyMap,
    pub theme: Theme,
    pub reason_required: bool,
    pub batch_size: usize,
    pub mouse: bool,
    pub store: String,
    pub badge: Option<String>,
    /// Why the backend does not answer, while it does not (the work is being retried).
    pub disconnected: Option<String>,
    pub load: UserLoad,
    pub size: (u16, u16),
    pub screen: Screen,
    pub session: Option<Session>,
    pub view: View,
    pub users: UserTable,
    pub filter_editing: bool,
    pub audit: AuditPane,
    pub orgs: OrgsPane,
    pub overlays: Vec<Overlay>,
    /// Where the cursor of the focused text field is: this many characters before its end.
    pub cursor_back: usize,
    pub message: Option<Message>,
    pub busy: usize,
    pub spinner: usize,
    /// The wall clock (Unix seconds), set by the loop before every action (tests fix it): quick
    /// filters on age count back from it, and the table shows times relative to it.
    pub now: i64,
    pub quit: bool,
    pub crashed: Option<String>,
    /// For standard output once the console has closed: the results of a reset the admin quit during.
    pub print_on_exit: Option<String>,
}

impl State {
    /// A console at the login screen.
    pub fn new(options: Options) -> State {
        State {
            keymap: options.keymap,
            theme: Theme { color: options.color },
            reason_required: options.reason_required,
            batch_size: options.batch_size,
            mouse: options.mouse,
            store: options.store,
            badge: options.badge,
            disconnected: None,
            load: UserLoad::default(),
            size: (80, 24),
            screen: Screen::Login(Box::default()),
            session: None,
            view: View::Users,
            users: UserTable::new(),
            filter_editing: false,
            audit: AuditPane::default(),
            orgs: OrgsPane::default(),
            overlays: Vec::new(),
            cursor_back: 0,
            message: None,
            busy: 0,
            spinner: 0,
            now: crate::app::now(),
            quit: false,
            crashed: None,
            print_on_exit: None,
        }
    }

    /// Is a bulk reset running? The console does not close before it ends.
    pub fn reset_running(&self) -> bool {
        self.overlays.iter().any(|o| matches!(o, Overlay::Progress(_)))
    }

    /// May the loop end: quit asked for, and no reset still running.
    pub fn finished(&self) -> bool {
        self.quit && !self.reset_running()
    }

    pub fn area(&self) -> Rect {
        Rect::new(0, 0, self.size.0, self.size.1)
    }

    /// Rows per page of the tables at the current size.
    pub fn page(&self) -> usize {
        layout::page_rows(self.area())
    }

    pub fn mode(&self) -> Mode {
        match self.overlays.last() {
            Some(Overlay::Help { .. }) => Mode::Help,
            Some(Overlay::CommandLine { .. }) => Mode::Command,
            Some(Overlay::Detail(_) | Overlay::AuditEvent(_)) => Mode::Detail,
            Some(Overlay::ConfirmReset(_) | Overlay::Confirm(_) | Overlay::Enroll(_)) => Mode::Dialog,
            Some(Overlay::Progress(_)) => Mode::Progress,
            Some(Overlay::ResetResult(_)) => Mode::Result,
            None => match (&self.screen, self.view) {
                (Screen::Login(_), _) => Mode::Login,
                (Screen::Main, View::Users) if self.filter_editing => Mode::Filter,
                (Screen::Main, View::Users) => Mode::Users,
                (Screen::Main, View::Audit) if self.audit.editing => Mode::Filter,
                (Screen::Main, View::Audit) => Mode::Audit,
                (Screen::Main, View::Orgs) => Mode::Orgs,
            },
        }
    }

    /// What a key means now: a bound command, or a character for the focused text field.
    pub fn action_for_key(&self, key: &Key) -> Option<Action> {
        let mode = self.mode();
        if let Some(command) = self.keymap.lookup(mode.sections(), key) {
            return Some(Action::Command(command));
        }
        if mode.takes_text() { key.typed_char().map(Action::Type) } else { None }
    }

    pub fn info(&mut self, text: impl Into<String>) {
        self.message = Some(Message { text: text.into(), level: Level::Info, seen: None });
    }

    pub fn error(&mut self, text: impl Into<String>) {
        self.message = Some(Message { text: text.into(), level: Level::Error, seen: None });
    }

    /// How many lines the help overlay has: two of introduction, then per section a blank line,
    /// a heading and its bindings.
    pub fn help_lines(&self) -> usize {
        2 + Section::ALL.iter().map(|s| self.keymap.help(*s).len()).filter(|n| *n > 0).map(|n| n + 2).sum::<usize>()
    }

    /// Why the logged-in admin may not do `offer` to a user of role `target` (named `name`), as the
    /// service will decide it (the same policy); `None` when it may. The console offers only what
    /// is allowed, instead of refusing after a confirmation.
    pub fn refusal(&self, offer: Offer, target: Option<(Role, &str)>) -> Option<String> {
        let who = &self.session.as_ref()?.who;
        let is_self = target.is_some_and(|(_, name)| name == who.name);
        let role = who.role;
        match (offer, target) {
            (Offer::ChangeOrg, _) if !policy::may_change_org(role) => Some(format!("only an owner or admin may change MFA enforcement; you are {}", role.with_article())),
            (Offer::Reset, None) if matches!(role, Role::Auditor) => Some("auditors can read users and the audit log but cannot reset MFA".into()),
            (Offer::Reset, Some((target, _))) => policy::may_reset(role, target, is_self).err().map(|policy::Denied(why)| why),
            (Offer::Enroll, Some((target, _))) => {
                policy::may_reset(role, target, false).err().map(|policy::Denied(why)| why.replace("reset the MFA of", "enroll MFA for"))
            }
            (Offer::Unlock, Some((target, _))) => policy::may_unlock(role, target, is_self).err().map(|policy::Denied(why)| why),
            (Offer::SetStatus, Some((_, _))) if is_self => Some("you cannot disable or enable yourself".into()),
            (Offer::SetStatus, Some((target, _))) if !policy::may_manage_user(role, target) => {
                Some(format!("{} cannot disable or enable {}", role.with_article(), target.with_article()))
            }
            _ => None,
        }
    }

    /// Open the help on the keys of what is on screen now.
    pub fn open_help(&mut self) {
        let first = self.mode().sections()[0];
        self.overlays.push(Overlay::Help { scroll: 0, first });
    }

    /// The first hint for `command` in `section`, e.g. "R".
    pub fn key_hint(&self, section: Section, command: super::action::Command) -> String {
        use super::action::Command;
        let keys = self.keymap.keys_for(section, command);
        let preferred = match command {
            Command::Back => keys.iter().find(|k| *k == "esc"),
            Command::Submit => keys.iter().find(|k| *k == "enter"),
            _ => None,
        };
        preferred.or(keys.first()).cloned().unwrap_or_else(|| format!(":{}", command.name()))
    }
}
