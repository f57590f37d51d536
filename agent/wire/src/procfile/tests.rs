use super::*;

fn entries(text: &str) -> Vec<(String, String, usize)> {
    let parsed = parse_procfile(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"));
    parsed
        .entries
        .into_iter()
        .map(|e| (e.name, e.command, e.line))
        .collect()
}

fn e(name: &str, command: &str, line: usize) -> (String, String, usize) {
    (name.to_string(), command.to_string(), line)
}

fn procfile_err(text: &str) -> ParseError {
    match parse_procfile(text) {
        Ok(p) => panic!("{text:?} should fail, parsed {p:?}"),
        Err(err) => err,
    }
}

fn env(text: &str) -> Vec<(String, String)> {
    parse_dotenv(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn env_err(text: &str) -> ParseError {
    match parse_dotenv(text) {
        Ok(p) => panic!("{text:?} should fail, parsed {p:?}"),
        Err(err) => err,
    }
}

// ---- Procfile: valid files ----

#[test]
fn heroku_rails_procfile_with_release_phase() {
    let text = "release: bundle exec rails db:migrate\n\
                web: bundle exec puma -C config/puma.rb\n\
                worker: bundle exec sidekiq -e production -C config/sidekiq.yml\n";
    assert_eq!(
        entries(text),
        vec![
            e("release", "bundle exec rails db:migrate", 1),
            e("web", "bundle exec puma -C config/puma.rb", 2),
            e(
                "worker",
                "bundle exec sidekiq -e production -C config/sidekiq.yml",
                3
            ),
        ]
    );
}

#[test]
fn foreman_readme_procfile_keeps_colons_and_globs_in_commands() {
    let text = "web:    bundle exec thin start -p $PORT\n\
                worker: bundle exec rake resque:work QUEUE=*\n\
                clock:  bundle exec rake resque:scheduler\n";
    assert_eq!(
        entries(text),
        vec![
            e("web", "bundle exec thin start -p $PORT", 1),
            e("worker", "bundle exec rake resque:work QUEUE=*", 2),
            e("clock", "bundle exec rake resque:scheduler", 3),
        ]
    );
}

#[test]
fn command_after_first_colon_is_kept_whole() {
    let text = "web: python -m http.server --bind 0.0.0.0:$PORT";
    assert_eq!(
        entries(text),
        vec![e("web", "python -m http.server --bind 0.0.0.0:$PORT", 1)]
    );
    assert_eq!(
        entries("web:node index.js"),
        vec![e("web", "node index.js", 1)]
    );
    assert_eq!(entries("web:\t ./run  "), vec![e("web", "./run", 1)]);
}

#[test]
fn comments_blanks_whitespace_bom_and_crlf_are_tolerated() {
    let text = "\u{feff}# services for the arm\r\n\r\n  web: gunicorn app:app  \r\n\
                \t# disabled: nothing\r\nsensor_reader-2: ./read --hz 50 # shell comment\r\n";
    assert_eq!(
        entries(text),
        vec![
            e("web", "gunicorn app:app", 3),
            e("sensor_reader-2", "./read --hz 50 # shell comment", 5),
        ]
    );
}

#[test]
fn procfile_get_finds_by_name() {
    let p = parse_procfile("web: a\nworker: b\n").unwrap();
    assert_eq!(p.get("worker").map(|e| e.command.as_str()), Some("b"));
    assert!(p.get("clock").is_none());
}

#[test]
fn process_type_name_rule() {
    for ok in ["web", "worker_2", "sensor-reader", "A9", "_", "-"] {
        assert!(process_type_name_ok(ok), "{ok:?}");
    }
    for bad in ["", "web.1", "web server", "wéb", "a/b", "a:b", "web\n"] {
        assert!(!process_type_name_ok(bad), "{bad:?}");
    }
}

// ---- Procfile: errors ----

#[test]
fn line_without_colon_is_an_error_on_its_line() {
    let err = procfile_err("# c\n\nweb: ./a\nworker ./b\n");
    assert_eq!(err.line, 4);
    assert!(err.message.contains("no ':'"), "{}", err.message);
    assert!(
        err.message.contains("expected `name: command`"),
        "{}",
        err.message
    );
}

#[test]
fn invalid_name_names_the_character() {
    let err = procfile_err("web: ./a\nweb.1: ./b\n");
    assert_eq!(err.line, 2);
    assert!(
        err.message.contains("'.'") && err.message.contains("\"web.1\""),
        "{}",
        err.message
    );

    let err = procfile_err("web : ./a");
    assert_eq!(err.line, 1);
    assert!(err.message.contains("' '"), "{}", err.message);

    let err = procfile_err("\r\nwéb: ./a\r\n");
    assert_eq!(err.line, 2);
    assert!(err.message.contains("'é'"), "{}", err.message);

    // Without a colon in the right place the "name" is the text before a later colon.
    let err = procfile_err("web python -m http.server 0.0.0.0:80");
    assert!(
        err.message.contains("invalid character ' '"),
        "{}",
        err.message
    );
}

#[test]
fn missing_name_is_an_error() {
    let err = procfile_err("web: ./a\n: ./b");
    assert_eq!(err.line, 2);
    assert!(
        err.message.contains("missing process type name"),
        "{}",
        err.message
    );
}

#[test]
fn empty_command_is_an_error() {
    for text in ["web:", "web:   ", "# x\nweb:\t\r\n"] {
        let err = procfile_err(text);
        assert_eq!(err.line, text.lines().count(), "{text:?}");
        assert!(err.message.contains("empty command"), "{}", err.message);
    }
}

#[test]
fn duplicate_names_the_earlier_line() {
    let err = procfile_err("web: ./a\n\nworker: ./w\nweb: ./b\n");
    assert_eq!(err.line, 4);
    assert!(
        err.message.contains("first defined on line 1"),
        "{}",
        err.message
    );
    assert_eq!(err.to_string(), format!("line 4: {}", err.message));
}

#[test]
fn empty_procfile_is_an_error() {
    for text in ["", "\n\n", "# only a comment\r\n", "\u{feff}"] {
        let err = procfile_err(text);
        assert_eq!(err.line, 0, "{text:?}");
        assert!(
            err.message.contains("Procfile defines no process types"),
            "{}",
            err.message
        );
    }
}

// ---- .env: valid files ----

#[test]
fn basic_pairs_exports_comments_and_whitespace() {
    let text = "\u{feff}# robot config\r\n\r\nDATABASE_URL=postgres://u:p@localhost/db?sslmode=require\r\n\
                export RACK_ENV=production\r\n  SPEED = 0.5  \r\nexport\tLOG.LEVEL=debug\r\nEMPTY=\r\n";
    assert_eq!(
        env(text),
        kv(&[
            (
                "DATABASE_URL",
                "postgres://u:p@localhost/db?sslmode=require"
            ),
            ("RACK_ENV", "production"),
            ("SPEED", "0.5"),
            ("LOG.LEVEL", "debug"),
            ("EMPTY", ""),
        ])
    );
}

#[test]
fn key_named_export_is_still_a_key() {
    assert_eq!(
        env("export=1\nexport = 2"),
        kv(&[("export", "1"), ("export", "2")])
    );
}

#[test]
fn unquoted_values_lose_inline_comments_only_after_whitespace() {
    let text = "A=bar # the bar\nB=http://h/p#frag\nC=#notacomment\nD= # nothing\nE=it's \"x\"\n";
    assert_eq!(
        env(text),
        kv(&[
            ("A", "bar"),
            ("B", "http://h/p#frag"),
            ("C", "#notacomment"),
            ("D", ""),
            ("E", "it's \"x\"")
        ])
    );
}

#[test]
fn single_quotes_are_literal() {
    let text = r#"A='a \n $HOME "b" # not a comment'  # a comment
B = 'spaced'
"#;
    assert_eq!(
        env(text),
        kv(&[("A", r#"a \n $HOME "b" # not a comment"#), ("B", "spaced")])
    );
}

#[test]
fn double_quotes_unescape_the_documented_escapes_only() {
    let text = r#"A="l1\nl2\tt \"q\" back\\slash \$HOME"
B="C:\dir\x" # comment
C=""
"#;
    assert_eq!(
        env(text),
        kv(&[
            ("A", "l1\nl2\tt \"q\" back\\slash $HOME"),
            ("B", r"C:\dir\x"),
            ("C", "")
        ])
    );
}

#[test]
fn no_variable_interpolation() {
    assert_eq!(
        env("HOME=/root\nA=$HOME/x\nB=\"${HOME}\"\n"),
        kv(&[("HOME", "/root"), ("A", "$HOME/x"), ("B", "${HOME}")])
    );
}

#[test]
fn quoted_values_span_lines_and_later_lines_keep_their_numbers() {
    let text = "KEY=\"-----BEGIN KEY-----\r\nabc\\\"def\r\n-----END KEY-----\"\r\nS='x\n  y'\nNEXT=1\nbad\n";
    let err = env_err(text);
    assert_eq!(err.line, 7, "{err}");
    assert_eq!(
        env(&text.replace("bad\n", "")),
        kv(&[
            ("KEY", "-----BEGIN KEY-----\nabc\"def\n-----END KEY-----"),
            ("S", "x\n  y"),
            ("NEXT", "1"),
        ])
    );
}

#[test]
fn duplicates_are_returned_in_order() {
    assert_eq!(
        env("A=1\nB=2\nA=3"),
        kv(&[("A", "1"), ("B", "2"), ("A", "3")])
    );
}

// ---- .env: errors ----

#[test]
fn line_without_equals_is_an_error() {
    for (text, line) in [
        ("A=1\n\nJUSTAWORD\n", 3),
        ("export FOO\n", 1),
        ("# c\n  A 1", 2),
    ] {
        let err = env_err(text);
        assert_eq!(err.line, line, "{text:?}");
        assert!(
            err.message.contains("expected KEY=VALUE"),
            "{}",
            err.message
        );
    }
}

#[test]
fn invalid_keys_are_named() {
    let err = env_err("A=1\n1ABC=2");
    assert_eq!(err.line, 2);
    assert!(
        err.message.contains("\"1ABC\"") && err.message.contains("'1'"),
        "{}",
        err.message
    );

    let err = env_err("MY-KEY=2");
    assert_eq!(err.line, 1);
    assert!(
        err.message.contains("'-'") && err.message.contains("\"MY-KEY\""),
        "{}",
        err.message
    );

    let err = env_err("\n=value");
    assert_eq!(err.line, 2);
    assert!(err.message.contains("missing key"), "{}", err.message);
}

#[test]
fn unterminated_quote_reports_the_opening_line_without_the_secret() {
    let err = env_err("A=1\nTOKEN=\"s3cret\nmore\nB=2\n");
    assert_eq!(err.line, 2);
    assert!(
        err.message.contains("TOKEN") && err.message.contains("never closed"),
        "{err}"
    );
    assert!(!err.message.contains("s3cret"), "{err}");

    let err = env_err("X='abc");
    assert_eq!(err.line, 1);
    assert!(err.message.contains("single-quoted"), "{err}");
}

#[test]
fn text_after_closing_quote_is_an_error_on_the_closing_line() {
    let err = env_err("A=\"x\"y");
    assert_eq!(err.line, 1);
    assert!(
        err.message.contains("after the closing quote of A"),
        "{err}"
    );

    let err = env_err("OK=1\nB='l1\nl2' trailing\n");
    assert_eq!(err.line, 3);
    assert!(!err.message.contains("trailing"), "{err}");
}
