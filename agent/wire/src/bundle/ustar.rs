//! The one ustar header form bundles use: a regular file, mode 0644, owner 0:0, mtime 0, no
//! user or group names, no prefix, the name in the 100-byte field. Readers compare a header
//! with the one [`header`] would write for its name and size, byte for byte, so nothing in a
//! header can carry meaning (a link, a mode, an owner) that the signature does not cover.

/// Size of a header and of the blocks data is padded to.
pub const BLOCK: usize = 512;

/// Longest member name (the ustar name field, without a prefix).
pub const MAX_NAME: usize = 100;

/// Largest member size the 11 octal digits of the size field hold.
pub const MAX_SIZE: u64 = 0o77777777777;

/// The header fields, for naming the one that differs.
const FIELDS: &[(&str, usize, usize)] = &[
    ("name", 0, 100),
    ("mode", 100, 108),
    ("uid", 108, 116),
    ("gid", 116, 124),
    ("size", 124, 136),
    ("mtime", 136, 148),
    ("checksum", 148, 156),
    ("typeflag", 156, 157),
    ("linkname", 157, 257),
    ("magic", 257, 263),
    ("version", 263, 265),
    ("uname", 265, 297),
    ("gname", 297, 329),
    ("devmajor", 329, 337),
    ("devminor", 337, 345),
    ("prefix", 345, 500),
    ("padding", 500, 512),
];

/// The header of a regular file `name` of `size` bytes. `None` when the name does not fit or
/// the size is too large.
pub fn header(name: &str, size: u64) -> Option<[u8; BLOCK]> {
    let n = name.as_bytes();
    if n.is_empty() || n.len() > MAX_NAME || n.contains(&0) || size > MAX_SIZE {
        return None;
    }
    let mut h = [0u8; BLOCK];
    h[..n.len()].copy_from_slice(n);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    let sum = checksum(&h);
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    Some(h)
}

/// The header checksum: the sum of all bytes with the checksum field read as spaces.
fn checksum(h: &[u8; BLOCK]) -> u32 {
    h.iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                *b as u32
            }
        })
        .sum()
}

/// What a header says, once it is known to be canonical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub size: u64,
}

/// Reads a header block: `Ok(None)` for an all-zero block (the end marker), the member for a
/// canonical header, and otherwise what is wrong with it.
pub fn parse(h: &[u8; BLOCK]) -> Result<Option<Member>, String> {
    if h.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    if &h[257..263] != b"ustar\0" {
        return Err("not a ustar header (no `ustar` magic)".into());
    }
    let stored = octal(&h[148..156]).ok_or("the header checksum field is not octal")?;
    if stored != u64::from(checksum(h)) {
        return Err("header checksum mismatch (the header was altered or damaged)".into());
    }
    let name_len = h[..100].iter().position(|b| *b == 0).unwrap_or(100);
    let name = String::from_utf8_lossy(&h[..name_len]).into_owned();
    match h[156] {
        b'0' | 0 => {}
        b'1' => {
            return Err(format!(
                "member {name:?} is a hard link; only regular files are allowed"
            ))
        }
        b'2' => {
            return Err(format!(
                "member {name:?} is a symbolic link; only regular files are allowed"
            ))
        }
        b'3' | b'4' => {
            return Err(format!(
                "member {name:?} is a device node; only regular files are allowed"
            ))
        }
        b'5' => {
            return Err(format!(
                "member {name:?} is a directory; only regular files are allowed"
            ))
        }
        b'6' => {
            return Err(format!(
                "member {name:?} is a FIFO; only regular files are allowed"
            ))
        }
        b'x' | b'g' | b'L' | b'K' => {
            return Err("extended (pax or GNU) headers are not allowed in a bundle".into())
        }
        t => {
            return Err(format!(
                "member {name:?} has type {:?}; only regular files are allowed",
                t as char
            ))
        }
    }
    let size =
        octal(&h[124..136]).ok_or_else(|| format!("member {name:?}: size field is not octal"))?;
    let want = header(&name, size)
        .ok_or_else(|| format!("member {name:?}: the name or size does not fit a bundle header"))?;
    // The checksum last: any other field that differs also changes it.
    let differs = |(f, a, b): &&(&str, usize, usize)| *f != "checksum" && h[*a..*b] != want[*a..*b];
    let checksum_field = FIELDS.iter().find(|(f, _, _)| *f == "checksum");
    if let Some((field, _, _)) = FIELDS
        .iter()
        .find(differs)
        .or(checksum_field.filter(|_| h[148..156] != want[148..156]))
    {
        return Err(format!(
            "member {name:?}: header field `{field}` is not what roboku writes (bundles hold \
             plain files, mode 0644, owner 0:0, mtime 0)"
        ));
    }
    Ok(Some(Member { name, size }))
}

/// An octal number field: digits, then NUL or spaces.
fn octal(f: &[u8]) -> Option<u64> {
    let digits: &[u8] = match f.iter().position(|b| *b == 0 || *b == b' ') {
        Some(end) => &f[..end],
        None => f,
    };
    if digits.is_empty() || !digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(8)?.checked_add(u64::from(d - b'0'))
    })
}

/// Zero bytes that pad `size` bytes of data to a whole block.
pub fn padding(size: u64) -> usize {
    (BLOCK - (size % BLOCK as u64) as usize) % BLOCK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let h = header("slugs/ab.tar.gz", 1234).unwrap();
        assert_eq!(
            parse(&h).unwrap(),
            Some(Member {
                name: "slugs/ab.tar.gz".into(),
                size: 1234
            })
        );
        assert_eq!(parse(&[0u8; BLOCK]).unwrap(), None);
        assert!(header(&"x".repeat(101), 1).is_none());
        assert!(header("", 1).is_none());
        assert_eq!(padding(0), 0);
        assert_eq!(padding(1), 511);
        assert_eq!(padding(512), 0);
    }

    #[test]
    fn anything_but_the_canonical_form_is_named() {
        let good = header("roboku-bundle.json", 10).unwrap();
        let resum = |mut h: [u8; BLOCK]| {
            let sum = checksum(&h);
            h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
            h
        };
        let mut link = good;
        link[156] = b'2';
        link[157..168].copy_from_slice(b"/etc/shadow");
        assert!(parse(&resum(link)).unwrap_err().contains("symbolic link"));
        let mut dev = good;
        dev[156] = b'3';
        assert!(parse(&resum(dev)).unwrap_err().contains("device node"));
        let mut mode = good;
        mode[100..108].copy_from_slice(b"0004755\0");
        assert!(parse(&resum(mode)).unwrap_err().contains("`mode`"));
        let mut owner = good;
        owner[265..269].copy_from_slice(b"root");
        assert!(parse(&resum(owner)).unwrap_err().contains("`uname`"));
        let mut flipped = good;
        flipped[3] ^= 1;
        assert!(parse(&flipped).unwrap_err().contains("checksum"));
        let mut gnu = good;
        gnu[257..265].copy_from_slice(b"ustar  \0");
        assert!(parse(&resum(gnu)).unwrap_err().contains("magic"));
        let mut pax = good;
        pax[156] = b'x';
        assert!(parse(&resum(pax)).unwrap_err().contains("extended"));
    }
}
