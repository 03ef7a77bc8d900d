use clap::Parser;
use nnmnist::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Convnet(_args) => todo!(),
        Command::Mlp(_args) => todo!(),
        Command::Eval(_args) => todo!(),
        Command::Show(_args) => todo!(),
    };
    #[allow(unreachable_code)]
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(i) = e.downcast_ref::<nnmnist::run::Interrupted>() {
                eprintln!("nnmnist: {i}");
                return ExitCode::from(130);
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
