//! The three workloads of [`crate::extra`] on the BENCHMARKS page: a section of tables with
//! their own targets, two plots, and their JSON under `workloads` (their targets also join the
//! page's `targets` array and the printed summary).

use crate::chatty::{Sample, CAPTURERS};
use crate::extra::{series_of, Extra};
use crate::managers::Kind;
use crate::page::{cell, num, targets_table, verdict, Out, Target};
use crate::series::Series;
use crate::slug::DEPLOYERS;
use crate::svg;
use serde_json::{json, Value};

fn chatty(x: &Extra, kind: Kind, unit: &'static str, get: impl Fn(&Sample) -> f64) -> Series {
    series_of(&x.chatty, kind, unit, get)
}

fn devnull(x: &Extra) -> Series {
    let mut s = Series::new("ms");
    for v in &x.devnull_ms {
        s.push(*v);
    }
    s
}

/// Each run's slowdown against the median /dev/null run, %.
fn slowdown(x: &Extra, kind: Kind) -> Series {
    let floor = devnull(x).median();
    chatty(x, kind, "%", |s| (s.dyno_ms / floor - 1.0) * 100.0)
}

fn deploys(x: &Extra, kind: Kind) -> Series {
    series_of(&x.deploys, kind, "ms", |v| *v)
}

/// One of a round's figures.
type RoundMs = fn(&crate::mqtt::Round) -> f64;

fn mqtt(x: &Extra, get: RoundMs) -> Series {
    let mut s = Series::new("ms");
    for r in &x.mqtt {
        s.push(get(r));
    }
    s
}

/// What each deploy contender's step is.
fn deploy_step(kind: Kind) -> &'static str {
    match kind {
        Kind::Robokud => {
            "`roboku deploy --slug` (upload over the socket, unpack, release, new dyno, health \
             checks: with no `app.json` checks, the default \"process stays up\" for 1 s) until \
             it answered and `ps` shows the new dyno up"
        }
        Kind::Uwsgi => {
            "piku's step after its build: `tar xzf` the slug into a new release dir, restart \
             the app's uwsgi master (SIGTERM, old dyno gone, start) until its attach-daemon runs"
        }
        _ => "`tar xzf` the slug into a new release dir, restart the manager (SIGTERM, old dyno gone, start) until its dyno runs",
    }
}

fn targets(x: &Extra) -> Vec<Target> {
    let mut out = Vec::new();
    if x.ran.contains(&"chatty") {
        let mbps = chatty(x, Kind::Robokud, "MB/s", |s| s.mbps).median();
        let lost = chatty(x, Kind::Robokud, "lines", |s| s.lost as f64).max();
        let slow = slowdown(x, Kind::Robokud).median();
        out.push(Target {
            text: "log throughput >= 50 MB/s from one dyno, no line lost, dyno slowed <= 10 %"
                .into(),
            figure: format!(
                "{} MB: robokud {} MB/s, {} lines lost (worst run), dyno slowed {} % (medians); \
                 floor (plain file) {} MB/s, {} %",
                x.mb,
                num(mbps),
                num(lost),
                num(slow),
                num(chatty(x, Kind::Floor, "MB/s", |s| s.mbps).median()),
                num(slowdown(x, Kind::Floor).median())
            ),
            met: mbps
                .is_finite()
                .then_some(mbps >= 50.0 && lost == 0.0 && slow <= 10.0),
        });
    }
    if x.ran.contains(&"mqtt") {
        let signed = mqtt(x, |r| r.signed_ms).median();
        out.push(Target {
            text: "signed MQTT command -> ACCEPTED under 10 ms median (the fleet bench's target)"
                .into(),
            figure: format!(
                "signed envelope {} ms, `roboku fleet scale` {} ms, bare broker round trip {} ms \
                 (medians of {})",
                num(signed),
                num(mqtt(x, |r| r.cli_ms).median()),
                num(mqtt(x, |r| r.floor_ms).median()),
                x.mqtt.len()
            ),
            met: signed.is_finite().then_some(signed < 10.0),
        });
    }
    if x.ran.contains(&"slug") {
        let r = deploys(x, Kind::Robokud).median();
        let p = deploys(x, Kind::Uwsgi).median();
        out.push(Target {
            text: "deploy of a prebuilt slug -> new dyno up (no target in the issue: the ratio)"
                .into(),
            figure: format!(
                "robokud {} ms (1 s of it its default \"stays up\" check), piku's unpack + \
                 restart {} ms (no check): {}x",
                num(r),
                num(p),
                num(r / p)
            ),
            met: None,
        });
    }
    out
}

