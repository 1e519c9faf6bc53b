//! ∇τ on text, small enough for CI: a spam filter (hashed words → embedding → mean over
//! tokens → MLP) trained to fit the SpamAssassin corpus's training mails (train accuracy 1.0),
//! then asked to forget a random 10 % of them and, separately, every mail of the largest
//! sender domain, judged against retraining from scratch (the full tables, both models and
//! three seeds, are docs/REPRODUCTION_TEXT.md). Needs the corpus that `scripts/get-spam.sh`
//! fetches (CI runs it); without it the test says so and skips.

#[path = "../examples/text/mail.rs"]
mod mail;

#[path = "common/judge.rs"]
mod judge;
use gradtau::data::{split_indices, Dataset};
use gradtau::nn::Model;
use gradtau::optim::LrSchedule;
use gradtau::rng::Rng;
use gradtau::unlearn::{no_progress, train, TrainRecipe, UnlearnSets};
use gradtau::{Device, DeviceRequest, Tensor};
use judge::Scenario;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The MLP filter of docs/REPRODUCTION_TEXT.md (also the whole-run benchmark's text model).
const SPEC: &str = include_str!("../data/specs/spam_mlp.json");

fn corpus_dir() -> PathBuf {
    std::env::var_os("GRADTAU_SPAM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/spam"))
}

struct Corpus {
    x: Vec<f32>,
    y: Vec<u32>,
    domains: Vec<String>,
}

impl Corpus {
    fn dataset(&self, idx: &[usize]) -> Dataset {
        let l = mail::SEQ_LEN;
        let x = idx
            .iter()
            .flat_map(|&i| self.x[i * l..(i + 1) * l].iter().copied())
            .collect();
        let y = idx.iter().map(|&i| self.y[i]).collect();
        Dataset::classification(Tensor::from_vec(x, &[idx.len(), l]).unwrap(), y).unwrap()
    }
}

