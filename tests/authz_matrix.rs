//! The authorization matrix: every route of `/openapi.json` (native and the vendor-compatible ones
//! it documents) × every caller (the five roles as users and as API keys, no token, a bad token) ×
//! every target (a user of each role in the caller's org, the caller itself, a user of another org),
//! answered by the router and compared with the role table of the design (README, DESIGN.md),
//! written out again below so that a change to `src/domain/policy.rs` that breaks it is caught here
//! too. A route the tables below do not know fails the test, so a new route cannot be left out.

mod figures;
mod http_support;

use axum::http::Method;
use http_support::{Harness, Reply};
use mfadmin::auth::token;
use mfadmin::domain::role::Role;
use mfadmin::store::{Change, Session, SessionKind};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use uuid::Uuid;

/// What the policy says should happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Done (2xx), or refused for the state of things (409, 400 "no MFA"), never for who asked.
    Allow,
    /// 403.
    Deny,
    /// 404: the target is not the caller's to see.
    Hide,
    /// 401.
    Unauth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    User(Role),
    Key(Role),
    NoToken,
    BadToken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Own(Role),
    /// The caller (for an API key: the user who created it).
    Myself,
    OtherOrg,
}

/// Routes anyone may call: logins and probes.
const PUBLIC: [&str; 9] = [
    "POST /api/v1/auth/login",
    "POST /api/v1/auth/mfa",
    "POST /api/v1/auth/enroll",
    "POST /api/v1/auth/enroll/confirm",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "POST /signinBody",
    "GET /openapi.json",
];

/// Routes that act on a target user.
const TARGETED: [&str; 14] = [
    "GET /api/v1/users/{id}",
    "PUT /api/v1/users/{id}/password",
    "GET /api/v1/users/{id}/detail",
    "PUT /api/v1/users/{id}/status",
    "POST /api/v1/users/{id}/mfa/enroll",
    "POST /api/v1/users/{id}/mfa/confirm",
    "POST /api/v1/users/{id}/mfa/reset",
    "POST /api/v1/users/{id}/mfa/unlock",
    "POST /api/v1/mfa/reset",
    "POST /mfa/reset",
    "POST /api/v1/users/{id}/reset-mfa",
    "PUT /user/users/mfa/reset",
    "PUT /api/v1/ManagedAccount/ResetMFA/{id}",
    "DELETE /api/v1/apikeys/{id}",
];

/// Routes without a target user (the org ones take the caller's org or another).
const UNTARGETED: [&str; 22] = [
    "POST /api/v1/auth/logout",
    "GET /api/v1/me",
    "GET /api/v1/users",
    "POST /api/v1/users",
    "POST /api/v1/users/import",
    "POST /api/v1/orgs",
    "GET /api/v1/audit/export",
    "POST /api/v1/me/mfa/enroll",
    "POST /api/v1/me/mfa/confirm",
    "POST /api/v1/me/mfa/reset",
    "GET /api/v1/orgs",
    "GET /api/v1/orgs/{org}",
    "PUT /api/v1/orgs/{org}/mfa",
    "GET /api/v1/audit",
    "GET /api/v1/audit/verify",
    "POST /api/v1/apikeys",
    "GET /api/v1/apikeys",
    "GET /api/v1/backup",
    "GET /api/v1/check",
    "PUT /user/org/mfa",
    "GET /user/users/me",
    "GET /user/users",
];

/// NPS's second login step takes the first step's challenge as its bearer: a login, not a caller.
const LOGIN_STEPS: [&str; 2] = ["POST /signin2fa", "POST /sigin2fa"];

/// The design's table: actor, then Member, Helpdesk, Auditor, Admin, Owner, self.
const RESET_TABLE: [(Role, [bool; 6]); 5] = [
    (Role::Owner, [true, true, true, true, true, true]),
    (Role::Admin, [true, true, true, true, false, true]),
    (Role::Helpdesk, [true, false, false, false, false, true]),
    (Role::Auditor, [false, false, false, false, false, false]),
    (Role::Member, [false, false, false, false, false, true]),
];

fn may_reset(actor: Role, target: Role, is_self: bool) -> bool {
    let row = RESET_TABLE.iter().find(|(r, _)| *r == actor).unwrap().1;
    let column = match target {
        _ if is_self => 5,
        Role::Member => 0,
        Role::Helpdesk => 1,
        Role::Auditor => 2,
        Role::Admin => 3,
        Role::Owner => 4,
    };
    row[column]
}

