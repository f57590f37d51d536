//! Dyno processes: spawn, exit watching, restart policy.
