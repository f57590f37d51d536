//! `fleet deploy --delta`: pick the base most target robots reported keeping (`reported.
//! artifacts`) among the `--delta-from` files, make the delta (`roboku_wire::delta`) next to the
//! slug as `<slug>.from-<base12>.rkd`, and describe it for the command. Robots without the base
//! (or whose delta fails) fetch the full artifact the same command names.

use super::session::read_fleet;
use super::{send::file_digest, BrokerArgs};
use crate::output::outln;
use roboku_wire::fleet::topic::Address;
use roboku_wire::fleet::Delta;
use std::io::Read;
use std::path::{Path, PathBuf};

/// What the delta pass needs from `fleet deploy`.
pub struct Request<'a> {
    pub broker: &'a BrokerArgs,
    pub addr: &'a Address,
    pub slug: &'a Path,
    pub artifact_url: &'a str,
    pub bases: &'a [PathBuf],
    pub delta_url: Option<&'a str>,
}

/// The delta to send, or `None` (said why) when no target robot keeps any of the bases.
pub async fn plan(json: bool, r: Request<'_>) -> anyhow::Result<Option<Delta>> {
    let roster = read_fleet(r.broker).await?;
    let members = roster.members(r.addr);
    let mut best: Option<(usize, &PathBuf, String)> = None;
    for b in r.bases {
        let (sha, _) = file_digest(b)?;
        let have = members
            .iter()
            .filter(|d| {
                roster
                    .robots
                    .get(*d)
                    .and_then(|x| x.reported.as_ref())
                    .is_some_and(|rep| rep.artifacts.contains(&sha))
            })
            .count();
        if have > 0 && best.as_ref().is_none_or(|(n, _, _)| have > *n) {
            best = Some((have, b, sha));
        }
    }
    let Some((have, base, base_sha)) = best else {
        if !json {
            outln!("delta: no robot of {} reported keeping any --delta-from slug; sending the full slug", r.addr.as_path())?;
        }
        return Ok(None);
    };
    let (old, new) = (decoded(base)?, decoded(r.slug)?);
    let bytes = roboku_wire::delta::encode(&old, &new);
    let short = &base_sha[..12];
    let file = PathBuf::from(format!("{}.from-{short}.rkd", r.slug.display()));
    let part = PathBuf::from(format!("{}.part", file.display()));
    std::fs::write(&part, &bytes).map_err(|e| anyhow::anyhow!("write {}: {e}", part.display()))?;
    std::fs::rename(&part, &file)
        .map_err(|e| anyhow::anyhow!("rename to {}: {e}", file.display()))?;
    let (sha256, size) = file_digest(&file)?;
    let url = match r.delta_url {
        Some(u) => u.to_string(),
        None => format!("{}.from-{short}.rkd", r.artifact_url),
    };
    if !json {
        let full = std::fs::metadata(r.slug).map(|m| m.len()).unwrap_or(0);
        outln!(
            "delta against {short} ({have} of {} robots keep it): {size} bytes instead of {full}; {} (serve it at {url})",
            members.len(),
            file.display()
        )?;
    }
    Ok(Some(Delta {
        url,
        sha256,
        size,
        base: base_sha,
        tar_sha256: sha_hex(&new),
        tar_size: new.len() as u64,
    }))
}

/// A slug file's tar bytes (gunzipped when it is a `.tar.gz`).
fn decoded(path: &Path) -> anyhow::Result<Vec<u8>> {
    let err = |e: std::io::Error| anyhow::anyhow!("read {}: {e}", path.display());
    let f = std::fs::File::open(path).map_err(err)?;
    let mut out = Vec::new();
    roboku_wire::delta::decoded(f)
        .map_err(err)?
        .read_to_end(&mut out)
        .map_err(err)?;
    Ok(out)
}

fn sha_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}
