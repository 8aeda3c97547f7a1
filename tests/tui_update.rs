//! Key → action → state: the console's behaviour without a terminal, on a real temporary store.

mod tui_common;

use mfadmin::config::Config;
use mfadmin::domain::mfa::MfaStatus;
use mfadmin::domain::role::Role;
use mfadmin::domain::user::Status;
use mfadmin::service::{AuditQuery, ResetOutcome, SortField, UserQuery};
use mfadmin::tui::action::{Action, Command};
use mfadmin::tui::effects::{Control, Effect, ResetGate};
use mfadmin::tui::keymap::KeyMap;
use mfadmin::tui::state::{Mode, Options, Overlay, ResetFocus, Screen, View};
use mfadmin::tui::table::SORT_COLUMNS;
use tui_common::{fixture, options, App, NOW};

fn names(service: &mfadmin::service::Service, actor: &mfadmin::service::Actor, query: UserQuery) -> Vec<String> {
    service.list_users(actor, &query, NOW).unwrap().users.into_iter().map(|u| u.username).collect()
}

#[test]
fn the_table_loads_every_user_the_admin_may_see_in_user_name_order() {
    let fx = fixture(300);
    let app = App::logged_in(&fx.service, &fx.owner, options(true));
    assert_eq!(app.state.screen, Screen::Main);
    assert_eq!(app.state.mode(), Mode::Users);
    assert_eq!(app.shown_names(), names(&fx.service, &fx.owner, UserQuery::default()));
    assert!(app.state.users.total() > 100, "the owner sees the users of its org");
}

#[test]
fn space_marks_the_row_and_moves_down_and_unmarks_a_marked_row() {
    let fx = fixture(120);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    let all = app.shown_names();
    app.press("space space");
    assert_eq!(app.marked_names(), all[..2]);
    assert_eq!(app.cursor_name(), all[2]);
    app.press("k space");
    assert_eq!(app.marked_names(), all[..1], "space on a marked row unmarks it");
    assert_eq!(app.state.users.mark_count(), 1);
}

#[test]
fn marks_survive_filtering_and_sorting() {
    let fx = fixture(200);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("space j j space");
    let marked = app.marked_names();
    assert_eq!(marked.len(), 2);
    app.press("/");
    app.type_text("zzzz-nobody");
    assert_eq!(app.state.users.shown_len(), 0);
    app.press("esc s s S m");
    let mut after = app.marked_names();
    after.sort();
    let mut before = marked.clone();
    before.sort();
    assert_eq!(after, before, "the same users stay marked");
    assert_eq!(app.state.users.mark_count(), 2);
}

#[test]
fn v_marks_a_range_in_either_direction() {
    let fx = fixture(150);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    let all = app.shown_names();
    app.press("j j v j j j");
    assert_eq!(app.state.users.mark_count(), 0, "the first v only starts the range");
    assert_eq!(app.state.users.anchor().unwrap().username, all[2]);
    app.press("v");
    assert_eq!(app.marked_names(), all[2..=5]);
    app.press("U G v k k v");
    let n = all.len();
    assert_eq!(app.marked_names(), all[n - 3..]);
    app.press("U j v esc");
    assert!(app.state.users.anchor().is_none(), "esc cancels a range");
}

#[test]
fn a_range_whose_start_the_filter_hides_is_refused() {
    let fx = fixture(150);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    let first = app.cursor_name();
    app.press("v /");
    app.type_text(&app.shown_names()[40].clone());
    app.press("enter v");
    assert!(app.marked_names().is_empty());
    assert!(app.state.message.as_ref().unwrap().text.contains("hidden by the filter"), "{:?}", app.state.message);
    assert_ne!(first, app.cursor_name());
}

#[test]
fn a_marks_everything_shown_and_capital_u_clears_the_marks() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("m"); // quick filter: enrolled
    let shown = app.shown_names();
    app.press("a");
    assert_eq!(app.state.users.mark_count(), shown.len());
    let mut marked = app.marked_names();
    marked.sort();
    let mut expected = shown.clone();
    expected.sort();
    assert_eq!(marked, expected);
    app.press("U");
    assert_eq!(app.state.users.mark_count(), 0);
}

#[test]
fn the_filter_narrows_as_you_type_like_the_service_and_esc_clears_it() {
    let fx = fixture(400);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    let total = app.state.users.total();
    app.press("/");
    assert_eq!(app.state.mode(), Mode::Filter);
    let mut typed = String::new();
    for c in "an.h".chars() {
        typed.push(c);
        app.type_text(&c.to_string());
        let expected = names(&fx.service, &fx.owner, UserQuery { text: Some(typed.clone()), ..UserQuery::default() });
        assert_eq!(app.shown_names(), expected, "after typing {typed:?}");
    }
    // Backspace widens again; upper case matches lower case; the email is searched too.
    app.press("backspace backspace");
    app.type_text("ACME.EX");
    let expected = names(&fx.service, &fx.owner, UserQuery { text: Some("anacme.ex".into()), ..UserQuery::default() });
    assert_eq!(app.shown_names(), expected);
    app.press("ctrl-u");
    app.type_text("q"); // q types into the filter; it does not quit
    assert!(!app.state.quit);
    assert_eq!(app.state.users.query().text, "q");
    app.press("enter");
    assert_eq!(app.state.mode(), Mode::Users, "enter keeps the filter and goes back to the table");
    assert_eq!(app.state.users.query().text, "q");
    app.press("esc");
    assert_eq!(app.state.users.shown_len(), total);
    app.press("/ x esc");
    assert_eq!(app.state.mode(), Mode::Users);
    assert_eq!(app.state.users.shown_len(), total, "esc while typing clears too");
}

#[test]
fn quick_filters_cycle_through_roles_and_mfa_states_like_the_service() {
    let fx = fixture(400);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    for role in Role::ALL {
        app.press("r");
        assert_eq!(app.state.users.query().role, Some(role));
        let expected = names(&fx.service, &fx.owner, UserQuery { role: Some(role), ..UserQuery::default() });
        assert_eq!(app.shown_names(), expected, "role {role}");
    }
    app.press("r");
    assert_eq!(app.state.users.query().role, None, "after the last role: any");
    for mfa in MfaStatus::ALL {
        app.press("m");
        let expected = names(&fx.service, &fx.owner, UserQuery { mfa: Some(mfa), ..UserQuery::default() });
        assert_eq!(app.shown_names(), expected, "mfa {mfa}");
    }
    app.press("m");
    assert_eq!(app.state.users.query().mfa, None);
}

#[test]
fn every_sort_matches_the_order_of_the_cli() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    for (i, field) in SORT_COLUMNS.into_iter().enumerate() {
        if i > 0 {
            app.press("s");
        }
        assert_eq!(app.state.users.sort(), (field, false));
        for descending in [false, true] {
            let expected = names(&fx.service, &fx.owner, UserQuery { sort: field, descending, ..UserQuery::default() });
            assert_eq!(app.shown_names(), expected, "{field:?} descending={descending}");
            app.press("S");
        }
    }
    app.press("s");
    assert_eq!(app.state.users.sort().0, SortField::Username, "s cycles back to the first column");
}

