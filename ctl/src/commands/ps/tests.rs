use super::*;
use roboku_wire::ExitInfo;

fn dyno(state: DynoState) -> DynoInfo {
    DynoInfo {
        name: "web.1".into(),
        ptype: "web".into(),
        index: 1,
        state,
        pid: Some(4242),
        port: 20001,
        release: 3,
        since: 1_000,
        restarts: 0,
        last_exit: None,
        next_retry_at: None,
        memory_bytes: Some(3_250_000),
        cpu_percent: Some(0.1),
        pids: Some(3),
        oom_kills: 0,
        user: "dyno".into(),
        health: None,
    }
}

#[test]
fn up_row() {
    let row = dyno_row(&dyno(DynoState::Up), 13_000);
    assert_eq!(
        output::table(&[row]),
        "web.1  up 12s  pid 4242  port 20001  mem 3.1M  cpu 0.1%  restarts 0\n"
    );
}

#[test]
fn backoff_shows_next_try() {
    let mut d = dyno(DynoState::Backoff);
    d.pid = None;
    d.memory_bytes = None;
    d.cpu_percent = None;
    d.next_retry_at = Some(20_000);
    let row = dyno_row(&d, 17_000);
    assert_eq!(row[1], "backoff (next try in 3s)");
    assert_eq!(row[2], "pid -");
    assert_eq!(row[4], "mem -");
}

#[test]
fn crashed_shows_exit_reason_and_oom_kills() {
    let mut d = dyno(DynoState::Crashed);
    d.oom_kills = 2;
    d.last_exit = Some(ExitInfo {
        at: 5,
        code: None,
        signal: Some(9),
        oom: true,
        reason: "OOM-killed (memory limit 64M)".into(),
    });
    let row = dyno_row(&d, 13_000);
    assert_eq!(row[1], "crashed (OOM-killed (memory limit 64M))");
    assert_eq!(row.last().map(String::as_str), Some("oom-kills 2"));
}

#[test]
fn limits_read_back() {
    let l = Limits {
        memory_max: Some(64 << 20),
        memory_high: Some(48 << 20),
        cpu: Some(0.5),
        pids: Some(64),
        cpuset: Some("0-1".into()),
        nice: Some(5),
        groups: Some(vec!["dialout".into(), "video".into()]),
        rt: Some("fifo:10".into()),
    };
    assert_eq!(
        l.to_string(),
        "memory 64M, memory-high 48M, cpu 0.5, pids 64, cpuset 0-1, nice 5, groups dialout,video, rt fifo:10"
    );
    assert_eq!(Limits::default().to_string(), "no limits");
}
