//! mfadmin: see every user's MFA status and role, and reset MFA for one user or a thousand.

/// mimalloc for every program built on this library (the binary, its tests and benchmarks): list
/// pages, bulk resets and the demo spent a quarter of their time in glibc's malloc and free.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod app;
pub mod auth;
pub mod backend;
pub mod backup;
pub mod backup_schedule;
pub mod cli;
pub mod config;
pub mod demo;
pub mod domain;
pub mod error;
pub mod http;
pub mod packaging;
pub mod service;
pub mod store;
pub mod store_move;
pub mod tui;
