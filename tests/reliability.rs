//! Issue 14 through the Rust API: the resource guard, divergence as an error for every
//! method, every option validated, overlapping sets refused, and a one-sample forget set
//! end to end.

mod common;

use common::{digits_sets, hostile_specs, is_child, random_set, rerun_in_child, CHILD_LIMIT};
use gradtau::audit::{audit_model, AuditSets};
use gradtau::data::digits;
use gradtau::nn::{Model, Workload};
use gradtau::optim::LrSchedule;
use gradtau::unlearn::{
    self, no_progress, BaselineOptions, Method, NablaTauMode, NablaTauOptions, OptimizerKind,
    OverlapPolicy, TrainRecipe, UnlearnSets,
};
use gradtau::{DeviceRequest, Error, Tensor};

fn cpu() -> DeviceRequest {
    DeviceRequest::Exact(gradtau::Device::Cpu)
}

fn bits(w: &[Tensor]) -> Vec<Vec<u32>> {
    w.iter()
        .map(|t| t.to_vec().unwrap().iter().map(|v| v.to_bits()).collect())
        .collect()
}

fn mlp() -> Model {
    Model::from_json(digits::MLP_SPEC).unwrap()
}

fn recipe() -> TrainRecipe {
    TrainRecipe {
        epochs: 1,
        batch_size: 32,
        device: cpu(),
        ..Default::default()
    }
}

/// Every method with small budgets, so a run takes milliseconds.
fn methods() -> Vec<Method> {
    let nt = |mode| NablaTauOptions {
        mode,
        epochs: Some(2),
        device: cpu(),
        ..Default::default()
    };
    let b = |o: BaselineOptions| BaselineOptions {
        epochs: 1,
        device: cpu(),
        ..o
    };
    vec![
        Method::NablaTau(nt(NablaTauMode::Adaptive)),
        Method::NablaTau(nt(NablaTauMode::Paper)),
        Method::FineTune(b(BaselineOptions::finetune())),
        Method::NegGrad(b(BaselineOptions::neggrad())),
        Method::NegGradPlus(b(BaselineOptions::neggrad_plus())),
    ]
}

fn with_lr(m: &Method, lr: f32) -> Method {
    match m.clone() {
        Method::NablaTau(o) => Method::NablaTau(NablaTauOptions { lr: Some(lr), ..o }),
        Method::FineTune(o) => Method::FineTune(BaselineOptions { lr, ..o }),
        Method::NegGrad(o) => Method::NegGrad(BaselineOptions { lr, ..o }),
        Method::NegGradPlus(o) => Method::NegGradPlus(BaselineOptions { lr, ..o }),
    }
}

#[test]
fn hostile_specs_are_a_resource_limit_never_an_abort() {
    if !is_child() {
        // The linear spec would compile (and allocate 8.5 GB of weights) under a large
        // machine's default budget, so the check runs under CHILD_LIMIT.
        let stderr = rerun_in_child("hostile_specs_are_a_resource_limit_never_an_abort", &[]);
        assert!(stderr.is_empty(), "the library printed: {stderr}");
        return;
    }
    for (name, spec) in hostile_specs() {
        let err = match Model::from_json(&spec) {
            Err(e) => e,
            Ok(model) => {
                model.set_memory_limit(Some(CHILD_LIMIT));
                let data = random_set(model.input_shape(), 64, 1);
                let mut w = model.init_weights(0);
                let before = bits(&w);
                let e =
                    unlearn::train(&model, &mut w, &data, &recipe(), &mut no_progress).unwrap_err();
                assert_eq!(bits(&w), before, "{name}: weights changed");
                e
            }
        };
        let Error::ResourceLimit(msg) = &err else {
            panic!("{name}: expected a resource limit, got {err}");
        };
        assert!(msg.contains("`big"), "{name}: the node is not named: {msg}");
        assert!(
            msg.contains("bytes") || msg.contains("address space"),
            "{name}: no size in: {msg}"
        );
    }
}

#[test]
fn normal_models_pass_the_guard() {
    let cnn = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/specs/fashion_cnn.json"),
    )
    .unwrap();
    for model in [mlp(), Model::from_json(&cnn).unwrap()] {
        model.set_memory_limit(Some(CHILD_LIMIT));
        let f = model
            .check_memory(Workload::training(256, 2, 2), "nabla_tau")
            .unwrap();
        assert!(f.total > 0 && f.total < CHILD_LIMIT as u128 / 4, "{f:?}");
        model
            .check_memory(Workload::inference(512), "audit")
            .unwrap();
    }
    // A budget below what the run needs is refused before the run, naming the call.
    let model = mlp();
    model.set_memory_limit(Some(1000));
    let (_, retain, _) = digits_sets();
    let mut w = model.init_weights(0);
    let e = unlearn::train(&model, &mut w, &retain, &recipe(), &mut no_progress).unwrap_err();
    assert!(
        matches!(&e, Error::ResourceLimit(m) if m.contains("train at batch 32") && m.contains("1000 bytes")),
        "{e}"
    );
    model.set_memory_limit(None);
    assert_eq!(model.memory_limit(), None);
}