/// Everyone but Members reads the org's users; Owners, Admins and Auditors the audit log; Owners and
/// Admins change org settings and manage API keys; only an Owner manages an Owner.
fn reads_users(r: Role) -> bool {
    r != Role::Member
}
fn reads_audit(r: Role) -> bool {
    matches!(r, Role::Owner | Role::Admin | Role::Auditor)
}
fn administers(r: Role) -> bool {
    matches!(r, Role::Owner | Role::Admin)
}
/// Owners manage everyone, Admins only the roles below their own (Helpdesk, Auditor, Member), so
/// one Admin cannot take over another (issue 20, item 5); nobody their own account's status.
fn manages(actor: Role, target: Role) -> bool {
    match actor {
        Role::Owner => true,
        Role::Admin => matches!(target, Role::Helpdesk | Role::Auditor | Role::Member),
        _ => false,
    }
}

/// A session acting on its own password or second factor must show the current password, which
/// these callers (sessions put straight into the store, users without a password) never send; the
/// step-up that succeeds is tested in tests/hardening_data.rs.
const STEP_UP: Expect = Expect::Deny;

fn role_of(caller: Caller) -> Role {
    match caller {
        Caller::User(r) | Caller::Key(r) => r,
        _ => unreachable!(),
    }
}

/// The policy's answer for a reset of `target` by `caller` (creator of an API key: the Owner "o").
fn reset_rule(caller: Caller, target: Target) -> Expect {
    let role = role_of(caller);
    let (target_role, is_self) = match (caller, target) {
        (_, Target::OtherOrg) => return Expect::Hide,
        (Caller::User(_), Target::Myself) => return STEP_UP,
        (Caller::Key(_), Target::Myself) => (Role::Owner, false),
        (_, Target::Own(r)) => (r, false),
        _ => unreachable!(),
    };
    if may_reset(role, target_role, is_self) { Expect::Allow } else { Expect::Deny }
}

