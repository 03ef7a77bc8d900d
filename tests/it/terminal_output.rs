//! Escape codes only where a terminal takes them: `show`'s colours and the training progress
//! bar, on a pipe, on a pseudo-terminal (util-linux `script`, which gives the command a
//! terminal and records what it wrote there) and under NO_COLOR, CLICOLOR, CLICOLOR_FORCE
//! and TERM=dumb.
use crate::common::{self, bin, repo_data, s};

const ESC: char = '\x1b';

/// `nnmnist ARGS` with `env`, its stdout a pipe: what it printed there.
fn piped(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = common::nnmnist();
    cmd.args(args).env_remove("NO_COLOR").env_remove("CLICOLOR").env_remove("CLICOLOR_FORCE");
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `nnmnist ARGS` on a pseudo-terminal (stdout and stderr both) with `env`: everything it
/// wrote there.
fn on_a_terminal(args: &[&str], env: &[(&str, &str)]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let typescript = tmp.path().join("typescript");
    let quoted: Vec<String> = std::iter::once(s(&bin())).chain(args.iter().copied()).map(|a| format!("'{}'", a.replace('\'', "'\\''"))).collect();
    let mut cmd = common::command("script");
    cmd.args(["-qec", &quoted.join(" "), s(&typescript)]).env_remove("NO_COLOR").env_remove("CLICOLOR").env_remove("CLICOLOR_FORCE").env_remove("RUST_LOG");
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap_or_else(|e| panic!("util-linux `script` runs the command on a terminal: {e}"));
    let text = String::from_utf8_lossy(&std::fs::read(&typescript).unwrap()).into_owned();
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn show_colours_only_where_the_stream_takes_them() {
    let data = repo_data();
    let args = ["show", "0", "--data-dir", s(&data)];
    let term = [("TERM", "xterm-256color")];
    assert!(on_a_terminal(&args, &term).contains("\x1b[38;5;"), "a colour terminal gets colour");
    assert!(!piped(&args, &term).contains(ESC), "a pipe gets none");
    assert!(piped(&args, &[("TERM", "xterm-256color"), ("CLICOLOR_FORCE", "1")]).contains("\x1b[38;5;"), "CLICOLOR_FORCE forces it");
    for env in [&[("TERM", "dumb")][..], &[("TERM", "dumb"), ("CI", "true")], &[("TERM", "dumb"), ("CLICOLOR", "1")], &[("TERM", "xterm-256color"), ("NO_COLOR", "1")], &[("TERM", "xterm-256color"), ("CLICOLOR", "0")], &[("TERM", "xterm"), ("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")]] {
        let text = on_a_terminal(&args, env);
        assert!(!text.contains(ESC) && text.contains('█'), "{env:?}: the plain drawing, no escape code:\n{text}");
    }
}

#[test]
fn the_progress_bar_is_drawn_only_on_a_terminal_that_moves_its_cursor() {
    let data = repo_data();
    let args = ["mlp", "--train-size", "3000", "--test-size", "100", "--epochs", "1", "--data-dir", s(&data)];
    let shown = on_a_terminal(&args, &[("TERM", "xterm-256color")]);
    assert!(shown.contains("batches") && shown.contains(ESC), "the bar on a terminal:\n{shown}");
    let dumb = on_a_terminal(&args, &[("TERM", "dumb"), ("CI", "true")]);
    assert!(!dumb.contains("batches") && !dumb.contains(ESC), "no bar on TERM=dumb:\n{dumb}");
    assert!(dumb.contains("Epoch 0:"), "{dumb}");
}

#[test]
fn the_log_on_a_pipe_or_in_a_file_has_no_escape_code() {
    let data = repo_data();
    let mut cmd = common::nnmnist();
    cmd.args(["mlp", "--train-size", "1000", "--test-size", "100", "--epochs", "1", "--data-dir", s(&data)]);
    cmd.env("RUST_LOG", "nnmnist=info").env("TERM", "xterm-256color").env_remove("NO_COLOR").env_remove("CLICOLOR").env_remove("CLICOLOR_FORCE");
    let out = cmd.output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("INFO"), "RUST_LOG=nnmnist=info logs: {log}");
    assert!(!log.contains(ESC), "no escape code in the log: {log:?}");
}
