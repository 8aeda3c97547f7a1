//! What the console draws, as insta snapshots from ratatui's TestBackend: every screen at 120×40
//! and 80×24, and without colour (text plus a map of reverse/bold/underline, so marks and focus
//! are visibly not colour alone). Fixed clock and seed: the snapshots are deterministic.

mod tui_common;

use mfadmin::auth::totp;
use mfadmin::service::Enrollment;
use mfadmin::tui::action::Action;
use mfadmin::tui::state::State;
use tui_common::{fixture, options, render, render_monochrome, App};

/// Snapshot `state` at 120×40, at 80×24, and in monochrome at 120×40.
fn snapshots(name: &str, state: &State) {
    insta::assert_snapshot!(format!("{name}_120x40"), render(state, 120, 40));
    insta::assert_snapshot!(format!("{name}_80x24"), render(state, 80, 24));
    let mut mono = state.clone();
    mono.theme.color = false;
    insta::assert_snapshot!(format!("{name}_mono"), render_monochrome(&mono, 120, 40));
}

#[test]
fn table_with_marks() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("space space j j space k");
    snapshots("table_with_marks", &app.state);
}

#[test]
fn filter_active() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("m space /");
    app.type_text("an");
    snapshots("filter_active", &app.state);
}

#[test]
fn confirm_dialog() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("m a R");
    app.type_text("phones replaced after the office move");
    app.press("tab");
    app.type_text("1");
    snapshots("confirm_dialog", &app.state);
}

#[test]
fn confirm_dialog_fresh_with_cancel_focused() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("m space space space R");
    snapshots("confirm_dialog_fresh", &app.state);
}

#[test]
fn result_screen() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("space space space space R");
    app.type_text("ticket 4711");
    app.press("tab tab enter d");
    snapshots("result_screen", &app.state);
}

#[test]
fn help_overlay() {
    let fx = fixture(40);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("?");
    snapshots("help_overlay", &app.state);
    app.press("ctrl-d");
    insta::assert_snapshot!("help_overlay_scrolled_80x24", render(&app.state, 80, 24));
}

#[test]
fn enrollment_qr() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("m m m enter");
    app.press_only("e");
    // A fixed secret (RFC 6238's test seed) so the QR code is the same on every run.
    let secret = b"12345678901234567890";
    let username = app.cursor_name();
    let enrollment = Enrollment {
        otpauth_uri: totp::otpauth_uri(secret, "mfadmin", &username),
        secret_base32: totp::base32(secret),
        username,
    };
    app.apply(Action::EnrollmentBegun(Ok(enrollment)));
    app.type_text("28");
    snapshots("enrollment_qr", &app.state);
}

#[test]
fn detail_pane() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("space R");
    app.type_text("lost phone");
    app.press("tab tab enter esc k enter");
    snapshots("detail_pane", &app.state);
}

#[test]
fn login_screen() {
    let fx = fixture(10);
    let mut app = App::new(&fx.service, options(true));
    app.type_text("owner");
    app.press("tab");
    app.type_text("secret");
    snapshots("login_screen", &app.state);
}

#[test]
fn org_view() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("tab tab");
    snapshots("org_view", &app.state);
}

#[test]
fn compact_layout_below_80x24() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("space space m /");
    app.type_text("ar");
    insta::assert_snapshot!("compact_60x16", render(&app.state, 60, 16));
    // Nothing panics at any size, on any screen.
    for keys in ["enter", "? ", "R"] {
        let mut state = app.state.clone();
        let mut app2 = App::new(&fx.service, options(true));
        app2.state = state.clone();
        app2.press("esc esc");
        app2.press(keys);
        state = app2.state;
        for (w, h) in [(1, 1), (10, 3), (20, 5), (40, 10), (79, 23), (300, 100)] {
            render(&state, w, h);
        }
    }
}

#[test]
fn unused_factor_filter() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("u u");
    snapshots("unused_filter", &app.state);
}

