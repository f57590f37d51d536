//! The `postgres` add-on, where Debian's PostgreSQL is installed (`postgresql`: the newest
//! `/usr/lib/postgresql/<major>/bin`): a server of robokud's own (never the system cluster nor
//! `pg_ctlcluster`), its cluster in `addons/<name>/data`, listening on 127.0.0.1 and an allocated
//! port, its socket in the add-on's 0700 dir. Each attached app gets a login role of its own
//! (password, scram-sha-256) that is a member of the database's owner role, so every app
//! attached has the same rights on the same database; detach takes the role away and ends its
//! sessions.
//!
//! - `initdb` runs once, off the engine (the server task's [`Provider::prepare`]), as the
//!   add-on's uid, into `data.init`, renamed to `data` when whole: a robokud killed mid-way
//!   leaves no half cluster (the next start runs it again). initdb insists on a passwd entry for
//!   its uid, which add-on uids have not: it runs in a mount namespace of its own where
//!   `/etc/passwd` is a one-line file naming that uid (`addons/.<name>.passwd`, root's, beside
//!   the add-on's dir so its uid cannot swap it).
//! - Roles are reconciled by `psql` as the add-on's uid over the socket (`local ... trust` for
//!   the admin role `roboku` only: the socket's dir is the add-on's, 0700) after each start and
//!   each attach or detach ([`Provider::after_start`]); done once `roles.applied` matches
//!   `roles.sql`.
//! - Small for a robot, and inside the add-on cgroup's 512 MiB: 32 MB shared buffers, 20
//!   connections.

use super::provider::{write_server_files, Addon, BackupFrom, Credential, Provider, ServerCommand};
use super::Kind;
use crate::util::{IoContext, PathError};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Postgres;

/// The admin role initdb makes (reachable over the add-on's socket only).
pub const ADMIN: &str = "roboku";
/// How long roles wait for a starting server.
const READY_WAIT: Duration = Duration::from_secs(120);
/// Role changes one at a time, so the last to run applies the newest `roles.sql`.
static ROLES: Mutex<()> = Mutex::new(());

/// The newest installed major version's bin dir under `root` (`/usr/lib/postgresql`).
pub fn bin_dir_in(root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let major: f64 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((major, bin))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, bin)| bin)
}

/// The newest `postgres` under `root`, or the sentence naming the package to install.
pub fn locate_in(root: &Path) -> Result<PathBuf, String> {
    bin_dir_in(root).map(|b| b.join("postgres")).ok_or_else(|| {
        format!(
            "PostgreSQL is not installed on this robot (no {}/<version>/bin/postgres): install \
             the Debian package postgresql (apt-get install postgresql); roboku runs a server of \
             its own, the system cluster can stay disabled",
            root.display()
        )
    })
}

/// The database's name: the add-on's, `-` made `_` (`nav-postgres` -> `nav_postgres`).
pub fn database(addon: &Addon) -> String {
    addon.name.replace('-', "_")
}

/// The role owning the database, of which every attached app's role is a member.
pub fn owner_role(addon: &Addon) -> String {
    format!("{}_owner", database(addon))
}

/// Names and passwords go into SQL as literals: only the characters roboku makes them of.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `pg_hba.conf`: the admin over the socket, apps over loopback TCP with a password, to their
/// database only.
pub fn hba(db: &str) -> String {
    format!(
        "# written by robokud for this add-on\n\
         # the socket is in the add-on's 0700 dir: only its uid (and root) can reach it\n\
         local all {ADMIN} trust\n\
         host {db} all 127.0.0.1/32 scram-sha-256\n"
    )
}

