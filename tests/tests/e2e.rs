//! End-to-end tests: the real `robokud` and `roboku`, as root, with real cgroups v1.
//! Each test starts its own agent (see `roboku_tests::Agent`), so they run in parallel.
//! The modules live in `tests/e2e/`.

mod e2e {
    mod addon_postgres;
    mod addons;
    mod backup_attacks;
    mod bad_input;
    mod browser;
    mod builds;
    mod bundles;
    mod cli;
    mod crash;
    mod dashboard;
    mod data;
    mod data_attacks;
    mod degraded;
    mod deploy;
    mod doctor;
    mod drain_isolation;
    mod drains;
    mod favordynmods;
    mod first_reads;
    mod gate_timeouts;
    mod gates;
    mod git_buildpacks;
    mod hardware;
    mod isolation;
    mod langs;
    mod lifecycle;
    mod limits;
    mod logs_run;
    mod node_apps;
    mod one_off;
    mod order;
    mod plan;
    mod preboot;
    mod probation;
    mod releases;
    mod rename;
    mod reported;
    mod restart;
    mod stop;
    mod stop_order;
}
