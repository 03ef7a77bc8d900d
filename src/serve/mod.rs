//! `nnmnist serve`: a local page to draw a digit on and watch both networks read it as you
//! draw, with what each sees and what goes on inside it; with `--pytorch`, PyTorch running
//! the same weights beside them.
//!
//! - [`networks`]: the networks served and what the page is shown of each for one input;
//! - [`train`]: without `--weights`, both networks trained for one epoch first;
//! - [`pytorch`]: the PyTorch side, one long-lived child process;
//! - [`api`]: the HTTP routes and the JSON API; [`error`]: its errors; [`assets`]: the page,
//!   embedded (src/serve/page/: HTML, CSS, JavaScript);
//! - [`connections`]: the connections taken, how many and for how long;
//! - [`preprocessing`]: what the image's preprocessing found, as the page shows it.
//!
//! The input of every network is computed by the server, by [`crate::digit`]: the one
//! preprocessing `nnmnist predict` uses.
pub mod api;
pub mod assets;
pub mod connections;
pub mod error;
pub mod networks;
pub mod preprocessing;
pub mod pytorch;
pub mod train;

use crate::data::Mnist;
use crate::outcome::Outcome;
use crate::signal::StopCondition;
use crate::terminal::{self, Shown};
use crate::weights::Weights;
use anyhow::{Context, Result};
use networks::Served;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

/// What `nnmnist serve` serves, and where.
#[derive(Debug, Clone)]
pub struct ServeSpec {
    /// The address to listen on (a name or an IP address).
    pub host: String,
    /// 0: a free port, which the `Listening on` line names.
    pub port: u16,
    /// The weights files to serve; none: both networks trained first ([`train`]).
    pub weights: Vec<PathBuf>,
    /// The seed of that training.
    pub seed: u64,
    /// Run the same weights in PyTorch too.
    pub pytorch: bool,
    pub data_dir: PathBuf,
}

/// Serves until the process is stopped (a signal ends it at once: nothing is written); a
/// signal during the training before returns how that ended.
pub fn run(spec: &ServeSpec, stop: &dyn StopCondition) -> Result<Outcome> {
    // Weights first: a bad file is reported without waiting for the data.
    let loaded = spec.weights.iter().map(|path| Served::new(&Weights::load(path)?, path.shown().to_string(), spec.pytorch)).collect::<Result<Vec<_>>>()?;
    let test = Mnist::load_test(&spec.data_dir)?;
    let networks = if spec.weights.is_empty() {
        match train::both(&spec.data_dir, spec.seed, spec.pytorch, stop)? {
            ControlFlow::Continue(networks) => networks,
            ControlFlow::Break(stopped) => return Ok(stopped),
        }
    } else {
        loaded
    };
    // Each network was placed on the CPU with one libtorch thread (Served::new); the
    // PyTorch side takes the same count.
    let pytorch = if spec.pytorch { Some(pytorch::PyTorch::start(&networks, tch::get_num_threads().max(1) as usize)?) } else { None };
    let app = Arc::new(api::App::new(networks, pytorch, test)?);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the server's runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((spec.host.as_str(), spec.port)).await.with_context(|| format!("cannot listen on {}:{}", spec.host.shown(), spec.port))?;
        let address = listener.local_addr()?;
        terminal::print(format_args!("Listening on http://{address}/\n"))?;
        connections::serve(listener, api::router(app)).await.context("the server stopped")
    })?;
    Ok(Outcome::Done)
}
