//! The end-to-end kit: starts the real `robokud` on a throwaway data dir, runs the real `roboku`
//! against it, and cleans up every process and cgroup it made even when a test fails.
//!
//! Tests never sleep to synchronise: they poll with [`wait_for`] (a deadline that names what was
//! awaited) or check that something holds for a bounded time with [`holds_for`].

pub mod agent;
pub mod app;
pub mod bins;
pub mod cgroups;
pub mod http;
pub mod procs;
pub mod syslog;
pub mod wait;
pub mod webdriver;

pub use agent::{Agent, AgentOpts};
pub use app::{app_dir, world_writable_dir};
pub use procs::{alive, kill, spares, tagged};
pub use wait::{holds_for, now_ms, wait_for};
