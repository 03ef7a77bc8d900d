//! The `nnmnist` binary: parse the flags, resolve them once into a [`Job`], run it, and map
//! how it ended to the exit status, here and nowhere else. The only place that touches
//! process-wide signal state.
use clap::Parser;
use nnmnist::cli::{Cli, Command};
use nnmnist::config::Job;
use nnmnist::outcome::Outcome;
use nnmnist::signal::{self, Stop};
use nnmnist::terminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(terminal::colour(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let cli = Cli::parse();
    if cli.version {
        print!("{}", nnmnist::version::report());
        return ExitCode::SUCCESS;
    }
    // As diff(1): its 1 means "different", so its trouble is 2; every other command's is 1.
    let trouble = if matches!(cli.command, Some(Command::Diff(_))) { 2 } else { 1 };
    let stop = Stop::install();
    // A stopped run exits with its signal's status (SIGINT's where no signal arrived: a
    // stop asked for in process).
    let stopped = |sig: Option<i32>| ExitCode::from(signal::exit_code(sig.unwrap_or(signal::SIGINT)) as u8);
    match Job::from_cli(cli).and_then(|job| job.run(&stop)) {
        Ok(Outcome::Done) => match stop.signal() {
            // A signal during the last epoch's evaluation: everything is saved, but say so.
            Some(sig) => {
                terminal::note(format_args!("{} arrived after the last checkpoint was saved: the run is complete", signal::name(sig)));
                stopped(Some(sig))
            }
            None => ExitCode::SUCCESS,
        },
        Ok(Outcome::Different) => ExitCode::from(1),
        Ok(Outcome::Interrupted(what)) => {
            terminal::note(&what);
            stopped(stop.signal())
        }
        Err(e) => {
            terminal::error(format_args!("{e:#}"));
            ExitCode::from(trouble)
        }
    }
}
