//! The command tree as a user types it: names with colons, usage errors caught by clap.

use super::*;
use clap::error::ErrorKind;
use clap::CommandFactory;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("roboku").chain(args.iter().copied()))
}

#[test]
fn command_tree_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn socket_defaults() {
    assert_eq!(
        default_socket(Some("/srv/rk".into()), true),
        PathBuf::from("/srv/rk/robokud.sock")
    );
    assert_eq!(default_socket(None, true), PathBuf::from(SYSTEM_SOCKET));
    assert_eq!(
        default_socket(None, false),
        PathBuf::from(".roboku/robokud.sock")
    );
}

#[test]
fn scale_specs_parse_into_pairs() {
    let cli = parse(&["ps:scale", "-a", "demo", "web=3", "worker=1", "--json"]).unwrap();
    assert!(cli.json);
    match cli.command {
        Command::PsScale(a) => {
            assert_eq!(a.app.app, "demo");
            assert_eq!(a.specs, [("web".to_string(), 3), ("worker".to_string(), 1)]);
        }
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn bad_values_are_usage_errors_naming_the_value() {
    let err = parse(&["ps:scale", "-a", "demo", "web=x"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueValidation);
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string().contains("bad scale spec \"web=x\""),
        "{err}"
    );

    let err = parse(&["ps:resize", "-a", "demo", "web", "--memory", "64X"]).unwrap_err();
    assert!(err.to_string().contains("\"64X\""), "{err}");

    let err = parse(&["apps:create", "Bad_Name"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueValidation);
}

#[test]
fn resize_needs_something_and_takes_negative_nice() {
    assert!(parse(&["ps:resize", "-a", "demo", "web"]).is_err());
    let cli = parse(&[
        "ps:resize",
        "-a",
        "demo",
        "web",
        "--nice",
        "-5",
        "--cpu",
        "0.5",
        "--clear",
        "memory,pids",
    ])
    .unwrap();
    match cli.command {
        Command::PsResize(a) => {
            assert_eq!(a.nice, Some(-5));
            assert_eq!(a.cpu, Some(0.5));
            assert_eq!(a.clear, ["memory_max", "pids"]);
        }
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn run_takes_the_rest_verbatim() {
    let cli = parse(&["run", "-a", "demo", "--", "ls", "-la", "--color"]).unwrap();
    match cli.command {
        Command::Run(a) => assert_eq!(a.command, ["ls", "-la", "--color"]),
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn versions_accept_both_spellings() {
    for v in ["v3", "3"] {
        match parse(&["rollback", "-a", "demo", v]).unwrap().command {
            Command::Rollback(a) => assert_eq!(a.version, Some(3)),
            other => panic!("parsed as {other:?}"),
        }
    }
}

#[test]
fn apps_update_needs_a_change() {
    let err = parse(&["apps:update", "-a", "demo"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
    assert!(parse(&["apps:update", "-a", "demo", "--grace", "10"]).is_ok());
}

#[test]
fn exit_codes() {
    let unreachable = client::ClientError::Unreachable {
        socket: "/nope".into(),
        source: std::io::ErrorKind::NotFound.into(),
    };
    assert_eq!(report(&unreachable.into(), false), 3);
    let api = client::ClientError::Api {
        status: 409,
        code: "conflict".into(),
        message: "app demo exists".into(),
    };
    assert_eq!(report(&api.into(), true), 1);
    assert_eq!(report(&commands::UsageError("x".into()).into(), true), 2);
    let pipe: anyhow::Error = std::io::Error::from(std::io::ErrorKind::BrokenPipe).into();
    assert_eq!(report(&pipe, false), 0);
}