#[test]
fn navigation_keys_move_the_cursor_and_scroll_only_as_needed() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    let page = app.state.page();
    let n = app.state.users.shown_len();
    app.press("j down");
    assert_eq!(app.state.users.cursor(), 2);
    app.press("ctrl-d");
    assert_eq!(app.state.users.cursor(), 2 + page);
    assert!(app.state.users.offset() > 0 && app.state.users.offset() <= app.state.users.cursor());
    app.press("G");
    assert_eq!(app.state.users.cursor(), n - 1);
    assert_eq!(app.state.users.offset(), n - page);
    app.press("g");
    assert_eq!((app.state.users.cursor(), app.state.users.offset()), (0, 0));
    app.press("k up pageup");
    assert_eq!(app.state.users.cursor(), 0, "never above the first row");
}

// ------------------------------------------------------------------ the reset confirmation

fn confirm_dialog(app: &App) -> mfadmin::tui::state::ConfirmReset {
    match app.state.overlays.last() {
        Some(Overlay::ConfirmReset(d)) => d.clone(),
        other => panic!("expected the reset dialog, found {other:?}"),
    }
}

#[test]
fn reset_opens_a_dialog_with_cancel_focused_and_enter_cancels() {
    let fx = fixture(120);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("space space space R");
    let d = confirm_dialog(&app);
    assert_eq!(d.focus, ResetFocus::Cancel);
    assert_eq!(d.targets.len(), 3);
    assert!(d.plan.as_ref().unwrap().is_ok(), "the dry run filled in the breakdown");
    let effects = app.press_only("enter");
    assert!(effects.is_empty(), "enter on Cancel runs nothing");
    assert!(app.state.overlays.is_empty());
    assert_eq!(app.state.users.mark_count(), 3, "cancelling keeps the marks");
    app.press("R esc");
    assert!(app.state.overlays.is_empty(), "esc cancels too");
}

#[test]
fn the_dialog_asks_for_a_reason_and_typing_never_confirms() {
    let fx = fixture(150);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("m R");
    // Typing while Cancel has the focus goes into the reason; enter moves on but does not confirm.
    app.type_text("lost phone");
    assert_eq!(confirm_dialog(&app).focus, ResetFocus::Reason);
    assert_eq!(confirm_dialog(&app).reason, "lost phone");
    let effects = app.press_only("enter");
    assert!(effects.is_empty());
    assert_eq!(confirm_dialog(&app).focus, ResetFocus::Cancel, "enter in the reason moves to Cancel");
    app.press("shift-tab ctrl-w ctrl-w");
    // An empty reason is refused, and the focus goes back to the field.
    let effects = app.press_only("tab tab enter");
    assert!(effects.is_empty());
    let d = confirm_dialog(&app);
    assert_eq!(d.reason, "");
    assert_eq!(d.focus, ResetFocus::Reason);
    assert_eq!(d.error.as_deref(), Some("a reason is required"));
}

#[test]
fn a_bulk_of_more_than_twenty_needs_the_count_typed() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("m a R"); // every enrolled user: far more than 20
    let d = confirm_dialog(&app);
    let n = d.targets.len();
    assert!(n > 20);
    assert!(d.needs_count());
    assert_eq!(d.focus_order(), vec![ResetFocus::Reason, ResetFocus::Count, ResetFocus::Cancel, ResetFocus::Confirm]);
    app.type_text("audit finding 12");
    app.press("tab");
    app.type_text(&format!("{}x", n - 1)); // letters are not taken
    assert_eq!(confirm_dialog(&app).count, (n - 1).to_string());
    let effects = app.press_only("tab tab enter");
    assert!(effects.is_empty(), "a wrong count is refused");
    assert_eq!(confirm_dialog(&app).focus, ResetFocus::Count);
    app.press("ctrl-u");
    app.type_text(&n.to_string());
    let effects = app.press_only("tab tab enter");
    match effects.as_slice() {
        [Effect::RunReset { targets, reason, .. }] => {
            assert_eq!(targets.len(), n);
            assert_eq!(reason, "audit finding 12");
        }
        other => panic!("expected the reset to run, got {other:?}"),
    }
    assert!(matches!(app.state.overlays.last(), Some(Overlay::Progress(_))), "a progress bar while it runs");
}

#[test]
fn reset_runs_for_exactly_the_marked_users_and_the_table_updates_in_place() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("m"); // enrolled only
    let before_enrolled = app.state.users.shown_len();
    app.press("space j space j space");
    let marked = app.marked_names();
    assert_eq!(marked.len(), 3);
    app.press("R");
    app.type_text("ticket 4711");
    app.press("tab tab enter");
    // The result screen, with the breakdown and the per-user list on demand.
    let Some(Overlay::ResetResult(r)) = app.state.overlays.last() else { panic!("no result screen: {:?}", app.state.overlays) };
    assert_eq!(r.report.count(ResetOutcome::Reset), 3);
    app.press("d");
    let Some(Overlay::ResetResult(r)) = app.state.overlays.last() else { panic!() };
    assert!(r.details);
    app.press("esc");
    assert!(app.state.overlays.is_empty());
    // In place: the three left the "enrolled" filter and lost their marks.
    assert_eq!(app.state.users.shown_len(), before_enrolled - 3);
    assert_eq!(app.state.users.mark_count(), 0);
    for name in &marked {
        let u = fx.service.get_user(&fx.owner, name, NOW).unwrap().user;
        assert_eq!(u.mfa, MfaStatus::MustEnroll, "{name} (Acme enforces MFA)");
        assert_eq!(app.state.users.user(u.id).unwrap().mfa, MfaStatus::MustEnroll);
    }
    let enrolled_after = fx.service.list_users(&fx.owner, &UserQuery { mfa: Some(MfaStatus::Enrolled), ..UserQuery::default() }, NOW).unwrap().total;
    assert_eq!(enrolled_after, before_enrolled - 3, "nobody else was reset");
    let events = fx.service.audit_list(&fx.owner, &AuditQuery { text: Some("mfa.reset".into()), limit: None, ..Default::default() }).unwrap();
    assert_eq!(events.len(), 3);
    for e in &events {
        assert_eq!((e.source.as_str(), e.actor.as_str(), e.reason.as_deref()), ("tui", "owner", Some("ticket 4711")));
        assert!(marked.contains(e.target.as_ref().unwrap()));
    }
}

#[test]
fn with_nothing_marked_the_cursor_row_is_reset() {
    let fx = fixture(120);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("m j j");
    let name = app.cursor_name();
    app.press("R");
    assert_eq!(confirm_dialog(&app).names, vec![name]);
}