#[test]
fn audit_view_with_validations_hidden_and_shown() {
    use mfadmin::service::{ValidateRequest, Validator};
    let fx = fixture(40);
    for name in ["owner", "nobody"] {
        let req = ValidateRequest { user: name.into(), realm: Some("Acme".into()), pass: "000000".into(), client: Some("vpn-gw1".into()), ..Default::default() };
        fx.service.validate(&Validator::address("10.0.0.9"), &req, tui_common::NOW).unwrap();
    }
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("tab");
    insta::assert_snapshot!("audit_validations_hidden_120x40", render(&app.state, 120, 40));
    insta::assert_snapshot!("audit_validations_hidden_80x24", render(&app.state, 80, 24));
    app.press("V");
    insta::assert_snapshot!("audit_validations_shown_120x40", render(&app.state, 120, 40));
    insta::assert_snapshot!("audit_validations_shown_80x24", render(&app.state, 80, 24));
}

/// Two user names that differ only at the end, both long: neither is cut at 120 or 80 columns
/// (other columns give way, and what they cut ends in …), and the cursor row's user name, name
/// and email are in full at the foot of the table.
#[test]
fn long_user_names_are_never_cut() {
    use mfadmin::domain::role::Role;
    use mfadmin::service::NewUser;
    let fx = fixture(40);
    for name in ["abigail.sullivan", "abigail.sullivan136"] {
        let user = NewUser {
            username: name.into(),
            email: format!("{name}@a-rather-long-domain.acme.example"),
            display_name: "Abigail Sullivan-Montgomery".into(),
            role: Role::Member,
            org: "Acme".into(),
            password: None,
        };
        fx.service.add_user(&mfadmin::service::Actor::console("tui"), user, tui_common::NOW).unwrap();
    }
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("/");
    app.type_text("abigail.sul");
    app.press("enter j");
    assert_eq!(app.cursor_name(), "abigail.sullivan136");
    for (w, h) in [(120, 40), (80, 24)] {
        let screen = render(&app.state, w, h);
        let rows: Vec<&str> = screen.lines().filter(|l| l.contains("abigail.sullivan")).collect();
        assert!(rows.iter().any(|l| l.contains("abigail.sullivan ")), "{w}x{h}:\n{screen}");
        assert!(rows.iter().any(|l| l.contains("abigail.sullivan136 ")), "{w}x{h}:\n{screen}");
        let foot = screen.lines().find(|l| l.contains("└ ▶")).unwrap_or_else(|| panic!("no cursor line at {w}x{h}:\n{screen}"));
        assert!(foot.contains("abigail.sullivan136  Abigail Sullivan-Montgomery"), "{foot}");
        if w == 120 {
            assert!(foot.contains("<abigail.sullivan136@a-rather-long-domain.acme.example>"), "{foot}");
        }
        // Whatever is cut says so.
        assert!(screen.contains('…'), "{screen}");
    }
    snapshots("long_user_names", &app.state);
}

/// Marks the filter hides are named in the reset dialog, and so are the admin's own account and
/// a whole org.
#[test]
fn reset_dialog_names_hidden_marks_and_warns_about_self_and_whole_orgs() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("space space space /");
    app.type_text("owner");
    app.press("enter space R");
    let screen = render(&app.state, 120, 40);
    assert!(screen.contains("! 3 of the 4 are hidden by the filter (marked earlier; U clears marks)"), "{screen}");
    assert!(screen.contains("! this includes you (owner): your own second factor is reset too"), "{screen}");
    assert!(!screen.contains("every user of"), "{screen}");
    snapshots("confirm_dialog_warnings", &app.state);
    app.press("esc esc a R");
    let screen = render(&app.state, 120, 40);
    assert!(screen.contains("! this is every user of acme"), "{screen}");
    assert!(!screen.contains("hidden by the filter"), "{screen}");
}

/// A bulk reset asked to stop: the bar counts what will be reset, and the question waits with
/// Keep going focused.
#[test]
fn progress_asks_before_stopping() {
    let fx = fixture(300);
    let mut app = App::logged_in(&fx.service, &fx.owner, options(true));
    app.press("m a R");
    let will = match app.state.overlays.last() {
        Some(mfadmin::tui::state::Overlay::ConfirmReset(d)) => d.will_reset().unwrap(),
        other => panic!("{other:?}"),
    };
    app.type_text("laptop fleet swap");
    app.press("tab");
    app.type_text(&will.to_string());
    app.press_only("tab tab enter");
    app.apply(Action::ResetProgress { reset: 40 });
    app.press("esc");
    snapshots("progress_stop_question", &app.state);
}