/// The psql script that makes the database and exactly one role per credential (a role no
/// longer attached loses its login, its sessions and its membership, then is dropped).
pub fn roles_sql(addon: &Addon, creds: &[Credential]) -> Result<String, String> {
    let (db, owner) = (database(addon), owner_role(addon));
    for s in creds
        .iter()
        .flat_map(|c| [&c.user, &c.password])
        .chain([&db, &owner])
    {
        if !plain(s) {
            return Err(format!(
                "{s:?} cannot be used as a postgres name or password"
            ));
        }
    }
    let mut sql = format!(
        "-- written by robokud for this add-on; rewritten on attach/detach\n\
         \\set ON_ERROR_STOP on\n\
         SELECT 'CREATE ROLE \"{owner}\" NOLOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{owner}')\\gexec\n\
         SELECT 'CREATE DATABASE \"{db}\" OWNER \"{owner}\"' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{db}')\\gexec\n\
         REVOKE ALL ON DATABASE \"{db}\" FROM PUBLIC;\n"
    );
    for c in creds {
        let u = &c.user;
        sql.push_str(&format!(
            "-- app {app}\n\
             SELECT 'CREATE ROLE \"{u}\"' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{u}')\\gexec\n\
             ALTER ROLE \"{u}\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT PASSWORD '{pw}';\n\
             ALTER ROLE \"{u}\" SET role = '{owner}';\n\
             GRANT \"{owner}\" TO \"{u}\";\n",
            app = c.app,
            pw = c.password,
        ));
    }
    let keep = creds
        .iter()
        .map(|c| format!("'{}'", c.user))
        .collect::<Vec<_>>()
        .join(", ");
    sql.push_str(&format!(
        "DO $$DECLARE r record; BEGIN\n\
         FOR r IN SELECT m.rolname FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member\n\
           JOIN pg_roles g ON g.oid = a.roleid\n\
           WHERE g.rolname = '{owner}' AND m.rolname <> ALL (ARRAY[{keep}]::text[]) LOOP\n\
           EXECUTE format('ALTER ROLE %I NOLOGIN', r.rolname);\n\
           PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = r.rolname;\n\
           EXECUTE format('REVOKE %I FROM %I', '{owner}', r.rolname);\n\
           BEGIN EXECUTE format('DROP ROLE %I', r.rolname);\n\
           EXCEPTION WHEN others THEN RAISE NOTICE 'role % kept without login: %', r.rolname, SQLERRM; END;\n\
         END LOOP; END$$;\n"
    ));
    Ok(sql)
}

/// The server's command line (settings on it: `data/` is initdb's alone).
pub fn command(addon: &Addon, postgres: &Path) -> String {
    let d = addon.dir.display();
    let port = addon.port.unwrap_or(5432);
    format!(
        "exec {} -D {d}/data -k {d} -h 127.0.0.1 -p {port} -c hba_file={d}/pg_hba.conf \
         -c shared_buffers=32MB -c max_connections=20 -c work_mem=4MB \
         -c maintenance_work_mem=32MB -c max_wal_size=256MB -c unix_socket_permissions=0700 \
         -c password_encryption=scram-sha-256 -c logging_collector=off",
        postgres.display()
    )
}

/// A sibling program of `postgres` (same major version).
fn tool(program: &Path, name: &str) -> PathBuf {
    program.with_file_name(name)
}

/// A command run as the add-on's uid (when robokud is root), env cleared.
fn as_addon(addon: &Addon, program: PathBuf) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C")
        .current_dir(&addon.dir)
        .stdin(Stdio::null());
    if let Some(uid) = addon.uid {
        use std::os::unix::process::CommandExt;
        c.uid(uid).gid(uid);
    }
    die_with_parent(&mut c);
    c
}

