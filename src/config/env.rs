//! `MFADMIN_*` variables: every setting has one, generated from the settings themselves (walked
//! as serialized), so a setting added to [`Config`] is reachable from the environment with no list
//! to keep up to date.
//!
//! `[section] key` is `MFADMIN_SECTION_KEY` (`store.cache_mb` is `MFADMIN_STORE_CACHE_MB`), a
//! top-level key is `MFADMIN_KEY`; the keys of `[server]` and `[reset]` may also be named without
//! their section (`MFADMIN_LISTEN`, `MFADMIN_REASON_REQUIRED`), as they always could.

use super::Config;
use serde_json::{Map, Value};

/// Sections whose keys also answer to their short name, `MFADMIN_<KEY>`.
const SHORT_SECTIONS: [&str; 2] = ["server", "reset"];

/// `MFADMIN_*` variables that are not settings but are read elsewhere: by the command line (the
/// config file, the remote token), the console, the packaging and CI scripts, and the tests.
const NOT_SETTINGS: [&str; 20] = [
    "MFADMIN_CONFIG",
    "MFADMIN_TOKEN",
    "MFADMIN_TUI_TIMINGS",
    "MFADMIN_BIN",
    "MFADMIN_BINARY",
    "MFADMIN_INSTALL_TOOLS",
    "MFADMIN_PLAIN_BUILD",
    "MFADMIN_OSV",
    "MFADMIN_ST",
    "MFADMIN_DEBROOT_CACHE",
    "MFADMIN_DEBIAN_SUITE",
    "MFADMIN_DEBIAN_MIRROR",
    "MFADMIN_SCHEMATHESIS_EXAMPLES",
    "MFADMIN_CRASH_KILLS",
    "MFADMIN_CRASH_SEED",
    "MFADMIN_CONCURRENCY_SECS",
    "MFADMIN_CONCURRENCY_SEED",
    "MFADMIN_E2E_WAIT_SECS",
    "MFADMIN_CI_VENV",
    "MFADMIN_TEST_BIN",
];

/// Settings for which an empty value is itself a setting, as in the file (`socket = ""`: no
/// socket); for any other setting that has no default, an empty variable unsets it.
const EMPTY_IS_A_VALUE: [&str; 1] = ["server.socket"];

/// Prefixes of families of such variables (the tests' PostgreSQL, CI's own).
const NOT_SETTINGS_PREFIXES: [&str; 2] = ["MFADMIN_TEST_", "MFADMIN_CI_"];

/// One setting as the environment names it.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvKey {
    /// `MFADMIN_STORE_CACHE_MB`.
    pub name: String,
    /// `["store", "cache_mb"]`.
    pub path: Vec<String>,
    /// The default value, which tells how to read the variable's text.
    default: Value,
}

impl EnvKey {
    /// The setting as the config file writes it: `store.cache_mb`.
    pub fn dotted(&self) -> String {
        self.path.join(".")
    }
}

/// Every setting and its variable, then the short names, in that order (a short name never
/// shadows a full one).
pub fn env_keys() -> Vec<EnvKey> {
    let defaults = serde_json::to_value(Config::default()).expect("the settings serialize");
    let mut keys = Vec::new();
    walk(&defaults, &mut Vec::new(), &mut keys);
    let short: Vec<EnvKey> = keys
        .iter()
        .filter(|k| k.path.len() == 2 && SHORT_SECTIONS.contains(&k.path[0].as_str()))
        .map(|k| EnvKey { name: env_name(&k.path[1..]), ..k.clone() })
        .filter(|s| !keys.iter().any(|k| k.name == s.name))
        .collect();
    keys.extend(short);
    keys
}

/// The leaves under `value` (tables are walked; a table with no keys, such as `[tui.keys]`, whose
/// keys are the user's own, has no variables).
fn walk(value: &Value, path: &mut Vec<String>, out: &mut Vec<EnvKey>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                path.push(key.clone());
                walk(child, path, out);
                path.pop();
            }
        }
        leaf => out.push(EnvKey { name: env_name(path), path: path.clone(), default: leaf.clone() }),
    }
}

fn env_name(path: &[String]) -> String {
    format!("MFADMIN_{}", path.join("_").to_uppercase())
}

