//! A fleet across two brokers, as a site gateway runs it: a central Mosquitto where the fleet CLI
//! publishes, a site Mosquitto where the robots connect, and a Mosquitto bridge from the site to
//! the central one carrying each topic of docs/fleet-protocol.md in its own direction.

use super::kit::{fleet, wait_for, Agent, Broker};
use super::{run_fleet, wait_online, Site};

/// mosquitto.conf lines of a site broker bridged to `central`: fleet -> robot topics in, robot
/// -> fleet topics out (one direction per topic, so nothing loops).
fn bridge_conf(central: &Broker) -> String {
    let mut c = format!(
        "connection central\naddress 127.0.0.1:{}\ncleansession true\nrestart_timeout 1\n",
        central.port
    );
    for t in ["d/+/cmd", "g/+/cmd", "d/+/desired", "g/+/desired"] {
        c.push_str(&format!("topic rk/v1/{t} in 1\n"));
    }
    for t in ["d/+/ack", "d/+/reported", "d/+/status"] {
        c.push_str(&format!("topic rk/v1/{t} out 1\n"));
    }
    c.push_str("topic rk/v1/d/+/telemetry out 0\n");
    c
}

#[test]
fn commands_acks_and_state_cross_a_bridge_and_robots_converge_after_it_was_down() {
    let site = Site::new();
    let central = Broker::start();
    let mut site_broker = Broker::start_with(&bridge_conf(&central));
    let mut r1 = Agent::start(&site_broker, "r1", &["farm"], &site.public);
    let mut r2 = Agent::start(&site_broker, "r2", &["farm"], &site.public);

    // Retained status crosses out: the central broker shows both robots online.
    wait_online(&central, &["r1", "r2"]);
    // A signed group command crosses in, every ack crosses out.
    let (rc, out) = run_fleet(
        &central,
        "deploy",
        &site.deploy_args(&["--group", "farm"], "hello-v1.tar.gz"),
    );
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("2 succeeded, 0 failed"), "{out}");
    for d in ["r1", "r2"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(d) && l.contains("SUCCEEDED")),
            "{d}'s ack did not cross the bridge:\n{out}"
        );
    }
    r1.wait_up("hello", 1, 30);
    r2.wait_up("hello", 1, 30);
    // Retained reported state crosses out: fleet status on the central broker shows v1 up.
    wait_for(30, "central fleet status to show v1 up on both", || {
        let (_, out) = fleet(&central, &["status", "--group", "farm"]);
        let rows: Vec<&str> = out.lines().filter(|l| l.starts_with('r')).collect();
        (rows.len() == 2 && rows.iter().all(|l| l.contains("hello v1 1/1 up"))).then_some(())
    });

    // The robots go offline (their offline status still crosses), then the bridge goes down:
    // the site broker runs without it.
    r1.stop();
    r2.stop();
    wait_for(20, "both robots offline on the central broker", || {
        let (_, out) = fleet(&central, &["status"]);
        let offline = |d: &str| {
            out.lines()
                .any(|l| l.starts_with(d) && l.contains("offline"))
        };
        (offline("r1") && offline("r2")).then_some(())
    });
    site_broker.stop();
    site_broker.set_extra_conf("");
    site_broker.restart();
    // While the bridge is down, the fleet deploys v2: the robots are offline, so it lands in the
    // retained desired state on the central broker.
    let (rc, out) = run_fleet(
        &central,
        "deploy",
        &site.deploy_args(&["--group", "farm"], "hello-v2.tar.gz"),
    );
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("desired state updated: rk/v1/g/farm/desired"),
        "{out}"
    );
    // The robots come back on the site broker, still cut off from the fleet: they keep v1.
    r1.restart();
    r2.restart();
    let v1 = |a: &Agent| a.releases("hello").into_iter().find(|r| r.2).map(|r| r.0);
    r1.wait_up("hello", 1, 30);
    r2.wait_up("hello", 1, 30);
    assert_eq!((v1(&r1), v1(&r2)), (Some(1), Some(1)));
    // The bridge comes back: the retained desired doc crosses in, both converge to v2, and
    // the central broker sees them online with v2.
    site_broker.stop();
    site_broker.set_extra_conf(&bridge_conf(&central));
    site_broker.restart();
    for a in [&r1, &r2] {
        wait_for(60, &format!("{} to converge to v2", a.device), || {
            (v1(a) == Some(2)).then_some(())
        });
        a.wait_up("hello", 1, 30);
        assert!(
            a.log().contains("converging to desired state"),
            "{}",
            a.log()
        );
    }
    wait_for(30, "central fleet status to show v2 up on both", || {
        let (_, out) = fleet(&central, &["status", "--group", "farm"]);
        let rows: Vec<&str> = out.lines().filter(|l| l.starts_with('r')).collect();
        (rows.len() == 2
            && rows
                .iter()
                .all(|l| l.contains("online") && l.contains("hello v2 1/1 up")))
        .then_some(())
    });
}