#[test]
fn every_method_stops_on_divergence_and_keeps_the_weights() {
    let model = mlp();
    let (forget, retain, val) = digits_sets();
    let sets = UnlearnSets {
        forget: &forget,
        retain: &retain,
        val: &val,
    };
    // An original model that has memorised the forget set, so that every method (adaptive
    // ∇τ included, which stops at once when there is nothing to forget) takes steps.
    let (train, _, _) = digits::train_val_test(0).unwrap();
    let seen = train.subset(&(0..220).collect::<Vec<_>>()).unwrap();
    let mut w0 = model.init_weights(3);
    let r = TrainRecipe {
        epochs: 30,
        lr: 3e-3,
        ..recipe()
    };
    unlearn::train(&model, &mut w0, &seen, &r, &mut no_progress).unwrap();
    for m in methods() {
        let mut w = w0.clone();
        let e = with_lr(&m, 1e30)
            .run(&model, &mut w, sets, &mut no_progress)
            .unwrap_err();
        assert!(
            matches!(&e, Error::NonFinite(msg) if msg.contains("step") && msg.contains("diverged")),
            "{}: {e}",
            m.name()
        );
        assert_eq!(bits(&w), bits(&w0), "{}: weights changed", m.name());
        // keep_partial does not write diverged weights back either.
        let keep = match with_lr(&m, 1e30) {
            Method::NablaTau(o) => Method::NablaTau(NablaTauOptions {
                keep_partial: true,
                ..o
            }),
            Method::FineTune(o) => Method::FineTune(BaselineOptions {
                keep_partial: true,
                ..o
            }),
            Method::NegGrad(o) => Method::NegGrad(BaselineOptions {
                keep_partial: true,
                ..o
            }),
            Method::NegGradPlus(o) => Method::NegGradPlus(BaselineOptions {
                keep_partial: true,
                ..o
            }),
        };
        assert!(keep.run(&model, &mut w, sets, &mut no_progress).is_err());
        assert_eq!(bits(&w), bits(&w0), "{}: keep_partial", m.name());
        // The same method at its own rate still works.
        m.run(&model, &mut w, sets, &mut no_progress)
            .unwrap_or_else(|e| panic!("{}: {e}", m.name()));
    }
    let mut w = w0.clone();
    let r = TrainRecipe {
        lr: 1e30,
        epochs: 2,
        ..recipe()
    };
    let e = unlearn::train(&model, &mut w, &retain, &r, &mut no_progress).unwrap_err();
    assert!(
        matches!(&e, Error::NonFinite(m) if m.contains("train") && m.contains("step")),
        "{e}"
    );
    assert_eq!(bits(&w), bits(&w0));
    // Outputs that overflow with finite weights are reported by predict, naming the sample.
    let huge: Vec<Tensor> = w0
        .iter()
        .map(|t| {
            let v = t.to_vec().unwrap().iter().map(|x| x * 1e30).collect();
            Tensor::from_vec(v, t.shape()).unwrap()
        })
        .collect();
    let e = model.predict(&huge, &val.x, 64).unwrap_err();
    assert!(
        matches!(&e, Error::NonFinite(m) if m.contains("sample")),
        "{e}"
    );
}

/// One bad value of one option: what to change and the field the error must name.
struct Bad<T> {
    field: &'static str,
    set: fn(&mut T),
}

macro_rules! bad {
    ($field:literal, |$o:ident| $body:expr) => {
        Bad {
            field: $field,
            set: |$o| $body,
        }
    };
}

