//! Reaching the PostgreSQL database the store tests run against (see tests/pg/run.sh).

/// The test database's connection settings, if one was given.
pub fn pg_settings() -> Option<postgres::Config> {
    if let Ok(url) = std::env::var("MFADMIN_TEST_PG_URL") {
        return Some(url.parse().expect("MFADMIN_TEST_PG_URL is a PostgreSQL connection string"));
    }
    let host = std::env::var("PGHOST").ok()?;
    let mut config = postgres::Config::new();
    config.host(&host);
    if let Ok(port) = std::env::var("PGPORT") {
        config.port(port.parse().expect("PGPORT is a number"));
    }
    config.user(&std::env::var("PGUSER").unwrap_or_else(|_| "postgres".into()));
    if let Ok(password) = std::env::var("PGPASSWORD") {
        config.password(password);
    }
    config.dbname(&std::env::var("PGDATABASE").unwrap_or_else(|_| "postgres".into()));
    Some(config)
}
