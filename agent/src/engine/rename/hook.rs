//! The push-to-deploy repository's `pre-receive` hook names the app it deploys to (`roboku
//! git:init` writes `exec roboku --socket S git-hook APP`). A renamed app's moved repository
//! gets its hook pointed at the new name, so `git push` to the new path deploys the renamed app.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Points `<repo>/hooks/pre-receive` at app `to` instead of `from` (nothing to do when it names
/// `to` already). A hook `git:init` did not write is left as it is, and said so.
pub fn retarget(repo: &Path, from: &str, to: &str) -> Result<(), String> {
    let path = repo.join("hooks").join("pre-receive");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the git hook {}: {e}", path.display()))?;
    let Some(new) = retargeted(&text, from, to) else {
        return Err(format!(
            "the git hook {} does not run `roboku git-hook {from}`; left as it is (run `roboku git:init -a {to}` to write it again)",
            path.display()
        ));
    };
    if new == text {
        return Ok(());
    }
    let meta = std::fs::metadata(&path).map_err(|e| format!("stat {}: {e}", path.display()))?;
    let tmp = path.with_extension("roboku-tmp");
    let written = std::fs::write(&tmp, &new)
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)))
        .and_then(|()| std::os::unix::fs::chown(&tmp, Some(meta.uid()), Some(meta.gid())))
        .and_then(|()| std::fs::rename(&tmp, &path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot rewrite the git hook {}: {e}", path.display())
    })
}

/// The hook text with its `git-hook` line naming `to`; `None` when no line names `from` or `to`.
fn retargeted(text: &str, from: &str, to: &str) -> Option<String> {
    let (old, new) = (arg_tail(from), arg_tail(to));
    let mut found = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| match line.strip_suffix(&old) {
            Some(head) if line.starts_with("exec ") => {
                found = true;
                format!("{head}{new}")
            }
            _ => {
                found |= line.starts_with("exec ") && line.ends_with(&new);
                line.to_string()
            }
        })
        .collect();
    found.then(|| lines.join("\n") + if text.ends_with('\n') { "\n" } else { "" })
}

/// How `git:init` ends the hook's command line (app names need no quoting beyond this).
fn arg_tail(app: &str) -> String {
    format!(" git-hook '{app}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOOK: &str = "#!/bin/sh\n# Written by `roboku git:init`: a push to main or master deploys; a failed deploy rejects it.\nexec '/usr/bin/roboku' --socket '/var/lib/roboku/robokud.sock' git-hook 'nav'\n";

    #[test]
    fn the_hook_line_is_pointed_at_the_new_name_once() {
        let new = retargeted(HOOK, "nav", "nav-two").unwrap();
        assert!(new.ends_with("git-hook 'nav-two'\n"), "{new}");
        assert_eq!(new.lines().count(), 3);
        assert_eq!(
            retargeted(&new, "nav", "nav-two").as_deref(),
            Some(new.as_str())
        );
        assert_eq!(
            retargeted("#!/bin/sh\nexec my-deployer\n", "nav", "x"),
            None
        );
        // An app whose name ends like another's is not mistaken for it.
        assert_eq!(retargeted(HOOK, "av", "x"), None);
    }

    #[test]
    fn retarget_rewrites_the_file_keeping_it_executable() {
        let repo = tempfile::tempdir().unwrap();
        let path = repo.path().join("hooks/pre-receive");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, HOOK).unwrap();
        retarget(repo.path(), "nav", "arm").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("git-hook 'arm'\n"), "{text}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
        let err = retarget(repo.path(), "arm", "b").unwrap_err();
        assert!(err.contains("does not run `roboku git-hook arm`"), "{err}");
    }
}
