use clap::Parser;
use nnmnist::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let cli = Cli::parse();
    nnmnist::run::install_ctrlc_handler();
    let result: anyhow::Result<()> = match cli.command {
        Command::Convnet(args) => nnmnist::train::run(&args),
        Command::Mlp(args) => nnmnist::mlp::run(&args),
        Command::Eval(args) => match args.model {
            nnmnist::cli::ModelKind::Convnet => nnmnist::train::eval(&args),
            nnmnist::cli::ModelKind::Mlp => {
                nnmnist::mlp::eval(&args.weights, &args.data_dir, args.test_size, args.metrics.as_deref())
            }
        },
        Command::Show(args) => nnmnist::show::run(&args),
    };
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
