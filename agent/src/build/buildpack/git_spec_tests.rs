use super::*;

fn refused(spec: &str) -> String {
    match GitSpec::parse(spec) {
        Ok(s) => panic!("{spec:?} was accepted as {s:?}"),
        Err(e) => e,
    }
}

#[test]
fn heroku_style_urls_parse_with_and_without_a_ref() {
    let s = GitSpec::parse("https://github.com/heroku/heroku-buildpack-python#v200").unwrap();
    assert_eq!(s.scheme, Scheme::Https);
    assert_eq!(s.url, "https://github.com/heroku/heroku-buildpack-python");
    assert_eq!(s.reference.as_deref(), Some("v200"));
    assert_eq!(s.wanted(), "v200");
    assert_eq!(s.repo_name(), "heroku-buildpack-python");
    assert_eq!(
        s.to_string(),
        "https://github.com/heroku/heroku-buildpack-python#v200"
    );

    let s = GitSpec::parse("https://git.example.com:8443/org/pack.git").unwrap();
    assert_eq!((s.reference.as_deref(), s.wanted()), (None, "HEAD"));
    assert_eq!(s.repo_name(), "pack");

    let s = GitSpec::parse("ssh://git@github.com/org/pack.git#feature/ros-2").unwrap();
    assert_eq!(s.scheme, Scheme::Ssh);
    assert_eq!(s.wanted(), "feature/ros-2");

    let s = GitSpec::parse("file:///srv/packs/counter#0123abc").unwrap();
    assert_eq!(s.scheme, Scheme::File);
    assert_eq!(s.repo_name(), "counter");
    assert!(GitSpec::parse("file://localhost/srv/packs/counter").is_ok());
    assert!(GitSpec::parse("ssh://[::1]:2222/srv/pack").is_ok());
}

#[test]
fn what_is_a_git_spec_and_what_is_a_name_or_a_path() {
    for s in [
        "https://github.com/x/y",
        "http://x/y",
        "ftp://x/y",
        "git@github.com:org/pack",
    ] {
        assert!(is_git_spec(s), "{s}");
    }
    for s in ["python", "nodejs", "/srv/pack", "/srv/a://b", "procfile"] {
        assert!(!is_git_spec(s), "{s}");
    }
}

#[test]
fn option_injection_is_refused_wherever_git_or_ssh_would_see_it() {
    let e = refused("ssh://-oProxyCommand=touch%20pwned/x");
    assert!(e.contains("starts with '-'"), "{e}");
    let e = refused("ssh://-oProxyCommand=id@host/x");
    assert!(e.contains("starts with '-'"), "{e}");
    let e = refused("https://github.com/org/pack#--upload-pack=touch");
    assert!(
        e.contains("ref \"--upload-pack=touch\" starts with '-'"),
        "{e}"
    );
    let e = refused("file:///srv/-pack");
    assert!(e.contains("\"-pack\", which starts with '-'"), "{e}");
    let e = refused("https://github.com/org/pack#+main:refs/heads/x");
    assert!(e.contains("has '+'"), "{e}");
}

#[test]
fn credentials_in_the_url_are_refused_naming_the_way_out() {
    for spec in [
        "https://user:token@github.com/org/pack",
        "https://ghp_token@github.com/org/pack",
        "ssh://git:secret@github.com/org/pack",
    ] {
        let e = refused(spec);
        assert!(e.contains("has credentials in it"), "{e}");
        assert!(e.contains("ssh:// with the robot's ssh key"), "{e}");
    }
}

#[test]
fn control_characters_whitespace_and_non_ascii_are_refused_with_their_place() {
    let e = refused("https://github.com/org/pack\n#main");
    assert!(e.contains("a control character ('\\n') at byte 27"), "{e}");
    let e = refused("https://github.com/org/pack #main");
    assert!(e.contains("whitespace"), "{e}");
    let e = refused("https://gіthub.com/org/pack");
    assert!(e.contains("not ASCII"), "{e}");
    let e = refused("https://github.com/org/pack%0a");
    assert!(e.contains("'%'"), "{e}");
    assert!(refused("").contains("empty"));
    let long = format!("https://github.com/{}", "a".repeat(3000));
    assert!(refused(&long).contains("at most 2048"));
}

