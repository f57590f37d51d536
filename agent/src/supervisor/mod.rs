//! Dyno processes: how one is spawned ([`spawn`]), how its exit is noticed ([`watch`]), what
//! `/proc` says about it ([`procfs`]), whether its user can reach a path ([`reach`]), its device groups and real-time policy
//! ([`hardware`]), a dyno's next instance started ahead and held until it is needed ([`spare`]).
//! When a crashed one is started again is [`crate::backoff`]'s.
//!
//! A dyno's life never depends on the agent: it has its own session and process group, writes its
//! output to a spool file it holds itself, and is watched through a pidfd, which works the same for
//! a child of this agent and for a dyno re-adopted after the agent restarted.

pub mod direct;
pub mod hardware;
pub mod launch;
pub mod orphans;
pub mod procfs;
pub mod pty;
pub mod reach;
pub mod script;
pub mod spare;
pub mod spawn;
pub mod watch;
