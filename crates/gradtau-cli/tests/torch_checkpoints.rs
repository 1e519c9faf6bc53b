//! Checkpoints written by PyTorch itself (`tests/fixtures/torch`, made by
//! `scripts/make_torch_fixtures.py`): each binds to its spec, predicts what PyTorch
//! predicted, and survives train / unlearn / save / reload through the CLI with its
//! `num_batches_tracked` counters (I64, shape []) carried through and counted.

use gradtau::io::{self, Checkpoint, RawTensor};
use gradtau::nn::Model;
use gradtau::rng::Rng;
use gradtau::Tensor;
use std::path::{Path, PathBuf};
use std::process::Command;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/torch");
/// The SGD steps the fixture script trains the models for, in train mode.
const TORCH_STEPS: i64 = 5;

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

fn model(name: &str) -> Model {
    Model::from_json(&std::fs::read_to_string(fixture(&format!("{name}.json"))).unwrap()).unwrap()
}

/// The checkpoint's float tensors in spec order, checked to be exactly the spec's.
fn bind(model: &Model, c: &Checkpoint) -> Vec<Tensor> {
    let mut names: Vec<&str> = c.floats.keys().map(String::as_str).collect();
    let mut want: Vec<&str> = model.params().iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    want.sort_unstable();
    assert_eq!(
        names, want,
        "float tensors are exactly the spec's parameters"
    );
    model
        .params()
        .iter()
        .map(|p| {
            let (shape, data) = &c.floats[&p.name];
            assert_eq!(shape, &p.shape, "{}", p.name);
            Tensor::from_vec(data.clone(), shape).unwrap()
        })
        .collect()
}

fn counters(c: &Checkpoint) -> Vec<(String, Option<i64>, String, Vec<usize>)> {
    c.others
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                t.as_i64_scalar(),
                t.dtype.clone(),
                t.shape.clone(),
            )
        })
        .collect()
}

fn counter_list(names: &[&str], v: i64) -> Vec<(String, Option<i64>, String, Vec<usize>)> {
    names
        .iter()
        .map(|n| (n.to_string(), Some(v), "I64".to_string(), vec![]))
        .collect()
}

const CNN_COUNTERS: [&str; 2] = ["1.num_batches_tracked", "6.num_batches_tracked"];

#[test]
fn torch_checkpoints_bind_and_predict_as_torch_did() {
    for (name, counted) in [("mlp", &[][..]), ("cnn", &CNN_COUNTERS[..])] {
        let m = model(name);
        let c = io::load_checkpoint(fixture(&format!("{name}.safetensors"))).unwrap();
        assert_eq!(counters(&c), counter_list(counted, TORCH_STEPS), "{name}");
        let w = bind(&m, &c);
        let (x, xs) = io::read_npy_f32(fixture(&format!("{name}_x.npy"))).unwrap();
        let (want, ws) = io::read_npy_f32(fixture(&format!("{name}_logits.npy"))).unwrap();
        let got = m
            .predict(&w, &Tensor::from_vec(x, &xs).unwrap(), 4)
            .unwrap();
        assert_eq!(got.shape(), &ws[..]);
        let worst = got
            .to_vec()
            .unwrap()
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-4,
            "{name}: logits differ from PyTorch's by {worst}"
        );

        // Save and reload in process: every tensor, integer ones included, comes back.
        let out = std::env::temp_dir().join(format!("gradtau-torch-{}-{name}", std::process::id()));
        io::save_checkpoint(
            &out,
            c.floats
                .iter()
                .map(|(k, (s, d))| (k.as_str(), s.as_slice(), d.as_slice())),
            &c.others,
        )
        .unwrap();
        assert_eq!(io::load_checkpoint(&out).unwrap(), c);
        std::fs::remove_file(&out).unwrap();
    }
}

fn gradtau(dir: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_gradtau"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gradtau {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `n` random inputs of the model's shape and random labels below `classes`, as .npy.
fn write_set(dir: &Path, tag: &str, m: &Model, n: usize, classes: u64, rng: &mut Rng) {
    let mut shape = vec![n];
    shape.extend_from_slice(m.input_shape());
    let x: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| rng.normal())
        .collect();
    io::write_npy_f32(dir.join(format!("{tag}_x.npy")), &x, &shape).unwrap();
    let y: Vec<i32> = (0..n).map(|_| (rng.next_u64() % classes) as i32).collect();
    io::write_npy_i32(dir.join(format!("{tag}_y.npy")), &y, &[n]).unwrap();
}

