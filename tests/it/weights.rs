//! Weights files, end to end through the binary: a file that is missing, empty, of another
//! format, cut short, lacking a tensor, of a wrong shape or dtype, of neither network, or
//! holding values the network cannot compute with is refused by `eval`, `--init-from` and
//! `show`, naming the file and what is wrong, before any data is read.
use crate::common::*;
use nnmnist::checkpoint;
use nnmnist::mlp::Network;
use nnmnist::weights::Entry;
use std::path::Path;

fn write_entries(path: &Path, entries: Vec<Entry>) {
    checkpoint::save_to(path, &entries, None).unwrap();
}

/// Checks one bad weights file with `eval`, and with `convnet --init-from` and `show
/// --weights` too when `every_command` (each run of the binary costs a libtorch start, so
/// the cases that share a code path check it once).
fn weights_fail_in(file: &Path, phrases: &[&str], every_command: bool) {
    let all: Vec<&str> = std::iter::once(s(file)).chain(phrases.iter().copied()).collect();
    let data = repo_data();
    refused(&["eval", "--model", "convnet", "--device", "cpu", "--weights", s(file), "--data-dir", s(&data)], &all);
    if every_command {
        refused(&["convnet", "--device", "cpu", "--epochs", "1", "--init-from", s(file), "--data-dir", s(&data)], &all);
        refused(&["show", "0", "--weights", s(file), "--data-dir", s(&data)], &all);
    }
}

fn weights_fail(file: &Path, phrases: &[&str]) {
    weights_fail_in(file, phrases, false)
}

// ---------------------------------------------------------------- files that are no weights

#[test]
fn weights_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    weights_fail_in(&tmp.path().join("absent.safetensors"), &["cannot read weights file"], true);
}

#[test]
fn weights_empty_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("empty.safetensors");
    std::fs::write(&path, b"").unwrap();
    weights_fail(&path, &["empty file, not a weights file"]);
}

#[test]
fn weights_not_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    // The start of a zip cut short (no directory), and plain text: neither is safetensors.
    let path = tmp.path().join("model.pt");
    std::fs::write(&path, b"PK\x03\x04\x14\x00\x00\x00\x08\x00 not a safetensors header at all").unwrap();
    weights_fail(&path, &["a truncated or damaged zip file, unreadable as torch.save's format"]);
    let path = tmp.path().join("notes.safetensors");
    std::fs::write(&path, "weights: see the README\n".repeat(10)).unwrap();
    weights_fail_in(&path, &["neither a safetensors nor a PyTorch file"], true);
    // A safetensors file cut short.
    let good = std::fs::read(convnet_weights_file(tmp.path())).unwrap();
    let path = tmp.path().join("cut.safetensors");
    std::fs::write(&path, &good[..good.len() - 100]).unwrap();
    weights_fail(&path, &["not a safetensors file (tensor", "runs past the end of the file (the data section has"]);
}

#[test]
fn a_fifo_as_the_weights_file_is_refused_instead_of_waited_on() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = tmp.path().join("w.safetensors");
    mkfifo(&weights);
    refused(&["eval", "--model", "mlp", "--weights", s(&weights)], &[s(&weights), "it is a FIFO, not a regular file"]);
}

// ---------------------------------------------------------------- tensors missing or of the wrong kind

#[test]
fn weights_missing_key() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("nobias.safetensors");
    write_entries(&path, convnet_entries().into_iter().filter(|e| e.name != "model.9.bias").collect());
    weights_fail_in(&path, &["missing tensor model.9.bias"], true);
}

#[test]
fn weights_wrong_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("shape.safetensors");
    let entries = convnet_entries()
        .into_iter()
        .map(|e| if e.name == "model.7.weight" { Entry::f32(e.name, vec![100, 575], vec![0.0; 100 * 575]) } else { e })
        .collect();
    write_entries(&path, entries);
    weights_fail_in(&path, &["tensor model.7.weight has shape [100, 575], expected [100, 576]"], true);
}