#[test]
fn spam_filter_forgets_a_random_tenth_and_one_sender() {
    let dir = corpus_dir();
    let mails = match mail::read_corpus(&dir) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIPPED: the spam corpus is not there ({e}); run scripts/get-spam.sh");
            return;
        }
    };
    let corpus = Corpus {
        x: mails
            .iter()
            .flat_map(|m| mail::token_ids(&m.text).into_iter().map(|i| i as f32))
            .collect(),
        y: mails.iter().map(|m| m.label()).collect(),
        domains: mails.iter().map(|m| mail::sender_domain(&m.text)).collect(),
    };
    // The example's split: test 20 %, validation 10 % (∇τ's target), train 70 %.
    let n = mails.len();
    let p = Rng::new(0).permutation(n);
    let (nt, nv) = (
        (n as f64 * 0.2).round() as usize,
        (n as f64 * 0.1).round() as usize,
    );
    let (test_idx, val_idx, train_idx) = (&p[..nt], &p[nt..nt + nv], &p[nt + nv..]);
    let (test, val, train_set) = (
        corpus.dataset(test_idx),
        corpus.dataset(val_idx),
        corpus.dataset(train_idx),
    );
    let model = Model::from_json(SPEC).unwrap();
    let cpu = DeviceRequest::Exact(Device::Cpu);
    let (epochs, batch) = (20, 64);
    let recipe = TrainRecipe {
        lr: 3e-3,
        epochs,
        batch_size: batch,
        schedule: LrSchedule::Linear {
            start: 1.0,
            end: 0.0,
            total_steps: train_set.len().div_ceil(batch) * epochs,
        },
        seed: 0,
        device: cpu,
        ..Default::default()
    };
    let mut original = model.init_weights(0);
    train(&model, &mut original, &train_set, &recipe, &mut no_progress).unwrap();

    // The largest sender domain among the training mails.
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for &i in train_idx {
        if corpus.domains[i] != mail::UNKNOWN_DOMAIN {
            *counts.entry(&corpus.domains[i]).or_default() += 1;
        }
    }
    let domain = counts.iter().max_by_key(|e| *e.1).unwrap().0.to_string();
    let (rand_f, rand_r) = split_indices(train_idx.len(), 0.1, &mut Rng::new(0x5eed));
    let (send_f, send_r): (Vec<usize>, Vec<usize>) =
        (0..train_idx.len()).partition(|&k| corpus.domains[train_idx[k]] == domain);
    for (name, fpos, rpos) in [
        ("random 10 %", rand_f, rand_r),
        ("one sender", send_f, send_r),
    ] {
        let pick =
            |pos: &[usize]| corpus.dataset(&pos.iter().map(|&k| train_idx[k]).collect::<Vec<_>>());
        let (forget, retain) = (pick(&fpos), pick(&rpos));
        let sets = UnlearnSets {
            forget: &forget,
            retain: &retain,
            val: &val,
        };
        let sc = Scenario::run(&model, &original, sets, &test, &recipe);
        let (o, r, u, rep) = (&sc.original, &sc.retrained, &sc.unlearned, &sc.report);
        for (who, j) in [("original", o), ("retrain", r), ("∇τ", u)] {
            eprintln!(
                "{name} ({} mails): {who}: forget {:.4} test {:.4} MIA {:.3} loss AUC {:.3}",
                forget.len(),
                j.row.forget_accuracy,
                j.row.test_accuracy,
                j.row.mia_loss,
                j.auc
            );
        }
        eprintln!(
            "{name}: ∇τ ran {} steps, stop: {}",
            rep.steps,
            rep.stop_reason.name()
        );
        // The original memorised its training mails; retraining without the forget set makes
        // them less recognisable, on both attacks.
        assert!(
            o.row.forget_accuracy > 0.999,
            "{name}: the original does not fit its mails"
        );
        assert!(
            o.row.mia_loss - r.row.mia_loss > 0.02,
            "{name}: no membership gap"
        );
        assert!(o.auc - r.auc > 0.02, "{name}: no AUC gap");
        // ∇τ moves the attack that the scenario's seed spread resolves towards retraining's
        // value (docs/REPRODUCTION_TEXT.md, MLP, seeds 0 to 2): on a random 10 % the paper's
        // attack (gap closed 33 to 49 %; the loss AUC, -32 to 35 %, is noise there), for one
        // sender the loss AUC (40 to 43 %; the paper's attack, -16 to 54 %, is noise there:
        // retraining's own spreads by ±0.05). Neither may pass retraining's value by more than
        // half the gap, nor the other attack get worse beyond noise.
        let (mia_closed, auc_closed) = (sc.closed(|j| j.row.mia_loss), sc.closed(|j| j.auc));
        eprintln!(
            "{name}: gap closed: MIA {:.0} %, loss AUC {:.0} %",
            100.0 * mia_closed,
            100.0 * auc_closed
        );
        let (resolved, other) = if name == "one sender" {
            (auc_closed, mia_closed)
        } else {
            (mia_closed, auc_closed)
        };
        assert!(resolved >= CLOSED_BAR, "{name}: gap closed {resolved:.2}");
        assert!(
            resolved <= 1.0 + OVERSHOOT,
            "{name}: overshot: {resolved:.2}"
        );
        assert!(
            (-0.5..=1.0 + OVERSHOOT).contains(&other),
            "{name}: {other:.2}"
        );
        assert!(
            u.row.forget_accuracy >= r.row.forget_accuracy - 0.02,
            "{name}: forget accuracy {:.4} far below retraining's {:.4}",
            u.row.forget_accuracy,
            r.row.forget_accuracy
        );
        assert!(
            u.row.test_accuracy >= o.row.test_accuracy - 0.01,
            "{name}: test accuracy fell from {:.4} to {:.4}",
            o.row.test_accuracy,
            u.row.test_accuracy
        );
    }
}

/// Bars below what is measured (docs/REPRODUCTION_TEXT.md), to catch a regression.
const CLOSED_BAR: f64 = 0.2;
const OVERSHOOT: f64 = 0.5;