fn nabla_tau_bad() -> Vec<Bad<NablaTauOptions>> {
    vec![
        bad!("batch_size", |o| o.batch_size = Some(0)),
        bad!("lr", |o| o.lr = Some(-1.0)),
        bad!("lr", |o| o.lr = Some(0.0)),
        bad!("lr", |o| o.lr = Some(f32::NAN)),
        bad!("lr", |o| o.lr = Some(f32::INFINITY)),
        bad!("weight_decay", |o| o.weight_decay = -0.01),
        bad!("weight_decay", |o| o.weight_decay = f32::NAN),
        bad!("lr_end_factor", |o| o.lr_end_factor = 0.0),
        bad!("lr_end_factor", |o| o.lr_end_factor = 1.5),
        bad!("lr_end_factor", |o| o.lr_end_factor = f32::NAN),
        bad!("alpha0", |o| o.alpha0 = Some(-0.1)),
        bad!("alpha0", |o| o.alpha0 = Some(1.5)),
        bad!("alpha0", |o| o.alpha0 = Some(f32::NAN)),
        bad!("alpha_max", |o| o.alpha_max = Some(1.5)),
        bad!("alpha_max", |o| {
            o.alpha0 = Some(0.5);
            o.alpha_max = Some(0.3)
        }),
        bad!("epochs", |o| o.epochs = Some(0)),
        bad!("tau_every", |o| o.tau_every = 0),
        bad!("stop_margin", |o| o.stop_margin = f32::NAN),
        bad!("stop_margin", |o| o.stop_margin = -0.1),
        bad!("stop_margin", |o| o.stop_margin = 0.5),
        bad!("max_steps", |o| o.max_steps = Some(0)),
    ]
}

fn baseline_bad() -> Vec<Bad<BaselineOptions>> {
    vec![
        bad!("epochs", |o| o.epochs = 0),
        bad!("batch_size", |o| o.batch_size = 0),
        bad!("lr", |o| o.lr = -1.0),
        bad!("lr", |o| o.lr = 0.0),
        bad!("lr", |o| o.lr = f32::NAN),
        bad!("lr", |o| o.lr = f32::INFINITY),
        bad!("weight_decay", |o| o.weight_decay = -1.0),
        bad!("weight_decay", |o| o.weight_decay = f32::INFINITY),
        bad!("retain_weight", |o| o.retain_weight = -0.1),
        bad!("retain_weight", |o| o.retain_weight = 1.5),
        bad!("retain_weight", |o| o.retain_weight = f32::NAN),
    ]
}

fn train_bad() -> Vec<Bad<TrainRecipe>> {
    vec![
        bad!("lr", |r| r.lr = -1.0),
        bad!("lr", |r| r.lr = 0.0),
        bad!("lr", |r| r.lr = f32::NAN),
        bad!("weight_decay", |r| r.weight_decay = -0.5),
        bad!("epochs", |r| r.epochs = 0),
        bad!("batch_size", |r| r.batch_size = 0),
        bad!("momentum", |r| r.optimizer = OptimizerKind::Sgd {
            momentum: 1.0,
            nesterov: false
        }),
        bad!("momentum", |r| r.optimizer = OptimizerKind::Sgd {
            momentum: -0.1,
            nesterov: false
        }),
        bad!("momentum", |r| r.optimizer = OptimizerKind::Sgd {
            momentum: f32::NAN,
            nesterov: true
        }),
        bad!("clip_norm", |r| r.clip_norm = Some(f32::NAN)),
        bad!("clip_norm", |r| r.clip_norm = Some(-1.0)),
        bad!("clip_norm", |r| r.clip_norm = Some(0.0)),
        bad!("schedule min_factor", |r| r.schedule = LrSchedule::Cosine {
            min_factor: 2.0,
            total_steps: 5
        }),
        bad!("schedule start", |r| r.schedule = LrSchedule::Linear {
            start: f32::NAN,
            end: 0.0,
            total_steps: 5
        }),
    ]
}

fn assert_names(e: &Error, field: &str, what: &str) {
    assert!(
        matches!(e, Error::InvalidArgument(m) if m.contains(&format!("`{field}`")) && m.contains("must be")),
        "{what}: `{field}` not named in: {e}"
    );
}

