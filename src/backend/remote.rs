//! The backend behind a running `mfadmin serve`: an HTTP client of its native API (`/api/v1`).
//! Plain HTTP is for loopback addresses; anything else needs HTTPS (rustls, with the CA file from
//! `remote_ca_file` or the system's roots) unless plain HTTP is explicitly allowed.

use super::{Backend, Credential, Login, Proof, RESET_BATCH};
use crate::domain::audit::Outcome;
use crate::domain::mfa::MfaStatus;
use crate::domain::user::{Status, UserView};
use crate::error::{Error, Result};
use crate::api::{AuditList, BulkResetResponse, EnrolledSession, LoginResponse, Me, OrgList, Problem};
use crate::service::{
    ApiKeyView, AuditFormat, AuditQuery, AuditView, Confirmed, Enrollment, ImportOptions, ImportReport, NewSession, NewUser,
    OrgView, ResetOutcome, ResetReport, ResetResult, StoreCheck, UserDetail, UserPage, UserQuery, VerifyReport,
};
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::json;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How to reach a server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteOptions {
    /// PEM file of the CA (or certificates) that signed the server's certificate; without it,
    /// the system's trusted roots.
    pub ca_file: Option<PathBuf>,
    /// Allow `http://` to an address that is not loopback (the token would cross the network
    /// in the clear).
    pub allow_plain_http: bool,
    /// How long a bulk reset keeps trying to reach a server that stopped answering.
    pub reconnect_for: Option<Duration>,
    /// Which front end this is (`tui` or `cli`), told to the server for its audit log.
    pub client: Option<&'static str>,
}

/// Waits between tries while the server does not answer, before a bulk reset gives up on it.
const RECONNECT: Duration = Duration::from_secs(8);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Remote {
    base: Url,
    client: Client,
    reconnect_for: Duration,
    /// The local socket it is reached by, instead of TCP.
    socket: Option<PathBuf>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.url())
    }
}

/// Is `host` this machine?
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid(format!("TLS setup: {e}")))?;
    let Some(path) = ca_file else {
        use rustls_platform_verifier::BuilderVerifierExt;
        return Ok(builder
            .with_platform_verifier()
            .map_err(|e| Error::invalid(format!("cannot use the system's trusted certificates: {e}; set remote_ca_file")))?
            .with_no_client_auth());
    };
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let bad = |why: String| Error::invalid(format!("remote_ca_file {}: {why}", path.display()));
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(format!("cannot read it ({e})")))?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(format!("not a PEM certificate file ({e})")))?;
        roots.add(cert).map_err(|e| bad(format!("a certificate in it is not usable ({e})")))?;
    }
    if roots.is_empty() {
        return Err(bad("it holds no certificate (expected -----BEGIN CERTIFICATE-----)".into()));
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// The TLS setup of a plain-http client: it trusts nothing, and is never used.
fn no_tls_config() -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid(format!("TLS setup: {e}")))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth())
}

