//! The web router: one TCP listener per app on its stable router port, splicing every
//! connection to one of the app's routable web dynos (`127.0.0.1:<dyno port>`), round robin.
//!
//! It is what makes a deploy switch without a refused connection (Heroku's preboot): the engine
//! decides which dynos are routable (the old release's until the new one passed its checks, then
//! only the new one's) and publishes that list through a `watch`; a connection that finds no
//! routable dyno, or none that accepts, waits for the list to change (up to [`WAIT`]) instead of
//! being refused. It never parses HTTP, so it serves any TCP protocol, and it never touches the
//! store or the processes: it only reads the list the engine publishes.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

/// How long a connection waits for a routable dyno that accepts (a dyno booting, a deploy's
/// first release not yet healthy) before it is closed.
pub const WAIT: Duration = Duration::from_secs(30);
/// Between rounds of connect attempts when every routable dyno refused.
const RETRY: Duration = Duration::from_millis(10);
/// Connections spliced at once; more wait in the kernel's backlog (fds are the robot's too).
const MAX_CONNS: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("cannot bind the router of {app} on port {port}: {source}")]
    Bind {
        app: String,
        port: u16,
        source: io::Error,
    },
}

/// A running router; dropping it closes the listener and stops accepting.
pub struct Router {
    pub port: u16,
    backends: watch::Sender<Vec<u16>>,
    open: Open,
    task: tokio::task::JoinHandle<()>,
}

/// Connections open to each dyno port (what a draining dyno still serves).
type Open = Arc<Mutex<BTreeMap<u16, usize>>>;

/// Counts one spliced connection to `port` while it lives.
struct Counted {
    open: Open,
    port: u16,
}

impl Counted {
    fn new(open: &Open, port: u16) -> Counted {
        if let Ok(mut m) = open.lock() {
            *m.entry(port).or_insert(0) += 1;
        }
        Counted {
            open: open.clone(),
            port,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Ok(mut m) = self.open.lock() {
            if let Some(n) = m.get_mut(&self.port) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.port);
                }
            }
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Router {
    /// Binds `0.0.0.0:port` (apps share the host network; a web dyno would bind it too) and
    /// starts serving with no routable dyno. Must be called inside a tokio runtime.
    pub fn bind(app: &str, port: u16) -> Result<Router, RouterError> {
        let err = |source| RouterError::Bind {
            app: app.to_string(),
            port,
            source,
        };
        let std = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).map_err(err)?;
        std.set_nonblocking(true).map_err(err)?;
        let listener = TcpListener::from_std(std).map_err(err)?;
        let (tx, rx) = watch::channel(Vec::new());
        let open = Open::default();
        let task = tokio::spawn(serve(listener, rx, open.clone()));
        Ok(Router {
            port,
            backends: tx,
            open,
            task,
        })
    }

    /// Publishes the dyno ports to route to (sorted; unchanged lists wake nobody).
    pub fn set_backends(&self, mut ports: Vec<u16>) {
        ports.sort_unstable();
        self.backends.send_if_modified(|old| {
            let changed = *old != ports;
            if changed {
                *old = ports;
            }
            changed
        });
    }

    pub fn backends(&self) -> Vec<u16> {
        self.backends.borrow().clone()
    }

