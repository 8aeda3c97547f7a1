//! Demo data: realistic users across orgs, roles and MFA states, generated from a seed.

use crate::auth::{password, token, totp};
use crate::domain::mfa::{Lockout, MfaState, SealedSecret};
use crate::domain::role::Role;
use crate::domain::user::{Status, User};
use crate::domain::Timestamp;
use crate::error::Result;
use crate::service::{Actor, Service};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::HashSet;
use uuid::Uuid;

/// The demo store's owner and its password (printed by `mfadmin demo`; a demo store is not for real use).
pub const OWNER: &str = "owner";
pub const PASSWORD: &str = "demo-password";
/// Demo orgs: name, MFA enforced, share of the users.
pub const ORGS: [(&str, bool, u32); 3] = [("Acme", true, 6), ("Globex", false, 3), ("Initech", true, 1)];

const FIRST: &str = include_str!("../assets/demo_first_names.txt");
const LAST: &str = include_str!("../assets/demo_last_names.txt");

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// Generate `count` users. Every generated user has the demo password (hashed once, shared).
/// User names already in the store are never produced.
pub fn generate(service: &Service, count: usize, seed: u64, now: Timestamp) -> Result<Vec<User>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let first: Vec<&str> = FIRST.lines().filter(|l| !l.is_empty()).collect();
    let last: Vec<&str> = LAST.lines().filter(|l| !l.is_empty()).collect();
    let shared_hash = password::hash(PASSWORD);
    let weight_total: u32 = ORGS.iter().map(|o| o.2).sum();
    let mut taken: HashSet<String> = HashSet::with_capacity(count);
    let mut drafts: Vec<(User, Secret, Vec<[u8; 16]>)> = Vec::with_capacity(count);
    let mut serial = service.store().user_count()? as u64;
    while drafts.len() < count {
        let (f, l) = (*pick(&mut rng, &first), *pick(&mut rng, &last));
        let mut username = format!("{}.{}", f.to_lowercase(), l.to_lowercase());
        if taken.contains(&username) || service.store().user_id_by_name(&username)?.is_some() {
            serial += 1;
            username = format!("{username}{serial}");
            if taken.contains(&username) || service.store().user_id_by_name(&username)?.is_some() {
                continue;
            }
        }
        let mut w = rng.random_range(0..weight_total);
        let (org, enforced, _) = *ORGS.iter().find(|o| {
            let hit = w < o.2;
            w = w.saturating_sub(o.2);
            hit
        }).unwrap_or(&ORGS[0]);
        let role = match rng.random_range(0..1000) {
            0..=19 => Role::Admin,
            20..=69 => Role::Helpdesk,
            70..=89 => Role::Auditor,
            _ => Role::Member,
        };
        let id = Uuid::from_bytes(rng.random());
        let created_at = now - rng.random_range(86_400..3 * 365 * 86_400);
        let enrolled_at = created_at + rng.random_range(0..86_400 * 30);
        // Secrets and code hashes are the costly part: they are made afterwards, on every core.
        let unsealed = || MfaState::Pending { secret: SealedSecret(Vec::new()), started_at: 0 };
        let codes = |rng: &mut StdRng| -> Vec<[u8; 16]> { (0..rng.random_range(3..=10)).map(|_| rng.random()).collect() };
        let roll = rng.random_range(0..100);
        let (mfa, lockout, recovery, mfa_enrolled_at, mfa_reset_at) = match roll {
            0..=69 => (Secret::Enrolled(enrolled_at), Lockout::default(), codes(&mut rng), Some(enrolled_at), None),
            70..=74 => {
                let locked = Lockout { failures: 6, locked_until: Some(now + rng.random_range(60..3600)) };
                (Secret::Enrolled(enrolled_at), locked, codes(&mut rng), Some(enrolled_at), None)
            }
            75..=79 => (Secret::Pending(now - 3600), Lockout::default(), vec![], None, None),
            80..=89 => (Secret::None, Lockout::default(), vec![], Some(enrolled_at), Some(now - rng.random_range(3600..86_400 * 60))),
            _ => (Secret::None, Lockout::default(), vec![], None, None),
        };
        taken.insert(username.clone());
        // In the generator's order of old, so that a seed gives the users it gave.
        let status = if rng.random_range(0..100) < 3 { Status::Disabled } else { Status::Active };
        let last_login_at = (rng.random_range(0..10) > 0).then(|| now - rng.random_range(60..86_400 * 90));
        // When the factor last passed a check, from the id's bits rather than the generator, so
        // every other field stays as it was for a seed: one in eight never used, one in eight
        // used long ago (for the "unused for" filters), the rest at the last login.
        // A login after the enrollment used the factor, so it is no later than the last use.
        let spread = id.as_bytes()[0];
        let (last_login_at, mfa_last_used_at, mfa_last_client) = match (&mfa, spread % 8) {
            (Secret::Enrolled(at), 0) => (last_login_at.filter(|t| t < at), None, None),
            (Secret::Enrolled(at), 1) => {
                let used = at + (now - at) / 3;
                (last_login_at.map(|t| if t < *at { t } else { t.min(used) }), Some(used), Some("vpn-gw1"))
            }
            (Secret::Enrolled(at), _) => {
                (last_login_at, Some(last_login_at.unwrap_or(*at).max(*at)), Some(["vpn-gw1", "ssh-bastion", "mfadmin"][spread as usize % 3]))
            }
            _ => (last_login_at, None, None),
        };
        let user = User {
            id,
            number: 0,
            email: format!("{username}@{}.example", org.to_lowercase()),
            display_name: format!("{f} {l}"),
            username,
            org: org.to_lowercase(),
            role,
            status,
            password_hash: Some(shared_hash.clone()),
            mfa: if matches!(mfa, Secret::None) { MfaState::after_reset(enforced) } else { unsealed() },
            lockout,
            recovery_codes: Vec::new(),
            created_at,
            last_login_at,
            mfa_enrolled_at,
            mfa_last_used_at,
            mfa_last_client: mfa_last_client.map(str::to_string),
            mfa_reset_at,
            version: 0,
        };
        drafts.push((user, mfa, recovery));
    }
    let mut users: Vec<User> = Vec::with_capacity(count);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = drafts.len().div_ceil(cores).max(1);
    let mut parts = Vec::with_capacity(cores);
    while !drafts.is_empty() {
        let rest = drafts.split_off(per_thread.min(drafts.len()));
        parts.push(std::mem::replace(&mut drafts, rest));
    }
    std::thread::scope(|scope| {
        let parts: Vec<_> = parts
            .into_iter()
            .map(|part| scope.spawn(move || part.into_iter().map(|d| finish(service, d)).collect::<Vec<User>>()))
            .collect();
        for part in parts {
            users.extend(part.join().expect("a demo generator thread panicked"));
        }
    });
    Ok(users)
}