#[test]
fn denials_are_shown_before_anything_happens() {
    let fx = fixture(300);
    let console = mfadmin::service::Actor::console("tui");
    let query = UserQuery { role: Some(Role::Helpdesk), status: Some(Status::Active), ..UserQuery::default() };
    let helpdesk = fx.service.list_users(&fx.owner, &query, NOW).unwrap().users[0].username.clone();
    let actor = fx.service.act_as(&console, &helpdesk, "tui").unwrap();
    let mut app = App::logged_in(&fx.service, &actor, options(true));
    app.press("m r r a R"); // enrolled admins: a helpdesk may not reset them
    let d = confirm_dialog(&app);
    let plan = d.plan.unwrap().unwrap();
    assert_eq!(plan.count(ResetOutcome::Denied), d.targets.len());
    assert!(plan.results[0].detail.as_deref().unwrap().contains("a helpdesk cannot reset the MFA of an admin"));
    app.type_text("x");
    let effects = app.press_only("tab tab enter");
    assert!(effects.is_empty(), "nothing to reset: Confirm does nothing");
}

// ------------------------------------------------------------------ quitting and screens

#[test]
fn q_and_ctrl_c_quit_from_every_screen() {
    let fx = fixture(60);
    for keys in ["q", "ctrl-c", "? ctrl-c", "? q q", "enter q", "R ctrl-c", ": ctrl-c", "/ ctrl-c", "tab q", "tab tab q", "space R esc q"] {
        let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
        app.press(keys);
        assert!(app.state.quit, "{keys} should quit");
    }
    let mut app = App::new(&fx.service, options(true));
    app.type_text("quentin");
    assert!(!app.state.quit, "q types into the login form");
    app.press("ctrl-c");
    assert!(app.state.quit);
}

#[test]
fn tab_cycles_through_users_audit_and_orgs() {
    let fx = fixture(60);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("tab");
    assert_eq!(app.state.view, View::Audit);
    assert!(app.state.audit.loaded);
    assert!(app.state.audit.verify.as_ref().unwrap().as_ref().unwrap().ok, "the chain verifies");
    app.press("/");
    app.type_text("user.add");
    assert!(app.state.audit.events.iter().all(|e| e.action == "user.add"));
    app.press("esc tab");
    assert_eq!(app.state.view, View::Orgs);
    assert_eq!(app.state.orgs.orgs.len(), 1, "the owner sees its own org");
    app.press("tab");
    assert_eq!(app.state.view, View::Users);
    app.press("shift-tab");
    assert_eq!(app.state.view, View::Orgs);
}

#[test]
fn org_enforcement_asks_first_and_reloads_the_users() {
    let fx = fixture(100);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("tab tab space");
    assert!(matches!(app.state.overlays.last(), Some(Overlay::Confirm(c)) if !c.focus_yes), "Cancel is focused");
    app.press("enter");
    assert!(fx.service.orgs(&fx.owner, NOW).unwrap()[0].mfa_enforced, "Cancel changed nothing");
    app.press("space tab enter");
    assert!(!fx.service.orgs(&fx.owner, NOW).unwrap()[0].mfa_enforced);
    assert!(!app.state.orgs.orgs[0].mfa_enforced);
    assert!(app.effects.iter().any(|e| matches!(e, Effect::Many(v) if v.iter().any(|e| matches!(e, Effect::LoadUsers { .. })))), "the users are reloaded");
    let states: Vec<MfaStatus> = (0..app.state.users.shown_len()).map(|i| app.state.users.shown_row(i).unwrap().0.mfa).collect();
    assert!(states.contains(&MfaStatus::NotEnrolled));
    assert!(!states.contains(&MfaStatus::MustEnroll), "nobody must enroll once enforcement is off");
}

#[test]
fn the_detail_pane_shows_the_record_and_can_disable_and_enroll() {
    let fx = fixture(100);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("/");
    app.type_text(".");
    app.press("enter");
    let name = app.cursor_name();
    app.press("enter");
    let Some(Overlay::Detail(pane)) = app.state.overlays.last() else { panic!() };
    assert_eq!(pane.detail.as_ref().unwrap().user.username, name);
    app.press("d");
    assert!(matches!(app.state.overlays.last(), Some(Overlay::Confirm(_))));
    app.press("tab enter");
    assert_eq!(fx.service.get_user(&fx.owner, &name, NOW).unwrap().user.status, Status::Disabled);
    let Some(Overlay::Detail(pane)) = app.state.overlays.last() else { panic!() };
    assert_eq!(pane.detail.as_ref().unwrap().user.status, Status::Disabled, "the pane shows the change");
    assert_eq!(pane.detail.as_ref().unwrap().recent_audit[0].action, "user.disable");
    app.press("d tab enter esc");
    assert_eq!(fx.service.get_user(&fx.owner, &name, NOW).unwrap().user.status, Status::Active);
    assert!(app.state.overlays.is_empty());
}

#[test]
fn enrolling_at_the_console_shows_a_qr_code_and_confirms_with_the_first_code() {
    let fx = fixture(200);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("m m m"); // must enroll
    let name = app.cursor_name();
    app.press("enter e");
    let Some(Overlay::Enroll(dialog)) = app.state.overlays.last() else { panic!("{:?}", app.state.overlays) };
    let enrollment = dialog.enrollment.clone().expect("a secret was issued");
    assert_eq!(enrollment.username, name);
    let right = tui_common::code_for(&enrollment.secret_base32, NOW);
    let wrong: String = right.chars().map(|c| if c == '9' { '0' } else { char::from(c as u8 + 1) }).collect();
    app.type_text(&wrong);
    app.press("enter");
    let Some(Overlay::Enroll(dialog)) = app.state.overlays.last() else { panic!() };
    assert!(dialog.error.as_deref().unwrap().contains("does not match"), "{:?}", dialog.error);
    app.press("ctrl-u");
    app.type_text(&right);
    app.press("enter");
    let Some(Overlay::Enroll(dialog)) = app.state.overlays.last() else { panic!() };
    assert_eq!(dialog.recovery_codes.as_ref().map(Vec::len), Some(10), "{:?}", dialog.error);
    app.press("enter");
    let Some(Overlay::Detail(pane)) = app.state.overlays.last() else { panic!() };
    assert_eq!(pane.detail.as_ref().unwrap().user.mfa, MfaStatus::Enrolled);
    assert_eq!(fx.service.get_user(&fx.owner, &name, NOW).unwrap().user.mfa, MfaStatus::Enrolled);
}

#[test]
fn the_command_line_filters_sorts_resets_and_quits() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    let run = |app: &mut App, line: &str| {
        app.press(":");
        assert_eq!(app.state.mode(), Mode::Command);
        app.type_text(line);
        app.press("enter");
    };
    run(&mut app, "filter role=admin mfa=enrolled");
    let expected = names(&fx.service, &fx.owner, UserQuery { role: Some(Role::Admin), mfa: Some(MfaStatus::Enrolled), ..UserQuery::default() });
    assert_eq!(app.shown_names(), expected);
    run(&mut app, "sort email desc");
    let expected = names(
        &fx.service,
        &fx.owner,
        UserQuery { role: Some(Role::Admin), mfa: Some(MfaStatus::Enrolled), sort: SortField::Email, descending: true, ..UserQuery::default() },
    );
    assert_eq!(app.shown_names(), expected);
    run(&mut app, "filter role=bogus");
    assert!(app.state.message.as_ref().unwrap().text.contains("unknown role"));
    run(&mut app, "frobnicate");
    assert!(app.state.message.as_ref().unwrap().text.contains("unknown command"));
    run(&mut app, "reset");
    assert!(matches!(app.state.overlays.last(), Some(Overlay::ConfirmReset(_))));
    app.press("esc");
    run(&mut app, "filter");
    assert!(app.state.users.query().is_empty());
    run(&mut app, "q");
    assert!(app.state.quit);
}