#[test]
fn the_cli_carries_counters_through_train_unlearn_and_audit() {
    let dir = std::env::temp_dir().join(format!("gradtau-torch-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let m = model("cnn");
    let mut rng = Rng::new(7);
    for (tag, n) in [("train", 12), ("forget", 16), ("retain", 48), ("val", 16)] {
        write_set(&dir, tag, &m, n, 3, &mut rng);
    }
    let spec = fixture("cnn.json");
    let spec = spec.to_str().unwrap();
    let init = fixture("cnn.safetensors");
    let original = io::load_checkpoint(&init).unwrap();

    // 12 samples in batches of 4 for 2 epochs: 6 training-mode steps.
    gradtau(
        &dir,
        &[
            "train",
            "--spec",
            spec,
            "--x",
            "train_x.npy",
            "--y",
            "train_y.npy",
            "--init",
            init.to_str().unwrap(),
            "--out",
            "trained.safetensors",
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--device",
            "cpu",
        ],
    );
    let trained = io::load_checkpoint(dir.join("trained.safetensors")).unwrap();
    assert_eq!(
        counters(&trained),
        counter_list(&CNN_COUNTERS, TORCH_STEPS + 6)
    );
    bind(&m, &trained);
    let moved = |a: &Checkpoint, b: &Checkpoint, k: &str| a.floats[k] != b.floats[k];
    assert!(
        moved(&original, &trained, "1.running_mean"),
        "training mode updates the stats"
    );

    // Unlearning runs batch norm in eval mode: the counters stay, the stats too.
    gradtau(
        &dir,
        &[
            "unlearn",
            "--spec",
            spec,
            "--weights",
            "trained.safetensors",
            "--forget-x",
            "forget_x.npy",
            "--forget-y",
            "forget_y.npy",
            "--retain-x",
            "retain_x.npy",
            "--retain-y",
            "retain_y.npy",
            "--val-x",
            "val_x.npy",
            "--val-y",
            "val_y.npy",
            "--out",
            "unlearned.safetensors",
            "--method",
            "finetune",
            "--epochs",
            "1",
            "--device",
            "cpu",
        ],
    );
    let unlearned = io::load_checkpoint(dir.join("unlearned.safetensors")).unwrap();
    assert_eq!(counters(&unlearned), counters(&trained));
    assert!(!moved(&trained, &unlearned, "6.running_var"));
    assert!(
        moved(&trained, &unlearned, "8.weight"),
        "fine-tuning moves the weights"
    );

    gradtau(
        &dir,
        &[
            "audit",
            "--spec",
            spec,
            "--weights",
            "unlearned.safetensors",
            "--forget-x",
            "forget_x.npy",
            "--forget-y",
            "forget_y.npy",
            "--retain-x",
            "retain_x.npy",
            "--retain-y",
            "retain_y.npy",
            "--test-x",
            "val_x.npy",
            "--test-y",
            "val_y.npy",
            "--json",
        ],
    );

    // From scratch, the saved state_dict gains the counters PyTorch's strict load expects.
    gradtau(
        &dir,
        &[
            "train",
            "--spec",
            spec,
            "--x",
            "train_x.npy",
            "--y",
            "train_y.npy",
            "--out",
            "fresh.safetensors",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--device",
            "cpu",
        ],
    );
    let fresh = io::load_checkpoint(dir.join("fresh.safetensors")).unwrap();
    assert_eq!(counters(&fresh), counter_list(&CNN_COUNTERS, 3));

    // A stray integer tensor is refused with its name; a float-only loader names the counter.
    let mut stray = trained.clone();
    stray
        .others
        .insert("5.step".into(), RawTensor::i64_scalar(1));
    let p = dir.join("stray.safetensors");
    io::save_checkpoint(
        &p,
        stray
            .floats
            .iter()
            .map(|(k, (s, d))| (k.as_str(), s.as_slice(), d.as_slice())),
        &stray.others,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gradtau"))
        .current_dir(&dir)
        .args([
            "train",
            "--spec",
            spec,
            "--x",
            "train_x.npy",
            "--y",
            "train_y.npy",
            "--init",
            "stray.safetensors",
            "--out",
            "never.safetensors",
            "--epochs",
            "1",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("`5.step` (I64) is not a parameter"),
        "{err}"
    );
    assert!(!dir.join("never.safetensors").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
