use super::*;

fn reading(dyno: &str, cpu: Option<f64>, exit: Option<(u64, bool)>, release: u32) -> DynoReading {
    DynoReading {
        app: "demo".into(),
        dyno: dyno.into(),
        cpu_percent: cpu,
        memory: Some(2048),
        memory_limit: Some(1 << 20),
        last_exit: exit,
        release,
    }
}

fn round(t: u64, dynos: Vec<DynoReading>) -> Round {
    Round { t, dynos }
}

#[test]
fn history_is_bounded_and_marks_exits_and_releases_once() {
    let mut h = History::new(Duration::from_secs(10), Duration::from_secs(1));
    assert_eq!(h.capacity(), 10);
    for i in 0..25u64 {
        let exit = (i >= 5).then_some((4_500, i >= 20));
        let exit = if i >= 20 { Some((19_500, true)) } else { exit };
        let release = if i >= 12 { 4 } else { 3 };
        h.record(&round(
            i * 1000,
            vec![reading("web.1", Some(i as f64), exit, release)],
        ));
    }
    let s = &h.dynos[&("demo".to_string(), "web.1".to_string())];
    assert_eq!(s.points.len(), 10, "bounded by keep / every");
    assert_eq!(s.points.last().unwrap().t, 24);
    assert_eq!(s.points.last().unwrap().cpu, 24.0);
    assert_eq!(s.points.last().unwrap().mem_kib, 2);
    let kinds: Vec<(&str, u64)> = s.marks.iter().map(|m| (m.kind, m.t)).collect();
    assert_eq!(
        kinds,
        vec![("exit", 4_500), ("release", 12_000), ("oom", 19_500)]
    );
    let charts = series::app_charts(&h, "demo", 720);
    assert_eq!(charts.len(), 1);
    assert_eq!(charts[0].t.len(), 10);
    assert_eq!(charts[0].mem[0], Some(2048));
    assert!(series::app_charts(&h, "other", 720).is_empty());
}

#[test]
fn unknown_numbers_stay_unknown_and_gone_dynos_age_out() {
    let mut h = History::new(Duration::from_secs(5), Duration::from_secs(1));
    let mut r = reading("web.2", None, None, 1);
    r.memory = None;
    h.record(&round(1_000, vec![r, reading("web.1", Some(1.0), None, 1)]));
    let c = series::app_charts(&h, "demo", 10);
    let web2 = c.iter().find(|c| c.dyno == "web.2").unwrap();
    assert_eq!((web2.cpu[0], web2.mem[0]), (None, None));
    // web.2 scaled away: still charted while inside the window, then forgotten.
    h.record(&round(5_000, vec![reading("web.1", Some(1.0), None, 1)]));
    assert_eq!(h.dynos.len(), 2);
    h.record(&round(7_000, vec![reading("web.1", Some(1.0), None, 1)]));
    assert_eq!(h.dynos.len(), 1);
}

#[tokio::test]
async fn offering_never_blocks_and_counts_what_it_drops() {
    let (t, mut rx) = Telemetry::new(Duration::from_secs(60), Duration::from_secs(1));
    for i in 0..(QUEUE as u64 + 3) {
        t.offer(round(i, Vec::new()));
    }
    assert_eq!(t.dropped(), 3);
    assert_eq!(rx.recv().await.unwrap().t, 0);
}

#[tokio::test]
async fn the_task_samples_the_host_and_applies_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (t, task) = start(
        dir.path(),
        Duration::from_secs(60),
        Duration::from_millis(20),
        stop_rx,
    );
    t.offer(round(1_000, vec![reading("web.1", Some(3.0), None, 1)]));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        {
            let h = t.lock();
            if h.host.len() >= 2 && h.rounds == 1 {
                assert!(h.host_latest.as_ref().unwrap().mem_total.is_some());
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no host samples within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}