#[test]
fn keys_from_the_config_file_replace_and_add_bindings_and_help_follows() {
    let config = Config::parse("[tui.keys.users]\nx = \"reset\"\nR = \"none\"\n").unwrap();
    let keymap = KeyMap::with_overrides(&config.tui.keys).unwrap();
    let fx = fixture(60);
    let mut app = App::logged_in(&fx.service, &fx.owner, Options { keymap, ..options(true) });
    app.press("R");
    assert!(app.state.overlays.is_empty(), "R is unbound");
    app.press("x");
    assert!(matches!(app.state.overlays.last(), Some(Overlay::ConfirmReset(_))));
    let help = app.state.keymap.help(mfadmin::tui::keymap::Section::Users);
    let reset_keys = &help.iter().find(|(c, _)| *c == Command::Reset).unwrap().1;
    assert_eq!(reset_keys, &vec!["x".to_string()]);
    assert!(Config::parse("[tui.keys.users]\nx = \"rest\"\n").map(|c| KeyMap::with_overrides(&c.tui.keys)).unwrap().is_err());
}

#[test]
fn the_mouse_selects_and_scrolls_only_when_enabled() {
    let fx = fixture(200);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    let area = mfadmin::tui::layout::table_rows(app.state.area());
    app.apply(Action::Click { column: area.x + 3, row: area.y + 5 });
    assert_eq!(app.state.users.cursor(), 0, "mouse off by default");
    let mut app = App::logged_in(&fx.service, &fx.owner, Options { mouse: true, ..options(true) });
    app.apply(Action::Click { column: area.x + 3, row: area.y + 5 });
    assert_eq!(app.state.users.cursor(), 5);
    app.apply(Action::Scroll(3));
    assert_eq!(app.state.users.cursor(), 8);
}

#[test]
fn resizing_keeps_the_cursor_on_screen() {
    let fx = fixture(200);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("ctrl-d ctrl-d");
    app.apply(Action::Resize(80, 10));
    let (cursor, offset, page) = (app.state.users.cursor(), app.state.users.offset(), app.state.page());
    assert!(offset <= cursor && cursor < offset + page, "{offset} <= {cursor} < {offset}+{page}");
    app.apply(Action::Resize(3, 2));
    app.press("j k G g");
}

// ------------------------------------------------------------------ login

#[test]
fn login_walks_a_user_through_enrollment_then_accepts_a_recovery_code() {
    let fx = fixture(20);
    let mut app = App::new(&fx.service, options(true));
    assert_eq!(app.state.mode(), Mode::Login);
    app.type_text("owner");
    app.press("tab");
    app.type_text("wrong password");
    app.press("enter");
    let Screen::Login(form) = &app.state.screen else { panic!() };
    assert!(form.error.as_deref().unwrap().contains("wrong user name or password"));
    app.press("ctrl-u");
    app.type_text(mfadmin::demo::PASSWORD);
    app.press("enter");
    // Acme enforces MFA and the owner has none: enrollment right here.
    let Screen::Login(form) = &app.state.screen else { panic!() };
    let mfadmin::tui::state::LoginStep::Enroll { enrollment: Some(e), .. } = &form.step else { panic!("{:?}", form.step) };
    app.type_text(&tui_common::code_for(&e.secret_base32, NOW));
    app.press("enter");
    let Screen::Login(form) = &app.state.screen else { panic!() };
    let mfadmin::tui::state::LoginStep::RecoveryCodes { session } = &form.step else { panic!("{:?}", form) };
    let recovery = session.recovery_codes[0].clone();
    app.press("enter");
    assert_eq!(app.state.screen, Screen::Main);
    let session = app.state.session.clone().unwrap();
    assert_eq!(session.who.name, "owner");
    assert!(session.who.token().is_some());
    assert!(app.state.users.total() > 0);

    // Next time: password, then a recovery code instead of the app's code.
    let mut app = App::new(&fx.service, options(true));
    app.type_text("owner");
    app.press("enter");
    app.type_text(mfadmin::demo::PASSWORD);
    app.press("enter");
    let Screen::Login(form) = &app.state.screen else { panic!() };
    assert!(matches!(form.step, mfadmin::tui::state::LoginStep::Code { .. }), "{:?}", form.step);
    app.type_text(&recovery);
    app.press("enter");
    assert_eq!(app.state.screen, Screen::Main, "logged in with a recovery code");
    let events = fx.service.audit_list(&fx.owner, &AuditQuery { text: Some("auth.".into()), limit: None, ..Default::default() }).unwrap();
    assert!(events.iter().all(|e| e.source == "tui"));
    assert!(events.iter().any(|e| e.detail.as_deref() == Some("accepted a recovery code")));
}

// ------------------------------------------------------------------ scale

#[test]
fn incremental_filtering_agrees_with_filtering_from_scratch_at_scale() {
    use mfadmin::tui::table::UserTable;
    let fx = fixture(50);
    let template = fx.service.list_users(&fx.owner, &UserQuery::default(), NOW).unwrap().users;
    let rows: Vec<_> = (0..30_000)
        .map(|i| {
            let mut u = template[i % template.len()].clone();
            u.id = uuid::Uuid::from_u128(i as u128 + 1);
            u.username = format!("{}{i}", u.username);
            u
        })
        .collect();
    let mut incremental = UserTable::new();
    incremental.load(rows.clone());
    let mut typed = String::new();
    for c in "a.b1".chars() {
        typed.push(c);
        incremental.set_text(&typed);
        let mut fresh = UserTable::new();
        fresh.load(rows.clone());
        fresh.set_text(&typed);
        let ids = |t: &UserTable| (0..t.shown_len()).map(|i| t.shown_row(i).unwrap().0.id).collect::<Vec<_>>();
        assert_eq!(ids(&incremental), ids(&fresh), "{typed:?}");
        let brute = rows.iter().filter(|u| format!("{}\u{1f}{}\u{1f}{}", u.username, u.display_name, u.email).to_lowercase().contains(&typed)).count();
        assert_eq!(incremental.shown_len(), brute);
    }
}

#[test]
fn help_lists_every_binding_of_the_key_map_and_scrolls_to_its_end() {
    let fx = fixture(20);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("?");
    assert_eq!(app.state.mode(), Mode::Help);
    // Tall enough for all of it: every key of every section is there, next to its description.
    let screen = tui_common::render(&app.state, 120, app.state.help_lines() as u16 + 4);
    for section in mfadmin::tui::keymap::Section::ALL {
        for (command, keys) in app.state.keymap.help(section) {
            let line = format!("  {:<20}{}", keys.join(", "), command.describe());
            assert!(screen.contains(&line), "help is missing {line:?}");
        }
    }
    // Scrolling stops at the end, so one key brings it back.
    app.apply(Action::Resize(80, 24));
    app.press("ctrl-d ctrl-d ctrl-d ctrl-d ctrl-d ctrl-d ctrl-d ctrl-d ctrl-d");
    let Some(Overlay::Help { scroll, .. }) = app.state.overlays.last() else { panic!() };
    assert_eq!(*scroll, app.state.help_lines() - 20);
    app.press("esc");
    assert_eq!(app.state.mode(), Mode::Users);
}

