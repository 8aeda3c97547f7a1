//! Who may do what to whom: the role table of the design, implemented once.

use super::role::Role;

/// Why an actor may not reset a target's MFA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

/// May an actor with `actor` role reset the MFA of a user with `target` role? `is_self` is true when
/// the target is the actor. Both are in the same org; callers report other orgs as "not found".
pub fn may_reset(actor: Role, target: Role, is_self: bool) -> Result<(), Denied> {
    use Role::*;
    if is_self {
        return match actor {
            Auditor => Err(Denied("auditors cannot reset MFA, not even their own".into())),
            _ => Ok(()),
        };
    }
    let allowed = match actor {
        Owner => true,
        Admin => target != Owner,
        Helpdesk => target == Member,
        Auditor | Member => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Denied(match actor {
            Auditor => "auditors can read users and the audit log but cannot reset MFA".into(),
            Member => "members can reset only their own MFA".into(),
            _ => format!("{} cannot reset the MFA of {}", actor.with_article(), target.with_article()),
        }))
    }
}

/// May an actor with `actor` role lift the lockout of the factor of a user with `target` role?
/// Whoever may reset someone's MFA may unlock it (the lesser step); nobody unlocks their own, or a
/// lockout its own session could lift would not slow down whoever guesses the codes.
pub fn may_unlock(actor: Role, target: Role, is_self: bool) -> Result<(), Denied> {
    if is_self {
        return Err(Denied("you cannot unlock your own MFA: ask an admin of your org, or wait until the lockout ends".into()));
    }
    may_reset(actor, target, false).map_err(|_| {
        Denied(format!("{} cannot unlock the MFA of {}: only those who may reset it may", actor.with_article(), target.with_article()))
    })
}

/// May the actor read the user list and user records of its org?
pub fn may_read_users(actor: Role) -> bool {
    actor != Role::Member
}

/// May the actor read the audit log?
pub fn may_read_audit(actor: Role) -> bool {
    matches!(actor, Role::Owner | Role::Admin | Role::Auditor)
}

/// May the actor create users, set their password, change their status or import them? Only in
/// roles below its own (an Admin: Helpdesk, Auditor and Member), except an Owner, who may manage
/// anyone: otherwise one Admin could set another's password and log in as them.
pub fn may_manage_user(actor: Role, target: Role) -> bool {
    match actor {
        Role::Owner => true,
        Role::Admin => target > Role::Admin,
        _ => false,
    }
}

/// May the actor change org settings such as MFA enforcement?
pub fn may_change_org(actor: Role) -> bool {
    matches!(actor, Role::Owner | Role::Admin)
}

/// May the actor create an API key acting with `key_role`? Never above its own role.
pub fn may_create_api_key(actor: Role, key_role: Role) -> bool {
    matches!(actor, Role::Owner | Role::Admin) && key_role >= actor
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::*;

    /// The design's table, row by row: actor, then Member, Helpdesk, Auditor, Admin, Owner, self.
    const TABLE: [(Role, [bool; 6]); 5] = [
        (Owner, [true, true, true, true, true, true]),
        (Admin, [true, true, true, true, false, true]),
        (Helpdesk, [true, false, false, false, false, true]),
        (Auditor, [false, false, false, false, false, false]),
        (Member, [false, false, false, false, false, true]),
    ];

    #[test]
    fn every_cell_of_the_role_table() {
        let targets = [Member, Helpdesk, Auditor, Admin, Owner];
        for (actor, row) in TABLE {
            for (i, target) in targets.into_iter().enumerate() {
                assert_eq!(may_reset(actor, target, false).is_ok(), row[i], "{actor} -> {target}");
            }
            assert_eq!(may_reset(actor, actor, true).is_ok(), row[5], "{actor} -> self");
        }
    }

    #[test]
    fn denial_says_why() {
        let Denied(why) = may_reset(Helpdesk, Admin, false).unwrap_err();
        assert_eq!(why, "a helpdesk cannot reset the MFA of an admin");
    }

    #[test]
    fn unlocking_follows_resetting_others_and_never_oneself() {
        for actor in Role::ALL {
            for target in Role::ALL {
                assert_eq!(may_unlock(actor, target, false).is_ok(), may_reset(actor, target, false).is_ok(), "{actor} -> {target}");
            }
            assert!(may_unlock(actor, actor, true).is_err(), "{actor} -> self");
        }
        let Denied(why) = may_unlock(Helpdesk, Admin, false).unwrap_err();
        assert_eq!(why, "a helpdesk cannot unlock the MFA of an admin: only those who may reset it may");
    }

    #[test]
    fn an_admin_manages_only_roles_below_its_own() {
        assert!([Helpdesk, Auditor, Member].iter().all(|&t| may_manage_user(Admin, t)));
        assert!(!may_manage_user(Admin, Admin) && !may_manage_user(Admin, Owner));
        assert!(Role::ALL.iter().all(|&t| may_manage_user(Owner, t)));
        assert!(Role::ALL.iter().all(|&t| !may_manage_user(Helpdesk, t)));
    }

    #[test]
    fn api_keys_never_exceed_their_creator() {
        assert!(may_create_api_key(Admin, Helpdesk));
        assert!(may_create_api_key(Admin, Admin));
        assert!(!may_create_api_key(Admin, Owner));
        assert!(!may_create_api_key(Helpdesk, Member));
    }
}
