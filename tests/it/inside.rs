//! What each network shows of its insides to `nnmnist serve`'s page (src/convnet/inside.rs,
//! src/mlp/inside.rs): the layers are the networks' own outputs, the logits the ones the
//! probabilities come from, and each saliency map is the gradient it claims to be, checked
//! against central finite differences (the MLP's through its own backprop, the convnet's
//! through autograd, in float64 so that the differences are exact enough to tell).
use crate::common::{real, root};
use nnmnist::convnet::inside::{inside, inside_of, saliency, SHOWN};
use nnmnist::convnet::{images_tensor, Net};
use nnmnist::evaluation::argmax;
use nnmnist::mlp::{self, pixels_f64, Network};
use nnmnist::weights::Weights;
use tch::{Device, Kind, Tensor};

fn convnet() -> Net {
    Net::load(&root().join("tests/fixtures/convnet/trained.safetensors"), Device::Cpu).expect("the trained fixture loads")
}

/// The MLP fixture: 784,16,12,10 (two hidden layers, so the saliency passes a hidden
/// layer's sigmoid twice).
fn mlp_net() -> Network {
    let w = Weights::load(&root().join("tests/fixtures/mlp/net.safetensors")).expect("the MLP fixture loads");
    mlp::network_of(&w).expect("an MLP")
}

/// |a - b| <= tol * max |b|, element by element, naming the first that is not.
fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "{what}: the expected values are all 0, which checks nothing");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * scale, "{what}: element {i}: {g} vs {w} (|diff| {:.3e} > {tol:e} * {scale:.3e})", (g - w).abs());
    }
}

#[test]
fn mlp_inside_is_the_networks_own_forward_pass() {
    let net = mlp_net();
    let x = pixels_f64(real().test.image(0));
    let fwd = net.forward(&x, 1);
    let got = mlp::inside::inside(&net, &x);
    assert_eq!(got.hidden, fwd.activations[1..3].to_vec());
    assert_eq!(got.logits, fwd.zs[2]);
    assert_eq!(got.outputs, net.feedforward(&x));
    assert_eq!(got.digit, argmax(&net.feedforward(&x)));
    assert_eq!(mlp::inside::incoming(&net, 3), &net.weights[0][3 * 784..4 * 784]);
}

/// d z[digit] / dx by backprop against (z(x + h e_i) - z(x - h e_i)) / 2h for every pixel,
/// on three test images (one with its predicted digit, then each other digit's score too).
#[test]
fn mlp_saliency_is_the_gradient_of_the_logit() {
    let net = mlp_net();
    for index in [0, 1, 2] {
        let x = pixels_f64(real().test.image(index));
        let fwd = net.forward(&x, 1);
        let h = 1e-6;
        // numeric[i][class]: the central difference of z[class] along pixel i
        let numeric: Vec<Vec<f64>> = (0..x.len())
            .map(|i| {
                let (mut up, mut down) = (x.clone(), x.clone());
                up[i] += h;
                down[i] -= h;
                let (up, down) = (net.forward(&up, 1).zs.pop().unwrap(), net.forward(&down, 1).zs.pop().unwrap());
                up.iter().zip(&down).map(|(u, d)| (u - d) / (2.0 * h)).collect()
            })
            .collect();
        for class in 0..10 {
            let got = mlp::inside::saliency(&net, &fwd, class);
            let want: Vec<f64> = numeric.iter().map(|n| n[class]).collect();
            assert_close(&format!("test image {index}, class {class}"), &got, &want, 1e-6);
        }
        assert_eq!(mlp::inside::inside(&net, &x).saliency, mlp::inside::saliency(&net, &fwd, argmax(&net.feedforward(&x))));
    }
}

/// The layers shown are `forward_layers`' outputs, the logits are `forward`'s (under
/// no_grad, as the probabilities are computed) to the bit, and the shapes are the model's.
#[test]
fn convnet_inside_is_the_networks_own_forward_pass() {
    let net = convnet();
    let pixels = real().test.image(0);
    let got = inside(&net, pixels).unwrap();
    let x = images_tensor(pixels, Device::Cpu);
    let outs = tch::no_grad(|| net.forward_layers(&x));
    let shapes: Vec<Vec<usize>> = got.layers.iter().map(|l| l.shape.clone()).collect();
    assert_eq!(shapes, [vec![8, 28, 28], vec![8, 14, 14], vec![16, 12, 12], vec![16, 6, 6], vec![100], vec![10]]);
    for (layer, (index, _)) in got.layers.iter().zip(SHOWN) {
        assert_eq!(layer.index, index);
        let want = Vec::<f32>::try_from(outs[index].flatten(0, -1)).unwrap();
        assert_eq!(layer.values, want, "model.{index}");
    }
    let logits = Vec::<f32>::try_from(tch::no_grad(|| net.forward(&x)).flatten(0, -1)).unwrap();
    assert_eq!(got.logits, logits, "the logits with autograd on differ from forward's");
    assert_eq!(got.digit, argmax(&logits));
    assert_eq!(got.digit, 7, "test image 0 is a 7, which the trained fixture reads");
}

/// Autograd's d logit[class] / dx against central differences, in float64 (the network's
/// parameters widened exactly), for every pixel of two test images and every class.
///
/// The images get a little noise (uniform in [0, 0.01), seeded) first: on MNIST's exactly
/// black background the ReLUs give equal values that max-pooling then ties, where the
/// network is not differentiable (autograd takes the first of the tied values, a finite
/// difference sees a kink). With the noise no two values tie, and the gradient is unique.
#[test]
fn convnet_saliency_is_the_gradient_of_the_logit() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(27);
    let mut net = convnet();
    net.vs.double();
    for index in [0, 1] {
        let noise: Vec<f64> = (0..784).map(|_| rng.gen_range(0.0..0.01)).collect();
        let x = images_tensor(real().test.image(index), Device::Cpu).to_kind(Kind::Double) + Tensor::from_slice(&noise).view([1, 1, 28, 28]);
        let numeric = finite_differences(&net, &x);
        for (class, numeric) in numeric.iter().enumerate() {
            let leaf = x.detach().set_requires_grad(true);
            let logits = net.forward(&leaf);
            let got = Vec::<f64>::try_from(saliency(&leaf, &logits, class).unwrap().flatten(0, -1)).unwrap();
            assert_close(&format!("test image {index}, class {class}"), &got, numeric, 1e-6);
        }
        // The float32 network's map is the same gradient, to float32's precision.
        let f32_map: Vec<f64> = inside_of(&convnet(), &x.to_kind(Kind::Float)).unwrap().saliency.iter().map(|&v| v as f64).collect();
        let digit = inside_of(&net, &x).unwrap().digit;
        assert_close(&format!("test image {index}, float32"), &f32_map, &numeric[digit], 1e-4);
    }
}

/// For each class, (logit(x + h e_i) - logit(x - h e_i)) / 2h for every pixel i: the 784
/// perturbed inputs each way as one batch.
fn finite_differences(net: &Net, x: &Tensor) -> Vec<Vec<f64>> {
    let h = 1e-6;
    let eye = Tensor::eye(784, (Kind::Double, Device::Cpu)).view([784, 1, 28, 28]) * h;
    let (up, down) = tch::no_grad(|| (net.forward(&(x + &eye)), net.forward(&(x - &eye))));
    let d = (up - down) / (2.0 * h); // (784, 10)
    (0..10).map(|c| Vec::<f64>::try_from(d.select(1, c)).unwrap()).collect()
}
