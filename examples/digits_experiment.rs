//! Scratch experiment: ∇τ modes on digits (random 10 % and class removal).
use gradtau::data::{digits, split_indices, Dataset};
use gradtau::nn::Model;
use gradtau::rng::Rng;
use gradtau::unlearn::*;
use gradtau::Tensor;

fn acc(model: &Model, w: &[Tensor], d: &Dataset) -> f32 {
    let logits = model.predict(w, &d.x, 512).unwrap();
    let l = logits.to_vec().unwrap();
    let y = d.y.classes().unwrap();
    let c = 10;
    let mut ok = 0;
    for i in 0..d.len() {
        let row = &l[i * c..(i + 1) * c];
        let am = (0..c).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        if am as u32 == y[i] { ok += 1; }
    }
    ok as f32 / d.len() as f32
}

fn main() {
    let d = digits::load().unwrap();
    let all = Dataset::classification(Tensor::from_vec(d.x.clone(), &[d.len(), 64]).unwrap(), d.y.clone()).unwrap();
    let mut rng = Rng::new(42);
    let perm = rng.permutation(all.len());
    let (tr, rest) = perm.split_at(1258);
    let (val, test) = rest.split_at(180);
    let train = all.subset(tr).unwrap();
    let val = all.subset(val).unwrap();
    let test = all.subset(test).unwrap();
    let spec = r#"{"format":"gradtau.model/1","input":{"shape":[64]},"nodes":[
      {"name":"0","op":"linear","in_features":64,"out_features":128},{"name":"1","op":"relu"},
      {"name":"2","op":"linear","in_features":128,"out_features":128},{"name":"3","op":"relu"},
      {"name":"4","op":"linear","in_features":128,"out_features":10}],"loss":"cross_entropy"}"#;
    let model = Model::from_json(spec).unwrap();
    let recipe = TrainRecipe { epochs: 60, batch_size: 32, lr: 1e-3, ..Default::default() };
    let scenario = std::env::args().nth(1).unwrap_or("random".into());
    let (fidx, ridx): (Vec<usize>, Vec<usize>) = if scenario == "class" {
        let y = train.y.classes().unwrap();
        ((0..train.len()).filter(|&i| y[i] == 3).collect(), (0..train.len()).filter(|&i| y[i] != 3).collect())
    } else {
        split_indices(train.len(), 0.1, &mut Rng::new(7))
    };
    let forget = train.subset(&fidx).unwrap();
    let retain = train.subset(&ridx).unwrap();
    let t0 = std::time::Instant::now();
    let mut w = model.init_weights(1);
    train_fn(&model, &mut w, &train, &recipe);
    let orig_t = t0.elapsed().as_secs_f64();
    let mut wr = model.init_weights(1);
    train_fn(&model, &mut wr, &retain, &recipe);
    let show = |name: &str, w: &[Tensor], secs: f64| {
        let lf = model.losses(w, &forget, 512).unwrap();
        let lt = model.losses(w, &test, 512).unwrap();
        let mia = nabla_tau::threshold_attack_accuracy(&lf, &lt);
        println!("{name:>14}: retain {:.3} forget {:.3} test {:.3} mia(thr) {:.3} meanloss f {:.3} t {:.3}  {secs:.2}s",
            acc(&model, w, &retain), acc(&model, w, &forget), acc(&model, w, &test), mia,
            lf.iter().sum::<f32>() / lf.len() as f32, lt.iter().sum::<f32>() / lt.len() as f32);
    };
    show("original", &w, orig_t);
    show("retrain", &wr, 0.0);
    let sets = UnlearnSets { forget: &forget, retain: &retain, val: &val };
    for (name, m) in [
        ("paper", Method::NablaTau(NablaTauOptions { device: gradtau::DeviceRequest::Auto, ..NablaTauOptions::paper() })),
        ("adaptive", Method::NablaTau(NablaTauOptions::default())),
        ("finetune", Method::FineTune(BaselineOptions::finetune())),
        ("neggrad+", Method::NegGradPlus(BaselineOptions::neggrad_plus())),
    ] {
        let mut wu = w.clone();
        let r = m.run(&model, &mut wu, sets, &mut no_progress).unwrap();
        show(name, &wu, r.seconds);
        println!("                steps {} epochs {} stopped {:?}", r.steps, r.epochs, r.forget_stopped_at);
    }
}

fn train_fn(model: &Model, w: &mut Vec<Tensor>, d: &Dataset, r: &TrainRecipe) {
    train(model, w, d, r, &mut no_progress).unwrap();
}
