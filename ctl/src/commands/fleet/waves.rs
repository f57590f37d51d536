//! Waves, pure: one or more canary waves (each a count or a percentage of all the robots, at
//! least one), then the rest; a rollout stops when more than `fail_threshold` robots failed.

/// How big the first wave is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WaveSize {
    Count(usize),
    Percent(u8),
}

pub fn parse_wave(text: &str) -> Result<WaveSize, String> {
    if let Some(p) = text.strip_suffix('%') {
        let p: u8 = p
            .parse()
            .map_err(|_| format!("wave {text:?}: want N or N% (1-100)"))?;
        if p == 0 || p > 100 {
            return Err(format!("wave {text:?}: percentage must be 1-100"));
        }
        Ok(WaveSize::Percent(p))
    } else {
        let n: usize = text
            .parse()
            .map_err(|_| format!("wave {text:?}: want N or N% (1-100)"))?;
        if n == 0 {
            return Err(format!("wave {text:?}: at least 1"));
        }
        Ok(WaveSize::Count(n))
    }
}

/// Splits `devices` (already in a stable order) into the canary waves, sized by `sizes` in turn
/// (a percentage counts all of `devices`, rounded up), and a last wave with the rest.
pub fn plan(devices: &[String], sizes: &[WaveSize]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = devices;
    for size in sizes {
        if rest.is_empty() {
            break;
        }
        let n = match *size {
            WaveSize::Count(n) => n,
            WaveSize::Percent(p) => (devices.len() * p as usize).div_ceil(100),
        }
        .clamp(1, rest.len());
        let (a, b) = rest.split_at(n);
        out.push(a.to_vec());
        rest = b;
    }
    if !rest.is_empty() {
        out.push(rest.to_vec());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devs(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("r{i}")).collect()
    }

    #[test]
    fn waves() {
        assert_eq!(
            plan(&devs(10), &[WaveSize::Count(2)]),
            vec![devs(2), devs(10)[2..].to_vec()]
        );
        assert_eq!(
            plan(&devs(10), &[WaveSize::Percent(25)])[0].len(),
            3,
            "rounded up"
        );
        assert_eq!(
            plan(&devs(3), &[WaveSize::Percent(1)])[0].len(),
            1,
            "at least one"
        );
        assert_eq!(plan(&devs(2), &[WaveSize::Count(5)]), vec![devs(2)]);
        assert!(plan(&[], &[WaveSize::Count(1)]).is_empty());
        assert_eq!(plan(&devs(4), &[]), vec![devs(4)], "no canary: one wave");
        // 1 %, 10 %, the rest, as a fleet rolls out: of 1,000 robots 10, then 100, then 890.
        let sizes: Vec<usize> = plan(&devs(1000), &[WaveSize::Percent(1), WaveSize::Percent(10)])
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, vec![10, 100, 890]);
        // Waves that ask for more than is left take what is left, and nothing is sent twice.
        let w = plan(
            &devs(5),
            &[WaveSize::Count(3), WaveSize::Count(3), WaveSize::Count(3)],
        );
        assert_eq!(w, vec![devs(3), devs(5)[3..].to_vec()]);
        assert_eq!(parse_wave("10%"), Ok(WaveSize::Percent(10)));
        assert_eq!(parse_wave("3"), Ok(WaveSize::Count(3)));
        assert!(parse_wave("0").is_err());
        assert!(parse_wave("101%").is_err());
    }
}
