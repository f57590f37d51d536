//! Fleet links as fleets run them: `mqtts://` with client certificates against a Mosquitto TLS
//! listener, and `https://` artifacts, with certificates made here by the `openssl` CLI (a CA, a
//! second CA nobody trusts, server and client certificates, an expired client certificate).

use super::kit::{fleet, wait_for, Agent, Broker};
use super::{wait_online, Site};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Runs `openssl` in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test PKI in a directory the broker (which drops to user `mosquitto`) can read.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for ca in ["ca", "other-ca"] {
            openssl(
                d,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.pem"),
                    "-days",
                    "30",
                    "-subj",
                    &format!("/CN=roboku test {ca}"),
                ],
            );
        }
        let pki = Pki { dir };
        let d = pki.dir.path();
        pki.issue(
            "ca",
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth",
        );
        pki.issue("other-ca", "other-server", "subjectAltName=IP:127.0.0.1");
        pki.issue("ca", "client", "extendedKeyUsage=clientAuth");
        // An expired client certificate: `openssl ca` is the one that takes explicit dates.
        let cnf = "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\n\
                   serial = serial\ndefault_md = sha256\npolicy = p\nx509_extensions = ext\n\
                   [p]\ncommonName = supplied\n[ext]\nextendedKeyUsage = clientAuth\n\
                   basicConstraints = CA:FALSE\n";
        std::fs::write(d.join("ca.cnf"), cnf).expect("ca.cnf");
        std::fs::write(d.join("index.txt"), "").expect("index.txt");
        std::fs::write(d.join("serial"), "01\n").expect("serial");
        pki.csr("expired");
        openssl(
            d,
            &[
                "ca",
                "-batch",
                "-config",
                "ca.cnf",
                "-cert",
                "ca.pem",
                "-keyfile",
                "ca.key",
                "-in",
                "expired.csr",
                "-out",
                "expired.pem",
                "-notext",
                "-startdate",
                "20200101000000Z",
                "-enddate",
                "20200102000000Z",
            ],
        );
        let status = Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(d)
            .status()
            .expect("chmod");
        assert!(status.success());
        pki
    }

    fn csr(&self, name: &str) {
        openssl(
            self.dir.path(),
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
    }

    /// `name.pem` + `name.key`, signed by `ca` with the given extensions.
    fn issue(&self, ca: &str, name: &str, ext: &str) {
        self.csr(name);
        let ext_file = format!("{name}.ext");
        std::fs::write(self.dir.path().join(&ext_file), format!("{ext}\n")).expect("ext");
        openssl(
            self.dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "30",
                "-extfile",
                &ext_file,
            ],
        );
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// A robokud config with this CA and the named client certificate.
    fn agent_config(&self, name: &str, ca: &str, client: &str) -> PathBuf {
        let path = self.path(&format!("{name}.toml"));
        let text = format!(
            "[mqtt]\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\nartifact_ca_file = {:?}\n",
            self.path(&format!("{ca}.pem")),
            self.path(&format!("{client}.pem")),
            self.path(&format!("{client}.key")),
            self.path("ca.pem"),
        );
        std::fs::write(&path, text).expect("agent config");
        path
    }
}

/// Python's http.server behind TLS, serving `dir`; killed on drop.
struct HttpsServer {
    child: Child,
    port: u16,
}

impl HttpsServer {
    fn start(cert: &Path, key: &Path, dir: &Path) -> HttpsServer {
        let script = "import functools, http.server, ssl, sys\n\
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n\
            ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n\
            h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[3])\n\
            s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), h)\n\
            s.socket = ctx.wrap_socket(s.socket, server_side=True)\n\
            print(s.server_address[1], flush=True)\n\
            s.serve_forever()\n";
        let mut child = Command::new("python3")
            .args(["-c", script])
            .args([cert, key, dir])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 https server");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("https server port");
        let port = line.trim().parse().expect("https server printed its port");
        HttpsServer { child, port }
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_agent(broker: &Broker, url: &str, device: &str, site: &Site, config: &Path) -> Agent {
    let config = config.display().to_string();
    Agent::start_with(
        broker,
        device,
        &["tls"],
        &site.public,
        &["--mqtt", url, "--config", &config],
    )
}

#[test]
fn fleet_over_mqtts_with_client_certificates_and_https_artifacts() {
    let pki = Pki::new();
    let tls_port = super::kit::free_port();
    let listener = format!(
        "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
        pki.path("ca.pem").display(),
        pki.path("server.pem").display(),
        pki.path("server.key").display(),
    );
    let broker = Broker::start_with(&listener);
    wait_for(10, "the TLS listener", || {
        std::net::TcpStream::connect(("127.0.0.1", tls_port)).ok()
    });
    let site = Site::new();
    let url = format!("mqtts://127.0.0.1:{tls_port}");
    let good = tls_agent(
        &broker,
        &url,
        "t1",
        &site,
        &pki.agent_config("good", "ca", "client"),
    );
    let wrong_ca = pki.agent_config("wrong-ca", "other-ca", "client");
    let untrusting = tls_agent(&broker, &url, "t2", &site, &wrong_ca);
    let expired = pki.agent_config("expired", "ca", "expired");
    let expired = tls_agent(&broker, &url, "t3", &site, &expired);
    wait_online(&broker, &["t1"]);

    // An agent that does not trust the broker's CA, and one whose certificate expired, never
    // get on; each says why in its log.
    wait_for(30, "t2 to name the untrusted broker certificate", || {
        let log = untrusting.log();
        (log.contains("mqtt connection lost or refused") && log.contains("UnknownIssuer"))
            .then_some(())
    });
    wait_for(30, "the broker to refuse t3's expired certificate", || {
        let log = expired.log();
        (log.contains("mqtt connection lost or refused")
            && log.to_ascii_lowercase().contains("expired"))
        .then_some(())
    });
    let (_, status) = fleet(&broker, &["status"]);
    for d in ["t2", "t3"] {
        assert!(
            !status
                .lines()
                .any(|l| l.starts_with(d) && l.contains("online")),
            "{d} must not be online:\n{status}"
        );
    }

    // An https artifact, checked against the configured CA, deploys.
    let https = HttpsServer::start(
        &pki.path("server.pem"),
        &pki.path("server.key"),
        site.dir.path(),
    );
    let key = site.path("fleet.key");
    let deploy = |base: &str, name: &str| {
        let artifact_url = format!("{base}/{name}");
        let slug = site.path(name);
        fleet(
            &broker,
            &[
                "deploy",
                "--device",
                "t1",
                "-a",
                "hello",
                "--key",
                &key,
                "--artifact-url",
                &artifact_url,
                "--slug",
                &slug,
                "--wait",
                "60",
            ],
        )
    };
    let (rc, out) = deploy(
        &format!("https://127.0.0.1:{}", https.port),
        "hello-v1.tar.gz",
    );
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("1 succeeded, 0 failed"), "{out}");
    let pids = good.wait_up("hello", 1, 30);

    // One whose server the CA does not vouch for fails with the TLS reason; v1 keeps running.
    let other = HttpsServer::start(
        &pki.path("other-server.pem"),
        &pki.path("other-server.key"),
        site.dir.path(),
    );
    let (rc, out) = deploy(
        &format!("https://127.0.0.1:{}", other.port),
        "hello-v2.tar.gz",
    );
    assert_ne!(rc, 0, "{out}");
    assert!(
        out.contains("TLS for artifact downloads") && out.contains("UnknownIssuer"),
        "{out}"
    );
    assert_eq!(good.wait_up("hello", 1, 10), pids, "v1 untouched");
}
