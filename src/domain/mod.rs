//! The pure domain: users, roles, who may do what, MFA state and audit events. No IO here.

pub mod audit;
pub mod directory;
pub mod mfa;
pub mod policy;
pub mod role;
pub mod search_index;
pub mod text;
pub mod user;

/// Seconds since the Unix epoch. Every domain function takes the current time as an argument.
pub type Timestamp = i64;
