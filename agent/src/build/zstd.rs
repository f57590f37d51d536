//! A `.tar.zst` upload's bytes: every frame of the zstd stream, as `zstd -d` reads it. ruzstd's
//! `StreamingDecoder` decodes one frame and stops, and never compares a frame's content
//! checksum: a stream of several frames (`pzstd`, `cat a.zst b.zst`) would lose everything after
//! the first, and a corrupt frame or bytes after the last one would go unnoticed (found by the
//! archive fuzz target: a plain tar whose first name began with the zstd magic was taken for an
//! empty archive). Here skippable frames are skipped, each frame's checksum is checked when it
//! has one, and anything after a frame that is not a frame is an error.

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
use std::io::{self, BufRead, Read};

pub struct Frames<R> {
    src: R,
    dec: FrameDecoder,
    /// Decoding a frame (else between frames).
    in_frame: bool,
    /// Frames started so far, to say where a problem is.
    frames: u64,
}

impl<R: BufRead> Frames<R> {
    /// Reads the first frame's header; an error (saying why) if the stream does not start with one.
    pub fn new(src: R) -> io::Result<Self> {
        let mut me = Frames {
            src,
            dec: FrameDecoder::new(),
            in_frame: false,
            frames: 0,
        };
        if !me.next_frame()? {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "no zstd frame",
            ));
        }
        Ok(me)
    }

    /// Starts the next frame, skipping skippable ones: `false` at the end of the input.
    fn next_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.src.fill_buf()?.is_empty() {
                return Ok(false);
            }
            match self.dec.reset(&mut self.src) {
                Ok(()) => {
                    self.in_frame = true;
                    self.frames += 1;
                    return Ok(true);
                }
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let want = u64::from(length);
                    let skipped = io::copy(&mut (&mut self.src).take(want), &mut io::sink())?;
                    if skipped < want {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "a skippable zstd frame is cut short",
                        ));
                    }
                }
                Err(e) => {
                    return Err(io::Error::other(format!(
                        "after zstd frame {}: not a zstd frame: {e}",
                        self.frames
                    )))
                }
            }
        }
    }

    /// The finished frame's content checksum, if it has one, matches what was decoded.
    fn check_frame(&self) -> io::Result<()> {
        match (
            self.dec.get_checksum_from_data(),
            self.dec.get_calculated_checksum(),
        ) {
            (Some(want), Some(got)) if want != got => Err(io::Error::other(format!(
                "zstd frame {}: content checksum {got:08x} does not match the frame's {want:08x}",
                self.frames
            ))),
            _ => Ok(()),
        }
    }
}

impl<R: BufRead> Read for Frames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_frame {
                while self.dec.can_collect() == 0 && !self.dec.is_finished() {
                    self.dec
                        .decode_blocks(&mut self.src, BlockDecodingStrategy::UptoBlocks(1))
                        .map_err(|e| {
                            io::Error::other(format!("zstd frame {}: {e}", self.frames))
                        })?;
                }
                let n = self.dec.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                // Finished and drained.
                self.check_frame()?;
                self.in_frame = false;
            }
            if !self.next_frame()? {
                return Ok(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruzstd::encoding::{compress_to_vec, CompressionLevel};

    fn zst(data: &[u8]) -> Vec<u8> {
        compress_to_vec(data, CompressionLevel::Fastest)
    }

    fn decode(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Frames::new(bytes)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn every_frame_is_read_and_skippable_frames_are_skipped() {
        let mut two = zst(b"first frame, ");
        // A skippable frame (magic 0x184D2A50, 4-byte length) between the two.
        two.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
        two.extend_from_slice(&3u32.to_le_bytes());
        two.extend_from_slice(b"xyz");
        two.extend_from_slice(&zst(b"second frame"));
        assert_eq!(decode(&two).unwrap(), b"first frame, second frame");
    }

    #[test]
    fn trailing_bytes_a_bad_checksum_and_a_cut_are_errors() {
        let mut trailing = zst(b"payload");
        trailing.extend_from_slice(b"not a frame");
        let e = decode(&trailing).unwrap_err().to_string();
        assert!(e.contains("after zstd frame 1: not a zstd frame"), "{e}");

        let mut bad = zst(b"payload");
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let e = decode(&bad).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");

        let good = zst(&b"payload ".repeat(1000));
        assert!(decode(&good[..good.len() / 2]).is_err());
        assert!(decode(b"").is_err());
    }
}