pub fn append(x: &Extra, out: &mut Out) {
    let targets = targets(x);
    let mut md = String::new();
    let mut p = |s: &str| {
        md.push_str(s);
        md.push('\n');
    };
    p("");
    p("## Logs, slug deploys and MQTT commands (issue 15)");
    p("");
    p(
        "Run after the cycles above, each workload on every contender that has an equivalent, \
       the order rotated per iteration; robokud is a fresh agent (log quota raised so every line \
       stays in its store). Cells are `median (min–max)` over the runs.",
    );
    p("");
    for line in targets_table(&targets, "no target") {
        p(&line);
    }
    if x.ran.contains(&"chatty") {
        p("");
        p(&format!(
            "### Chatty dyno: {} MB of numbered 100-byte lines from one dyno",
            x.mb
        ));
        p("");
        p(
            "The dyno is a python writer (`tests/benches/core/loglines.rs`, shared with \
           `--bench logs`) that times itself, then sleeps. Captured means: in robokud's log \
           store (`app.log` + `app.log.1`, what `roboku logs` reads); in the floor's `--log` \
           file (a plain `O_APPEND` write: the floor); in supervisord's `stdout_logfile`; in \
           foreman's and honcho's stdout, sent to a file. Throughput: the lines kept over the \
           time from the writer's first line to its last line found in the capture; lines \
           lost: numbers missing once the capture stayed unchanged for 3 s. Slowed: the \
           writer's own time against the same writer with stdout on /dev/null, run by the bench next to \
           every contender's run (the medians of both).",
        );
        p("");
        p("| contender | capture (MB/s) | lines lost | stored twice | dyno's write time (ms) | dyno slowed (%) |");
        p("|---|---|---|---|---|---|");
        p(&format!(
            "| writer alone, stdout on /dev/null | — | — | — | {} | 0 |",
            cell(&devnull(x))
        ));
        for &kind in &CAPTURERS {
            p(&format!(
                "| {} | {} | {} | {} | {} | {} |",
                kind.name(),
                cell(&chatty(x, kind, "MB/s", |s| s.mbps)),
                cell(&chatty(x, kind, "lines", |s| s.lost as f64)),
                cell(&chatty(x, kind, "lines", |s| s.twice as f64)),
                cell(&chatty(x, kind, "ms", |s| s.dyno_ms)),
                cell(&slowdown(x, kind)),
            ));
        }
        p("");
        p("![chatty dyno: capture throughput](bench-chatty.svg)");
    }
    if x.ran.contains(&"slug") {
        p("");
        p("### Deploy of a prebuilt slug -> the new release's dyno running (ms)");
        p("");
        p(
            "One slug per release built once with `roboku slug:build` (untimed; Procfile \
           `web: exec sleep 100000`), one warm-up deploy first for everyone.",
        );
        p("");
        p("| contender | deploy (ms) | the step |");
        p("|---|---|---|");
        for &kind in &DEPLOYERS {
            p(&format!(
                "| {} | {} | {} |",
                kind.name(),
                cell(&deploys(x, kind)),
                deploy_step(kind)
            ));
        }
        p("");
        p("![deploy of a prebuilt slug](bench-slug.svg)");
    }
    if x.ran.contains(&"mqtt") {
        p("");
        p("### MQTT command -> ACCEPTED, one robokud on a loopback Mosquitto (ms)");
        p("");
        p(
            "The bench starts its own Mosquitto and one robokud process (the fleet tests' kit), \
           trusting a key from `roboku fleet keygen`; every round times, from the bench's own \
           MQTT client, three things in turn. Each command scales an app (one release of \
           `sleep`) to zero: accepted, then nothing to do.",
        );
        p("");
        p("| path | ms | what is timed |");
        p("|---|---|---|");
        let rows: [(&str, RoundMs, &str); 3] = [
            (
                "broker round trip (floor)",
                |r| r.floor_ms,
                "QoS 1 publish -> the same message back on a subscribed topic",
            ),
            (
                "signed envelope",
                |r| r.signed_ms,
                "an ed25519-sealed scale envelope published on the robot's command topic -> its ACCEPTED ack",
            ),
            (
                "`roboku fleet scale --device`",
                |r| r.cli_ms,
                "the CLI started (key, connect, seal, publish) -> the robot's ACCEPTED ack",
            ),
        ];
        for (name, get, what) in rows {
            p(&format!("| {name} | {} | {what} |", cell(&mqtt(x, get))));
        }
    }
    // Before the page's findings (which list these workloads' failures too), else at the end.
    match out.markdown.find("\n## Findings") {
        Some(at) => out.markdown.insert_str(at, &md),
        None => out.markdown.push_str(&md),
    }

    let bars = |kinds: &[Kind], get: &dyn Fn(Kind) -> f64| -> Vec<(String, f64)> {
        kinds
            .iter()
            .map(|&k| (k.name().to_string(), get(k)))
            .collect()
    };
    if x.ran.contains(&"chatty") {
        let panel = svg::Panel {
            label: format!("{} MB", x.mb),
            bars: bars(&CAPTURERS, &|k| chatty(x, k, "MB/s", |s| s.mbps).median()),
        };
        out.svgs.push((
            "bench-chatty.svg".into(),
            svg::grouped_bars("chatty dyno: capture throughput", "MB/s", &[panel]),
        ));
    }
    if x.ran.contains(&"slug") {
        let panel = svg::Panel {
            label: "1 dyno".into(),
            bars: bars(&DEPLOYERS, &|k| deploys(x, k).median()),
        };
        out.svgs.push((
            "bench-slug.svg".into(),
            svg::grouped_bars(
                "deploy of a prebuilt slug -> new dyno running",
                "ms",
                &[panel],
            ),
        ));
    }

    let mut chatty_json = serde_json::Map::new();
    for &kind in &CAPTURERS {
        chatty_json.insert(
            kind.name().into(),
            json!({
                "mbps": chatty(x, kind, "MB/s", |s| s.mbps).json(),
                "lost": chatty(x, kind, "lines", |s| s.lost as f64).json(),
                "twice": chatty(x, kind, "lines", |s| s.twice as f64).json(),
                "dyno_ms": chatty(x, kind, "ms", |s| s.dyno_ms).json(),
                "slowdown_pct": slowdown(x, kind).json(),
            }),
        );
    }
    let deploy_json: serde_json::Map<String, Value> = DEPLOYERS
        .iter()
        .map(|&k| (k.name().to_string(), deploys(x, k).json()))
        .collect();
    let target_json: Vec<Value> = targets
        .iter()
        .map(|t| json!({ "target": t.text, "figure": t.figure, "met": t.met }))
        .collect();
    out.json["workloads"] = json!({
        "ran": x.ran,
        "chatty": { "mb": x.mb, "devnull_ms": devnull(x).json(), "contenders": chatty_json },
        "slug_deploy_ms": deploy_json,
        "mqtt_ms": {
            "broker_round_trip": mqtt(x, |r| r.floor_ms).json(),
            "signed_envelope": mqtt(x, |r| r.signed_ms).json(),
            "cli": mqtt(x, |r| r.cli_ms).json(),
        },
    });
    if let Some(all) = out.json.get_mut("targets").and_then(Value::as_array_mut) {
        all.extend(target_json);
    }
    for t in &targets {
        out.summary.push_str(&format!(
            "  [{}] {}: {}\n",
            verdict(t, "no target"),
            t.text,
            t.figure
        ));
    }
}