/// The child is SIGKILLed if robokud dies (its thread waits on it): no initdb or pg_dump of a
/// dead agent goes on writing under the next one.
fn die_with_parent(c: &mut Command) {
    // SAFETY: prctl is async-signal-safe; it runs between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        c.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn output_of(what: &str, mut c: Command) -> Result<std::process::Output, String> {
    let out = c.output().map_err(|e| format!("run {what}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        Err(format!(
            "{what} failed ({}): {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ))
    }
}

/// `initdb` as the add-on's uid, with `/etc/passwd` naming it (initdb looks its uid up).
fn initdb(addon: &Addon, program: &Path, into: &Path) -> Result<(), String> {
    // Not `as_addon`: std drops the uid before `pre_exec` runs, and the mount needs root.
    let mut c = Command::new(tool(program, "initdb"));
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C")
        .current_dir(&addon.dir)
        .stdin(Stdio::null());
    c.arg("-D")
        .arg(into)
        .args(["-U", ADMIN, "-E", "UTF8", "--no-locale", "-A", "trust"]);
    if let Some(uid) = addon.uid {
        // Beside the add-on's dir, not in it: a file its uid cannot swap for a link.
        let passwd = addon.dir.with_file_name(format!(".{}.passwd", addon.name));
        let line = format!(
            "{ADMIN}:x:{uid}:{uid}:roboku add-on:{}:/bin/false\n",
            addon.dir.display()
        );
        super::provider::write_private(&passwd, line.as_bytes(), 0o644)
            .map_err(|e| e.to_string())?;
        let src = std::ffi::CString::new(passwd.as_os_str().as_encoded_bytes())
            .map_err(|e| e.to_string())?;
        let dst = c"/etc/passwd";
        let root = c"/";
        // SAFETY: between fork and exec only async-signal-safe syscalls run (unshare, mount,
        // setgroups, setgid, setuid), on CStrings made before the fork. The private mount
        // namespace dies with initdb.
        unsafe {
            use std::os::unix::process::CommandExt;
            c.pre_exec(move || {
                if libc::unshare(libc::CLONE_NEWNS) != 0
                    || libc::mount(
                        std::ptr::null(),
                        root.as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) != 0
                    || libc::mount(
                        src.as_ptr(),
                        dst.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ) != 0
                    || libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(uid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    die_with_parent(&mut c);
    let done = output_of("initdb", c).map(drop);
    if addon.uid.is_some() {
        let _ = std::fs::remove_file(addon.dir.with_file_name(format!(".{}.passwd", addon.name)));
    }
    done
}

/// Waits for the server to accept connections, then runs `roles.sql` through psql over the
/// socket; `roles.applied` is what it ran.
fn apply_roles(addon: &Addon, program: &Path) -> Result<(), String> {
    let port = addon.port.unwrap_or(5432).to_string();
    let deadline = Instant::now() + READY_WAIT;
    loop {
        let mut c = as_addon(addon, tool(program, "pg_isready"));
        c.arg("-q")
            .arg("-h")
            .arg(&addon.dir)
            .args(["-p", &port, "-U", ADMIN]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        if c.status().is_ok_and(|s| s.success()) {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} did not accept connections within {}s",
                addon.name,
                READY_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let roles = addon.dir.join("roles.sql");
    let text = std::fs::read(&roles)
        .at("read", &roles)
        .map_err(|e| e.to_string())?;
    let mut c = as_addon(addon, tool(program, "psql"));
    c.args(["-X", "-q", "-h"])
        .arg(&addon.dir)
        .args(["-p", &port, "-U", ADMIN, "-d", "postgres", "-f"])
        .arg(&roles);
    output_of("psql (roles)", c)?;
    let done = addon.dir.join("roles.applied");
    super::provider::write_private(&done, &text, 0o600).map_err(|e| e.to_string())
}

impl Provider for Postgres {
    fn kind(&self) -> Kind {
        Kind::Postgres
    }
    fn needs(&self) -> Option<(&'static str, &'static str)> {
        Some(("postgres", "postgresql"))
    }
    fn locate(&self) -> Result<Option<PathBuf>, String> {
        locate_in(Path::new("/usr/lib/postgresql")).map(Some)
    }
    fn can_share(&self, _addon: &Addon) -> Result<(), String> {
        Ok(())
    }
    fn provision(&self, addon: &Addon, creds: &[Credential]) -> Result<(), PathError> {
        let roles = roles_sql(addon, creds).map_err(|e| PathError {
            op: "write roles of",
            path: addon.dir.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        write_server_files(
            &addon.dir,
            addon.uid,
            &[("pg_hba.conf", hba(&database(addon))), ("roles.sql", roles)],
        )
    }
    fn url(&self, addon: &Addon, cred: &Credential) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{}",
            cred.user,
            cred.password,
            addon.port.unwrap_or(5432),
            database(addon)
        )
    }
    fn server(&self, addon: &Addon, program: &Path) -> Option<ServerCommand> {
        Some(ServerCommand {
            command: command(addon, program),
        })
    }
    fn health(&self, addon: &Addon) -> Result<(), String> {
        super::provider::file_present(&addon.dir.join("pg_hba.conf"))
    }
    fn destroy(&self, addon: &Addon) -> Result<(), PathError> {
        // initdb's passwd file, if a robokud was killed during it.
        let _ = std::fs::remove_file(addon.dir.with_file_name(format!(".{}.passwd", addon.name)));
        crate::build::remove_tree(&addon.dir)
    }
    fn prepare(&self, addon: &Addon, program: &Path) -> Result<(), String> {
        // Not ready until this start's roles are applied (`after_start`).
        let applied = addon.dir.join("roles.applied");
        match std::fs::remove_file(&applied) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("remove {}: {e}", applied.display()))
            }
            _ => {}
        }
        let data = addon.dir.join("data");
        if data.join("PG_VERSION").is_file() {
            return Ok(());
        }
        let init = addon.dir.join("data.init");
        crate::build::remove_tree(&init).map_err(|e| e.to_string())?;
        tracing::info!(addon = %addon.name, "initialising the postgres cluster (initdb)");
        let started = Instant::now();
        initdb(addon, program, &init)?;
        // `data` is the empty dir provisioning made (or a half one from before: initdb's own
        // output never lands there unfinished).
        crate::build::remove_tree(&data).map_err(|e| e.to_string())?;
        std::fs::rename(&init, &data)
            .at("rename to", &data)
            .map_err(|e| e.to_string())?;
        tracing::info!(addon = %addon.name, ms = started.elapsed().as_millis() as u64, "postgres cluster initialised");
        Ok(())
    }
    fn after_start(&self, addon: &Addon, program: &Path) -> Result<(), String> {
        let _one = ROLES.lock().unwrap_or_else(|e| e.into_inner());
        let failed = addon.dir.join("roles.error");
        let result = apply_roles(addon, program);
        match &result {
            Ok(()) => drop(std::fs::remove_file(&failed)),
            Err(e) => drop(super::provider::write_private(&failed, e.as_bytes(), 0o600)),
        }
        result
    }
    fn ready(&self, addon: &Addon) -> Result<(), String> {
        if !addon.dir.join("data").join("PG_VERSION").is_file() {
            return Err("initialising the database (initdb)".into());
        }
        let read = |n: &str| std::fs::read(addon.dir.join(n)).ok();
        match (
            read("roles.sql"),
            read("roles.applied"),
            read("roles.error"),
        ) {
            (Some(want), Some(done), _) if want == done => Ok(()),
            (_, _, Some(e)) => Err(format!(
                "setting up the apps' roles failed, tried again at the next start: {}",
                String::from_utf8_lossy(&e)
            )),
            _ => Err("setting up the apps' roles".into()),
        }
    }
    fn stop_signal(&self) -> i32 {
        // SIGTERM is postgres's "smart" shutdown, which waits for every client to leave.
        libc::SIGINT
    }
    fn backup_ext(&self, _addon: &Addon) -> Result<&'static str, String> {
        Ok("sql")
    }
    fn backup(&self, addon: &Addon, from: &BackupFrom, to: &Path) -> Result<(), String> {
        let program = from
            .program
            .ok_or("PostgreSQL is not installed (apt-get install postgresql)")?;
        let out = super::backup::create(to)?;
        let mut c = as_addon(addon, tool(program, "pg_dump"));
        c.args(["-h"])
            .arg(&addon.dir)
            .args([
                "-p",
                &addon.port.unwrap_or(5432).to_string(),
                "-U",
                ADMIN,
                "-d",
                &database(addon),
            ])
            .stdout(out);
        output_of("pg_dump", c).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addon() -> Addon {
        Addon {
            name: "nav-postgres".into(),
            kind: Kind::Postgres,
            app: "nav".into(),
            uid: None,
            port: Some(20005),
            dir: "/d/addons/nav-postgres".into(),
            file: None,
        }
    }

    fn cred(app: &str) -> Credential {
        Credential {
            app: app.into(),
            user: format!("{app}-u1"),
            password: "Pw1".into(),
        }
    }

    #[test]
    fn the_newest_major_version_is_taken() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(bin_dir_in(tmp.path()), None);
        for v in ["9.6", "13", "15", "16"] {
            std::fs::create_dir_all(tmp.path().join(v).join("bin")).unwrap();
        }
        for v in ["9.6", "13", "15"] {
            std::fs::write(tmp.path().join(v).join("bin/postgres"), "").unwrap();
        }
        // 16 has no server (a client-only install): not it.
        assert_eq!(bin_dir_in(tmp.path()), Some(tmp.path().join("15/bin")));
        assert_eq!(
            locate_in(tmp.path()),
            Ok(tmp.path().join("15/bin/postgres"))
        );
        let none = tempfile::tempdir().unwrap();
        let e = locate_in(none.path()).unwrap_err();
        assert!(e.contains("apt-get install postgresql"), "{e}");
    }

    #[test]
    fn urls_name_the_role_the_port_and_the_database() {
        assert_eq!(
            Postgres.url(&addon(), &cred("nav")),
            "postgres://nav-u1:Pw1@127.0.0.1:20005/nav_postgres"
        );
    }

    #[test]
    fn apps_reach_their_database_over_loopback_with_a_password_only() {
        let h = hba("nav_postgres");
        assert!(h.contains("local all roboku trust\n"), "{h}");
        assert!(h.contains("host nav_postgres all 127.0.0.1/32 scram-sha-256\n"));
        assert_eq!(h.lines().filter(|l| !l.starts_with('#')).count(), 2);
        let c = command(&addon(), Path::new("/usr/lib/postgresql/15/bin/postgres"));
        assert!(c.contains("-h 127.0.0.1 -p 20005"), "{c}");
        assert!(c.contains("-k /d/addons/nav-postgres "), "{c}");
        assert!(c.contains("shared_buffers=32MB") && c.contains("max_connections=20"));
    }

    #[test]
    fn each_app_has_a_role_and_the_others_are_removed() {
        let sql = roles_sql(&addon(), &[cred("nav"), cred("ui")]).unwrap();
        assert!(sql.contains("CREATE DATABASE \"nav_postgres\" OWNER \"nav_postgres_owner\""));
        assert!(sql.contains("ALTER ROLE \"ui-u1\" LOGIN"), "{sql}");
        assert!(sql.contains("GRANT \"nav_postgres_owner\" TO \"ui-u1\""));
        assert!(sql.contains("ARRAY['nav-u1', 'ui-u1']::text[]"), "{sql}");
        let none = roles_sql(&addon(), &[]).unwrap();
        assert!(none.contains("ARRAY[]::text[]"), "{none}");
        let mut bad = cred("x");
        bad.password = "a'; DROP".into();
        assert!(roles_sql(&addon(), &[bad]).is_err());
    }
}
