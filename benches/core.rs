//! Criterion benchmarks of the core: a bulk reset of 10,000 users in one call (durable), and a
//! text-filtered listing over 100,000 users.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use mfadmin::auth::totp;
use mfadmin::cli::Context;
use mfadmin::config::Config;
use mfadmin::domain::mfa::MfaState;
use mfadmin::service::{Actor, Service, UserQuery};

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
    svc.insert_generated_users(&console, users, "bench users", NOW).unwrap();
    (dir, svc, names)
}

fn bulk_reset(c: &mut Criterion) {
    let mut group = c.benchmark_group("reset");
    group.sample_size(10);
    group.bench_function("bulk_10k_users_one_call", |b| {
        b.iter_batched(
            || store_with(10_000),
            |(_dir, svc, names)| {
                let report = svc.reset_mfa(&Actor::console("bench"), &names, Some("bench"), false, NOW + 1).unwrap();
                assert_eq!(report.results.len(), 10_000);
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn list_filter(c: &mut Criterion) {
    let (_dir, svc, _) = store_with(100_000);
    let console = Actor::console("bench");
    let mut group = c.benchmark_group("list");
    group.sample_size(20);
    group.bench_function("text_filter_100k_users", |b| {
        b.iter(|| {
            let query = UserQuery { text: Some("smith".into()), limit: Some(50), ..UserQuery::default() };
            let page = svc.list_users(&console, &query, NOW).unwrap();
            assert!(page.total > 0);
        })
    });
    group.finish();
}

criterion_group!(benches, bulk_reset, list_filter);
criterion_main!(benches);