/// Is `name` one of mfadmin's variables that are not settings?
fn is_not_a_setting(name: &str) -> bool {
    NOT_SETTINGS.contains(&name) || NOT_SETTINGS_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// `text` read as the type of `key`'s default: a flag, a number, a list (comma-separated), or text
/// (empty text unsets a setting that has no default).
fn parse(key: &EnvKey, text: &str) -> Result<Value, String> {
    let name = &key.name;
    match &key.default {
        Value::Bool(_) => match text.trim().to_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Value::Bool(true)),
            "0" | "false" | "no" | "off" => Ok(Value::Bool(false)),
            _ => Err(format!("{name}={text:?}: expected true or false")),
        },
        Value::Number(n) => {
            let bad = || format!("{name}={text:?} is not a valid number");
            let t = text.trim();
            if n.is_f64() {
                t.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number).ok_or_else(bad)
            } else if let Ok(u) = t.parse::<u64>() {
                Ok(Value::from(u))
            } else {
                t.parse::<i64>().map(Value::from).map_err(|_| bad())
            }
        }
        Value::Array(_) => {
            Ok(Value::Array(text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.into())).collect()))
        }
        Value::Null if text.trim().is_empty() && !EMPTY_IS_A_VALUE.contains(&key.dotted().as_str()) => Ok(Value::Null),
        _ => Ok(Value::String(text.to_string())),
    }
}

/// Apply the `MFADMIN_*` variables among `vars` to `config`; returns the names of those that are
/// neither a setting nor one of mfadmin's other variables, for a warning.
pub fn apply(config: &mut Config, vars: impl Iterator<Item = (String, String)>) -> Result<Vec<String>, String> {
    let keys = env_keys();
    let mut tree = serde_json::to_value(&*config).map_err(|e| format!("the settings cannot be read back: {e}"))?;
    let mut unknown = Vec::new();
    let mut applied: Vec<&EnvKey> = Vec::new();
    let mut vars: Vec<(String, String)> = vars.filter(|(name, _)| name.starts_with("MFADMIN_")).collect();
    // Full names after short ones, so that the full name wins when both are set.
    vars.sort_by_key(|(name, _)| keys.iter().position(|k| &k.name == name).map(std::cmp::Reverse));
    for (name, text) in &vars {
        let Some(key) = keys.iter().find(|k| &k.name == name) else {
            if !is_not_a_setting(name) {
                unknown.push(name.clone());
            }
            continue;
        };
        set(&mut tree, &key.path, parse(key, text)?);
        applied.push(key);
    }
    if applied.is_empty() {
        return Ok(unknown);
    }
    *config = serde_json::from_value(tree).map_err(|e| {
        let names: Vec<String> = applied.iter().map(|k| format!("{} ({})", k.name, k.dotted())).collect();
        format!("{}: {e}", names.join(", "))
    })?;
    Ok(unknown)
}

