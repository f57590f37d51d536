//! Heroku's buildpack registry names (`heroku/python`, `heroku-community/apt`) and the registry's
//! tarball URLs, as `heroku buildpacks:set` takes them. Pure: no registry is asked, since a robot
//! is often offline and the registry is a Heroku service.
//!
//! Heroku's own language packs that roboku builds the same way map to the built-in
//! (`heroku/python` -> `python`); the release records the name as the user wrote it. Every other
//! registry name is refused with what to write instead: the buildpack's git URL, which
//! `buildpacks:set` fetches and pins (`git_cache.rs`).

/// Heroku names that are a built-in here, and the built-in.
const BUILTIN: [(&str, &str); 4] = [
    ("heroku/python", "python"),
    ("heroku/nodejs", "nodejs"),
    ("heroku/go", "go"),
    // Heroku's Cloud Native Buildpack of that name; the built-in does the same.
    ("heroku/procfile", "procfile"),
];

/// Heroku's official packs roboku has no built-in for, and the repository of each.
const HEROKU_REPOS: [(&str, &str); 8] = [
    ("ruby", "heroku-buildpack-ruby"),
    ("java", "heroku-buildpack-java"),
    ("gradle", "heroku-buildpack-gradle"),
    ("scala", "heroku-buildpack-scala"),
    ("clojure", "heroku-buildpack-clojure"),
    ("php", "heroku-buildpack-php"),
    ("jvm", "heroku-buildpack-jvm-common"),
    ("dotnet", "heroku-buildpack-dotnet"),
];

/// Where `heroku buildpacks:set NS/NAME` points an app (the registry's tarball of a version).
const REGISTRY_URLS: [&str; 2] = [
    "https://buildpack-registry.s3.amazonaws.com/buildpacks/",
    "https://buildpack-registry.heroku.com/buildpacks/",
];

/// `Some(Ok(builtin))` for a registry name or URL that is a built-in here, `Some(Err(why))` for
/// one that is not (the message says what to write instead), `None` for anything that is not a
/// registry name (a built-in's own name, a path, a git URL).
pub fn resolve(pack: &str) -> Option<Result<&'static str, String>> {
    let name = registry_name(pack)?;
    if let Some((_, builtin)) = BUILTIN.iter().find(|(n, _)| *n == name) {
        return Some(Ok(builtin));
    }
    let builtins = super::BUILTIN_ORDER.join(", ");
    let (namespace, short) = name.split_once('/')?;
    if namespace == "heroku" {
        if let Some((_, repo)) = HEROKU_REPOS.iter().find(|(n, _)| *n == short) {
            return Some(Err(format!(
                "buildpack {pack:?}: roboku has no built-in for Heroku's {short} buildpack \
                 (built-ins: {builtins}); use its git URL, which is fetched once and then \
                 built offline: roboku buildpacks:set https://github.com/heroku/{repo}#<tag>"
            )));
        }
    }
    Some(Err(format!(
        "buildpack {pack:?} is a name in Heroku's buildpack registry, which roboku does not ask \
         (robots are often offline); set the buildpack's git URL instead \
         (https://github.com/<org>/<repo>#<tag>), or a built-in: {builtins}"
    )))
}

/// `ns/name` of a registry name or a registry tarball URL.
fn registry_name(pack: &str) -> Option<&str> {
    let name = REGISTRY_URLS
        .iter()
        .find_map(|prefix| pack.strip_prefix(prefix))
        .map(|rest| rest.strip_suffix(".tgz").unwrap_or(rest))
        .unwrap_or(pack);
    let (namespace, short) = name.split_once('/')?;
    let word = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    };
    (word(namespace) && word(short)).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heroku_language_packs_roboku_builds_are_the_built_ins() {
        assert_eq!(resolve("heroku/python"), Some(Ok("python")));
        assert_eq!(resolve("heroku/nodejs"), Some(Ok("nodejs")));
        assert_eq!(resolve("heroku/go"), Some(Ok("go")));
        assert_eq!(resolve("heroku/procfile"), Some(Ok("procfile")));
        assert_eq!(
            resolve("https://buildpack-registry.s3.amazonaws.com/buildpacks/heroku/python.tgz"),
            Some(Ok("python"))
        );
    }

    #[test]
    fn other_registry_names_are_refused_with_what_to_write() {
        let e = resolve("heroku/ruby").unwrap().unwrap_err();
        assert!(
            e.contains("https://github.com/heroku/heroku-buildpack-ruby#<tag>"),
            "{e}"
        );
        let e = resolve("heroku-community/apt").unwrap().unwrap_err();
        assert!(e.contains("Heroku's buildpack registry"), "{e}");
        assert!(e.contains("git URL"), "{e}");
        let e =
            resolve("https://buildpack-registry.heroku.com/buildpacks/heroku-community/apt.tgz")
                .unwrap()
                .unwrap_err();
        assert!(e.contains("registry"), "{e}");
    }

    #[test]
    fn built_in_names_paths_and_git_urls_are_not_registry_names() {
        for pack in [
            "python",
            "/srv/packs/mine",
            "https://github.com/heroku/heroku-buildpack-python#v250",
            "ssh://git@host/org/pack",
            "Heroku/Python",
            "heroku/",
            "a/b/c",
            "../x",
        ] {
            assert_eq!(resolve(pack), None, "{pack}");
        }
    }
}
