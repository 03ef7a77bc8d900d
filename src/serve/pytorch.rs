//! `nnmnist serve --pytorch`: the same weights in PyTorch, as one long-lived child process
//! (`python -m scripts.reference.serve_pytorch` in the repository's `.venv`, through the
//! reference models nn_convnet.py and nn_torch.py), fed the same 28x28 input as the networks
//! here.
//! The protocol is the script's docstring: the weights once, as safetensors bytes, then per
//! input 784 bytes in and ten float64 logits per network out.
//!
//! What is compared: the convnet's logits (model.9, float32) and the MLP's output-layer z
//! before its sigmoid (float64). On the CPU the convnet's are the same to the bit (the same
//! libtorch, the same thread count); the MLP's differ in the last bits, because PyTorch's
//! matrix products sum in another order than nn.py's loops.
use super::networks::{Parity, Served};
use crate::checkpoint;
use crate::data::{CLASSES, PIXELS};
use crate::evaluation::argmax;
use crate::terminal::Shown;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

/// What each network's parity line compares, for the page.
pub const COMPARED: &str = "PyTorch runs the same weights on the same 28x28 input: the convnet's logits (model.9, float32) are compared, the same to the bit on the CPU; the MLP's output-layer z before its sigmoid (float64), which differs in the last bits (PyTorch's matrix products sum in another order than nn.py's loops)";

/// The repository nnmnist was built from, where the script's package is.
pub const REPOSITORY: &str = env!("CARGO_MANIFEST_DIR");
/// The script, as a module of the repository's package `scripts`.
pub const SCRIPT: &str = "scripts.reference.serve_pytorch";

/// The Python with torch: `NNMNIST_PYTHON` where set, else the repository's `.venv`.
pub fn python() -> PathBuf {
    std::env::var_os("NNMNIST_PYTHON").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python")))
}

/// The running PyTorch side.
pub struct PyTorch {
    pipes: Mutex<Pipes>,
    models: usize,
}

struct Pipes {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Drop for PyTorch {
    fn drop(&mut self) {
        // Closing its stdin ends it; wait, so that no zombie is left.
        let pipes = self.pipes.get_mut().unwrap_or_else(|p| p.into_inner());
        let _ = pipes.child.kill();
        let _ = pipes.child.wait();
    }
}

impl PyTorch {
    /// Starts the script with the weights of `networks` and waits until it has built them.
    /// `threads`: libtorch's CPU thread count here, which the script takes too.
    pub fn start(networks: &[Served], threads: usize) -> Result<PyTorch> {
        let python = python();
        if !python.exists() {
            bail!("--pytorch runs PyTorch from {}, which does not exist: run scripts/setup (or set NNMNIST_PYTHON)", python.shown());
        }
        let mut child = Command::new(&python)
            .args(["-m", SCRIPT])
            .current_dir(REPOSITORY)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {} -m {SCRIPT}", python.shown()))?;
        let (stdin, stdout) = (child.stdin.take().expect("piped"), child.stdout.take().expect("piped"));
        let mut pipes = Pipes { child, stdin, stdout: BufReader::new(stdout) };
        let started = pipes.send_weights(networks, threads).and_then(|()| pipes.wait_ready());
        if let Err(e) = started {
            return Err(pipes.failure(e));
        }
        Ok(PyTorch { pipes: Mutex::new(pipes), models: networks.len() })
    }

    /// PyTorch's logits for `pixels`, one array per network, in the order of `start`.
    pub fn logits(&self, pixels: &[u8; PIXELS]) -> Result<Vec<[f64; CLASSES]>> {
        let mut pipes = self.pipes.lock().unwrap_or_else(|p| p.into_inner());
        let result = (|| {
            pipes.stdin.write_all(pixels)?;
            pipes.stdin.flush()?;
            let mut out = Vec::with_capacity(self.models);
            let mut bytes = [0u8; 8 * CLASSES];
            for _ in 0..self.models {
                pipes.stdout.read_exact(&mut bytes)?;
                out.push(std::array::from_fn(|i| f64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().expect("8 bytes"))));
            }
            Ok::<_, std::io::Error>(out)
        })();
        result.map_err(|e| anyhow::anyhow!("the PyTorch side (--pytorch) stopped answering: {e}"))
    }
}

/// PyTorch's digit and the largest |difference| between its logits and ours.
pub fn parity(theirs: &[f64; CLASSES], ours: &[f64]) -> Parity {
    let max_abs_diff = theirs.iter().zip(ours).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    Parity { digit: argmax(theirs), max_abs_diff }
}

impl Pipes {
    fn send_weights(&mut self, networks: &[Served], threads: usize) -> Result<()> {
        let models: Vec<&str> = networks.iter().map(|n| n.model).collect();
        let header = serde_json::to_vec(&serde_json::json!({"threads": threads, "models": models}))?;
        self.stdin.write_all(&(header.len() as u32).to_le_bytes())?;
        self.stdin.write_all(&header)?;
        for n in networks {
            let bytes = checkpoint::serialize(&n.state, None)?;
            self.stdin.write_all(&(bytes.len() as u64).to_le_bytes())?;
            self.stdin.write_all(&bytes)?;
        }
        self.stdin.flush()?;
        Ok(())
    }

    fn wait_ready(&mut self) -> Result<()> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        if line != "ready\n" {
            bail!("it said {line:?} instead of \"ready\"");
        }
        Ok(())
    }

    /// The error of a start that failed, with how the script ended (its own message, on
    /// stderr, comes before this one).
    fn failure(&mut self, e: anyhow::Error) -> anyhow::Error {
        let _ = self.child.kill();
        let status = self.child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
        anyhow::anyhow!("--pytorch: {} -m {SCRIPT} did not start ({e:#}; {status})", python().shown())
    }
}
