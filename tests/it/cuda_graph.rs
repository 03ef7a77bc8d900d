//! What of the CUDA-graph path can be checked without a GPU: capture refuses a CPU network
//! cleanly (with the C++ shim compiled in, as on this CUDA-enabled libtorch, or without),
//! the fallback trains exactly as the eager step, and every batch has the static shape.
//! The GPU-only checks are scripts/gpu_check (prints PASS or FAIL).
use nnmnist::convnet::{images_tensor, labels_tensor, Net};
use nnmnist::convnet::cuda_graph::{graph_step_or_eager, GraphStep};
use nnmnist::data::Mnist;
use nnmnist::convnet::step::{batch_count, batch_tensors, epoch_order, sgd, EagerStep, Step};
use std::path::Path;
use tch::{Device, Tensor};

fn max_param_diff(a: &Net, b: &Net) -> f64 {
    a.parameters()
        .iter()
        .zip(b.parameters())
        .map(|((_, x), (_, y))| (x - y).abs().max().double_value(&[]))
        .fold(0.0, f64::max)
}

#[test]
fn capture_on_cpu_fails_cleanly_and_leaves_weights_alone() {
    let net = Net::new(Device::Cpu, 7);
    let before = Net::new(Device::Cpu, 7);
    let opt = sgd(&net, 0.05, 0.001).unwrap();
    let Err((why, _opt)) = GraphStep::capture(opt, &net, 64) else {
        panic!("capture of a CPU network must fail");
    };
    let msg = format!("{why:#}");
    assert!(!msg.is_empty(), "the failure says why");
    assert_eq!(max_param_diff(&net, &before), 0.0, "a failed capture must not change the weights");
}

#[test]
fn fallback_step_trains_exactly_as_eager() {
    let mnist = Mnist::load(Path::new("data")).unwrap();
    let train = mnist.train.take(640);
    let (x, y) = (images_tensor(&train.images, Device::Cpu), labels_tensor(&train.labels, Device::Cpu));
    let order = epoch_order(train.len(), 3, 0, true);

    let fallback_net = Net::new(Device::Cpu, 3);
    let mut fallback = graph_step_or_eager(sgd(&fallback_net, 0.05, 0.001).unwrap(), &fallback_net, 64);
    let eager_net = Net::new(Device::Cpu, 3);
    let mut eager = EagerStep { opt: sgd(&eager_net, 0.05, 0.001).unwrap() };
    for batch in 0..batch_count(train.len(), 64) {
        let (bx, by) = batch_tensors(&order, &x, &y, batch, 64);
        let l1 = fallback.step(&fallback_net, &bx, &by).unwrap().double_value(&[]);
        let l2 = eager.step(&eager_net, &bx, &by).unwrap().double_value(&[]);
        assert_eq!(l1, l2, "batch {batch}: fallback loss {l1} vs eager {l2}");
    }
    let diff = max_param_diff(&fallback_net, &eager_net);
    assert_eq!(diff, 0.0, "fallback and eager weights differ by up to {diff}");
}

#[test]
fn every_batch_has_the_static_shape() {
    // 1000 images in batches of 64: 15 full batches, the 40 left over are dropped.
    let n = 1000;
    let x = Tensor::arange(n as i64, (tch::Kind::Float, Device::Cpu)).view([n as i64, 1, 1, 1]).expand([n as i64, 1, 28, 28], false);
    let y = Tensor::arange(n as i64, (tch::Kind::Int64, Device::Cpu));
    let order = epoch_order(n, 11, 2, true);
    assert_eq!(batch_count(n, 64), 15);
    let mut seen = std::collections::HashSet::new();
    for batch in 0..batch_count(n, 64) {
        let (bx, by) = batch_tensors(&order, &x, &y, batch, 64);
        assert_eq!(bx.size(), vec![64, 1, 28, 28], "batch {batch}");
        assert_eq!(by.size(), vec![64], "batch {batch}");
        for i in Vec::<i64>::try_from(&by).unwrap() {
            assert!(seen.insert(i), "image {i} appears twice in one epoch");
        }
    }
    assert_eq!(seen.len(), 960);
}
