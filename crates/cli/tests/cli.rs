//! The `e2ee` binary's own contract: help, argument errors and exit codes. (Talking to a
//! relay is covered by the workspace's end-to-end tests in `tests/`.) Having an
//! integration test here also makes `cargo test --workspace` build the `e2ee` binary
//! those end-to-end tests drive.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

fn e2ee(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_e2ee"))
        .args(args)
        .env_remove("E2EE_HOME")
        .env_remove("E2EE_RELAY")
        .output()
        .unwrap()
}

#[test]
fn help_lists_every_command_and_the_exit_codes() {
    let output = e2ee(&["--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8(output.stdout).unwrap();
    for command in [
        "register",
        "whoami",
        "add-contact",
        "contacts",
        "send",
        "poll",
        "history",
        "verify",
        "trust",
    ] {
        assert!(help.contains(command), "--help lacks {command}:\n{help}");
    }
    assert!(help.contains("Exit codes: 0 ok, 1 user error"), "{help}");
    assert!(help.contains("4 untrusted identity"), "{help}");
}

#[test]
fn bad_arguments_are_a_user_error_not_an_internal_one() {
    for args in [
        &["--bogus"][..],
        &[][..],
        &["send"][..],
        &["poll", "--timeout", "soon"][..],
    ] {
        let output = e2ee(args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        // Either the error with a pointer to --help, or (no arguments at all) the usage.
        assert!(
            stderr.starts_with("error:") && stderr.contains("--help") || stderr.contains("Usage:"),
            "{args:?}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn global_flags_work_after_the_subcommand() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path().to_str().unwrap();
    let before = e2ee(&["--home", home, "--json", "whoami"]);
    let after = e2ee(&["whoami", "--home", home, "--json"]);
    assert_eq!(before.status.code(), after.status.code());
    assert_eq!(before.stdout, after.stdout);
    assert_eq!(before.stderr, after.stderr);
    // A profile that never registered is something the user can fix.
    assert_eq!(after.status.code(), Some(1));
    let stderr = String::from_utf8(after.stderr).unwrap();
    assert!(stderr.contains("register"), "{stderr}");
}
