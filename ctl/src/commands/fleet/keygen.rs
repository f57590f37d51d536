//! `fleet keygen -o fleet.key`: an ed25519 key pair. The private key (one line of base64) is
//! created 0600 and never overwritten; the public key goes to `<file>.pub` and to stdout, for
//! the robots' `--trusted-key` / `trusted_keys`.

use crate::output::outln;
use rand::RngCore;
use roboku_wire::fleet::seal;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct KeygenArgs {
    /// Where to write the private key (the public key goes to <file>.pub)
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

pub fn run(a: KeygenArgs) -> anyhow::Result<()> {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let key = seal::secret_from_seed(seed);
    let public = seal::encode_public(&key.verifying_key());
    let pub_path = PathBuf::from(format!("{}.pub", a.output.display()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&a.output)
        .map_err(|e| {
            anyhow::anyhow!(
                "create {}: {e} (keys are never overwritten)",
                a.output.display()
            )
        })?;
    f.write_all(format!("{}\n", seal::encode_secret(&key)).as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| anyhow::anyhow!("write {}: {e}", a.output.display()))?;
    std::fs::write(&pub_path, format!("{public}\n"))
        .map_err(|e| anyhow::anyhow!("write {}: {e}", pub_path.display()))?;
    outln!(
        "private key: {} (keep it secret; mode 0600)",
        a.output.display()
    )?;
    outln!(
        "public key:  {} (key id {})",
        pub_path.display(),
        seal::key_id(&key.verifying_key())
    )?;
    outln!("{public}")?;
    Ok(())
}