impl Remote {
    /// A client of the server at `url` (e.g. `http://127.0.0.1:7070`). Checks the address and the
    /// TLS settings; does not contact the server yet.
    pub fn new(url: &str, options: &RemoteOptions) -> Result<Remote> {
        let mut base = Url::parse(url.trim()).map_err(|e| {
            Error::invalid(format!("remote {url:?} is not a URL ({e}); give it like http://127.0.0.1:7070 or https://mfadmin.example:7070"))
        })?;
        match base.scheme() {
            "https" => {}
            "http" if is_loopback(&base) || options.allow_plain_http => {}
            "http" => {
                return Err(Error::invalid(format!(
                    "refusing plain HTTP to {url}, which is not this machine: the password and token would cross \
                     the network unencrypted. Use https:// (with remote_ca_file for your CA), or pass \
                     --allow-plain-http if this network is trusted"
                )));
            }
            other => return Err(Error::invalid(format!("remote {url:?}: the scheme must be http or https, not {other}"))),
        }
        if base.host().is_none() {
            return Err(Error::invalid(format!("remote {url:?} names no host")));
        }
        base.set_path("/");
        base.set_query(None);
        base.set_fragment(None);
        // reqwest builds a TLS setup even for http://; it needs a process-wide crypto provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The timeout bounds each wait for the server (to answer, or for the next piece of a long
        // answer), not a whole streamed export.
        let mut builder = Client::builder().timeout(REQUEST_TIMEOUT).connect_timeout(Duration::from_secs(5)).no_proxy();
        if let Some(client) = options.client {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(crate::api::CLIENT_HEADER, reqwest::header::HeaderValue::from_static(client));
            builder = builder.default_headers(headers);
        }
        if base.scheme() == "https" || options.ca_file.is_some() {
            builder = builder.tls_backend_preconfigured(tls_config(options.ca_file.as_deref())?);
        } else {
            // Plain http never uses TLS; without this reqwest loads the system's trusted roots
            // anyway, and fails on a minimal host that has none (no ca-certificates).
            builder = builder.tls_backend_preconfigured(no_tls_config()?);
        }
        let client = builder.build().map_err(|e| Error::invalid(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Remote { base, client, reconnect_for: options.reconnect_for.unwrap_or(RECONNECT), socket: None })
    }

    /// A client of the server listening on the local socket `path`. The server knows the caller
    /// by the OS user it runs as: [`Remote::as_peer`] acts without a login.
    pub fn over_socket(path: &Path, options: &RemoteOptions) -> Result<Remote> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .unix_socket(path)
            .tls_backend_preconfigured(no_tls_config()?);
        if let Some(client) = options.client {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(crate::api::CLIENT_HEADER, reqwest::header::HeaderValue::from_static(client));
            builder = builder.default_headers(headers);
        }
        let client = builder.build().map_err(|e| Error::invalid(format!("cannot set up the socket client: {e}")))?;
        let base = Url::parse("http://localhost/").expect("a fixed URL");
        let reconnect_for = options.reconnect_for.unwrap_or(RECONNECT);
        Ok(Remote { base, client, reconnect_for, socket: Some(path.to_path_buf()) })
    }

    /// The server's address: its URL, or `unix:PATH` for a local socket.
    pub fn url(&self) -> String {
        match &self.socket {
            Some(path) => format!("unix:{}", path.display()),
            None => self.base.as_str().trim_end_matches('/').to_string(),
        }
    }