#[test]
fn help_closes_with_q_scrolls_like_a_list_and_starts_with_the_keys_of_the_view() {
    let fx = fixture(20);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.apply(Action::Resize(80, 24));
    app.press("? G");
    let scroll = |app: &App| match app.state.overlays.last() {
        Some(Overlay::Help { scroll, .. }) => *scroll,
        other => panic!("{other:?}"),
    };
    assert_eq!(scroll(&app), app.state.help_lines() - 20, "G goes to the end");
    app.press("k k g");
    assert_eq!(scroll(&app), 0, "g to the top");
    app.press("j j");
    assert_eq!(scroll(&app), 2);
    app.press("q");
    assert!(!app.state.quit, "q closes the help, not the console");
    assert_eq!(app.state.mode(), Mode::Users);
    // Opened in the audit view, its keys come first.
    app.press("tab ?");
    let screen = tui_common::render(&app.state, 120, 40);
    let audit = screen.find("Audit log [audit]").expect("the audit keys");
    let users = screen.find("User table [users]").unwrap_or(usize::MAX);
    assert!(audit < users, "audit before users:\n{screen}");
    app.press("esc esc");
    assert_eq!(app.state.mode(), Mode::Audit);
    app.press("? q q");
    assert!(app.state.quit, "q outside the help still quits");
}

#[test]
fn a_message_fades_after_its_lifetime_and_the_key_hints_come_back() {
    use mfadmin::tui::state::{ERROR_LIFETIME, INFO_LIFETIME};
    use std::time::{Duration, Instant};
    let fx = fixture(30);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    let start = Instant::now();
    app.press("a");
    assert!(app.state.message.as_ref().unwrap().text.starts_with("marked all"), "{:?}", app.state.message);
    // The lifetime counts from the first tick that sees the message, however long ago it was set.
    app.apply(Action::Tick(start));
    app.apply(Action::Tick(start + INFO_LIFETIME - Duration::from_millis(1)));
    assert!(app.state.message.is_some(), "still within its lifetime");
    app.apply(Action::Tick(start + INFO_LIFETIME));
    assert_eq!(app.state.message, None, "faded: the status line shows the key hints again");
    let screen = tui_common::render(&app.state, 120, 40);
    assert!(screen.lines().last().unwrap().contains("? help"), "{screen}");

    // An error stays longer than an ordinary message.
    app.press(":");
    app.type_text("nonsense");
    app.press("enter");
    assert!(app.state.message.as_ref().unwrap().text.contains("unknown command"));
    let later = start + Duration::from_secs(60);
    app.apply(Action::Tick(later));
    app.apply(Action::Tick(later + INFO_LIFETIME));
    assert!(app.state.message.is_some(), "an error outlives an ordinary message");
    app.apply(Action::Tick(later + ERROR_LIFETIME));
    assert_eq!(app.state.message, None);

    // A newer message starts its own lifetime.
    app.press("a");
    app.apply(Action::Tick(later + ERROR_LIFETIME + Duration::from_secs(1)));
    assert!(app.state.message.is_some());
}

#[test]
fn u_cycles_the_unused_factor_filter_through_90_180_and_365_days_like_the_service() {
    let fx = fixture(400);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    let all = app.shown_names().len();
    for days in [90u32, 180, 365] {
        app.press("u");
        assert_eq!(app.state.users.query().unused.map(|u| u.days), Some(days));
        let expected = names(&fx.service, &fx.owner, UserQuery { unused_for: Some(u64::from(days) * 86_400), ..UserQuery::default() });
        assert!(!expected.is_empty() && expected.len() < all, "{days}d: some factors are unused, not all");
        assert_eq!(app.shown_names(), expected, "{days}d");
    }
    // With another quick filter, and off again after the last step.
    app.press("r");
    let expected =
        names(&fx.service, &fx.owner, UserQuery { unused_for: Some(365 * 86_400), role: Some(Role::ALL[0]), ..UserQuery::default() });
    assert_eq!(app.shown_names(), expected);
    app.press("u");
    assert_eq!(app.state.users.query().unused, None, "after 365 days: off");
    app.press("esc");
    assert_eq!(app.shown_names().len(), all);
    // Marking what the filter shows is the bulk reset's input.
    app.press("u u a");
    assert_eq!(app.state.users.mark_count(), names(&fx.service, &fx.owner, UserQuery { unused_for: Some(180 * 86_400), ..UserQuery::default() }).len());
}

#[test]
fn the_audit_view_hides_second_factor_checks_until_capital_v_shows_them() {
    use mfadmin::service::{ValidateRequest, Validator};
    let fx = fixture(60);
    let enrolled = names(&fx.service, &fx.owner, UserQuery { mfa: Some(MfaStatus::Enrolled), ..UserQuery::default() });
    for name in enrolled.iter().take(3) {
        let req = ValidateRequest { user: name.clone(), realm: Some("Acme".into()), pass: "000000".into(), client: Some("vpn".into()), ..Default::default() };
        fx.service.validate(&Validator::address("10.0.0.9"), &req, NOW).unwrap();
    }
    let validations = |app: &App| app.state.audit.events.iter().filter(|e| e.action == "mfa.validate").count();
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("tab");
    assert!(app.state.audit.loaded && !app.state.audit.events.is_empty());
    assert_eq!(validations(&app), 0, "hidden at first");
    let before = app.state.audit.events.len();
    app.press("V");
    assert!(app.state.audit.validations);
    assert_eq!(validations(&app), 3);
    assert_eq!(app.state.audit.events.len(), before + 3);
    // A text filter keeps the choice.
    app.press("/");
    app.type_text("vpn");
    app.press("enter");
    assert_eq!(validations(&app), 3);
    app.press("V");
    assert_eq!(app.state.audit.events.len(), 0, "nothing but checks matched");
    let effect = app.effects.iter().rev().find_map(|e| match e {
        Effect::LoadAudit { validations, .. } => Some(*validations),
        _ => None,
    });
    assert_eq!(effect, Some(false));
}

/// Start a bulk reset of every enrolled user in batches of `batch`, up to the effect that runs it
/// (not run yet); returns it and how many the dry run says will be reset.
fn start_bulk_reset(app: &mut App, reason: &str) -> (Effect, usize) {
    app.press("m a R");
    let will = confirm_dialog(app).will_reset().unwrap();
    app.type_text(reason);
    app.press("tab");
    app.type_text(&will.to_string());
    let effects = app.press_only("tab tab enter");
    let [effect @ Effect::RunReset { .. }] = effects.as_slice() else { panic!("expected the reset to run, got {effects:?}") };
    (effect.clone(), will)
}

