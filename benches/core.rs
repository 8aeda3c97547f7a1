//! Criterion benchmarks of the core (issue #7): a durable bulk reset of 100,000 users in one call,
//! each with its audit event; listing over 1,000,000 users (a text filter seen before, one never
//! seen — a full scan — and the next page by cursor). `BENCH_USERS` shrinks the listing store.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use mfadmin::auth::totp;
use mfadmin::app::Context;
use mfadmin::config::Config;
use mfadmin::domain::mfa::MfaState;
use mfadmin::service::{Actor, Service, UserQuery};
use std::sync::atomic::{AtomicU64, Ordering};

const NOW: i64 = 1_800_000_000;

/// A store in a fresh temporary directory with `count` generated users, all of them enrolled.
fn store_with(count: usize) -> (tempfile::TempDir, Service, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context { config: Config { data_dir: Some(dir.path().to_path_buf()), ..Config::default() } };
    let svc = ctx.create_service().unwrap();
    let console = Actor::console("bench");
    for (name, enforced, _) in mfadmin::demo::ORGS {
        svc.add_org(&console, name, enforced, NOW).unwrap();
    }
    let mut users = mfadmin::demo::generate(&svc, count, 1, NOW).unwrap();
    for u in &mut users {
        u.mfa = MfaState::Enrolled { secret: svc.seal_secret(u.id, &totp::new_secret()), enrolled_at: NOW, last_step: 0 };
    }
    let names = users.iter().map(|u| u.username.clone()).collect();
    svc.load_generated_users_into_new_store(&console, users, "bench users", NOW).unwrap();
    (dir, svc, names)
}

fn bulk_reset(c: &mut Criterion) {
    let mut group = c.benchmark_group("reset");
    group.sample_size(10);
    group.bench_function("bulk_100k_users_one_call_durable", |b| {
        b.iter_batched(
            || store_with(100_000),
            |(_dir, svc, names)| {
                let report = svc.reset_mfa(&Actor::console("bench"), &names, Some("bench"), false, NOW + 1).unwrap();
                assert_eq!(report.results.len(), 100_000);
                (_dir, svc)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn list(c: &mut Criterion) {
    let users = std::env::var("BENCH_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let (_dir, svc, _) = store_with(users);
    let console = Actor::console("bench");
    let smith = UserQuery { text: Some("smith".into()), limit: Some(50), ..UserQuery::default() };
    svc.list_users(&console, &smith, NOW).unwrap();
    let mut group = c.benchmark_group("list");
    group.sample_size(20);
    group.bench_function(format!("text_filter_{users}_users_page_of_50"), |b| {
        b.iter(|| assert!(svc.list_users(&console, &smith, NOW).unwrap().total > 0))
    });
    let second = UserQuery { cursor: svc.list_users(&console, &smith, NOW).unwrap().next_cursor, ..smith.clone() };
    group.bench_function(format!("text_filter_{users}_users_next_page_by_cursor"), |b| {
        b.iter(|| assert_eq!(svc.list_users(&console, &second, NOW).unwrap().users.len(), 50))
    });
    // A filter not asked recently: pieces of real names, more of them than the server keeps
    // answers for, asked in turn, so each one is a cache miss answered from the text index.
    let mut pieces: Vec<String> = include_str!("../assets/demo_first_names.txt")
        .lines()
        .chain(include_str!("../assets/demo_last_names.txt").lines())
        .map(|name| name.trim().to_lowercase())
        .flat_map(|name| [name.get(..3).map(str::to_string), name.get(1..5).map(str::to_string)])
        .flatten()
        .collect();
    pieces.sort();
    pieces.dedup();
    let next = AtomicU64::new(0);
    group.bench_function(format!("new_text_filter_{users}_users_name_pieces"), |b| {
        b.iter(|| {
            let text = pieces[next.fetch_add(1, Ordering::Relaxed) as usize % pieces.len()].clone();
            let query = UserQuery { text: Some(text), limit: Some(50), ..UserQuery::default() };
            svc.list_users(&console, &query, NOW).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bulk_reset, list);
criterion_main!(benches);