#[test]
fn every_option_is_validated_with_its_name_and_range() {
    let model = mlp();
    let (forget, retain, val) = digits_sets();
    let sets = UnlearnSets {
        forget: &forget,
        retain: &retain,
        val: &val,
    };
    let w0 = model.init_weights(1);
    let check = |m: Method, field: &str| {
        let mut w = w0.clone();
        assert_names(&m.validate().unwrap_err(), field, m.name());
        let e = m.run(&model, &mut w, sets, &mut no_progress).unwrap_err();
        assert_names(&e, field, m.name());
        assert_eq!(bits(&w), bits(&w0));
    };
    for mode in [NablaTauMode::Adaptive, NablaTauMode::Paper] {
        for b in nabla_tau_bad() {
            let mut o = NablaTauOptions {
                mode,
                ..Default::default()
            };
            (b.set)(&mut o);
            check(Method::NablaTau(o), b.field);
        }
    }
    for b in baseline_bad() {
        for base in [
            BaselineOptions::finetune(),
            BaselineOptions::neggrad(),
            BaselineOptions::neggrad_plus(),
        ] {
            let mut o = base.clone();
            (b.set)(&mut o);
            for m in [
                Method::FineTune(o.clone()),
                Method::NegGrad(o.clone()),
                Method::NegGradPlus(o.clone()),
            ] {
                check(m, b.field);
            }
        }
    }
    for b in train_bad() {
        let mut r = recipe();
        (b.set)(&mut r);
        assert_names(&r.validate().unwrap_err(), b.field, "train");
        let mut w = w0.clone();
        let e = unlearn::train(&model, &mut w, &retain, &r, &mut no_progress).unwrap_err();
        assert_names(&e, b.field, "train");
        assert_eq!(bits(&w), bits(&w0));
    }
}

#[test]
fn overlapping_sets_are_refused_with_the_count() {
    let model = mlp();
    let (forget, retain, val) = digits_sets();
    let w0 = model.init_weights(1);
    // Retain holds 5 of the forget samples.
    let joined = Dataset::new(
        Tensor::from_vec(
            [
                retain.x.to_vec().unwrap(),
                forget.x.to_vec().unwrap()[..5 * 64].to_vec(),
            ]
            .concat(),
            &[retain.len() + 5, 64],
        )
        .unwrap(),
        gradtau::data::Targets::Classes(
            [
                retain.y.classes().unwrap().to_vec(),
                forget.y.classes().unwrap()[..5].to_vec(),
            ]
            .concat(),
        ),
    )
    .unwrap();
    for (retain_set, val_set, count, other) in [
        (&joined, &val, 5, "retain"),
        (&forget, &val, forget.len(), "retain"),
        (&retain, &forget, forget.len(), "validation"),
    ] {
        let sets = UnlearnSets {
            forget: &forget,
            retain: retain_set,
            val: val_set,
        };
        let mut w = w0.clone();
        let e = Method::NablaTau(NablaTauOptions::default())
            .run(&model, &mut w, sets, &mut no_progress)
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("share {count} sample")) && msg.contains(&format!("{other} set")),
            "{msg}"
        );
        assert_eq!(bits(&w), bits(&w0));
    }
    // NegGrad+ too; allowed on request.
    let sets = UnlearnSets {
        forget: &forget,
        retain: &joined,
        val: &val,
    };
    let mut w = w0.clone();
    let o = BaselineOptions {
        epochs: 1,
        device: cpu(),
        ..BaselineOptions::neggrad_plus()
    };
    assert!(Method::NegGradPlus(o.clone())
        .run(&model, &mut w, sets, &mut no_progress)
        .unwrap_err()
        .to_string()
        .contains("share 5 sample"));
    Method::NegGradPlus(BaselineOptions {
        overlap: OverlapPolicy::Allow,
        ..o
    })
    .run(&model, &mut w, sets, &mut no_progress)
    .unwrap();
}

use gradtau::data::Dataset;

#[test]
fn a_forget_set_of_one_sample_works_end_to_end() {
    let model = mlp();
    let (forget, retain, val) = digits_sets();
    let one = forget.subset(&[0]).unwrap();
    let mut w = model.init_weights(2);
    unlearn::train(&model, &mut w, &retain, &recipe(), &mut no_progress).unwrap();
    let sets = UnlearnSets {
        forget: &one,
        retain: &retain,
        val: &val,
    };
    for m in methods() {
        let mut wm = w.clone();
        m.run(&model, &mut wm, sets, &mut no_progress)
            .unwrap_or_else(|e| panic!("{}: {e}", m.name()));
        let row = audit_model(
            &model,
            &wm,
            AuditSets {
                retain: &retain,
                forget: &one,
                test: &val,
            },
            0,
        )
        .unwrap();
        assert!((0.0..=1.0).contains(&row.forget_accuracy));
        assert_eq!(row.mia_samples, 0);
        assert!(row.mia_loss.is_nan() && row.mia_entropy.is_nan());
    }
    // From three samples on, the attack runs and says on how many.
    let three = forget.subset(&[0, 1, 2]).unwrap();
    let row = audit_model(
        &model,
        &w,
        AuditSets {
            retain: &retain,
            forget: &three,
            test: &val,
        },
        0,
    )
    .unwrap();
    assert_eq!(row.mia_samples, 3);
    assert!((0.0..=1.0).contains(&row.mia_loss));
}