/// Run a reset effect against the store; `after_first_batch` is called once the first batch has
/// been reported (as the admin would answer meanwhile). Applies every action it sends.
fn run_reset_effect(app: &mut App, effect: Effect, after_first_batch: impl Fn(&Control)) {
    let who = app.state.session.as_ref().map(|s| s.who.clone());
    let mut actions = Vec::new();
    mfadmin::tui::effects::perform(&app.backend, &app.control, who.as_ref(), effect, &mut |a| {
        if matches!(a, Action::ResetProgress { .. }) && !actions.iter().any(|a| matches!(a, Action::ResetProgress { .. })) {
            after_first_batch(&app.control);
        }
        actions.push(a);
    });
    for a in actions {
        app.apply(a);
    }
}

#[test]
fn esc_during_a_bulk_reset_asks_and_stop_ends_it_after_the_current_batch_user_by_user() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, Options { batch_size: 5, ..options(true) });
    let enrolled_before = names(&fx.service, &fx.owner, UserQuery { mfa: Some(MfaStatus::Enrolled), ..UserQuery::default() }).len();
    let (effect, will) = start_bulk_reset(&mut app, "stop test");
    assert!(will > 10);
    // The bar counts what will be reset, from the start.
    let Some(Overlay::Progress(p)) = app.state.overlays.last() else { panic!() };
    assert_eq!((p.reset, p.total), (0, will));
    // esc asks, with Keep going focused, and pauses the run.
    assert_eq!(app.press_only("esc"), vec![Effect::Gate(ResetGate::Pause)]);
    let Some(Overlay::Progress(p)) = app.state.overlays.last() else { panic!() };
    assert_eq!(p.asking, Some(false));
    // Keep going resumes; asked again, Stop stops after the batch.
    assert_eq!(app.press_only("enter"), vec![Effect::Gate(ResetGate::Run)]);
    assert_eq!(app.press_only("ctrl-c tab enter"), vec![Effect::Gate(ResetGate::Pause), Effect::Gate(ResetGate::Stop)]);
    assert!(!app.state.quit, "stopping is not quitting");
    run_reset_effect(&mut app, effect, |control| control.set_gate(ResetGate::Stop));
    let Some(Overlay::ResetResult(r)) = app.state.overlays.last() else { panic!("no result: {:?}", app.state.overlays) };
    assert!(r.stopped);
    assert_eq!(r.report.count(ResetOutcome::Reset), 5, "one batch of five ran");
    assert_eq!(r.untouched.len(), will - 5, "the rest were not tried");
    let enrolled_after = names(&fx.service, &fx.owner, UserQuery { mfa: Some(MfaStatus::Enrolled), ..UserQuery::default() }).len();
    assert_eq!(enrolled_after, enrolled_before - 5, "the store agrees");
    let screen = tui_common::render(&app.state, 120, 40);
    assert!(screen.contains(&format!("{:<12}{:>7}  stopped before their batch: unchanged", "not tried", will - 5)), "{screen}");
    app.press("d G");
    let screen = tui_common::render(&app.state, 120, 40);
    assert!(screen.contains("not tried  unchanged"), "the per-user list names them:\n{screen}");
}

#[test]
fn quitting_during_a_bulk_reset_waits_for_the_batch_and_prints_every_user() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, Options { batch_size: 4, ..options(true) });
    let (effect, will) = start_bulk_reset(&mut app, "quit test");
    assert_eq!(app.press_only("q q"), vec![Effect::Gate(ResetGate::Pause), Effect::Gate(ResetGate::Stop)]);
    assert!(app.state.quit && !app.state.finished(), "the console waits for the running batch");
    run_reset_effect(&mut app, effect, |control| control.set_gate(ResetGate::Stop));
    assert!(app.state.finished());
    let printed = app.state.print_on_exit.clone().expect("the results, for standard output");
    let lines: Vec<&str> = printed.lines().collect();
    assert!(lines[0].starts_with("mfadmin tui: reset 4, "), "{printed}");
    assert!(lines[0].ends_with(&format!("stopped: {} not tried", will - 4)), "{printed}");
    assert_eq!(lines.iter().filter(|l| l.contains("\treset\t")).count(), 4, "{printed}");
    assert_eq!(lines.iter().filter(|l| l.contains("\tnot_tried\t")).count(), will - 4, "{printed}");
}

#[test]
fn a_bulk_reset_left_alone_runs_every_batch() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, Options { batch_size: 7, ..options(true) });
    let (effect, will) = start_bulk_reset(&mut app, "all of them");
    run_reset_effect(&mut app, effect, |_| {});
    let Some(Overlay::ResetResult(r)) = app.state.overlays.last() else { panic!() };
    assert_eq!((r.report.count(ResetOutcome::Reset), r.untouched.len(), r.stopped), (will, 0, false));
}

/// The number to type is the number on the Reset button: those the dry run says will be reset,
/// not those chosen (some have nothing to reset).
#[test]
fn the_count_to_type_is_the_number_that_will_be_reset() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("a R");
    let d = confirm_dialog(&app);
    let (chosen, will) = (d.targets.len(), d.will_reset().unwrap());
    assert!(will > 20 && will < chosen, "{will} of {chosen}");
    let screen = tui_common::render(&app.state, 120, 40);
    assert!(screen.contains(&format!("Type {will} to confirm:")) && screen.contains(&format!("[ Reset {will} ]")), "{screen}");
    assert!(!screen.contains(&format!("Type {chosen}")), "{screen}");
    app.type_text("one number");
    app.press("tab");
    app.type_text(&chosen.to_string());
    assert!(app.press_only("tab tab enter").is_empty(), "the number chosen is not the number to reset");
    app.press("ctrl-u");
    app.type_text(&will.to_string());
    assert!(matches!(app.press_only("tab tab enter").as_slice(), [Effect::RunReset { .. }]));
}

#[test]
fn counts_of_one_are_singular() {
    let fx = fixture(0);
    let app = App::logged_in(&fx.service, &fx.owner, options(true));
    let screen = tui_common::render(&app.state, 120, 40);
    assert!(screen.contains("1 user loaded"), "{screen}");
    let mut app = app;
    app.press("tab tab");
    let screen = tui_common::render(&app.state, 120, 40);
    assert!(screen.contains(" 1 org "), "{screen}");
}

fn detail_user(app: &App) -> mfadmin::domain::user::UserView {
    match app.state.overlays.iter().rev().find_map(|o| if let Overlay::Detail(d) = o { d.detail.clone() } else { None }) {
        Some(d) => d.user,
        None => panic!("no detail pane: {:?}", app.state.overlays),
    }
}

