//! The `nnmnist` binary: parse the flags, resolve them once into a [`Job`], run it. The only
//! place that touches process-wide signal state.
use clap::Parser;
use nnmnist::cli::Cli;
use nnmnist::config::Job;
use nnmnist::driver::Interrupted;
use nnmnist::signal::{self, Stop};
use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(nnmnist::terminal::colour(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let cli = Cli::parse();
    if cli.version {
        print!("{}", nnmnist::version::report());
        return ExitCode::SUCCESS;
    }
    let error_status = cli.command.as_ref().map_or(1, |c| c.error_status());
    let stop = Stop::install();
    let result = Job::from_cli(cli).and_then(|job| job.run(&stop));
    let code = |sig: Option<i32>| ExitCode::from(signal::exit_code(sig.unwrap_or(signal::SIGINT)) as u8);
    match result {
        Ok(()) => match stop.signal() {
            // A signal during the last epoch's evaluation: everything is saved, but say so.
            Some(sig) => {
                nnmnist::terminal::note(format_args!("{} arrived after the last checkpoint was saved: the run is complete", signal::name(sig)));
                code(Some(sig))
            }
            None => ExitCode::SUCCESS,
        },
        Err(e) => {
            if let Some(i) = e.downcast_ref::<Interrupted>() {
                nnmnist::terminal::note(i);
                return code(stop.signal());
            }
            if e.downcast_ref::<nnmnist::cmd::diff::Differ>().is_some() {
                return ExitCode::from(1); // `diff`: the table said where
            }
            nnmnist::terminal::error(format_args!("{e:#}"));
            ExitCode::from(error_status)
        }
    }
}
