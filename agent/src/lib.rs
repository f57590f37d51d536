//! robokud: the roboku agent as a library, so tests start it in-process with [`run`].
//!
//! The agent is one engine (the only owner of mutable state) and several doors (the local API
//! today; MQTT and the dashboard later) that turn requests into [`engine::Command`]s.

pub mod api;
pub mod build;
pub mod cgroup;
pub mod engine;
pub mod logs;
pub mod procfile;
pub mod settings;
pub mod store;
pub mod supervisor;
pub mod util;

pub use settings::Settings;