/// The detail pane tells the truth after an enrollment is cancelled (the user is pending) and after
/// a reset (no factor, whatever date the record keeps of the last one).
#[test]
fn the_detail_pane_shows_pending_after_a_cancelled_enrollment_and_no_factor_after_a_reset() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("m m m"); // must enroll
    let name = app.cursor_name();
    app.press("enter");
    assert_eq!(detail_user(&app).mfa, MfaStatus::MustEnroll);
    app.press("e esc");
    assert_eq!(app.state.mode(), Mode::Detail);
    assert_eq!(detail_user(&app).mfa, MfaStatus::Pending, "the pane");
    assert_eq!(app.state.users.user(detail_user(&app).id).unwrap().mfa, MfaStatus::Pending, "the table");
    let screen = tui_common::render(&app.state, 120, 40);
    assert!(screen.contains("pending") && screen.contains("not yet: a secret was issued"), "{name}:\n{screen}");

    // An enrolled user reset from the pane: the pane says so.
    app.press("esc esc m");
    app.press("enter");
    let enrolled = detail_user(&app);
    assert_eq!(enrolled.mfa, MfaStatus::Enrolled);
    assert!(enrolled.mfa_enrolled_at.is_some());
    app.press("R");
    app.type_text("lost phone");
    app.press("tab tab enter esc");
    assert_eq!(app.state.mode(), Mode::Detail);
    let after = detail_user(&app);
    assert_eq!(after.mfa, MfaStatus::MustEnroll);
    let screen = tui_common::render(&app.state, 120, 40);
    let line = screen.lines().find(|l| l.contains("MFA enrolled")).unwrap();
    assert!(line.contains("no factor now (one enrolled") && line.contains("was reset)"), "{line}");
}

/// Every text field edits like a line editor: the cursor moves with ←/→/Home/End (and ctrl-a/e),
/// text goes in at the cursor, backspace, delete and ctrl-w work around it.
#[test]
fn text_fields_edit_at_the_cursor() {
    let fx = fixture(60);
    // The find field.
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("/");
    app.type_text("smth");
    app.press("left left");
    app.type_text("i");
    assert_eq!(app.state.users.query().text, "smith");
    app.press("home delete end backspace");
    assert_eq!(app.state.users.query().text, "mit");
    let screen = tui_common::render(&app.state, 120, 40);
    assert!(screen.contains("/mit▏"), "{screen}");
    app.press("ctrl-a");
    assert!(tui_common::render(&app.state, 120, 40).contains("/▏mit"));
    app.press("esc");

    // The command line: ctrl-w deletes the word before the cursor, not the last one.
    app.press(":");
    app.type_text("filter role=admin zed");
    app.press("left left left left ctrl-w");
    let Some(Overlay::CommandLine { input }) = app.state.overlays.last() else { panic!() };
    assert_eq!(input, "filter  zed", "the word before the cursor went, the space after it stays");
    app.press("esc");

    // The reason in the reset dialog; the arrows move between its buttons once they have the focus.
    app.press("R");
    app.type_text("lost phne");
    app.press("left left");
    app.type_text("o");
    assert_eq!(confirm_dialog(&app).reason, "lost phone");
    app.press("tab tab right");
    assert_eq!(confirm_dialog(&app).focus, ResetFocus::Confirm);
    app.press("left");
    assert_eq!(confirm_dialog(&app).focus, ResetFocus::Cancel);
    app.press("esc");

    // The login form.
    let mut login = App::new(&fx.service, options(true));
    login.type_text("ownr");
    login.press("left");
    login.type_text("e");
    let Screen::Login(form) = &login.state.screen else { panic!() };
    assert_eq!(form.username, "owner");
}

/// `:` completes commands with tab, and what `:sort` and `:filter` take.
#[test]
fn the_command_line_completes_with_tab() {
    let fx = fixture(30);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    let input = |app: &App| match app.state.overlays.last() {
        Some(Overlay::CommandLine { input }) => input.clone(),
        other => panic!("{other:?}"),
    };
    app.press(":");
    app.type_text("so");
    app.press("tab");
    assert_eq!(input(&app), "sort ");
    app.type_text("la");
    app.press("tab");
    assert_eq!(input(&app), "sort last_login");
    app.press("ctrl-u");
    app.type_text("r");
    app.press("tab");
    assert_eq!(input(&app), "re", "reset and refresh share re");
    assert!(tui_common::render(&app.state, 120, 40).contains("reset  refresh"), "the candidates are shown");
    app.press("ctrl-u");
    app.type_text("filter role=ad");
    app.press("tab");
    assert_eq!(input(&app), "filter role=admin");
    app.press("enter");
    assert_eq!(app.state.users.query().role, Some(Role::Admin));
}

/// A helpdesk is offered only what its role may do: no org enforcement toggle, no reset, enroll or
/// disable of an admin; asked anyway (by key), it is told why at once, before any dialog.
#[test]
fn only_what_the_role_may_do_is_offered() {
    let fx = fixture(300);
    let console = mfadmin::service::Actor::console("tui");
    let query = UserQuery { role: Some(Role::Helpdesk), status: Some(Status::Active), ..UserQuery::default() };
    let helpdesk = fx.service.list_users(&fx.owner, &query, NOW).unwrap().users[0].username.clone();
    let actor = fx.service.act_as(&console, &helpdesk, "tui").unwrap();
    let mut app = App::logged_in(&fx.service, &actor, options(true));
    // The orgs view: no toggle offered, and space says why instead of asking.
    app.press("tab tab");
    let screen = tui_common::render(&app.state, 120, 40);
    assert!(!screen.contains("enforce on/off") && !screen.contains("turns it on or off"), "{screen}");
    app.press("space");
    assert!(app.state.overlays.is_empty(), "no confirmation to refuse later");
    assert!(app.state.message.as_ref().unwrap().text.contains("only an owner or admin may change MFA enforcement"), "{:?}", app.state.message);
    // An admin in the table: reset, enroll and disable are refused before any dialog.
    app.press("tab r r");
    assert_eq!(app.state.users.cursor_user().unwrap().role, Role::Admin);
    app.press("R");
    assert!(app.state.overlays.is_empty(), "R opened {:?}", app.state.overlays);
    assert!(app.state.message.as_ref().unwrap().text.starts_with("a helpdesk cannot reset"), "{:?}", app.state.message);
    // The admin's detail pane offers only going back; asked anyway, it says why.
    app.press("enter");
    for key in ["R", "e", "d"] {
        app.state.message = None;
        app.press(key);
        assert!(matches!(app.state.overlays.as_slice(), [Overlay::Detail(_)]), "{key} opened {:?}", app.state.overlays);
        assert!(app.state.message.as_ref().unwrap().text.starts_with("a helpdesk cannot"), "{key}: {:?}", app.state.message);
    }
    let screen = tui_common::render(&app.state, 120, 40);
    let hints = screen.lines().find(|l| l.contains("esc back")).unwrap();
    assert!(!hints.contains("reset MFA") && !hints.contains("enroll now") && !hints.contains("disable"), "{hints}");
    // A member: the helpdesk may reset it, so it is offered.
    app.press("esc r r r r");
    assert_eq!(app.state.users.cursor_user().unwrap().role, Role::Member);
    app.press("enter");
    let screen = tui_common::render(&app.state, 120, 40);
    assert!(screen.lines().any(|l| l.contains("R reset MFA")), "{screen}");
}

