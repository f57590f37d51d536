//! A Rust web app with one vendored crate (vendor/ and .cargo/config.toml, as `cargo vendor`
//! writes them): builds offline. `robot-web once` prints the greeting instead of serving it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("once") {
        println!("{}", greet::hello());
        return;
    }
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .expect("PORT is a port number");
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind 127.0.0.1:$PORT");
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut request_line = String::new();
        let _ = BufReader::new(&stream).read_line(&mut request_line);
        let body = greet::hello();
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}