fn set(tree: &mut Value, path: &[String], value: Value) {
    let mut at = tree;
    for key in &path[..path.len() - 1] {
        at = at.as_object_mut().map(|m| m.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()))).expect("a section is a table");
    }
    if let Some(map) = at.as_object_mut() {
        map.insert(path[path.len() - 1].clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn every_setting_has_a_variable_generated_from_the_settings() {
        let keys = env_keys();
        let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        for expected in [
            "MFADMIN_DATA_DIR",
            "MFADMIN_KEY_FILE",
            "MFADMIN_STORE_URL",
            "MFADMIN_STORE_CACHE_MB",
            "MFADMIN_SERVER_LISTEN",
            "MFADMIN_SERVER_LOG_LEVEL",
            "MFADMIN_VALIDATE_ALLOW_FROM",
            "MFADMIN_VALIDATE_PASS_MODE",
            "MFADMIN_COMPAT_NPS",
            "MFADMIN_SESSION_API_KEY_DAYS",
            "MFADMIN_TUI_STORE_CACHE_MB",
            // The short names that were documented before the variables were generated.
            "MFADMIN_LISTEN",
            "MFADMIN_REASON_REQUIRED",
            "MFADMIN_BATCH_SIZE",
            "MFADMIN_METRICS_PUBLIC",
            "MFADMIN_TRUSTED_PROXIES",
        ] {
            assert!(names.contains(&expected), "{expected} is missing from {names:?}");
        }
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "no two settings share a variable");
        // Every leaf of the settings has one: as many as the serialized defaults have leaves.
        let full = keys.iter().filter(|k| k.name == env_name(&k.path)).count();
        let mut leaves = Vec::new();
        walk(&serde_json::to_value(Config::default()).unwrap(), &mut Vec::new(), &mut leaves);
        assert_eq!(full, leaves.len());
    }

    #[test]
    fn variables_are_read_as_their_setting_s_type() {
        let mut c = Config::default();
        let unknown = apply(
            &mut c,
            vars(&[
                ("MFADMIN_SERVER_LOG_LEVEL", "debug"),
                ("MFADMIN_SERVER_AUTH_RATE_PER_CLIENT", "7"),
                ("MFADMIN_COMPAT_NPS", "off"),
                ("MFADMIN_VALIDATE_ALLOW_FROM", "10.0.0.0/8, 192.168.1.5"),
                ("MFADMIN_VALIDATE_PASS_MODE", "password+otp"),
                ("MFADMIN_STORE_KIND", "postgres"),
                ("MFADMIN_STORE_URL", "postgres://u@h/db"),
                ("MFADMIN_SESSION_CHALLENGE_SECONDS", "120"),
            ]),
        )
        .unwrap();
        assert!(unknown.is_empty());
        assert_eq!(c.server.log_level, "debug");
        assert_eq!(c.server.auth_rate_per_client, 7);
        assert!(!c.compat.nps);
        assert_eq!(c.validate.allow_from, vec!["10.0.0.0/8".to_string(), "192.168.1.5".into()]);
        assert_eq!(c.validate.pass_mode, crate::config::PassMode::PasswordOtp);
        assert_eq!(c.store.kind, crate::config::StoreKind::Postgres);
        assert_eq!(c.store.url.as_deref(), Some("postgres://u@h/db"));
        assert_eq!(c.session.challenge_seconds, 120);
        // Empty text unsets a setting that has no default, except where empty is a value of its own.
        apply(&mut c, vars(&[("MFADMIN_STORE_URL", "")])).unwrap();
        assert_eq!(c.store.url, None);
        apply(&mut c, vars(&[("MFADMIN_SERVER_SOCKET", "")])).unwrap();
        assert_eq!(c.server.socket, Some(std::path::PathBuf::new()), "an empty socket is no socket, as in the file");
    }

    #[test]
    fn the_full_name_wins_over_the_short_one() {
        let mut c = Config::default();
        apply(&mut c, vars(&[("MFADMIN_SERVER_LISTEN", "127.0.0.1:9000"), ("MFADMIN_LISTEN", "127.0.0.1:8000")])).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:9000");
        apply(&mut c, vars(&[("MFADMIN_LISTEN", "127.0.0.1:8000")])).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8000");
    }

    #[test]
    fn bad_values_name_the_variable_and_unknown_ones_are_reported() {
        let mut c = Config::default();
        let err = apply(&mut c, vars(&[("MFADMIN_TOTP_SKEW", "x")])).unwrap_err();
        assert!(err.contains("MFADMIN_TOTP_SKEW"), "{err}");
        let err = apply(&mut c, vars(&[("MFADMIN_TOTP_SKEW", "70000")])).unwrap_err();
        assert!(err.contains("MFADMIN_TOTP_SKEW (totp.skew)"), "{err}");
        let err = apply(&mut c, vars(&[("MFADMIN_SERVER_LOG_FORMAT", "xml")])).unwrap_err();
        assert!(err.contains("MFADMIN_SERVER_LOG_FORMAT") && err.contains("xml"), "{err}");
        assert_eq!(c, Config::default(), "a refused variable changes nothing");
        let unknown = apply(
            &mut c,
            vars(&[("MFADMIN_LISTN", "x"), ("MFADMIN_TOKEN", "t"), ("MFADMIN_TEST_PG_URL", "u"), ("MFADMIN_CONFIG", "c"), ("PATH", "/bin")]),
        )
        .unwrap();
        assert_eq!(unknown, vec!["MFADMIN_LISTN".to_string()]);
    }
}
