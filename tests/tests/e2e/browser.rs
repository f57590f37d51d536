//! The dashboard in a real browser: Debian's chromium, headless, driven over WebDriver
//! (chromedriver), against a real robokud with a real app. The page loads with no console
//! errors, shows the app and its dynos, a dyno's chart has points, a line the app prints shows
//! up live, a `roboku ps:scale` run in a terminal shows without a reload, and the rollback
//! button (two clicks: arm, confirm) makes a new release. A screenshot is kept.

use super::dashboard::{dashboard, ticker_app};
use roboku_tests::webdriver::Browser;
use roboku_tests::{wait_for, Agent, AgentOpts};
use serde_json::Value;
use std::time::Duration;

fn until(b: &Browser, what: &str, secs: u64, script: &str) -> Value {
    let mut last = Value::Null;
    wait_for(what, Duration::from_secs(secs), || {
        last = b.eval(script);
        !(last.is_null() || last == false)
    });
    last
}

#[test]
fn dashboard_in_headless_chromium_follows_the_robot_and_rolls_back() {
    let agent = Agent::start(AgentOpts {
        extra: vec!["--dashboard".into(), "127.0.0.1:0".into()],
        ..AgentOpts::default()
    });
    agent.create_and_deploy("demo", ticker_app("one").path());
    agent.deploy("demo", ticker_app("two").path());
    agent.ok(&["ps:resize", "-a", "demo", "web", "--memory", "96M"]);
    agent.wait_up("demo", "web.1", None, Duration::from_secs(20));
    let (_, _, url) = dashboard(&agent);

    let b = Browser::start(1200, 1800);
    b.open(&url);
    // The token left the address bar (it lives in sessionStorage now).
    assert_eq!(b.eval("return location.hash"), "");
    until(
        &b,
        "the page to show demo's web.1",
        15,
        "return document.querySelector('#app-demo tr[data-dyno=\"web.1\"] td.state-up') !== null",
    );
    b.eval("window.__noReload = 1; return 1");
    until(
        &b,
        "web.1's chart to have 2+ points",
        20,
        "const c = document.querySelector('#app-demo .chart[data-dyno=\"web.1\"] .uplot'); \
         return c && +c.dataset.points >= 2",
    );
    until(
        &b,
        "a cpu figure in the dynos table",
        15,
        "const c = document.querySelector('#app-demo tr[data-dyno=\"web.1\"] td.cpu'); \
         return c && c.textContent.endsWith('%')",
    );

    // Live logs: a tick printed after this moment appears without any action on the page.
    let t0 = b.eval("return Date.now()").as_f64().unwrap();
    until(
        &b,
        "a tick line newer than the page's start in the log pane",
        15,
        &format!(
            "return [...document.querySelectorAll('#logs div')].some(d => +d.dataset.ts > {t0} && \
         d.textContent.includes('tick'))"
        ),
    );

    // A scale from the terminal shows up without a reload.
    agent.ok(&["ps:scale", "-a", "demo", "web=2"]);
    until(
        &b,
        "web.2 in the page after ps:scale",
        20,
        "return document.querySelector('#app-demo tr[data-dyno=\"web.2\"]') !== null && \
         window.__noReload === 1",
    );

    // Rollback: the first click arms the button, the second confirms.
    let sel = "#app-demo table.releases button.rollback[data-version=\"1\"]";
    until(
        &b,
        "a rollback button for v1",
        10,
        &format!("return document.querySelector('{sel}') !== null"),
    );
    b.eval(&format!(
        "document.querySelector('{sel}').click(); return 1"
    ));
    until(&b, "the button to ask for confirmation", 5, &format!(
        "const x = document.querySelector('{sel}'); return x && x.textContent.startsWith('Confirm')"));
    assert_eq!(
        agent
            .json(&["releases", "-a", "demo"])
            .as_array()
            .unwrap()
            .len(),
        2,
        "one click changes nothing"
    );
    b.eval(&format!(
        "document.querySelector('{sel}').click(); return 1"
    ));
    wait_for(
        "a release made by the dashboard",
        Duration::from_secs(20),
        || {
            agent
                .json(&["releases", "-a", "demo"])
                .as_array()
                .unwrap()
                .iter()
                .any(|r| {
                    r["door"] == "dashboard"
                        && r["description"].as_str().unwrap_or("").contains("v1")
                })
        },
    );
    until(
        &b,
        "the page to show the new current release",
        15,
        "const r = document.querySelector('#app-demo .rel'); return r && r.textContent === 'v3'",
    );

    let png = b.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let dir = std::env::temp_dir().join(format!("roboku-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("dashboard.png");
    std::fs::write(&shot, &png).unwrap();
    eprintln!("dashboard screenshot: {}", shot.display());

    // A phone: nothing wider than the screen (tables scroll inside their cards).
    b.resize(390, 844);
    let fit = "return [window.innerWidth, document.documentElement.scrollWidth, \
               [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > \
               window.innerWidth + 1).slice(0, 5).map(e => e.tagName + '.' + e.className).join(' ')]";
    let mut last = Value::Null;
    let fits = (0..50).any(|_| {
        last = b.eval(fit);
        let ok = last[0].as_u64().is_some_and(|w| w <= 400)
            && last[1].as_u64() <= last[0].as_u64().map(|w| w + 1);
        if !ok {
            std::thread::sleep(Duration::from_millis(200));
        }
        ok
    });
    assert!(
        fits,
        "the page does not fit a 390 px window: [innerWidth, scrollWidth, too wide] = {last}"
    );
    std::fs::write(dir.join("dashboard-phone.png"), b.screenshot()).unwrap();

    let errors: Vec<Value> = b
        .console()
        .into_iter()
        .filter(|e| e["level"] == "SEVERE")
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}
