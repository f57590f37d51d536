//! `bundle inspect FILE [--trusted-key PUB]...`: reads the whole bundle (format, and each
//! slug against the manifest's sha256), shows the manifest, and says whether it verifies:
//! against the given public keys (signature and expiry; a workstation knows no robot's state),
//! or else by asking this robot's robokud (`POST /v1/bundles/check`: the same verification
//! as `apply`, with its keys, device, groups and versions, and nothing recorded or applied).

use super::super::Ctx;
use super::{apply, file_name};
use crate::client::ClientError;
use crate::output::{age, duration, iso8601, now_ms, outln};
use roboku_wire::bundle::{BundleReader, Manifest};
use roboku_wire::fleet::seal;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The bundle file (.rkb)
    pub file: PathBuf,
    /// Check the signature against this public key (repeatable) instead of asking robokud
    #[arg(long, value_name = "PATH")]
    pub trusted_key: Vec<PathBuf>,
}

/// What a bundle holds, read without trusting it.
struct Contents {
    manifest: Manifest,
    /// The signed bytes and the signature, when signed.
    bytes: Vec<u8>,
    sig: Option<(String, ed25519_dalek::Signature)>,
}

fn read(file: &std::path::Path) -> anyhow::Result<Contents> {
    let f =
        std::fs::File::open(file).map_err(|e| anyhow::anyhow!("open {}: {e}", file.display()))?;
    let mut r = BundleReader::new(std::io::BufReader::new(f));
    let sealed = r.manifest()?;
    let u = seal::unseal(&sealed).map_err(|e| anyhow::anyhow!("manifest: {e}"))?;
    let manifest: Manifest = serde_json::from_slice(&u.bytes)
        .map_err(|e| anyhow::anyhow!("manifest is not a bundle manifest: {e}"))?;
    manifest
        .check()
        .map_err(|e| anyhow::anyhow!("manifest: {e}"))?;
    for s in manifest.slugs() {
        r.slug(&s, &mut std::io::sink())?;
    }
    r.end()?;
    Ok(Contents {
        manifest,
        bytes: u.bytes,
        sig: u.sig,
    })
}

pub async fn run(ctx: &Ctx, a: InspectArgs) -> anyhow::Result<i32> {
    let c = read(&a.file).map_err(|e| anyhow::anyhow!("{}: {e:#}", a.file.display()))?;
    let size = std::fs::metadata(&a.file).map(|m| m.len()).unwrap_or(0);
    let verdict = if a.trusted_key.is_empty() {
        ask_robot(ctx, &a.file).await?
    } else {
        Verdict::Local(check_keys(&c, &a.trusted_key)?)
    };
    if ctx.json {
        let (checked_by, ok, reason) = match &verdict {
            Verdict::Local(r) => ("trusted_key", Some(r.is_ok()), r.clone().err()),
            Verdict::Robot(r) => ("robokud", Some(r.is_ok()), r.clone().err()),
            Verdict::Unchecked(why) => ("none", None, Some(why.clone())),
        };
        let out = serde_json::json!({
            "file": a.file, "size": size, "manifest": c.manifest,
            "kid": c.sig.as_ref().map(|(k, _)| k),
            "verified": ok, "checked_by": checked_by, "reason": reason,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
    } else {
        show(&a.file, size, &c)?;
        match &verdict {
            Verdict::Local(Ok(())) => outln!("verifies: yes (signature and expiry; a robot also checks its target, versions and replays)")?,
            Verdict::Local(Err(r)) => outln!("verifies: NO: {r}")?,
            Verdict::Robot(Ok(())) => outln!("verifies on this robot: yes (it would apply it)")?,
            Verdict::Robot(Err(r)) => outln!("verifies on this robot: NO: {r}")?,
            Verdict::Unchecked(why) => outln!("verifies: not checked ({why}; give --trusted-key PUB)")?,
        }
    }
    Ok(match verdict {
        Verdict::Local(Err(_)) | Verdict::Robot(Err(_)) => 1,
        _ => 0,
    })
}

enum Verdict {
    Local(Result<(), String>),
    Robot(Result<(), String>),
    Unchecked(String),
}

fn check_keys(c: &Contents, keys: &[PathBuf]) -> anyhow::Result<Result<(), String>> {
    let mut trusted = Vec::new();
    for p in keys {
        let text =
            std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("read {}: {e}", p.display()))?;
        trusted
            .push(seal::parse_public(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?);
    }
    let Some((kid, sig)) = &c.sig else {
        return Ok(Err("unsigned (only robots in dev mode take it)".into()));
    };
    let Some(key) = trusted.iter().find(|k| &seal::key_id(k) == kid) else {
        return Ok(Err(format!(
            "signed with key {kid}, not one of the keys given"
        )));
    };
    if !seal::verify(key, &c.bytes, sig) {
        return Ok(Err(format!(
            "bad signature (key {kid}): the manifest was altered"
        )));
    }
    let now = now_ms();
    if c.manifest.expires < now {
        return Ok(Err(format!("expired {} ago", age(now, c.manifest.expires))));
    }
    Ok(Ok(()))
}

async fn ask_robot(ctx: &Ctx, file: &std::path::Path) -> anyhow::Result<Verdict> {
    let path = crate::client::with_query(
        &format!("{}/bundles/check", roboku_wire::API_PREFIX),
        &[("name", Some(file_name(file)))],
    );
    let quiet = Ctx {
        client: ctx.client.clone(),
        json: true,
    };
    match apply::stream(&quiet, &path, file).await {
        Ok(acks) => Ok(Verdict::Robot(roboku_wire::bundle::outcome(&acks, true))),
        Err(e) => match e.downcast_ref::<ClientError>() {
            Some(ClientError::Unreachable { .. }) => {
                Ok(Verdict::Unchecked("no robokud reachable here".into()))
            }
            _ => Err(e),
        },
    }
}

fn show(file: &std::path::Path, size: u64, c: &Contents) -> anyhow::Result<()> {
    let m = &c.manifest;
    let now = now_ms();
    outln!(
        "bundle {} (format {}, {size} bytes)",
        file.display(),
        m.bundle
    )?;
    outln!("  id       {}", m.id)?;
    outln!("  for      {}", m.to)?;
    outln!("  made     {} ({} ago)", iso8601(m.ts), age(now, m.ts))?;
    let left = if m.expires >= now {
        format!("in {}", duration(m.expires - now))
    } else {
        format!("{} ago: EXPIRED", age(now, m.expires))
    };
    outln!("  expires  {} ({left})", iso8601(m.expires))?;
    match &c.sig {
        Some((kid, _)) => outln!("  signed   key {kid}")?,
        None => outln!("  signed   NO (unsigned: dev-mode robots only)")?,
    }
    for (name, app) in &m.apps {
        outln!(
            "  app {name}: version {}{}",
            app.version,
            if app.rollback { " (rollback)" } else { "" }
        )?;
        if let Some(s) = &app.slug {
            outln!("    slug      {} ({} bytes)", s.sha256, s.size)?;
        }
        if let Some(cfg) = &app.config {
            let keys: Vec<&str> = cfg.keys().map(String::as_str).collect();
            outln!("    config    {} vars: {}", keys.len(), keys.join(", "))?;
        }
        if !app.formation.is_empty() {
            let f: Vec<String> = app
                .formation
                .iter()
                .map(|(t, n)| format!("{t}={n}"))
                .collect();
            outln!("    formation {}", f.join(" "))?;
        }
    }
    outln!(
        "  slugs    {} member(s), sizes and sha256 match the manifest",
        m.slugs().len()
    )?;
    Ok(())
}
