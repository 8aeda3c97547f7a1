//! Second-factor checks for other systems — VPNs through RADIUS, SSH through PAM, applications —
//! asked the way privacyIDEA's plugins ask (`/validate/check`). The check is the login's own
//! ([`Service::use_second_factor`]): replays refused, wrong codes locking the factor, every check
//! audited as `mfa.validate`, the factor's last use recorded, an acceptance durable before it is
//! answered.

use super::login::{FactorCheck, FactorUse};
use super::{Actor, Principal, Service, about, draft};
use crate::auth::{password, token};
use crate::config::PassMode;
use crate::domain::Timestamp;
use crate::domain::audit::Outcome;
use crate::domain::mfa::MfaState;
use crate::domain::user::{self, Status, User};
use crate::error::{Error, Result};
use crate::store::{Change, SessionKind};

/// The audit action of every check.
pub const VALIDATE_ACTION: &str = "mfa.validate";
const ACTION: &str = VALIDATE_ACTION;
/// The longest `pass` looked at: a password of up to 1,024 bytes and a code.
const MAX_PASS_LEN: usize = 1_100;
/// The longest user name, realm, serial or client name looked at.
const MAX_NAME_LEN: usize = 256;

/// Who asks for a check: a validate-only API key (for the users of its org), or an address that
/// the config allows without a key (for every org).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validator {
    /// As written in the audit log: `apikey:<name>` or `address:<ip>`.
    pub name: String,
    /// The only org whose users this caller may check; `None`: every org.
    pub org: Option<String>,
}

impl Validator {
    /// A caller allowed by its address (`[validate] allow_from`).
    pub fn address(ip: &str) -> Validator {
        Validator { name: format!("address:{ip}"), org: None }
    }
}

/// One check, as the plugins send it.
#[derive(Debug, Clone, Default)]
pub struct ValidateRequest {
    pub user: String,
    /// The org name; absent: `[validate] default_realm`.
    pub realm: Option<String>,
    pub pass: String,
    /// The factor's serial (see [`serial_of`]); with `user` it must be that user's.
    pub serial: Option<String>,
    /// The system the login is for (a RADIUS client's address, a host), as the caller names it.
    pub client: Option<String>,
}

/// What a check decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    Accept { serial: String },
    /// `message` is privacyIDEA's sentence for the case; `serial` names the factor, when there is one.
    Reject { message: String, serial: Option<String> },
    /// No such user (in that realm, or visible to the caller): answered as a wrong code, or as
    /// privacyIDEA's error, as configured.
    UnknownUser,
}

/// The stable serial of a user's TOTP factor, as privacyIDEA names tokens: `TOTP` and the user's
/// number, eight digits at least.
pub fn serial_of(user: &User) -> String {
    format!("TOTP{:08}", user.number)
}

/// The user number a serial names.
fn number_of_serial(serial: &str) -> Option<u64> {
    let digits = serial.trim().strip_prefix("TOTP").or_else(|| serial.trim().strip_prefix("totp"))?;
    digits.parse().ok()
}

fn reject(message: &str, user: Option<&User>) -> Validation {
    Validation::Reject { message: message.to_string(), serial: user.map(serial_of) }
}

impl Service {
    /// The validator a bearer key stands for: only a validate-only key (`apikey create
    /// --validate-only`) whose creator is still active.
    pub fn authenticate_validator(&self, bearer: &str, now: Timestamp) -> Result<Validator> {
        let unknown = || Error::Unauthenticated("unknown, revoked or expired validate key".into());
        let session = self.store.get_session(&token::hash(bearer.trim()))?.ok_or_else(unknown)?;
        let SessionKind::ValidateKey { name } = session.kind else {
            return Err(Error::Unauthenticated(
                "this token is not a validate key: create one with `mfadmin apikey create --validate-only`".into(),
            ));
        };
        if session.expires_at <= now {
            return Err(unknown());
        }
        let owner = self.store.get_user(session.user_id)?.filter(|u| u.status == Status::Active).ok_or_else(unknown)?;
        Ok(Validator { name: format!("apikey:{name}"), org: Some(owner.org) })
    }