fn expect(route: &str, caller: Caller, target: Option<Target>) -> Expect {
    if matches!(caller, Caller::NoToken | Caller::BadToken) {
        return Expect::Unauth;
    }
    let role = role_of(caller);
    let is_user = matches!(caller, Caller::User(_));
    let allow = |yes: bool| if yes { Expect::Allow } else { Expect::Deny };
    let other_org = target == Some(Target::OtherOrg);
    match route {
        "GET /api/v1/users/{id}" | "GET /api/v1/users/{id}/detail" => match target.unwrap() {
            Target::OtherOrg => Expect::Hide,
            Target::Myself if is_user => Expect::Allow,
            _ if reads_users(role) => Expect::Allow,
            _ => Expect::Hide,
        },
        "DELETE /api/v1/apikeys/{id}" => {
            // The key belongs to the Owner "o" of the target's org.
            if !administers(role) {
                Expect::Deny
            } else if other_org {
                Expect::Hide
            } else {
                allow(role == Role::Owner)
            }
        }
        "PUT /api/v1/users/{id}/status" => match (caller, target.unwrap()) {
            (_, Target::OtherOrg) => Expect::Hide,
            (Caller::User(_), Target::Myself) => Expect::Deny,
            // An API key's "self" is the Owner who created it.
            (_, Target::Myself) => allow(manages(role, Role::Owner)),
            (_, Target::Own(r)) => allow(manages(role, r)),
        },
        // A password: one's own, or that of a user one manages.
        "PUT /api/v1/users/{id}/password" => match (caller, target.unwrap()) {
            (_, Target::OtherOrg) => Expect::Hide,
            (Caller::User(_), Target::Myself) => STEP_UP,
            (_, Target::Myself) => allow(manages(role, Role::Owner)),
            (_, Target::Own(r)) => allow(manages(role, r)),
        },
        // Enrolling follows the reset table, except that everyone may enroll themselves.
        "POST /api/v1/users/{id}/mfa/enroll" | "POST /api/v1/users/{id}/mfa/confirm" => match (caller, target.unwrap()) {
            (Caller::User(_), Target::Myself) => Expect::Allow,
            (_, t) => reset_rule(caller, t),
        },
        // Unlocking follows the reset table for someone else; nobody unlocks their own factor.
        "POST /api/v1/users/{id}/mfa/unlock" => match (caller, target.unwrap()) {
            (_, Target::OtherOrg) => Expect::Hide,
            (Caller::User(_), Target::Myself) => Expect::Deny,
            (_, Target::Myself) => allow(may_reset(role, Role::Owner, false)),
            (_, Target::Own(r)) => allow(may_reset(role, r, false)),
        },
        // The vendor routes keep to their documents too: only an Administrator (Owner or Admin)
        // resets someone else ([compat] role_table = "vendor", the default).
        "POST /mfa/reset" | "POST /api/v1/users/{id}/reset-mfa" | "PUT /user/users/mfa/reset" | "PUT /api/v1/ManagedAccount/ResetMFA/{id}" => {
            let someone_else = !matches!((caller, target.unwrap()), (Caller::User(_), Target::Myself));
            match reset_rule(caller, target.unwrap()) {
                Expect::Allow if someone_else && !administers(role) => Expect::Deny,
                rule => rule,
            }
        }
        r if TARGETED.contains(&r) => reset_rule(caller, target.unwrap()),
        "POST /api/v1/auth/logout" | "GET /api/v1/me" | "GET /api/v1/users" | "GET /api/v1/orgs" => Expect::Allow,
        "POST /api/v1/me/mfa/enroll" | "POST /api/v1/me/mfa/confirm" => allow(is_user),
        "POST /api/v1/me/mfa/reset" => if is_user && may_reset(role, role, true) { STEP_UP } else { Expect::Deny },
        "GET /api/v1/orgs/{org}" => if other_org { Expect::Hide } else { Expect::Allow },
        "PUT /api/v1/orgs/{org}/mfa" => if other_org { Expect::Hide } else { allow(administers(role)) },
        "PUT /user/org/mfa" => allow(administers(role)),
        "GET /api/v1/audit" | "GET /api/v1/audit/verify" | "GET /api/v1/audit/export" => allow(reads_audit(role)),
        // Adding a member (one at a time, or from CSV) is for those who manage members.
        "POST /api/v1/users" | "POST /api/v1/users/import" => allow(manages(role, Role::Member)),
        // Orgs are created by the console operator alone.
        "POST /api/v1/orgs" => Expect::Deny,
        "POST /api/v1/apikeys" => allow(is_user && administers(role)),
        "GET /api/v1/apikeys" => allow(administers(role)),
        // A backup holds every org; this store has two, so only the console may (see src/backup.rs).
        "GET /api/v1/backup" => Expect::Deny,
        // The store check is the console operator's (over the server's local socket), no role's.
        "GET /api/v1/check" => Expect::Deny,
        // An API key answers with the user who created it; the list is the org's (a Member's: itself).
        "GET /user/users/me" | "GET /user/users" => Expect::Allow,
        other => panic!("no rule for {other}"),
    }
}

/// What the answer means. Vendor routes answer "no MFA to reset" with 400 (EntryGuard, NPS).
fn observed(reply: &Reply, route: &str) -> Expect {
    if route == "POST /api/v1/mfa/reset" && reply.status.is_success() {
        return match reply.json()["results"][0]["outcome"].as_str().unwrap() {
            "reset" | "skipped" => Expect::Allow,
            "denied" => Expect::Deny,
            "not_found" => Expect::Hide,
            other => panic!("outcome {other}"),
        };
    }
    match reply.status.as_u16() {
        200..=299 | 409 => Expect::Allow,
        400 if route.contains("reset-mfa") || route.contains("ResetMFA") => Expect::Allow,
        401 => Expect::Unauth,
        403 => Expect::Deny,
        404 => Expect::Hide,
        s => panic!("{route}: unexpected {s}: {}", reply.text()),
    }
}

struct World {
    h: Harness,
    /// Target users by role in Acme, and one in Globex.
    targets: Vec<(Role, Uuid)>,
    other: Uuid,
    /// The actors (users of each role in Acme).
    actors: Vec<(Role, Uuid)>,
}

impl World {
    fn new() -> World {
        let h = Harness::new();
        h.add_org("Acme", false);
        h.add_org("Globex", false);
        let mut actors = Vec::new();
        let mut targets = Vec::new();
        for role in Role::ALL {
            let a = h.add_user("Acme", &format!("a-{role}"), role, false);
            actors.push((role, a.id));
            let t = h.add_user("Acme", &format!("t-{role}"), role, false);
            targets.push((role, t.id));
        }
        let other = h.add_user("Globex", "x-member", Role::Member, false).id;
        h.add_user("Globex", "x-owner", Role::Owner, false);
        World { h, targets, other, actors }
    }

