//! The MQTT connection settings robokud and `roboku fleet` share: broker URL parsing
//! (`mqtt://host[:1883]`, `mqtts://host[:8883]`), TLS on rustls 0.23 with the ring provider
//! (CA file, optional client certificate), TCP_NODELAY (without it a command -> ack round trip on
//! loopback takes 40-85 ms of Nagle + delayed ACK instead of well under one), packet limits.
//! Connecting, reconnecting and subscribing are the callers' business.

use rumqttc::{MqttOptions, NetworkOptions, TlsConfiguration, Transport};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use rumqttc;

/// Largest packet accepted from the broker. Bigger than [`super::MAX_PAYLOAD`] so an oversized
/// command is read and REJECTED with a reason instead of dropping the connection; the broker's
/// own `message_size_limit` should stop anything larger.
pub const MAX_PACKET: usize = 1024 * 1024;

/// A broker address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

/// TLS material; every field optional. Without `ca` the system bundle is used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The Debian/Ubuntu system CA bundle, used for `mqtts://` when no CA file is given.
const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

pub fn parse_broker(url: &str) -> Result<Broker, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else {
        return Err(format!(
            "broker URL {url:?} must start with mqtt:// or mqtts://"
        ));
    };
    let rest = rest.trim_end_matches('/');
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| format!("broker URL {url:?}: bad port {p:?}"))?;
            (h, port)
        }
        _ => (rest, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains('/') {
        return Err(format!("broker URL {url:?}: no host"));
    }
    Ok(Broker {
        host: host.to_string(),
        port,
        tls,
    })
}

/// Options for one client: clean session, keep-alive, packet limits, TLS when asked, and
/// network options with TCP_NODELAY set.
pub fn options(
    url: &str,
    client_id: &str,
    keep_alive: Duration,
    tls: &TlsFiles,
) -> Result<(MqttOptions, NetworkOptions), String> {
    let broker = parse_broker(url)?;
    let mut opts = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    opts.set_keep_alive(keep_alive.max(Duration::from_secs(1)));
    opts.set_clean_session(true);
    opts.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    if broker.tls {
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls_config(tls)?),
        )));
    } else if tls.ca.is_some() || tls.cert.is_some() {
        return Err(format!(
            "TLS files given but broker URL {url:?} is not mqtts://"
        ));
    }
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    net.set_connection_timeout(5);
    Ok((opts, net))
}

/// A rustls client config (ring provider) from `files`: the CA bundle (default: the system's)
/// and, when both are given, a client certificate and key. Errors name the file.
pub fn tls_config(files: &TlsFiles) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    let ca = files.ca.clone().unwrap_or_else(|| PathBuf::from(SYSTEM_CA));
    let mut roots = rustls::RootCertStore::empty();
    let certs = read_certs(&ca)?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("{}: no usable CA certificate", ca.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots);
    match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("{}: no private key: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate {}: {e}", cert.display()))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err("a client certificate needs both the cert and the key file".into()),
    }
}

fn read_certs(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let b = parse_broker("mqtt://127.0.0.1:18830").unwrap();
        assert_eq!(
            (b.host.as_str(), b.port, b.tls),
            ("127.0.0.1", 18830, false)
        );
        let b = parse_broker("mqtts://broker.example").unwrap();
        assert_eq!((b.port, b.tls), (8883, true));
        assert_eq!(parse_broker("mqtt://[::1]:1884").unwrap().host, "::1");
        assert!(parse_broker("http://x").is_err());
        assert!(parse_broker("mqtt://x:notaport").is_err());
        assert!(parse_broker("mqtt://").is_err());
    }

    #[test]
    fn tls_needs_a_readable_ca() {
        let files = TlsFiles {
            ca: Some("/nonexistent/ca.pem".into()),
            ..TlsFiles::default()
        };
        let err = options("mqtts://x", "id", Duration::from_secs(5), &files)
            .err()
            .unwrap();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let err = options("mqtt://x", "id", Duration::from_secs(5), &files)
            .err()
            .unwrap();
        assert!(err.contains("not mqtts"), "{err}");
    }
}
