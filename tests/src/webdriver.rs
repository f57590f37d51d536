//! Just enough WebDriver (W3C, as chromedriver speaks it) over plain HTTP to drive Debian's
//! headless chromium from a test: start a session, open a URL, run a script, read the browser
//! console, take a screenshot. Dropping the [`Browser`] ends the session and chromedriver.

use crate::http;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port for chromedriver")
}

impl Browser {
    /// Starts chromedriver and a headless chromium session (`width`x`height` window).
    pub fn start(width: u32, height: u32) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run chromedriver (Debian packages chromium and chromium-driver)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut b = Browser {
            driver,
            addr,
            session: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !http::tcp(addr, "GET", "/status", &[], None)
            .is_ok_and(|r| r.json()["value"]["ready"] == true)
        {
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": "/usr/lib/chromium/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", format!("--window-size={width},{height}")],
            },
        }}});
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session from chromedriver: {v}"))
            .to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let text = body.map(|b| b.to_string());
        let r = http::tcp(self.addr, method, path, &[], text.as_deref())
            .unwrap_or_else(|e| panic!("chromedriver {method} {path}: {e}"));
        let v = r.json();
        assert!(
            r.status == 200,
            "chromedriver {method} {path}: {} {v}",
            r.status
        );
        v["value"].clone()
    }

    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn open(&self, url: &str) {
        self.call("POST", &self.path("/url"), Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body: `return ...`) in the page; its value.
    pub fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.path("/execute/sync"),
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Browser console entries since the last call (`level`, `message`).
    pub fn console(&self) -> Vec<Value> {
        match self.call(
            "POST",
            &self.path("/se/log"),
            Some(json!({"type": "browser"})),
        ) {
            Value::Array(v) => v,
            other => panic!("browser log is not a list: {other}"),
        }
    }

    /// Resizes the browser window (CSS pixels).
    pub fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            &self.path("/window/rect"),
            Some(json!({"width": width, "height": height})),
        );
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let b64 = self.call("GET", &self.path("/screenshot"), None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("screenshot is base64"))
            .expect("decode screenshot")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let p = self.path("");
            let _ = http::tcp(self.addr, "DELETE", &p, &[], None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