    fn actor_id(&self, role: Role) -> Uuid {
        self.actors.iter().find(|(r, _)| *r == role).unwrap().1
    }

    /// A fresh token for `caller`: a session put straight into the store for users, a new API key
    /// (created by the Owner "a-owner") for keys.
    fn token(&self, caller: Caller) -> Option<String> {
        let svc = self.h.service();
        let now = self.h.now();
        match caller {
            Caller::NoToken => None,
            Caller::BadToken => Some("0".repeat(64)),
            Caller::User(role) => {
                let t = token::new_token();
                let session = Session::new(self.actor_id(role), SessionKind::Session, now, now + 3600, "http");
                svc.store().commit(&[Change { sessions_put: vec![(token::hash(&t), session)], ..Change::default() }]).unwrap();
                Some(t)
            }
            Caller::Key(role) => {
                // Each key its own name: a user's keys are told apart by name.
                static KEYS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
                let name = format!("matrix {}", KEYS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                let owner = svc.act_as(&Harness::console(), "a-owner", "test").unwrap();
                Some(svc.create_api_key(&owner, &name, role, now).unwrap().0)
            }
        }
    }

    fn target_id(&self, caller: Caller, target: Target) -> Uuid {
        match (target, caller) {
            (Target::Own(role), _) => self.targets.iter().find(|(r, _)| *r == role).unwrap().1,
            (Target::OtherOrg, _) => self.other,
            (Target::Myself, Caller::User(role)) => self.actor_id(role),
            (Target::Myself, _) => self.actor_id(Role::Owner),
        }
    }

    /// Every user back to an enrolled factor, Acme and Globex back to "not enforced".
    fn reset_state(&self) {
        let svc = self.h.service();
        let console = Harness::console();
        let mut ids: Vec<Uuid> = self.actors.iter().chain(&self.targets).map(|(_, id)| *id).collect();
        ids.push(self.other);
        self.h.advance(30);
        for id in ids {
            let u = svc.store().get_user(id).unwrap().unwrap();
            if !matches!(u.mfa, mfadmin::domain::mfa::MfaState::Enrolled { .. }) {
                self.h.enroll(&u.username);
            }
        }
        for org in ["Acme", "Globex"] {
            svc.set_mfa_enforced(&console, Some(org), false, self.h.now()).unwrap();
        }
    }

    /// A key of the Owner of the target's org, for the revoke route.
    fn victim_key(&self, target: Target) -> String {
        let svc = self.h.service();
        let console = Harness::console();
        let owner = if target == Target::OtherOrg { "x-owner" } else { "a-owner" };
        let as_owner = svc.act_as(&console, owner, "test").unwrap();
        static VICTIMS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!("victim {}", VICTIMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        svc.create_api_key(&as_owner, &name, Role::Member, self.h.now()).unwrap();
        let keys = svc.list_api_keys(&console, self.h.now()).unwrap();
        keys.into_iter().find(|k| k.owner == owner && k.name == name).unwrap().id
    }

    async fn call(&self, route: &str, caller: Caller, target: Option<Target>) -> Reply {
        let (method, path) = route.split_once(' ').unwrap();
        let token = self.token(caller);
        let id = target.map(|t| self.target_id(caller, t));
        let number = id.map(|id| self.h.service().store().get_user(id).unwrap().unwrap().number);
        let org = if target == Some(Target::OtherOrg) { "Globex" } else { "Acme" };
        let mut path = path.replace("{org}", org);
        if path.contains("/apikeys/{id}") {
            path = path.replace("{id}", &self.victim_key(target.unwrap()));
        } else if let Some(id) = id {
            path = path.replace("{id}", &id.to_string());
        }
        let body = match route {
            "POST /api/v1/users/{id}/mfa/reset" | "POST /api/v1/me/mfa/reset" | "POST /api/v1/users/{id}/mfa/unlock" => {
                Some(json!({"reason": "matrix"}))
            }
            "POST /api/v1/mfa/reset" => Some(json!({"ids": [id.unwrap()], "reason": "matrix"})),
            "POST /mfa/reset" => Some(json!({"resetUserId": id.unwrap()})),
            "PUT /user/users/mfa/reset" => Some(json!({"ids": [number.unwrap()]})),
            "PUT /api/v1/orgs/{org}/mfa" => Some(json!({"enforced": false})),
            "PUT /user/org/mfa" => Some(json!({"isMfaEnforced": false})),
            "POST /api/v1/me/mfa/confirm" | "POST /api/v1/users/{id}/mfa/confirm" => Some(json!({"code": "000000"})),
            // Enabling an active user changes nothing that later cases depend on.
            "PUT /api/v1/users/{id}/status" => Some(json!({"status": "active"})),
            "POST /api/v1/apikeys" => Some(json!({"name": "made-in-matrix", "role": "member"})),
            // Once made, the same user again is a 409: allowed, refused for the state of things.
            "POST /api/v1/users" => Some(json!({"username": "made-in-matrix", "email": "made@acme.example", "org": "Acme"})),
            "PUT /api/v1/users/{id}/password" => Some(json!({"password": "a matrix password"})),
            "POST /api/v1/orgs" => Some(json!({"name": "Initech"})),
            "POST /api/v1/users/import" => {
                let csv = "username,email,display_name,role,org\nmatrix-imp,imp@acme.example,Imp,member,Acme\n";
                let mut req = axum::http::Request::post(format!("{path}?check_only=true")).header("content-type", "text/csv");
                if let Some(t) = &token {
                    req = req.header("authorization", format!("Bearer {t}"));
                }
                return self.h.send(req.body(axum::body::Body::from(csv)).unwrap()).await;
            }
            "POST /api/v1/users/{id}/reset-mfa" | "PUT /api/v1/ManagedAccount/ResetMFA/{id}" => None,
            _ if method == "GET" || method == "DELETE" => None,
            _ => None,
        };
        let method: Method = method.parse().unwrap();
        self.h.call(method, &path, token.as_deref(), body).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_every_caller_every_target_agrees_with_the_policy() {
    let w = World::new();
    // Every documented route, native and compatible, must be in the table, and nothing else.
    let doc = w.h.get("/openapi.json", None).await.ok();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                documented.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    let known: BTreeSet<String> =
        PUBLIC.iter().chain(&TARGETED).chain(&UNTARGETED).chain(&LOGIN_STEPS).map(|s| s.to_string()).collect();
    let unknown: Vec<_> = documented.difference(&known).collect();
    assert!(unknown.is_empty(), "routes the matrix does not know (add them to a table and give them a rule): {unknown:?}");
    let stale: Vec<_> = known.difference(&documented).filter(|r| r.as_str() != "GET /openapi.json").collect();
    assert!(stale.is_empty(), "routes in the matrix that are not served: {stale:?}");

    let mut callers = vec![Caller::NoToken, Caller::BadToken];
    for role in Role::ALL {
        callers.push(Caller::User(role));
        callers.push(Caller::Key(role));
    }
    let mut targets: Vec<Target> = Role::ALL.iter().map(|r| Target::Own(*r)).collect();
    targets.extend([Target::Myself, Target::OtherOrg]);

    let mut cases = 0usize;
    let mut disagreements = Vec::new();
    let mut check = |route: &str, caller: Caller, target: Option<Target>, reply: &Reply| {
        cases += 1;
        let want = expect(route, caller, target);
        let got = observed(reply, route);
        if want != got {
            disagreements.push(format!("{route} by {caller:?} on {target:?}: policy says {want:?}, got {} {}", reply.status, reply.text()));
        }
    };
    for route in TARGETED {
        for &caller in &callers {
            for &target in &targets {
                w.reset_state();
                let reply = w.call(route, caller, Some(target)).await;
                check(route, caller, Some(target), &reply);
            }
        }
    }
    for route in UNTARGETED {
        let org_route = route.contains("{org}");
        for &caller in &callers {
            let places: Vec<Option<Target>> = if org_route { vec![None, Some(Target::OtherOrg)] } else { vec![None] };
            for target in places {
                w.reset_state();
                let reply = w.call(route, caller, target).await;
                check(route, caller, target, &reply);
            }
        }
    }
    assert!(disagreements.is_empty(), "{} of {cases} cases disagree with the policy:\n{}", disagreements.len(), disagreements.join("\n"));
    figures::report(&format!("authorization matrix: {cases} cases over {} routes, 100% agree with the role table", TARGETED.len() + UNTARGETED.len()));
    let _: Value = doc;
}
