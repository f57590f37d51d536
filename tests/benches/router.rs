//! `cargo bench -p roboku-tests --bench router`: the web router's cost (issue 14; target: under
//! 0.2 ms median added latency, at least 5,000 requests/s to a trivial dyno), against a direct
//! connection to the same dyno in the same run. Uses robokud's `Router` type in this process
//! and a trivial HTTP dyno (a tokio task answering `200 ok` to every request).
//!
//! 1. latency, a fresh connection per request (what a `Connection: close` client does):
//!    connect + request + response, direct vs through the router; medians of N.
//! 2. latency on one kept-alive connection: the router's copy hop alone.
//! 3. throughput: C clients, a fresh connection per request, for S seconds each way; then the
//!    same on kept-alive connections.
//!
//! Clients, router and dyno run on three runtimes (two threads each), as three processes would.
//!
//! Env: `ROBOKU_BENCH_ITERS` (default 2000), `ROBOKU_BENCH_CLIENTS` (default 16),
//! `ROBOKU_BENCH_SECS` (default 3).

use robokud::router::Router;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A trivial dyno: answers every request on a connection until the client closes.
async fn dyno() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind dyno");
    let port = l.local_addr().expect("dyno addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(RESPONSE).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

async fn request(s: &mut TcpStream) {
    s.write_all(REQUEST).await.expect("send");
    let mut buf = [0u8; 256];
    let mut got = 0;
    while got < RESPONSE.len() {
        let n = s.read(&mut buf[got..]).await.expect("read");
        assert!(n > 0, "closed early");
        got += n;
    }
}

async fn fresh(port: u16) {
    let mut s = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .expect("connect");
    let _ = s.set_nodelay(true);
    request(&mut s).await;
}

async fn latency_fresh(port: u16, iters: u64) -> f64 {
    let mut v = Vec::new();
    for _ in 0..iters {
        let t = Instant::now();
        fresh(port).await;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    median(v)
}

async fn latency_kept(port: u16, iters: u64) -> f64 {
    let mut s = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .expect("connect");
    let _ = s.set_nodelay(true);
    let mut v = Vec::new();
    for _ in 0..iters {
        let t = Instant::now();
        request(&mut s).await;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    median(v)
}

async fn throughput_kept(port: u16, clients: u64, secs: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (stop, done) = (stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
                .await
                .expect("connect");
            let _ = s.set_nodelay(true);
            while !stop.load(Ordering::Relaxed) {
                request(&mut s).await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await; // the measuring window
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("client");
    }
    done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64()
}

async fn throughput(port: u16, clients: u64, secs: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (stop, done) = (stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                fresh(port).await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await; // the measuring window
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("client");
    }
    done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime")
}

fn main() {
    // Clients, router and dyno each on their own runtime, as three processes would be.
    let (clients_rt, router_rt, dyno_rt) = (runtime(2), runtime(2), runtime(2));
    let port = dyno_rt.block_on(dyno());
    let router = router_rt.block_on(async {
        let router = Router::bind("bench", free_port()).expect("bind router");
        router.set_backends(vec![port]);
        router
    });
    clients_rt.block_on(async {
        let (iters, clients, secs) = (
            env("ROBOKU_BENCH_ITERS", 2000),
            env("ROBOKU_BENCH_CLIENTS", 16),
            env("ROBOKU_BENCH_SECS", 3),
        );
        // Warm both paths (connection setup, the runtime's workers).
        latency_fresh(port, 100).await;
        latency_fresh(router.port, 100).await;

        let (d, r) = (
            latency_fresh(port, iters).await,
            latency_fresh(router.port, iters).await,
        );
        println!(
            "fresh connection per request, median of {iters}: direct {d:.3} ms, router {r:.3} ms, \
             added {:.3} ms (x{:.2})",
            r - d,
            r / d
        );
        let (d, r) = (
            latency_kept(port, iters).await,
            latency_kept(router.port, iters).await,
        );
        println!(
            "kept-alive connection, median of {iters}: direct {d:.3} ms, router {r:.3} ms, \
             added {:.3} ms (x{:.2})",
            r - d,
            r / d
        );
        let (d, r) = (
            throughput(port, clients, secs).await,
            throughput(router.port, clients, secs).await,
        );
        println!(
            "throughput, {clients} clients, fresh connections, {secs} s each: direct {d:.0} req/s, \
             router {r:.0} req/s (x{:.2})",
            r / d
        );
        let (d, r) = (
            throughput_kept(port, clients, secs).await,
            throughput_kept(router.port, clients, secs).await,
        );
        println!(
            "throughput, {clients} clients, kept-alive connections, {secs} s each: direct {d:.0} \
             req/s, router {r:.0} req/s (x{:.2})",
            r / d
        );
    });
}
