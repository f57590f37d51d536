//! `run -- CMD ARGS...` and `run:detached`: one-off dynos, started by robokud as the app's user
//! in a cgroup of their own (shown in `ps` as `run.N`, logged, never restarted).
//!
//! Attached, this terminal's stdin goes to the dyno and its output comes back over the upgraded
//! API connection ([`roboku_wire::attach`]); Ctrl-C, SIGTERM, SIGHUP and SIGQUIT sent to roboku
//! are passed on to the dyno, and roboku leaves with the dyno's exit code (128 + signal when a
//! signal ended it). From a terminal the dyno gets a pty of the same size (resized with it) and
//! this terminal is in raw mode meanwhile, so Ctrl-C reaches the dyno as a terminal would send it.

use super::{app_path, AppArg, Ctx};
use anyhow::Context as _;
use roboku_wire::attach::{self, frame, take_frame};
use roboku_wire::{Done, RunRequest};
use serde_json::Value;
use std::io::Read as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// The command and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

/// `run:detached`: starts the one-off dyno and returns; its output is in `roboku logs`.
pub async fn detached(ctx: &Ctx, args: RunArgs) -> anyhow::Result<()> {
    let body = RunRequest {
        command: args.command,
        detached: true,
        tty: None,
    };
    let v: Value = ctx
        .client
        .post(&app_path(&args.app.app, "/run"), &body)
        .await?;
    if let Some(done) = ctx.typed::<Done>(v)? {
        println!("{} (see `roboku logs -a {}`)", done.message, args.app.app);
    }
    Ok(())
}

/// Runs the one-off dyno attached and returns the exit code to leave with.
pub async fn run(ctx: &Ctx, args: RunArgs) -> anyhow::Result<i32> {
    use std::io::IsTerminal as _;
    let tty = (std::io::stdin().is_terminal() && std::io::stdout().is_terminal())
        .then(terminal_size)
        .flatten();
    let body = serde_json::to_vec(&RunRequest {
        command: args.command.clone(),
        detached: false,
        tty,
    })
    .context("encoding the request")?;
    let mut signals = Vec::new();
    // With a tty, Ctrl-C and Ctrl-\ travel as bytes to the dyno's terminal (raw mode here).
    let forwarded: &[(SignalKind, i32)] = if tty.is_some() {
        &[
            (SignalKind::terminate(), libc::SIGTERM),
            (SignalKind::hangup(), libc::SIGHUP),
        ]
    } else {
        &[
            (SignalKind::interrupt(), libc::SIGINT),
            (SignalKind::terminate(), libc::SIGTERM),
            (SignalKind::hangup(), libc::SIGHUP),
            (SignalKind::quit(), libc::SIGQUIT),
        ]
    };
    for &(kind, num) in forwarded {
        signals.push((signal(kind).context("listening for signals")?, num));
    }
    let (name, io) = ctx
        .client
        .attach(&app_path(&args.app.app, "/run"), body)
        .await?;
    eprintln!(
        "Running `{}` on {}... up, {name}",
        args.command.join(" "),
        args.app.app
    );
    let _raw = tty.map(|_| RawMode::enter());
    let (mut rd, mut wr) = tokio::io::split(io);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    if tty.is_some() {
        let mut winch = signal(SignalKind::window_change()).context("listening for signals")?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while winch.recv().await.is_some() {
                if let Some((rows, cols)) = terminal_size() {
                    let mut size = rows.to_be_bytes().to_vec();
                    size.extend_from_slice(&cols.to_be_bytes());
                    if tx.send(frame(attach::RESIZE, &size)).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
    // A plain thread: a blocking terminal read must not keep the runtime from ending.
    let stdin_tx = tx.clone();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; 16 << 10];
        loop {
            let f = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => frame(attach::STDIN_EOF, &[]),
                Ok(n) => frame(attach::STDIN, &buf[..n]),
            };
            let eof = f[0] == attach::STDIN_EOF;
            if stdin_tx.blocking_send(f).is_err() || eof {
                return;
            }
        }
    });
    for (mut s, num) in signals {
        let tx = tx.clone();
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                if tx.send(frame(attach::SIGNAL, &[num as u8])).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    tokio::spawn(async move {
        while let Some(f) = rx.recv().await {
            if wr.write_all(&f).await.is_err() {
                return;
            }
        }
    });
    let mut out = std::io::stdout();
    let (mut buf, mut chunk) = (Vec::new(), vec![0u8; 16 << 10]);
    loop {
        let n = rd
            .read(&mut chunk)
            .await
            .with_context(|| format!("reading from one-off dyno {name}"))?;
        if n == 0 {
            anyhow::bail!("robokud closed the connection to {name} before it exited");
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some((kind, data)) = take_frame(&mut buf).map_err(anyhow::Error::msg)? {
            match kind {
                attach::OUTPUT => {
                    std::io::Write::write_all(&mut out, &data).context("writing to stdout")?;
                    std::io::Write::flush(&mut out).context("writing to stdout")?;
                }
                attach::EXIT => {
                    let code: [u8; 4] = data
                        .get(..4)
                        .and_then(|b| b.try_into().ok())
                        .context("robokud sent a short exit frame")?;
                    return Ok(i32::from_be_bytes(code));
                }
                _ => {}
            }
        }
    }
}

/// This terminal's size (rows, columns), if stdout is one.
fn terminal_size() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ writes one winsize into the struct, which outlives the call.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0).then_some((ws.ws_row, ws.ws_col))
}

/// The local terminal in raw mode while the dyno has it; restored when dropped.
struct RawMode(Option<libc::termios>);

impl RawMode {
    fn enter() -> RawMode {
        // SAFETY: tcgetattr fills the struct; cfmakeraw and tcsetattr read it.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut saved) != 0 {
                return RawMode(None);
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) != 0 {
                return RawMode(None);
            }
            RawMode(Some(saved))
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the attributes read in `enter`.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved);
            }
        }
    }
}
