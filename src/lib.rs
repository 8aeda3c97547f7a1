//! mfadmin: see every user's MFA status and role, and reset MFA for one user or a thousand.

pub mod auth;
pub mod backend;
pub mod backup;
pub mod cli;
pub mod config;
pub mod demo;
pub mod domain;
pub mod error;
pub mod http;
pub mod service;
pub mod store;
pub mod tui;