/// Writes the convnet's tensors with `model.0.weight` stored as `dtype` (raw bytes of the
/// right size), using the safetensors crate directly since nnmnist writes F32/F64 only.
fn write_with_dtype(path: &Path, dtype: safetensors::Dtype, bytes_per_value: usize) {
    let entries = convnet_entries();
    let raw: Vec<(String, Vec<usize>, safetensors::Dtype, Vec<u8>)> = entries
        .iter()
        .map(|e| {
            if e.name == "model.0.weight" {
                (e.name.clone(), e.shape.clone(), dtype, vec![0u8; 72 * bytes_per_value])
            } else {
                (e.name.clone(), e.shape.clone(), safetensors::Dtype::F32, e.to_f32().iter().flat_map(|x| x.to_le_bytes()).collect())
            }
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = raw
        .iter()
        .map(|(n, shape, dt, b)| (n.clone(), safetensors::tensor::TensorView::new(*dt, shape.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::tensor::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn weights_unsupported_dtype() {
    let tmp = tempfile::tempdir().unwrap();
    for (dtype, size, name) in [(safetensors::Dtype::I64, 8, "I64"), (safetensors::Dtype::F16, 2, "F16")] {
        let path = tmp.path().join(format!("{name}.safetensors"));
        write_with_dtype(&path, dtype, size);
        weights_fail_in(&path, &[&format!("tensor model.0.weight has dtype {name}"), "F32 or F64"], name == "I64");
    }
}

#[test]
fn weights_of_neither_network_for_show() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("other.safetensors");
    write_entries(&path, vec![Entry::f32("encoder.weight", vec![2, 2], vec![0.0; 4])]);
    refused(&["show", "0", "--weights", s(&path), "--data-dir", s(&repo_data())], &[
        s(&path),
        "neither convnet weights",
        "encoder.weight",
    ]);
}

#[test]
fn mlp_weights_missing_a_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("nobias.safetensors");
    // An nn.Sequential(Linear(784, 30), Sigmoid(), Linear(30, 10)) state_dict without 2.bias.
    write_entries(&path, vec![
        Entry::f64("0.weight", vec![30, 784], vec![0.0; 30 * 784]),
        Entry::f64("0.bias", vec![30], vec![0.0; 30]),
        Entry::f64("2.weight", vec![10, 30], vec![0.0; 300]),
    ]);
    refused(&["eval", "--model", "mlp", "--weights", s(&path), "--data-dir", s(&repo_data())], &[s(&path), "missing tensor 2.bias"]);
    refused(&["mlp", "--init-from", s(&path), "--data-dir", s(&repo_data())], &[s(&path), "missing tensor 2.bias"]);
}

/// MLP weights of unusual layers are described as they are: a layer gap is not a wrong
/// output size; a fix is offered only where it is accepted; a shape that does not follow has
/// no literal placeholder in its message.
#[test]
fn mlp_weights_of_unusual_layers_are_described_as_they_are() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let d = s(data.path());
    // Weights with layers 0, 2 and 6: layer 4 is missing.
    let gap = tmp.path().join("gap.safetensors");
    let mut entries = Network::seeded(&[784, 30, 30, 30, 10], nnmnist::mlp::Init::Normal, 0).entries();
    entries.retain(|e| !e.name.starts_with("4."));
    nnmnist::checkpoint::save_to(&gap, &entries, None).unwrap();
    refused(&["eval", "--model", "mlp", "--weights", s(&gap), "--data-dir", d], &["tensor 4.weight is missing, but the file has 6.weight"]);
    // 784,30,5 would be refused as --sizes: not offered as the fix.
    let five = tmp.path().join("five.safetensors");
    nnmnist::checkpoint::save_to(&five, &Network::seeded(&[784, 30, 10], nnmnist::mlp::Init::Normal, 0).entries().into_iter().map(|e| match e.name.as_str() {
        "2.weight" => Entry::f64("2.weight", vec![5, 30], vec![0.0; 150]),
        "2.bias" => Entry::f64("2.bias", vec![5], vec![0.0; 5]),
        _ => e,
    }).collect::<Vec<_>>(), None).unwrap();
    let stderr = refused(&["mlp", "--init-from", s(&five), "--data-dir", d], &["its layers are 784,30,5, which no MNIST MLP has"]);
    assert!(!stderr.contains("pass --sizes"), "{stderr}");
    // A layer of a shape that does not follow: no literal placeholder.
    let bad = tmp.path().join("bad.safetensors");
    nnmnist::checkpoint::save_to(&bad, &[Entry::f64("0.weight", vec![30, 784], vec![0.0; 30 * 784]), Entry::f64("2.weight", vec![10, 29], vec![0.0; 290])], None).unwrap();
    let stderr = refused(&["eval", "--model", "mlp", "--weights", s(&bad), "--data-dir", d], &["expected (N, 30) for some N"]);
    assert!(!stderr.contains("{out}"), "{stderr}");
}

// ---------------------------------------------------------------- values the network cannot compute with

#[test]
fn non_finite_weights_are_refused_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("inf.safetensors");
    let entries: Vec<Entry> = nnmnist::convnet::Net::new(tch::Device::Cpu, 0)
        .entries()
        .into_iter()
        .map(|mut e| {
            if let (true, nnmnist::weights::Data::F32(v)) = (e.name == "model.7.bias", &mut e.data) {
                v[5] = f32::INFINITY;
            }
            e
        })
        .collect();
    nnmnist::checkpoint::save_to(&path, &entries, None).unwrap();
    let phrase = "tensor model.7.bias holds inf (at flat index 5): weights must be finite numbers";
    refused(&["eval", "--model", "convnet", "--device", "cpu", "--weights", s(&path)], &[s(&path), phrase]);
    refused(&["convnet", "--device", "cpu", "--init-from", s(&path)], &[s(&path), phrase]);
}

#[test]
fn weights_beyond_float32_are_refused_for_the_convnet() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f64.safetensors");
    let entries: Vec<Entry> = nnmnist::convnet::Net::new(tch::Device::Cpu, 0)
        .entries()
        .into_iter()
        .map(|e| {
            let mut v = e.to_f64();
            if e.name == "model.9.bias" {
                v[0] = 1e300;
            }
            Entry::f64(e.name, e.shape, v)
        })
        .collect();
    nnmnist::checkpoint::save_to(&path, &entries, None).unwrap();
    refused(&["eval", "--model", "convnet", "--device", "cpu", "--weights", s(&path)], &["tensor model.9.bias holds 1e300 (at flat index 0), beyond float32's range"]);
}

/// Finite weights whose outputs overflow: no "Avg loss: NaN" printed and recorded as a result.
#[test]
fn an_evaluation_that_overflows_is_an_error_not_a_result() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("huge.safetensors");
    let entries: Vec<Entry> = nnmnist::convnet::Net::new(tch::Device::Cpu, 0)
        .entries()
        .into_iter()
        .map(|e| if e.name == "model.9.weight" { Entry::f32(e.name, e.shape, vec![3e38; 1000]) } else { e })
        .collect();
    nnmnist::checkpoint::save_to(&path, &entries, None).unwrap();
    let m = tmp.path().join("m.jsonl");
    refused(&["eval", "--model", "convnet", "--device", "cpu", "--weights", s(&path), "--metrics", s(&m)], &[s(&path), "the test loss is", "outputs overflow"]);
    assert_eq!(std::fs::read_to_string(&m).unwrap_or_default(), "", "nothing recorded");
}
