//! Fault injection: the real `robokud` killed with SIGKILL at chosen steps (its `ROBOKU_FAULT`
//! points) and restarted; after each run the invariants of [`faults::kit`] are checked. Each
//! scenario repeats `ROBOKU_FAULT_RUNS` times (small by default, so it is part of `./tests/run`;
//! `tests/faults/run` sets a larger count). Needs root (cgroups) and python3.

mod faults {
    mod builds;
    mod cleanup;
    mod disk;
    mod fds;
    pub mod kit;
    mod mixed;
    mod rename;
    pub mod rollout;
    mod spawn;
    mod unstartable;
}
