//! vigil: a federation node that exchanges signed watchlist notices between
//! law-enforcement contact points, enforcing data-protection policy on every
//! message before it is stored or disclosed.
//!
//! The modules follow the path of one notice (docs/architecture.md):
//! `config` → `identity` → `notice` → `policy` → `store` → `proto` → `net`,
//! wired together by `node` and exposed to operators through `admin`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod alerts;
pub mod audit;
pub mod bench;
pub mod config;
pub mod demo;
pub mod events;
pub mod exchange;
#[doc(hidden)]
pub mod fuzz_api;
pub mod identity;
pub mod keys;
pub mod mesh;
pub mod metrics;
pub mod net;
pub mod node;
pub mod notice;
pub mod officers;
pub mod policy;
pub mod proto;
pub mod store;
pub mod testkit;
pub mod time;
pub mod witness;
