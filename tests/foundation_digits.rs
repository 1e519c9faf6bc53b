//! The foundation on real data: an MLP trained with AdamW on a fixed 80/20 split of the UCI
//! digits reaches at least 95 % test accuracy, and training is bit-for-bit reproducible.

use gradtau::audit::accuracy;
use gradtau::data::{digits, Dataset};
use gradtau::nn::Model;
use gradtau::rng::Rng;
use gradtau::unlearn::{no_progress, train, TrainRecipe};
use gradtau::Tensor;

fn split_80_20() -> (Dataset, Dataset) {
    let all = digits::dataset().unwrap();
    let perm = Rng::new(2024).permutation(all.len());
    let cut = all.len() * 8 / 10;
    (
        all.subset(&perm[..cut]).unwrap(),
        all.subset(&perm[cut..]).unwrap(),
    )
}

fn trained(seed: u64) -> (Model, Vec<Tensor>, Dataset) {
    let (tr, te) = split_80_20();
    let model = Model::from_json(digits::MLP_SPEC).unwrap();
    let mut w = model.init_weights(seed);
    let recipe = TrainRecipe {
        epochs: 30,
        batch_size: 32,
        lr: 1e-3,
        seed,
        ..Default::default()
    };
    train(&model, &mut w, &tr, &recipe, &mut no_progress).unwrap();
    (model, w, te)
}

#[test]
fn mlp_reaches_95_percent_and_is_bit_reproducible() {
    let (model, w1, test) = trained(7);
    let logits = model.predict(&w1, &test.x, 256).unwrap();
    let acc = accuracy(&logits, test.y.classes().unwrap()).unwrap();
    eprintln!(
        "digits MLP test accuracy: {acc:.4} on {} samples",
        test.len()
    );
    assert!(acc >= 0.95, "test accuracy {acc}");

    let (_, w2, _) = trained(7);
    for (a, b) in w1.iter().zip(&w2) {
        let (a, b) = (a.to_vec().unwrap(), b.to_vec().unwrap());
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "weights differ between identical runs"
        );
    }
    let (_, w3, _) = trained(8);
    assert_ne!(
        w1[0].to_vec().unwrap(),
        w3[0].to_vec().unwrap(),
        "a different seed must give different weights"
    );
}