#[test]
fn schemes_other_than_https_ssh_and_file_are_refused_with_the_alternative() {
    assert!(refused("http://github.com/org/pack").contains("use https://"));
    assert!(refused("git://github.com/org/pack").contains("unauthenticated"));
    assert!(refused("ext::sh -c touch% /tmp/pwned").contains("whitespace"));
    assert!(refused("ext::sh").contains("no scheme"));
    assert!(refused("fd::3/x").contains("no scheme"));
    assert!(refused("git+ssh://host/x").contains("write ssh://"));
    assert!(refused("HTTPS://github.com/x").contains("(in lowercase)"));
    let e = refused("git@github.com:org/pack.git");
    assert!(e.contains("ssh://git@github.com/org/pack.git"), "{e}");
}

#[test]
fn hosts_ports_and_paths_are_checked() {
    assert!(refused("https:///org/pack").contains("names no host"));
    assert!(refused("https://github.com").contains("no repository path"));
    assert!(refused("https://github.com/").contains("no repository path"));
    assert!(refused("https://git_hub.com/x").contains("host name has letters"));
    assert!(refused("https://github.com:0/x").contains("not 1-65535"));
    assert!(refused("https://github.com:99999/x").contains("not 1-65535"));
    assert!(refused("https://[::1/x").contains("closing ']'"));
    assert!(refused("file://robot/srv/pack").contains("name a path on this robot"));
    assert!(refused("file:///srv/../etc/pack").contains("'..'"));
    assert!(refused("https://github.com/org/pack;rm").contains("';'"));
}

#[test]
fn refs_follow_gits_rules() {
    for good in [
        "main",
        "v1.2.3",
        "release/2026-01",
        "a_b",
        "0123abcd",
        "HEAD",
    ] {
        let spec = format!("https://github.com/org/pack#{good}");
        assert!(GitSpec::parse(&spec).is_ok(), "{good}");
    }
    for (bad, why) in [
        ("", "is empty"),
        ("a..b", "'..'"),
        ("/main", "empty path component"),
        ("main/", "empty path component"),
        ("a//b", "empty path component"),
        (".hidden", "starting with '.'"),
        ("x.lock", "'.lock'"),
        ("main.", "ends with '.'"),
        ("main@{1}", "has '@'"),
        ("a:b", "has ':'"),
        ("a~1", "has '~'"),
        ("a#b", "has '#'"),
    ] {
        let e = refused(&format!("https://github.com/org/pack#{bad}"));
        assert!(e.contains(why), "{bad}: {e}");
    }
    let e = refused(&format!("https://github.com/org/pack#{}", "a".repeat(300)));
    assert!(e.contains("255"), "{e}");
}

#[test]
fn commits_full_and_short() {
    assert!(is_full_commit(&"a".repeat(40)));
    assert!(is_full_commit(&"0".repeat(64)));
    assert!(!is_full_commit(&"A".repeat(40)));
    assert!(!is_full_commit(&"a".repeat(39)));
    assert!(is_short_commit("0123abc"));
    assert!(!is_short_commit("0123ab"));
    assert!(!is_short_commit("main"));
}

#[test]
fn every_ref_of_a_url_shares_one_cache_key() {
    let a = GitSpec::parse("https://github.com/org/pack#main").unwrap();
    let b = GitSpec::parse("https://github.com/org/pack#v1").unwrap();
    let c = GitSpec::parse("https://github.com/org/other#main").unwrap();
    assert_eq!(a.cache_key(), b.cache_key());
    assert_ne!(a.cache_key(), c.cache_key());
    assert_eq!(a.cache_key().len(), 24);
    assert!(a.cache_key().bytes().all(|b| b.is_ascii_hexdigit()));
}