/// The audit view pages through every event: past the last one loaded it asks for older ones,
/// until there are none; enter opens an event with its whole reason.
#[test]
fn the_audit_view_pages_through_every_event_and_opens_one() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    // Enough events for two pages and a bit: resets, each with a long reason.
    let reason = format!("replaced phones after the office move, ticket 4711; {}", "and a long note ".repeat(8));
    let mut made = 0;
    while fx.service.audit_verify(&fx.owner).unwrap().events < 2_300 {
        let users = fx.service.list_users(&fx.owner, &UserQuery { mfa: Some(MfaStatus::Enrolled), ..UserQuery::default() }, NOW).unwrap().users;
        let targets: Vec<String> = users.iter().map(|u| u.username.clone()).collect();
        fx.service.reset_mfa(&fx.owner, &targets, Some(&reason), false, NOW).unwrap();
        for u in &users {
            let e = fx.service.begin_enrollment(&fx.owner, &u.username, "mfadmin", NOW).unwrap();
            let code = tui_common::code_for(&e.secret_base32, NOW);
            fx.service.confirm_enrollment(&fx.owner, &u.username, &code, NOW).unwrap();
        }
        made += 1;
        assert!(made < 20);
    }
    let total = fx.service.audit_list(&fx.owner, &AuditQuery { limit: Some(usize::MAX), skip_actions: vec!["mfa.validate".into()], ..AuditQuery::default() }).unwrap().len();
    assert!(total > 2_000, "{total}");
    app.press("tab");
    assert_eq!(app.state.audit.events.len(), 1_000);
    assert!(tui_common::render(&app.state, 120, 40).contains("(newest 1000, more past the last)"));
    app.press("G G");
    assert_eq!(app.state.audit.events.len(), 2_000, "G at the end loads the next page");
    app.press("G G G G");
    assert_eq!(app.state.audit.events.len(), total, "every event, in the end");
    assert!(app.state.audit.all_loaded());
    let screen = tui_common::render(&app.state, 120, 40);
    assert!(screen.contains(&format!("all {total}")), "{screen}");
    // The newest reset, opened: its reason in full.
    let newest_reset = app.state.audit.events.iter().position(|e| e.action == "mfa.reset").unwrap();
    app.press("g");
    for _ in 0..newest_reset {
        app.press("j");
    }
    app.press("enter");
    let screen = tui_common::render(&app.state, 120, 40);
    assert!(screen.contains("reason  replaced phones after the office move, ticket 4711; and a long note"), "{screen}");
    assert_eq!(screen.matches("and a long note").count(), 8, "wrapped, not cut:\n{screen}");
    app.press("esc");
    assert_eq!(app.state.mode(), Mode::Audit);
    // At 80 columns the reason is shown rather than the target.
    let narrow = tui_common::render(&app.state, 80, 24);
    assert!(narrow.contains("REASON") && !narrow.contains("TARGET"), "{narrow}");
}

/// A locked factor's detail says when it unlocks by itself.
#[test]
fn a_locked_factor_shows_when_it_unlocks() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("m m m m m");
    assert_eq!(app.state.users.query().mfa, Some(MfaStatus::Locked));
    let user = app.state.users.cursor_user().expect("a locked user");
    app.press("enter");
    let Some(Overlay::Detail(pane)) = app.state.overlays.last() else { panic!() };
    let until = pane.detail.as_ref().unwrap().mfa_locked_until.clone().expect("locked until");
    let at = chrono::DateTime::parse_from_rfc3339(&until).unwrap().timestamp();
    assert!(at > NOW, "{until} is after now");
    let screen = tui_common::render(&app.state, 120, 40);
    let line = screen.lines().find(|l| l.contains(" MFA  locked")).unwrap_or_else(|| panic!("{}:\n{screen}", user.username));
    assert!(line.contains(&format!("unlocks by itself at {}", until.replace('T', " ").chars().take(16).collect::<String>())), "{line}");
}

/// A locked factor's detail offers `u` to unlock it (with a confirmation); the pane then shows it
/// enrolled, and a role that may not unlock is neither offered it nor let through.
#[test]
fn u_in_the_detail_unlocks_a_locked_factor_after_asking() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("m m m m m");
    assert_eq!(app.state.users.query().mfa, Some(MfaStatus::Locked));
    let user = app.state.users.cursor_user().expect("a locked user");
    app.press("enter");
    let screen = tui_common::render(&app.state, 120, 40);
    assert!(screen.lines().any(|l| l.contains("u unlock MFA")), "{screen}");
    app.press("u");
    let Some(Overlay::Confirm(c)) = app.state.overlays.last() else { panic!("no confirmation: {:?}", app.state.overlays) };
    assert!(c.lines[0].contains(&user.username), "{:?}", c.lines);
    app.press("enter");
    assert!(matches!(app.state.overlays.as_slice(), [Overlay::Detail(_)]), "enter on Cancel closes only the dialog");
    assert_eq!(fx.service.get_user(&fx.owner, &user.username, NOW).unwrap().user.mfa, MfaStatus::Locked, "cancelled");
    app.press("u tab enter");
    assert_eq!(fx.service.get_user(&fx.owner, &user.username, NOW).unwrap().user.mfa, MfaStatus::Enrolled);
    assert_eq!(detail_user(&app).mfa, MfaStatus::Enrolled, "the pane shows the change");
    let Some(Overlay::Detail(pane)) = app.state.overlays.last() else { panic!() };
    let detail = pane.detail.as_ref().unwrap();
    assert_eq!(detail.mfa_locked_until, None);
    assert_eq!(detail.recent_audit[0].action, "mfa.unlock");
    let screen = tui_common::render(&app.state, 120, 40);
    assert!(!screen.lines().any(|l| l.contains("u unlock MFA")), "no longer offered:\n{screen}");
    // Asked again, it says there is nothing to unlock, without a dialog.
    app.press("u");
    assert!(matches!(app.state.overlays.as_slice(), [Overlay::Detail(_)]), "{:?}", app.state.overlays);
    assert!(app.state.message.as_ref().unwrap().text.contains("is not locked"), "{:?}", app.state.message);

    // An auditor may not: not offered, and `u` says why at once.
    let console = mfadmin::service::Actor::console("tui");
    let query = UserQuery { role: Some(Role::Auditor), status: Some(Status::Active), ..UserQuery::default() };
    let auditor = fx.service.list_users(&fx.owner, &query, NOW).unwrap().users[0].username.clone();
    let actor = fx.service.act_as(&console, &auditor, "tui").unwrap();
    let mut app = App::logged_in(&fx.service, &actor, options(true));
    app.press("m m m m m");
    let locked = app.state.users.cursor_user().expect("a locked user the auditor sees");
    app.press("enter");
    let screen = tui_common::render(&app.state, 120, 40);
    assert!(!screen.lines().any(|l| l.contains("unlock MFA")), "{screen}");
    app.press("u");
    assert!(matches!(app.state.overlays.as_slice(), [Overlay::Detail(_)]), "{:?}", app.state.overlays);
    assert!(app.state.message.as_ref().unwrap().text.starts_with("an auditor cannot unlock"), "{:?}", app.state.message);
    assert_eq!(fx.service.get_user(&fx.owner, &locked.username, NOW).unwrap().user.mfa, MfaStatus::Locked);
}
