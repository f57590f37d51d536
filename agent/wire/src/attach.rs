//! The byte stream of an attached one-off dyno (`roboku run`), after the HTTP upgrade of
//! `POST /v1/apps/{app}/run` (`Upgrade: roboku-attach`): frames of `[kind: u8][len: u32 BE]`
//! then `len` bytes, both ways.
//!
//! CLI to robokud: [`STDIN`] bytes, [`STDIN_EOF`], [`SIGNAL`] (one byte: the signal number, sent
//! to the dyno's process group), [`RESIZE`]. robokud to CLI: [`OUTPUT`] bytes (stdout and stderr, in the
//! order written), then one [`EXIT`] (an i32 BE: the exit code, or 128 + the signal).

/// The `Upgrade` header value.
pub const PROTOCOL: &str = "roboku-attach";
/// Response header naming the one-off dyno (`run.3`).
pub const DYNO_HEADER: &str = "x-roboku-dyno";

pub const STDIN: u8 = 0;
pub const STDIN_EOF: u8 = 1;
pub const SIGNAL: u8 = 2;
/// The terminal was resized: rows and columns, two u16 BE (runs with a tty).
pub const RESIZE: u8 = 4;
pub const OUTPUT: u8 = 0;
pub const EXIT: u8 = 3;

/// Largest payload a frame may carry.
pub const MAX_FRAME: usize = 1 << 20;

/// One frame, encoded.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Takes the first whole frame off `buf`, if there is one. Err: a frame larger than
/// [`MAX_FRAME`] (the other side is not speaking this protocol).
pub fn take_frame(buf: &mut Vec<u8>) -> Result<Option<(u8, Vec<u8>)>, String> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_FRAME {
        return Err(format!(
            "attach frame of {len} bytes is over the {MAX_FRAME} limit"
        ));
    }
    if buf.len() < 5 + len {
        return Ok(None);
    }
    let kind = buf[0];
    let payload = buf[5..5 + len].to_vec();
    buf.drain(..5 + len);
    Ok(Some((kind, payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_pieces() {
        let mut wire = frame(STDIN, b"hello");
        wire.extend(frame(SIGNAL, &[15]));
        wire.extend(frame(EXIT, &7i32.to_be_bytes()));
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for b in wire {
            buf.push(b);
            while let Some(f) = take_frame(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![
                (STDIN, b"hello".to_vec()),
                (SIGNAL, vec![15]),
                (EXIT, 7i32.to_be_bytes().to_vec())
            ]
        );
        let mut huge = vec![STDIN, 0xff, 0xff, 0xff, 0xff];
        assert!(take_frame(&mut huge).is_err());
    }
}