/// The factor a generated user gets, before its secret is made.
#[derive(Clone, Copy)]
enum Secret {
    None,
    Enrolled(Timestamp),
    Pending(Timestamp),
}

/// A generated user with its sealed secret and hashed recovery codes.
fn finish(service: &Service, (mut user, secret, codes): (User, Secret, Vec<[u8; 16]>)) -> User {
    let id = user.id;
    let sealed = || service.seal_secret(id, &totp::new_secret());
    match secret {
        Secret::None => {}
        Secret::Enrolled(enrolled_at) => user.mfa = MfaState::Enrolled { secret: sealed(), enrolled_at, last_step: 0 },
        Secret::Pending(started_at) => user.mfa = MfaState::Pending { secret: sealed(), started_at },
    }
    user.recovery_codes = codes.iter().map(|c| token::hash(&hex::encode(c))).collect();
    user
}

/// Where [`populate`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// A store in use: every batch of users is one transaction.
    ExistingStore,
    /// A store this run has just created: written tree by tree (see [`Service::load_generated_users_into_new_store`]).
    NewStore,
}

/// Fill the store with `count` generated users, creating the demo orgs first where missing.
pub fn populate(service: &Service, actor: &Actor, count: usize, seed: u64, now: Timestamp, fill: Fill) -> Result<usize> {
    for (name, enforced, _) in ORGS {
        if service.store().get_org(&name.to_lowercase())?.is_none() {
            service.add_org(actor, name, enforced, now)?;
        }
    }
    let users = generate(service, count, seed, now)?;
    match fill {
        Fill::ExistingStore => service.insert_generated_users(actor, users, "demo users", now),
        Fill::NewStore => service.load_generated_users_into_new_store(actor, users, "demo users", now),
    }
}