    /// The local socket this client goes through, if it does.
    pub fn socket(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    /// Which store the server on the local socket holds; an error when no server answers there
    /// or the OS user may not use it.
    pub fn socket_info(&self) -> Result<crate::http::socket::ServerInfo> {
        let url = self.base.join(crate::http::socket::INFO_PATH.trim_start_matches('/')).expect("a fixed path");
        self.call(self.client.get(url).timeout(Duration::from_secs(5)))
    }

    /// Act as this OS user through the local socket: the server says who that is (the console
    /// operator, `console:<os user>`), or refuses.
    pub fn as_peer(&self) -> Result<Credential> {
        let me: Me = self.call(self.request(Method::GET, "api/v1/me", None)?)?;
        Ok(Credential { name: me.name, role: me.role, org: me.org, proof: Proof::Peer })
    }

    /// Does a server answer at this address (`/healthz`)?
    pub fn reachable(&self) -> bool {
        let url = self.base.join("healthz").expect("a fixed path");
        self.client.get(url).timeout(Duration::from_secs(3)).send().is_ok_and(|r| r.status().is_success())
    }

    fn request(&self, method: Method, path: &str, who: Option<&Credential>) -> Result<RequestBuilder> {
        let url = self.base.join(path).map_err(|e| Error::invalid(format!("{path}: {e}")))?;
        let builder = self.client.request(method, url);
        match who {
            None => Ok(builder),
            Some(who) => authed(builder, who),
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> Error {
        // reqwest's text can hold the URL, never the token.
        let why = if e.is_connect() {
            "no connection (is `mfadmin serve` running there?)".to_string()
        } else if e.is_timeout() {
            "it did not answer in time".to_string()
        } else {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                s = format!("{s}: {inner}");
                source = inner.source();
            }
            s
        };
        Error::Unreachable { url: self.url().to_string(), why }
    }

    /// Send, and read a successful answer as `T`; an error answer becomes `Error::Remote`.
    fn call<T: DeserializeOwned>(&self, builder: RequestBuilder) -> Result<T> {
        let response = self.send(builder)?;
        response.json::<T>().map_err(|e| {
            if e.is_decode() {
                Error::Remote { status: 200, detail: format!("the server's answer is not what this mfadmin expects ({e}); are both the same version?") }
            } else {
                self.unreachable(&e)
            }
        })
    }

    fn send(&self, builder: RequestBuilder) -> Result<reqwest::blocking::Response> {
        let response = builder.send().map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().unwrap_or_default();
        let detail = match serde_json::from_str::<Problem>(&body) {
            Ok(p) => p.detail,
            Err(_) if status == StatusCode::NOT_FOUND => {
                format!("{} has no such route: is it an mfadmin server of this version?", self.url())
            }
            Err(_) => format!("HTTP {status}: {}", body.chars().take(200).collect::<String>()),
        };
        Err(Error::Remote { status: status.as_u16(), detail })
    }

    fn session(&self, token: String) -> Result<Credential> {
        let me: Me = self.call(self.request(Method::GET, "api/v1/me", None)?.bearer_auth(&token))?;
        Ok(Credential { name: me.name, role: me.role, org: me.org, proof: Proof::Token(token) })
    }

    /// The URL of `path` with a query.
    fn url_with(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.base.join(path).expect("a fixed path");
        url.query_pairs_mut().extend_pairs(query);
        url
    }

    fn user_path(user: &str, rest: &str) -> String {
        let mut path = String::from("api/v1/users/");
        path.extend(url::form_urlencoded::byte_serialize(user.trim().as_bytes()));
        path.push_str(rest);
        path
    }

    /// One bulk-reset request.
    fn reset_batch(&self, who: &Credential, ids: &[Uuid], reason: Option<&str>, dry_run: bool) -> Result<Vec<ResetResult>> {
        let body = json!({ "ids": ids, "reason": reason, "dry_run": dry_run });
        let answer: BulkResetResponse = self.call(self.request(Method::POST, "api/v1/mfa/reset", Some(who))?.json(&body))?;
        if answer.results.len() != ids.len() {
            return Err(Error::Remote {
                status: 200,
                detail: format!("the server answered {} results for {} users", answer.results.len(), ids.len()),
            });
        }
        Ok(answer.results)
    }

    /// Wait (with growing pauses) until the server answers again; false when it did not in time.
    fn wait_for_server(&self) -> bool {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(250);
        while started.elapsed() < self.reconnect_for {
            if self.reachable() {
                return true;
            }
            std::thread::sleep(pause.min(self.reconnect_for.saturating_sub(started.elapsed())));
            pause = (pause * 2).min(Duration::from_secs(4));
        }
        self.reachable()
    }

    /// After an answer was lost: which of `ids` did that request reset? The audit log says, when
    /// the admin may read it: an `mfa.reset` by this admin, newer than `since`, that succeeded.
    /// `None` for a user it cannot tell about.
    fn recheck(&self, who: &Credential, id: Uuid, since: Option<u64>) -> Option<bool> {
        let since = since?;
        let detail = self.user_detail(who, &id.to_string()).ok()?;
        let done = detail.recent_audit.iter().any(|e| {
            e.seq > since && e.action == "mfa.reset" && e.outcome == Outcome::Success && e.actor == who.name
        });
        if done {
            Some(true)
        } else if detail.recent_audit.iter().any(|e| e.seq > since) || matches!(detail.user.mfa, MfaStatus::Enrolled | MfaStatus::Locked) {
            // Newer events about the user, none of them our reset; or the factor is still there.
            Some(false)
        } else {
            None
        }
    }

    /// The newest audit event the admin can see, to tell later events from earlier ones.
    fn audit_mark(&self, who: &Credential) -> Option<u64> {
        let events = self.audit_list(who, &AuditQuery { text: None, limit: Some(1), ..AuditQuery::default() }).ok()?;
        Some(events.first().map_or(0, |e| e.seq))
    }
}

/// `builder` with `who`'s proof: a bearer token, or nothing for the peer of a local socket (the
/// server knows it by its OS credentials).
fn authed(builder: RequestBuilder, who: &Credential) -> Result<RequestBuilder> {
    match &who.proof {
        Proof::Token(token) => Ok(builder.bearer_auth(token)),
        Proof::Peer => Ok(builder),
        Proof::Actor { .. } => Err(Error::Unauthenticated("log in to the server first".into())),
    }
}

fn result_for(target: &str, outcome: ResetOutcome, detail: String) -> ResetResult {
    ResetResult { target: target.to_string(), user_id: None, username: None, outcome, detail: Some(detail), mfa_after: None }
}

impl Backend for Remote {
    fn badge(&self) -> Option<String> {
        Some(match &self.socket {
            Some(path) => format!("server: {}", path.display()),
            None => format!("remote: {}", self.url()),
        })
    }

    fn login_password(&self, username: &str, password: &str) -> Result<Login> {
        let body = json!({ "username": username, "password": password });
        let answer: LoginResponse = self.call(self.request(Method::POST, "api/v1/auth/login", None)?.json(&body))?;
        Ok(match answer {
            LoginResponse::Done { token, .. } => Login::Done(self.session(token)?),
            LoginResponse::MfaRequired { challenge, .. } => Login::MfaRequired { challenge },
            LoginResponse::EnrollmentRequired { challenge, .. } => Login::EnrollmentRequired { challenge },
        })
    }

    fn login_code(&self, challenge: &str, code: &str) -> Result<Credential> {
        let body = json!({ "challenge": challenge, "code": code });
        let session: NewSession = self.call(self.request(Method::POST, "api/v1/auth/mfa", None)?.json(&body))?;
        self.session(session.token)
    }

    fn login_enroll_begin(&self, challenge: &str) -> Result<Enrollment> {
        self.call(self.request(Method::POST, "api/v1/auth/enroll", None)?.json(&json!({ "challenge": challenge })))
    }

    fn login_enroll_confirm(&self, challenge: &str, code: &str) -> Result<(Credential, Confirmed)> {
        let body = json!({ "challenge": challenge, "code": code });
        let done: EnrolledSession = self.call(self.request(Method::POST, "api/v1/auth/enroll/confirm", None)?.json(&body))?;
        Ok((self.session(done.token)?, Confirmed { recovery_codes: done.recovery_codes }))
    }

    fn resume(&self, token: &str) -> Result<Credential> {
        self.session(token.trim().to_string())
    }

    fn logout(&self, who: &Credential) -> Result<()> {
        if who.proof == Proof::Peer {
            return Ok(());
        }
        self.send(self.request(Method::POST, "api/v1/auth/logout", Some(who))?).map(|_| ())
    }

    fn list_users(&self, who: &Credential, query: &UserQuery) -> Result<UserPage> {
        let mut url = self.base.join("api/v1/users").expect("a fixed path");
        {
            let mut q = url.query_pairs_mut();
            let text = query.text.as_deref().map(str::trim).filter(|t| !t.is_empty());
            if let Some(text) = text {
                q.append_pair("q", text);
            }
            if let Some(role) = query.role {
                q.append_pair("role", &role.to_string());
            }
            if let Some(org) = &query.org {
                q.append_pair("org", org);
            }
            if let Some(mfa) = query.mfa {
                q.append_pair("mfa", mfa.as_str());
            }
            if let Some(status) = query.status {
                q.append_pair("status", status.as_str());
            }
            if let Some(secs) = query.unused_for {
                q.append_pair("unused_for", &secs.to_string());
            }
            let sort = serde_json::to_value(query.sort).ok().and_then(|v| v.as_str().map(str::to_string));
            q.append_pair("sort", sort.as_deref().unwrap_or("username"));
            q.append_pair("desc", if query.descending { "true" } else { "false" });
            if let Some(cursor) = &query.cursor {
                q.append_pair("cursor", cursor);
            }
            q.append_pair("limit", &query.limit.unwrap_or(super::PAGE).min(super::PAGE).to_string());
        }
        self.call(authed(self.client.get(url), who)?)
    }

    fn user_detail(&self, who: &Credential, user: &str) -> Result<UserDetail> {
        self.call(self.request(Method::GET, &Remote::user_path(user, "/detail"), Some(who))?)
    }

    fn set_status(&self, who: &Credential, user: &str, status: Status) -> Result<UserView> {
        let body = json!({ "status": status });
        self.call(self.request(Method::PUT, &Remote::user_path(user, "/status"), Some(who))?.json(&body))
    }

    /// In batches of [`RESET_BATCH`]. When the server stops answering, it is tried again for a
    /// while; a batch whose answer was lost is checked against the audit log once the server is
    /// back, and what cannot be confirmed is reported `unknown`, the rest `failed` (not sent).
    fn reset_mfa(
        &self,
        who: &Credential,
        targets: &[String],
        reason: Option<&str>,
        dry_run: bool,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<ResetReport> {
        if targets.is_empty() {
            return Err(Error::invalid("no users given to reset"));
        }
        // Ids go as they are; names, emails and numbers are looked up first.
        let mut results: Vec<Option<ResetResult>> = vec![None; targets.len()];
        let mut pending: Vec<(usize, Uuid)> = Vec::new();
        let mut seen = HashSet::new();
        for (i, target) in targets.iter().enumerate() {
            let id = match Uuid::parse_str(target.trim()) {
                Ok(id) => id,
                Err(_) => match self.user_detail(who, target) {
                    Ok(d) => d.user.id,
                    Err(Error::Remote { status: 404, .. }) => {
                        results[i] = Some(ResetResult { detail: None, ..result_for(target, ResetOutcome::NotFound, String::new()) });
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            if seen.insert(id) {
                pending.push((i, id));
            } else {
                let mut r = result_for(target, ResetOutcome::Skipped, "listed more than once".into());
                r.user_id = Some(id);
                results[i] = Some(r);
            }
        }
        let since = if dry_run { None } else { self.audit_mark(who) };
        let total = pending.len();
        let mut done = 0;
        let mut queue: std::collections::VecDeque<Vec<(usize, Uuid)>> =
            pending.chunks(RESET_BATCH).map(<[_]>::to_vec).collect();
        let mut stopped: Option<String> = None;
        while let Some(batch) = queue.pop_front() {
            if let Some(why) = &stopped {
                for (i, _) in &batch {
                    results[*i] = Some(result_for(&targets[*i], ResetOutcome::Failed, format!("not sent: {why}")));
                }
                continue;
            }
            let ids: Vec<Uuid> = batch.iter().map(|(_, id)| *id).collect();
            match self.reset_batch(who, &ids, reason, dry_run) {
                Ok(answers) => {
                    for ((i, _), mut r) in batch.iter().zip(answers) {
                        r.target = targets[*i].clone();
                        results[*i] = Some(r);
                    }
                    done += batch.len();
                    progress(done, total);
                }
                // Refused before anything changed: the whole reset did not run.
                Err(e @ Error::Remote { .. }) if done == 0 => return Err(e),
                Err(Error::Remote { detail, .. }) => {
                    stopped = Some(format!("the server refused a batch: {detail}"));
                    queue.push_front(batch);
                }
                Err(e) => {
                    // The request may or may not have reached the server.
                    if !self.wait_for_server() {
                        let why = e.to_string();
                        for (i, id) in &batch {
                            let mut r = result_for(
                                &targets[*i],
                                ResetOutcome::Unknown,
                                format!("{why}; its answer was lost: check with `mfadmin mfa status {id}`"),
                            );
                            r.user_id = Some(*id);
                            results[*i] = Some(r);
                        }
                        done += batch.len();
                        progress(done, total);
                        stopped = Some(why);
                        continue;
                    }
                    if dry_run {
                        queue.push_front(batch);
                        continue;
                    }
                    // Back: find out what the lost request did, and send again what it did not.
                    let mut again = Vec::new();
                    for (i, id) in batch {
                        match self.recheck(who, id, since) {
                            Some(true) => {
                                let mut r = result_for(&targets[i], ResetOutcome::Reset, "confirmed in the audit log after a lost answer".into());
                                r.user_id = Some(id);
                                results[i] = Some(r);
                                done += 1;
                            }
                            Some(false) => again.push((i, id)),
                            None => {
                                let mut r = result_for(
                                    &targets[i],
                                    ResetOutcome::Unknown,
                                    format!("the answer was lost and the audit log cannot tell: check with `mfadmin mfa status {id}`"),
                                );
                                r.user_id = Some(id);
                                results[i] = Some(r);
                                done += 1;
                            }
                        }
                    }
                    progress(done, total);
                    if !again.is_empty() {
                        queue.push_front(again);
                    }
                }
            }
        }
        let mut results: Vec<ResetResult> = results.into_iter().map(|r| r.expect("every target has a result")).collect();
        // A user listed twice is named as the first listing's answer named it.
        let names: std::collections::HashMap<Uuid, String> =
            results.iter().filter_map(|r| Some((r.user_id?, r.username.clone()?))).collect();
        for r in results.iter_mut().filter(|r| r.username.is_none()) {
            r.username = r.user_id.and_then(|id| names.get(&id).cloned());
        }
        Ok(ResetReport { dry_run, results })
    }

    fn add_user(&self, who: &Credential, new: NewUser) -> Result<UserView> {
        // Written out: `NewUser` never serializes its password.
        let body = json!({
            "username": new.username,
            "email": new.email,
            "display_name": new.display_name,
            "role": new.role,
            "org": new.org,
            "password": new.password,
        });
        self.call(self.request(Method::POST, "api/v1/users", Some(who))?.json(&body))
    }

    fn set_password(&self, who: &Credential, user: &str, password: &str) -> Result<()> {
        let body = json!({ "password": password });
        self.send(self.request(Method::PUT, &Remote::user_path(user, "/password"), Some(who))?.json(&body)).map(|_| ())
    }

    fn import_users(&self, who: &Credential, csv: &[u8], options: ImportOptions) -> Result<ImportReport> {
        let flag = |on: bool| if on { "true" } else { "false" };
        let query = [("check_only", flag(options.check_only)), ("skip_invalid", flag(options.skip_invalid))];
        let url = self.url_with("api/v1/users/import", &query);
        let request = authed(self.client.post(url), who)?.header(reqwest::header::CONTENT_TYPE, "text/csv");
        self.call(request.body(csv.to_vec()))
    }

    fn unlock_mfa(&self, who: &Credential, user: &str, reason: Option<&str>) -> Result<UserView> {
        let body = json!({ "reason": reason });
        self.call(self.request(Method::POST, &Remote::user_path(user, "/mfa/unlock"), Some(who))?.json(&body))
    }

    fn begin_enrollment(&self, who: &Credential, user: &str) -> Result<Enrollment> {
        self.call(self.request(Method::POST, &Remote::user_path(user, "/mfa/enroll"), Some(who))?)
    }

    fn confirm_enrollment(&self, who: &Credential, user: &str, code: &str) -> Result<Confirmed> {
        let body = json!({ "code": code });
        self.call(self.request(Method::POST, &Remote::user_path(user, "/mfa/confirm"), Some(who))?.json(&body))
    }

    fn orgs(&self, who: &Credential) -> Result<Vec<OrgView>> {
        let list: OrgList = self.call(self.request(Method::GET, "api/v1/orgs", Some(who))?)?;
        Ok(list.orgs)
    }

    fn set_mfa_enforced(&self, who: &Credential, org: Option<&str>, enforced: bool) -> Result<OrgView> {
        let org = match org {
            Some(o) => o.to_string(),
            None => match self.orgs(who)?.as_slice() {
                [only] => only.name.clone(),
                _ => return Err(Error::invalid("there are several orgs: name one with --org")),
            },
        };
        let mut path = String::from("api/v1/orgs/");
        path.extend(url::form_urlencoded::byte_serialize(org.as_bytes()));
        path.push_str("/mfa");
        self.call(self.request(Method::PUT, &path, Some(who))?.json(&json!({ "enforced": enforced })))
    }

    fn add_org(&self, who: &Credential, name: &str, mfa_enforced: bool) -> Result<OrgView> {
        let body = json!({ "name": name, "mfa_enforced": mfa_enforced });
        self.call(self.request(Method::POST, "api/v1/orgs", Some(who))?.json(&body))
    }

    fn audit_list(&self, who: &Credential, query: &AuditQuery) -> Result<Vec<AuditView>> {
        let mut url = self.base.join("api/v1/audit").expect("a fixed path");
        {
            let mut q = url.query_pairs_mut();
            if let Some(text) = query.text.as_deref().filter(|t| !t.is_empty()) {
                q.append_pair("q", text);
            }
            q.append_pair("limit", &query.limit.unwrap_or(100).clamp(1, 1000).to_string());
            if !query.skip_actions.is_empty() {
                q.append_pair("skip_actions", &query.skip_actions.join(","));
            }
        }
        let list: AuditList = self.call(authed(self.client.get(url), who)?)?;
        Ok(list.events)
    }

    fn audit_verify(&self, who: &Credential) -> Result<VerifyReport> {
        self.call(self.request(Method::GET, "api/v1/audit/verify", Some(who))?)
    }

    /// Copied to `out` piece by piece as the server sends it.
    fn audit_export(&self, who: &Credential, format: AuditFormat, out: &mut dyn std::io::Write) -> Result<()> {
        let format = match format {
            AuditFormat::Jsonl => "jsonl",
            AuditFormat::Csv => "csv",
        };
        let url = self.url_with("api/v1/audit/export", &[("format", format)]);
        let response = self.send(authed(self.client.get(url), who)?)?;
        copy_body(response, out, "export")
    }

    fn api_keys(&self, who: &Credential) -> Result<Vec<ApiKeyView>> {
        #[derive(serde::Deserialize)]
        struct Keys {
            keys: Vec<ApiKeyView>,
        }
        let list: Keys = self.call(self.request(Method::GET, "api/v1/apikeys", Some(who))?)?;
        Ok(list.keys)
    }

    fn revoke_api_key(&self, who: &Credential, id: &str) -> Result<()> {
        let mut path = String::from("api/v1/apikeys/");
        path.extend(url::form_urlencoded::byte_serialize(id.trim().as_bytes()));
        self.send(self.request(Method::DELETE, &path, Some(who))?).map(|_| ())
    }

    fn check(&self, who: &Credential) -> Result<StoreCheck> {
        // A whole store's indexes and chain take a while to walk.
        self.call(self.request(Method::GET, "api/v1/check", Some(who))?.timeout(Duration::from_secs(600)))
    }

    /// Copied to `out` piece by piece as the server sends it.
    fn backup(&self, who: &Credential, out: &mut dyn std::io::Write) -> Result<()> {
        // A whole store can take a while to copy and send.
        let request = self.request(Method::GET, "api/v1/backup", Some(who))?.timeout(Duration::from_secs(3600));
        copy_body(self.send(request)?, out, "backup")
    }
}

/// Copy a streamed response body to `out` as it arrives; a body cut off is an error that says so.
fn copy_body(mut response: reqwest::blocking::Response, out: &mut dyn std::io::Write, what: &str) -> Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut copied = 0u64;
    loop {
        let n = match std::io::Read::read(&mut response, &mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::Remote {
                    status: 200,
                    detail: format!(
                        "the {what} stopped after {copied} bytes ({e}): what was written is incomplete; the server's \
                         log says why"
                    ),
                });
            }
        };
        out.write_all(&buf[..n]).map_err(|e| Error::Storage(format!("writing the {what}: {e}")))?;
        copied += n as u64;
    }
}
