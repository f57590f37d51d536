//! A real syslog receiver for drain tests: Debian's `rsyslogd` in the foreground (`-n`) with its
//! own config, listening on a loopback TCP port and writing each message as received (RFC 5424
//! text, framing removed) as one line of a file. Stopping and starting it again on the same
//! port and file is how a test takes the receiver down for a while.

use crate::wait::wait_for;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

pub struct Rsyslog {
    dir: TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Rsyslog {
    /// Starts rsyslogd on a free loopback port; returns once it accepts connections.
    pub fn start() -> Rsyslog {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("pick a free port")
            .port();
        let dir = tempfile::Builder::new()
            .prefix("roboku-rsyslog-")
            .tempdir()
            .expect("rsyslog dir");
        let conf = format!(
            "global(workDirectory=\"{d}\")\n\
             module(load=\"imtcp\")\n\
             input(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\")\n\
             template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
             *.* action(type=\"omfile\" file=\"{d}/received.log\" template=\"raw\" flushInterval=\"0\" asyncWriting=\"off\")\n",
            d = dir.path().display()
        );
        std::fs::write(dir.path().join("rsyslog.conf"), conf).expect("write rsyslog.conf");
        let mut r = Rsyslog {
            dir,
            port,
            child: None,
        };
        r.resume();
        r
    }

    /// The file every received message is appended to.
    pub fn file(&self) -> PathBuf {
        self.dir.path().join("received.log")
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<String> {
        std::fs::read_to_string(self.file())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Stops it (SIGTERM) and waits for it to exit: the port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            crate::procs::kill(c.id() as i64, libc::SIGTERM);
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and file.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "rsyslogd is running already");
        let dir: &Path = self.dir.path();
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr")).expect("stderr file"))
            .spawn()
            .expect("spawn rsyslogd (Debian package rsyslog)");
        self.child = Some(child);
        let port = self.port;
        wait_for("rsyslogd to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}