    /// Check a code for another system. Bad input is an [`Error::Invalid`] saying what was wrong;
    /// every decision on a real request is audited.
    pub fn validate(&self, who: &Validator, req: &ValidateRequest, now: Timestamp) -> Result<Validation> {
        check_request(req)?;
        let client = req.client.as_deref().map(str::trim).filter(|c| !c.is_empty()).unwrap_or(&who.name).to_string();
        let actor = Actor { principal: Principal::Validator { name: who.name.clone() }, source: "http:validate".into() };
        let audit_reject = |user: Option<&User>, why: &str| -> Result<()> {
            let mut event = draft(&actor, ACTION, now);
            if let Some(u) = user {
                event = about(event, u);
            } else {
                event.target = Some(req.user.trim().chars().take(64).collect());
            }
            event.outcome = Outcome::Failure;
            event.detail = Some(format!("{why}, for {client}"));
            self.commit(Change { audit: vec![event], ..Change::default() })
        };
        let Some(user) = self.validation_target(who, req)? else {
            audit_reject(None, "unknown user")?;
            return Ok(Validation::UnknownUser);
        };
        if user.status != Status::Active {
            audit_reject(Some(&user), "the account is disabled")?;
            return Ok(reject("The user is disabled", Some(&user)));
        }
        if !matches!(user.mfa, MfaState::Enrolled { .. }) {
            audit_reject(Some(&user), "no MFA enrolled")?;
            return Ok(reject("The user has no tokens assigned", None));
        }
        let pass_mode = self.policy.validate.realm_pass_mode.get(&user.org).copied().unwrap_or(self.policy.validate.pass_mode);
        let code = match pass_mode {
            PassMode::Otp => req.pass.trim(),
            PassMode::PasswordOtp => {
                let split = req.pass.len().saturating_sub(6);
                let (given, code) = (req.pass.get(..split).unwrap_or(""), req.pass.get(split..).unwrap_or(""));
                let ok = match &user.password_hash {
                    Some(phc) => password::verify(given, phc),
                    None => {
                        password::verify_dummy(given);
                        false
                    }
                };
                if !ok {
                    self.record_wrong_code(&actor, &user, ACTION, now)?;
                    return Ok(reject("wrong otp pin", Some(&user)));
                }
                code
            }
        };
        let how = FactorUse { actor: &actor, action: ACTION, client: &client, recovery_codes: self.policy.validate.recovery_codes, logs_in: false };
        Ok(match self.use_second_factor(&how, &user, code, now, &|_| Change::default())? {
            FactorCheck::Accepted { user, .. } => Validation::Accept { serial: serial_of(&user) },
            FactorCheck::Replayed => reject("wrong otp value. previous otp used again", Some(&user)),
            FactorCheck::Wrong { .. } => reject("wrong otp value", Some(&user)),
            FactorCheck::Locked { .. } => reject("matching 1 tokens, Failcounter exceeded", Some(&user)),
            FactorCheck::NoFactor => reject("The user has no tokens assigned", None),
        })
    }

    /// The user a request names, if the caller may check them: by user name (or email) and
    /// realm, or by serial; both must name the same user. `None` for nobody visible.
    fn validation_target(&self, who: &Validator, req: &ValidateRequest) -> Result<Option<User>> {
        let name = req.user.trim();
        let by_serial = match req.serial.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(serial) => {
                let number = number_of_serial(serial)
                    .ok_or_else(|| Error::invalid(format!("serial {serial:?} is not one of mfadmin's (TOTP and a number)")))?;
                match self.store.user_id_by_number(number)? {
                    Some(id) => Some(id),
                    None => return Ok(None),
                }
            }
            None => None,
        };
        let by_name = if name.is_empty() {
            None
        } else {
            match self.store.user_id_by_name(name)? {
                Some(id) => Some(id),
                None if name.contains('@') => self.store.user_id_by_email(name)?,
                None => return Ok(None),
            }
        };
        let id = match (by_name, by_serial) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::invalid("user and serial name different factors: send one, or the user's own serial"));
            }
            (Some(id), _) | (None, Some(id)) => id,
            (None, None) => return Ok(None),
        };
        let Some(user) = self.store.get_user(id)? else { return Ok(None) };
        let realm = match req.realm.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
            Some(realm) => {
                let key = user::org_key(realm);
                if self.store.get_org(&key)?.is_none() {
                    return Err(Error::invalid(format!("unknown realm {realm:?}: a realm is an org's name")));
                }
                Some(key)
            }
            None => self.policy.validate.default_realm.clone(),
        };
        let visible = realm.as_ref().is_none_or(|r| *r == user.org) && who.org.as_ref().is_none_or(|o| *o == user.org);
        Ok(visible.then_some(user))
    }
}

/// Refuse what no plugin sends: a missing or oversize field, a challenge-response step.
fn check_request(req: &ValidateRequest) -> Result<()> {
    if req.user.trim().is_empty() && req.serial.as_deref().is_none_or(|s| s.trim().is_empty()) {
        return Err(Error::invalid("missing parameter user (or serial)"));
    }
    if req.pass.is_empty() {
        return Err(Error::invalid(
            "missing parameter pass: send the code from the app (challenge-response is not offered)",
        ));
    }
    if req.pass.len() > MAX_PASS_LEN {
        return Err(Error::invalid(format!("pass is longer than {MAX_PASS_LEN} bytes")));
    }
    let fields = [Some(&req.user), req.realm.as_ref(), req.serial.as_ref(), req.client.as_ref()];
    if fields.into_iter().flatten().any(|f| f.len() > MAX_NAME_LEN) {
        return Err(Error::invalid(format!("user, realm, serial and client are at most {MAX_NAME_LEN} bytes")));
    }
    if fields.into_iter().flatten().any(|f| f.chars().any(char::is_control)) {
        return Err(Error::invalid("user, realm, serial and client may not contain control characters"));
    }
    Ok(())
}