    /// Connections this router has open to a dyno port now.
    pub fn open_to(&self, port: u16) -> usize {
        self.open
            .lock()
            .map(|m| m.get(&port).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

async fn serve(listener: TcpListener, backends: watch::Receiver<Vec<u16>>, open: Open) {
    let next = Arc::new(AtomicUsize::new(0));
    let slots = Arc::new(Semaphore::new(MAX_CONNS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(e) => {
                // EMFILE and friends: back off a little rather than spin.
                tracing::warn!(error = %e, "router accept failed");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let (backends, next, open) = (backends.clone(), next.clone(), open.clone());
        tokio::spawn(async move {
            let _permit = permit;
            splice(client, backends, &next, &open).await;
        });
    }
}

/// Connects `client` to a routable dyno and copies both ways until either side closes.
async fn splice(
    mut client: TcpStream,
    backends: watch::Receiver<Vec<u16>>,
    next: &AtomicUsize,
    open: &Open,
) {
    let _ = client.set_nodelay(true);
    let Some((mut dyno, port)) = connect(backends, next, Instant::now() + WAIT).await else {
        return;
    };
    let _counted = Counted::new(open, port);
    let _ = dyno.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut dyno).await;
}

/// The first routable dyno that accepts, starting at the round-robin position; waits for the
/// list to change (or retries) while none does, until `deadline`.
pub async fn connect(
    mut backends: watch::Receiver<Vec<u16>>,
    next: &AtomicUsize,
    deadline: Instant,
) -> Option<(TcpStream, u16)> {
    loop {
        let ports = backends.borrow_and_update().clone();
        let start = next.fetch_add(1, Ordering::Relaxed);
        for i in 0..ports.len() {
            let port = ports[(start + i) % ports.len()];
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            if let Ok(s) = TcpStream::connect(addr).await {
                return Some((s, port));
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        // A change of the list ends the wait early; otherwise try the same dynos again soon
        // (one that is booting starts listening on its own time).
        let wait = if ports.is_empty() {
            deadline - now
        } else {
            RETRY.min(deadline - now)
        };
        if let Ok(Err(_)) = tokio::time::timeout(wait, backends.changed()).await {
            return None; // the router is gone
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server() -> (u16, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = l.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    let n = s.read(&mut buf).await.unwrap();
                    s.write_all(&buf[..n]).await.unwrap();
                });
            }
        });
        (port, task)
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    async fn round_trip(port: u16) -> Vec<u8> {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_connection_waits_for_a_routable_dyno_instead_of_being_refused() {
        let router = Router::bind("t", free_port()).unwrap();
        let client = tokio::spawn(round_trip(router.port));
        // Accepted and held while nothing is routable (a first deploy not yet healthy).
        tokio::task::yield_now().await;
        assert!(!client.is_finished());
        let (dyno, _task) = echo_server().await;
        router.set_backends(vec![dyno]);
        assert_eq!(client.await.unwrap(), b"ping");
    }

    #[tokio::test]
    async fn a_refusing_dyno_is_skipped_for_one_that_accepts() {
        let router = Router::bind("t", free_port()).unwrap();
        let (good, _task) = echo_server().await;
        router.set_backends(vec![free_port(), good]);
        for _ in 0..4 {
            assert_eq!(round_trip(router.port).await, b"ping");
        }
    }

    #[tokio::test]
    async fn open_connections_are_counted_per_dyno_until_they_close() {
        let router = Router::bind("t", free_port()).unwrap();
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let dyno = l.local_addr().unwrap().port();
        router.set_backends(vec![dyno]);
        let client = TcpStream::connect((Ipv4Addr::LOCALHOST, router.port))
            .await
            .unwrap();
        let (held, _) = l.accept().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while router.open_to(dyno) != 1 {
            assert!(Instant::now() < deadline, "never counted");
            tokio::task::yield_now().await;
        }
        drop((client, held));
        while router.open_to(dyno) != 0 {
            assert!(Instant::now() < deadline, "never uncounted");
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn gives_up_at_the_deadline_and_a_taken_port_is_named() {
        let (tx, rx) = watch::channel(vec![free_port()]);
        let next = AtomicUsize::new(0);
        let deadline = Instant::now() + Duration::from_millis(50);
        assert!(connect(rx, &next, deadline).await.is_none());
        drop(tx);
        let router = Router::bind("t", free_port()).unwrap();
        let err = Router::bind("shop", router.port).err().unwrap().to_string();
        assert!(
            err.contains("router of shop") && err.contains(&router.port.to_string()),
            "{err}"
        );
    }
}
