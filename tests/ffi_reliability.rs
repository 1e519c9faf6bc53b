//! Issue 14 through the C ABI (the `gradtau::ffi` exports, called as a C host would): a
//! table of bad calls, each checked for its status, the subject of its message, silence on
//! stderr and bit-identical caller buffers; divergence; the memory-limit setter; and
//! generated specs (hostile ones included) that must give a status, never an abort or panic.

mod common;

use common::{digits_sets, hostile_specs, is_child, random_set, rerun_in_child};
use gradtau::data::{digits, Dataset};
use gradtau::ffi::dataset::*;
use gradtau::ffi::infer::*;
use gradtau::ffi::model::*;
use gradtau::ffi::run::*;
use gradtau::ffi::status::*;
use gradtau::ffi::{gradtau_dataset, gradtau_model, gradtau_status};
use gradtau::rng::Rng;
use std::ffi::{CStr, CString};
use std::ptr;

use gradtau_status::*;

fn last_error() -> String {
    unsafe { CStr::from_ptr(gradtau_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

/// A model handle with host buffers bound to every parameter.
struct Host {
    model: *mut gradtau_model,
    buffers: Vec<Vec<f32>>,
}

impl Host {
    /// Compiles `spec` and binds fresh buffers; the status and message on failure.
    fn new(spec: &str) -> Result<Host, (gradtau_status, String)> {
        let mut model = ptr::null_mut();
        let s = unsafe { gradtau_model_new(spec.as_ptr().cast(), spec.len(), &mut model) };
        if s != GRADTAU_OK {
            return Err((s, last_error()));
        }
        let mut host = Host {
            model,
            buffers: Vec::new(),
        };
        for i in 0..unsafe { gradtau_model_param_count(model) } {
            let mut info = std::mem::MaybeUninit::uninit();
            assert_eq!(
                unsafe { gradtau_model_param(model, i, info.as_mut_ptr()) },
                GRADTAU_OK
            );
            let info = unsafe { info.assume_init() };
            let mut buf = vec![0f32; info.numel];
            let s = unsafe { gradtau_model_bind(model, info.name, buf.as_mut_ptr(), buf.len()) };
            assert_eq!(s, GRADTAU_OK, "{}", last_error());
            host.buffers.push(buf);
        }
        let s = unsafe { gradtau_model_init_weights(model, 0) };
        if s != GRADTAU_OK {
            return Err((s, last_error()));
        }
        Ok(host)
    }

    fn bits(&self) -> Vec<Vec<u32>> {
        self.buffers
            .iter()
            .map(|b| b.iter().map(|v| v.to_bits()).collect())
            .collect()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        unsafe { gradtau_model_free(self.model) };
    }
}

/// A C data set copied from `d`.
struct Set(*mut gradtau_dataset);

impl Set {
    fn new(d: &Dataset) -> Set {
        let x = d.x.to_vec().unwrap();
        let shape = d.x.shape().to_vec();
        let y: Vec<i32> = d.y.classes().unwrap().iter().map(|&c| c as i32).collect();
        let mut out = ptr::null_mut();
        let s = unsafe {
            gradtau_dataset_classes_new(
                x.as_ptr(),
                x.len(),
                shape.as_ptr(),
                shape.len(),
                y.as_ptr(),
                y.len(),
                &mut out,
            )
        };
        assert_eq!(s, GRADTAU_OK, "{}", last_error());
        Set(out)
    }
}

impl Drop for Set {
    fn drop(&mut self) {
        unsafe { gradtau_dataset_free(self.0) };
    }
}

fn unlearn_defaults(method: i32) -> gradtau_unlearn_options {
    let mut o = std::mem::MaybeUninit::uninit();
    assert_eq!(
        unsafe { gradtau_unlearn_options_default(method, o.as_mut_ptr()) },
        GRADTAU_OK
    );
    unsafe { o.assume_init() }
}

fn train_defaults() -> gradtau_train_options {
    let mut o = std::mem::MaybeUninit::uninit();
    assert_eq!(
        unsafe { gradtau_train_options_default(o.as_mut_ptr()) },
        GRADTAU_OK
    );
    unsafe { o.assume_init() }
}

/// Makes one call on the host's model and sets.
type Call = Box<dyn Fn(&Host, &Sets) -> gradtau_status>;

/// One bad call: what it is, the status it must return and a word its message must hold.
struct Case {
    what: String,
    status: gradtau_status,
    subject: String,
    call: Call,
}

struct Sets {
    forget: Set,
    retain: Set,
    val: Set,
}

fn unlearn_case(
    what: String,
    status: gradtau_status,
    subject: &str,
    o: gradtau_unlearn_options,
) -> Case {
    Case {
        what,
        status,
        subject: subject.to_string(),
        call: Box::new(move |h, s| unsafe {
            gradtau_unlearn(
                h.model,
                s.forget.0,
                s.retain.0,
                s.val.0,
                &o,
                None,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        }),
    }
}

type UnlearnField = (&'static str, fn(&mut gradtau_unlearn_options, f32));

/// Bad values of the unlearning options, per method, crossed with keep_partial (which must
/// not let a refused call write anything either).
fn unlearn_option_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let floats_any = [-1.0f32, f32::INFINITY, f32::NEG_INFINITY];
    let nabla: Vec<(UnlearnField, Vec<f32>)> = vec![
        (("lr", |o, v| o.lr = v), vec![-1.0, 0.0, f32::INFINITY]),
        (
            ("weight_decay", |o, v| o.weight_decay = v),
            vec![-0.01, f32::NAN, f32::INFINITY],
        ),
        (
            ("lr_end_factor", |o, v| o.lr_end_factor = v),
            vec![0.0, 1.5, f32::NAN, -1.0],
        ),
        (
            ("alpha0", |o, v| o.alpha0 = v),
            vec![-0.1, 1.5, f32::INFINITY],
        ),
        (
            ("alpha_max", |o, v| o.alpha_max = v),
            vec![-0.1, 1.5, f32::INFINITY],
        ),
        (("tau_every", |o, _| o.tau_every = 0), vec![0.0]),
        (
            ("stop_margin", |o, v| o.stop_margin = v),
            vec![f32::NAN, -0.1, 0.5, f32::INFINITY],
        ),
    ];
    for mode in [
        GRADTAU_NABLA_TAU_MODE_ADAPTIVE,
        GRADTAU_NABLA_TAU_MODE_PAPER,
    ] {
        for ((field, set), values) in &nabla {
            for &v in values {
                for keep in [false, true] {
                    let mut o = unlearn_defaults(GRADTAU_METHOD_NABLA_TAU);
                    o.nabla_tau_mode = mode;
                    o.keep_partial = keep;
                    set(&mut o, v);
                    cases.push(unlearn_case(
                        format!("nabla_tau mode {mode} {field}={v} keep={keep}"),
                        GRADTAU_INVALID_ARGUMENT,
                        &format!("`{field}`"),
                        o,
                    ));
                }
            }
        }
    }
    let base: Vec<(UnlearnField, Vec<f32>)> = vec![
        (("epochs", |o, _| o.epochs = 0), vec![0.0]),
        (("batch_size", |o, _| o.batch_size = 0), vec![0.0]),
        (
            ("lr", |o, v| o.lr = v),
            vec![-1.0, 0.0, f32::NAN, f32::INFINITY],
        ),
        (
            ("weight_decay", |o, v| o.weight_decay = v),
            [floats_any.as_slice(), &[f32::NAN]].concat(),
        ),
        (
            ("retain_weight", |o, v| o.retain_weight = v),
            vec![-0.1, 1.5, f32::NAN, f32::INFINITY],
        ),
    ];
    for method in [
        GRADTAU_METHOD_FINETUNE,
        GRADTAU_METHOD_NEGGRAD,
        GRADTAU_METHOD_NEGGRAD_PLUS,
    ] {
        for ((field, set), values) in &base {
            for &v in values {
                for keep in [false, true] {
                    let mut o = unlearn_defaults(method);
                    o.keep_partial = keep;
                    set(&mut o, v);
                    cases.push(unlearn_case(
                        format!("method {method} {field}={v} keep={keep}"),
                        GRADTAU_INVALID_ARGUMENT,
                        &format!("`{field}`"),
                        o,
                    ));
                }
            }
        }
    }
    // Enumerations and the struct's version.
    for (field, status, subject, set) in [
        (
            "method 9",
            GRADTAU_INVALID_ARGUMENT,
            "method",
            (|o: &mut gradtau_unlearn_options| o.method = 9) as fn(&mut _),
        ),
        ("method -1", GRADTAU_INVALID_ARGUMENT, "method", |o| {
            o.method = -1
        }),
        ("mode 5", GRADTAU_INVALID_ARGUMENT, "nabla_tau_mode", |o| {
            o.nabla_tau_mode = 5
        }),
        ("struct_size", GRADTAU_ABI_MISMATCH, "struct_size", |o| {
            o.struct_size -= 8
        }),
        ("struct_size 0", GRADTAU_ABI_MISMATCH, "struct_size", |o| {
            o.struct_size = 0
        }),
        ("device", GRADTAU_INVALID_ARGUMENT, "gpu7", |o| {
            o.device = c"gpu7".as_ptr()
        }),
    ] {
        let mut o = unlearn_defaults(GRADTAU_METHOD_NABLA_TAU);
        set(&mut o);
        cases.push(unlearn_case(field.to_string(), status, subject, o));
    }
    cases
}

type TrainField = (&'static str, fn(&mut gradtau_train_options, f32));

fn train_option_cases() -> Vec<Case> {
    let fields: Vec<(TrainField, Vec<f32>)> = vec![
        (
            ("lr", |o, v| o.lr = v),
            vec![-1.0, 0.0, f32::NAN, f32::INFINITY],
        ),
        (
            ("weight_decay", |o, v| o.weight_decay = v),
            vec![-1.0, f32::NAN, f32::INFINITY],
        ),
        (
            ("momentum", |o, v| {
                o.optimizer = GRADTAU_OPTIMIZER_SGD;
                o.momentum = v
            }),
            vec![1.0, -0.1, f32::NAN, 2.0],
        ),
        (
            ("clip_norm", |o, v| o.clip_norm = v),
            vec![f32::NAN, -1.0, f32::INFINITY],
        ),
        (("epochs", |o, _| o.epochs = 0), vec![0.0]),
        (("batch_size", |o, _| o.batch_size = 0), vec![0.0]),
    ];
    let mut cases = Vec::new();
    for ((field, set), values) in &fields {
        for &v in values {
            for keep in [false, true] {
                let mut o = train_defaults();
                o.keep_partial = keep;
                set(&mut o, v);
                cases.push(Case {
                    what: format!("train {field}={v} keep={keep}"),
                    status: GRADTAU_INVALID_ARGUMENT,
                    subject: format!("`{field}`"),
                    call: Box::new(move |h, s| unsafe {
                        gradtau_train(
                            h.model,
                            s.retain.0,
                            &o,
                            None,
                            ptr::null_mut(),
                            ptr::null_mut(),
                        )
                    }),
                });
            }
        }
    }
    let mut o = train_defaults();
    o.optimizer = 7;
    cases.push(Case {
        what: "train optimizer 7".into(),
        status: GRADTAU_INVALID_ARGUMENT,
        subject: "optimizer".into(),
        call: Box::new(move |h, s| unsafe {
            gradtau_train(
                h.model,
                s.retain.0,
                &o,
                None,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        }),
    });
    cases
}

/// NULL handles, overlapping sets, a budget below the run, divergence.
fn call_cases() -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    let null = |what: &str, i: usize| Case {
        what: format!("unlearn with NULL {what}"),
        status: GRADTAU_NULL_POINTER,
        subject: format!("`{what}`"),
        call: Box::new(move |h, s| {
            let pick = |k: usize, p: *const gradtau_dataset| if k == i { ptr::null() } else { p };
            unsafe {
                gradtau_unlearn(
                    if i == 0 { ptr::null_mut() } else { h.model },
                    pick(1, s.forget.0),
                    pick(2, s.retain.0),
                    pick(3, s.val.0),
                    ptr::null(),
                    None,
                    ptr::null_mut(),
                    ptr::null_mut(),
                )
            }
        }),
    };
    for (i, what) in ["model", "forget", "retain", "val"].iter().enumerate() {
        cases.push(null(what, i));
    }
    for method in [GRADTAU_METHOD_NABLA_TAU, GRADTAU_METHOD_NEGGRAD_PLUS] {
        let o = unlearn_defaults(method);
        cases.push(Case {
            what: format!("method {method}: forget = retain"),
            status: GRADTAU_INVALID_ARGUMENT,
            subject: "share 20 sample".into(),
            call: Box::new(move |h, s| unsafe {
                gradtau_unlearn(
                    h.model,
                    s.forget.0,
                    s.forget.0,
                    s.val.0,
                    &o,
                    None,
                    ptr::null_mut(),
                    ptr::null_mut(),
                )
            }),
        });
    }
    cases.push(Case {
        what: "nabla_tau: val = forget".into(),
        status: GRADTAU_INVALID_ARGUMENT,
        subject: "validation set".into(),
        call: Box::new(|h, s| unsafe {
            gradtau_unlearn(
                h.model,
                s.forget.0,
                s.retain.0,
                s.forget.0,
                ptr::null(),
                None,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        }),
    });
    for method in [
        GRADTAU_METHOD_NABLA_TAU,
        GRADTAU_METHOD_FINETUNE,
        GRADTAU_METHOD_NEGGRAD,
        GRADTAU_METHOD_NEGGRAD_PLUS,
    ] {
        let mut o = unlearn_defaults(method);
        o.lr = 1e30;
        o.epochs = 2;
        // Paper mode takes its steps whatever the model; adaptive mode would stop at once on
        // this untrained one, with nothing to forget.
        o.nabla_tau_mode = GRADTAU_NABLA_TAU_MODE_PAPER;
        cases.push(Case {
            what: format!("method {method} lr 1e30 (diverges)"),
            status: GRADTAU_NON_FINITE,
            subject: "step".into(),
            call: Box::new(move |h, s| unsafe {
                gradtau_unlearn(
                    h.model,
                    s.forget.0,
                    s.retain.0,
                    s.val.0,
                    &o,
                    None,
                    ptr::null_mut(),
                    ptr::null_mut(),
                )
            }),
        });
        // The same call under a budget of 1 kB is refused before it starts.
        let o = unlearn_defaults(method);
        cases.push(Case {
            what: format!("method {method} over a 1 kB budget"),
            status: GRADTAU_RESOURCE_LIMIT,
            subject: "bytes".into(),
            call: Box::new(move |h, s| unsafe {
                assert_eq!(gradtau_model_set_memory_limit(h.model, 1024), GRADTAU_OK);
                gradtau_unlearn(
                    h.model,
                    s.forget.0,
                    s.retain.0,
                    s.val.0,
                    &o,
                    None,
                    ptr::null_mut(),
                    ptr::null_mut(),
                )
            }),
        });
    }
    // Inference and audit: output buffers of the wrong length or NULL.
    let rows = 100usize; // the validation set of digits_sets()
    for (len, status, subject) in [
        (0usize, GRADTAU_SHAPE, "`out`"),
        (1, GRADTAU_SHAPE, "`out`"),
        (rows * 10 - 1, GRADTAU_SHAPE, "`out`"),
        (rows * 10 + 1, GRADTAU_SHAPE, "`out`"),
        (rows, GRADTAU_SHAPE, "`out`"),
    ] {
        cases.push(Case {
            what: format!("predict into {len} floats"),
            status,
            subject: subject.into(),
            call: Box::new(move |h, s| {
                let mut out = vec![0f32; len.max(1)];
                unsafe { gradtau_predict(h.model, s.val.0, out.as_mut_ptr(), len) }
            }),
        });
        cases.push(Case {
            what: format!("losses into {len} + 3 floats"),
            status,
            subject: subject.into(),
            call: Box::new(move |h, s| {
                let mut out = vec![0f32; len + 3];
                unsafe { gradtau_losses(h.model, s.val.0, out.as_mut_ptr(), len + 3) }
            }),
        });
    }
    for (what, i) in [("model", 0), ("data", 1), ("out", 2)] {
        cases.push(Case {
            what: format!("predict with NULL {what}"),
            status: GRADTAU_NULL_POINTER,
            subject: format!("`{what}`"),
            call: Box::new(move |h, s| {
                let mut out = vec![0f32; rows * 10];
                unsafe {
                    gradtau_predict(
                        if i == 0 { ptr::null_mut() } else { h.model },
                        if i == 1 { ptr::null() } else { s.val.0 },
                        if i == 2 {
                            ptr::null_mut()
                        } else {
                            out.as_mut_ptr()
                        },
                        rows * 10,
                    )
                }
            }),
        });
    }
    for (what, i) in [("retain", 0), ("forget", 1), ("test", 2), ("row_out", 3)] {
        cases.push(Case {
            what: format!("audit with NULL {what}"),
            status: GRADTAU_NULL_POINTER,
            subject: format!("`{what}`"),
            call: Box::new(move |h, s| {
                let mut row = gradtau_audit_row::default();
                let pick =
                    |k: usize, p: *const gradtau_dataset| if k == i { ptr::null() } else { p };
                unsafe {
                    gradtau_audit(
                        h.model,
                        pick(0, s.retain.0),
                        pick(1, s.forget.0),
                        pick(2, s.val.0),
                        0,
                        if i == 3 { ptr::null_mut() } else { &mut row },
                    )
                }
            }),
        });
    }
    for (what, i) in [("retain", 0), ("forget", 1), ("test", 2), ("report_out", 3)] {
        cases.push(Case {
            what: format!("audit report with NULL {what}"),
            status: GRADTAU_NULL_POINTER,
            subject: format!("`{what}`"),
            call: Box::new(move |h, s| {
                let mut report: *mut gradtau_audit_report = ptr::null_mut();
                let pick =
                    |k: usize, p: *const gradtau_dataset| if k == i { ptr::null() } else { p };
                unsafe {
                    gradtau_audit_report_new(
                        h.model,
                        pick(0, s.retain.0),
                        pick(1, s.forget.0),
                        pick(2, s.val.0),
                        0,
                        if i == 3 { ptr::null_mut() } else { &mut report },
                    )
                }
            }),
        });
    }
    for name in [c"nope", c"0.weightx", c"", c"4.bias.extra"] {
        cases.push(Case {
            what: format!("bind {name:?}"),
            status: GRADTAU_BINDING,
            subject: name.to_str().unwrap().to_string(),
            call: Box::new(move |h, _| {
                let mut b = vec![0f32; 10];
                unsafe { gradtau_model_bind(h.model, name.as_ptr(), b.as_mut_ptr(), b.len()) }
            }),
        });
    }
    // Data sets the host builds wrong.
    for (what, status, subject, labels, shape) in [
        (
            "negative label",
            GRADTAU_INVALID_ARGUMENT,
            "label",
            vec![0, -1],
            vec![2usize, 2],
        ),
        (
            "rank 0",
            GRADTAU_INVALID_ARGUMENT,
            "dimension",
            vec![0, 1],
            vec![],
        ),
        (
            "too few labels",
            GRADTAU_SHAPE,
            "labels",
            vec![0],
            vec![2, 2],
        ),
        (
            "shape overflows",
            GRADTAU_INVALID_ARGUMENT,
            "overflow",
            vec![0, 1],
            vec![usize::MAX, 3],
        ),
        (
            "shape disagrees",
            GRADTAU_SHAPE,
            "`shape` [2, 3]",
            vec![0, 1],
            vec![2, 3],
        ),
    ] {
        cases.push(Case {
            what: format!("dataset: {what}"),
            status,
            subject: subject.into(),
            call: Box::new(move |_, _| {
                let x = [0f32; 4];
                let mut out = ptr::null_mut();
                unsafe {
                    gradtau_dataset_classes_new(
                        x.as_ptr(),
                        x.len(),
                        shape.as_ptr(),
                        shape.len(),
                        labels.as_ptr(),
                        labels.len(),
                        &mut out,
                    )
                }
            }),
        });
    }
    let mut o = train_defaults();
    o.lr = 1e30;
    o.epochs = 2;
    cases.push(Case {
        what: "train lr 1e30 (diverges)".into(),
        status: GRADTAU_NON_FINITE,
        subject: "step".into(),
        call: Box::new(move |h, s| unsafe {
            gradtau_train(
                h.model,
                s.retain.0,
                &o,
                None,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        }),
    });
    cases
}

/// The spec mutations: every one is a spec error naming what is wrong.
fn spec_cases() -> Vec<(String, gradtau_status, String, String)> {
    let base = digits::MLP_SPEC;
    let mut out = Vec::new();
    let edits: &[(&str, &str, &str)] = &[
        ("\"in_features\": 64", "\"in_features\": -1", "in_features"),
        ("\"in_features\": 64", "\"in_features\": 0", "in_features"),
        ("\"in_features\": 64", "\"in_features\": 1.5", "in_features"),
        (
            "\"in_features\": 64",
            "\"in_features\": \"64\"",
            "in_features",
        ),
        (
            "\"in_features\": 64",
            "\"in_features\": 3000000000",
            "in_features",
        ),
        ("\"in_features\": 64, ", "", "in_features"),
        ("\"op\": \"relu\"", "\"op\": \"relux\"", "relux"),
        ("\"op\": \"relu\"", "\"op\": 3", "op"),
        ("\"op\": \"relu\"", "\"op\": \"relu\", \"x\": 1", "`x`"),
        ("gradtau.model/1", "gradtau.model/9", "format"),
        ("cross_entropy", "hinge", "hinge"),
        ("[64]", "[]", "shape"),
        ("[64]", "[0]", "shape"),
        ("[64]", "\"64\"", "shape"),
    ];
    for (from, to, subject) in edits {
        if base.contains(from) {
            out.push((
                format!("spec: {from} -> {to}"),
                GRADTAU_SPEC,
                subject.to_string(),
                base.replacen(from, to, 1),
            ));
        }
    }
    for text in ["", "{", "[]", "null", "{\"format\": 1}", "\u{0}"] {
        out.push((
            format!("spec text {text:?}"),
            GRADTAU_SPEC,
            "spec".into(),
            text.to_string(),
        ));
    }
    for (name, spec) in hostile_specs() {
        out.push((
            format!("hostile spec: {name}"),
            GRADTAU_RESOURCE_LIMIT,
            "`big".into(),
            spec,
        ));
    }
    out
}

/// Runs the whole table; in the child process (see the test below).
fn run_table() -> usize {
    let (forget, retain, val) = digits_sets();
    let sets = Sets {
        forget: Set::new(&forget),
        retain: Set::new(&retain),
        val: Set::new(&val),
    };
    let host = Host::new(digits::MLP_SPEC).unwrap();
    let before = host.bits();
    let mut cases = unlearn_option_cases();
    cases.extend(train_option_cases());
    cases.extend(call_cases());
    let mut n = 0;
    for c in &cases {
        // Back to the default budget (a case may have lowered it).
        assert_eq!(
            unsafe { gradtau_model_set_memory_limit(host.model, 0) },
            GRADTAU_OK
        );
        let status = (c.call)(&host, &sets);
        let msg = last_error();
        assert_eq!(status, c.status, "{}: {msg}", c.what);
        assert!(
            msg.contains(&c.subject),
            "{}: `{}` not in: {msg}",
            c.what,
            c.subject
        );
        assert_eq!(host.bits(), before, "{}: the bound buffers changed", c.what);
        n += 1;
    }
    for (what, status, subject, spec) in spec_cases() {
        let got = match Host::new(&spec) {
            Err(e) => e,
            // Some hostile specs compile and are refused when a run starts.
            Ok(h) => {
                let input = gradtau::nn::Model::from_json(&spec)
                    .unwrap()
                    .input_shape()
                    .to_vec();
                let data = Set::new(&random_set(&input, 64, 0));
                let before = h.bits();
                let s = unsafe {
                    gradtau_train(
                        h.model,
                        data.0,
                        ptr::null(),
                        None,
                        ptr::null_mut(),
                        ptr::null_mut(),
                    )
                };
                assert_eq!(h.bits(), before, "{what}: the bound buffers changed");
                (s, last_error())
            }
        };
        assert_eq!(got.0, status, "{what}: {}", got.1);
        assert!(
            got.1.contains(&subject),
            "{what}: `{subject}` not in: {}",
            got.1
        );
        n += 1;
    }
    n
}

#[test]
fn bad_calls_give_their_status_and_subject_and_leave_buffers_alone() {
    if !is_child() {
        let stderr = rerun_in_child(
            "bad_calls_give_their_status_and_subject_and_leave_buffers_alone",
            &[],
        );
        assert!(stderr.is_empty(), "the library wrote to stderr: {stderr}");
        return;
    }
    let n = run_table();
    println!("{n} bad C calls checked");
    assert!(n >= 250, "only {n} cases");
}

#[test]
fn neggrad_at_lr_1e30_is_non_finite_and_leaves_the_buffers() {
    let (forget, retain, val) = digits_sets();
    let sets = (Set::new(&forget), Set::new(&retain), Set::new(&val));
    let host = Host::new(digits::MLP_SPEC).unwrap();
    let before = host.bits();
    let mut o = unlearn_defaults(GRADTAU_METHOD_NEGGRAD);
    o.lr = 1e30;
    let s = unsafe {
        gradtau_unlearn(
            host.model,
            sets.0 .0,
            sets.1 .0,
            sets.2 .0,
            &o,
            None,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    let msg = last_error();
    assert_eq!(s, GRADTAU_NON_FINITE, "{msg}");
    assert!(msg.contains("neggrad") && msg.contains("step"), "{msg}");
    assert_eq!(host.bits(), before);
    // Weights that give infinite outputs: predict refuses them and leaves `out` alone.
    let mut huge = host;
    for b in &mut huge.buffers {
        b.iter_mut().for_each(|v| *v *= 1e30);
    }
    let mut out = vec![7.0f32; val.len() * 10];
    let s = unsafe { gradtau_predict(huge.model, sets.2 .0, out.as_mut_ptr(), out.len()) };
    assert_eq!(s, GRADTAU_NON_FINITE, "{}", last_error());
    assert!(last_error().contains("sample"), "{}", last_error());
    assert!(out.iter().all(|&v| v == 7.0));
}

/// A random spec: a few layers with sizes drawn from ordinary and hostile values.
fn random_spec(rng: &mut Rng) -> (String, Vec<usize>) {
    let pick = |rng: &mut Rng, v: &[u64]| v[rng.below(v.len())];
    let image = rng.below(2) == 0;
    let (input, mut shape): (String, Vec<u64>) = if image {
        let c = pick(rng, &[1, 3, 4096]);
        let h = pick(rng, &[1, 4, 8, 28]);
        (format!("[{c}, {h}, {h}]"), vec![c, h, h])
    } else {
        let d = pick(rng, &[1, 10, 64, 46000]);
        (format!("[{d}]"), vec![d])
    };
    let mut nodes = Vec::new();
    let layers = 1 + rng.below(4);
    for i in 0..layers {
        let name = format!("n{i}");
        let node = if shape.len() == 3 {
            match rng.below(5) {
                0 | 1 => {
                    let out = pick(rng, &[1, 8, 4096]);
                    let k = pick(rng, &[1, 3, 5, 1 << 31]);
                    let pad = pick(rng, &[0, 1, 2, 40000, (1 << 31) - 1]);
                    let stride = pick(rng, &[1, 2, 1 << 31]);
                    let s = format!(
                        r#"{{"name": "{name}", "op": "conv2d", "in_channels": {}, "out_channels": {out}, "kernel_size": {k}, "padding": {pad}, "stride": {stride}}}"#,
                        shape[0]
                    );
                    shape[0] = out;
                    s
                }
                2 => {
                    let k = pick(rng, &[1, 2, 3]);
                    format!(r#"{{"name": "{name}", "op": "maxpool2d", "kernel_size": {k}}}"#)
                }
                3 => {
                    shape = vec![shape[0]];
                    format!(r#"{{"name": "{name}", "op": "global_avg_pool"}}"#)
                }
                _ => format!(r#"{{"name": "{name}", "op": "relu"}}"#),
            }
        } else {
            match rng.below(3) {
                0 | 1 => {
                    let out = pick(rng, &[1, 10, 46000, 1 << 31]);
                    let s = format!(
                        r#"{{"name": "{name}", "op": "linear", "in_features": {}, "out_features": {out}}}"#,
                        shape[0]
                    );
                    shape[0] = out;
                    s
                }
                _ => format!(r#"{{"name": "{name}", "op": "tanh"}}"#),
            }
        };
        nodes.push(node);
    }
    if shape.len() == 3 {
        nodes.push(r#"{"name": "gap", "op": "global_avg_pool"}"#.into());
    }
    nodes.push(format!(
        r#"{{"name": "head", "op": "linear", "in_features": {}, "out_features": 10}}"#,
        shape[0]
    ));
    let spec = format!(
        r#"{{"format": "gradtau.model/1", "input": {{"shape": {input}}}, "nodes": [{}], "loss": "cross_entropy"}}"#,
        nodes.join(", ")
    );
    let input: Vec<usize> = input
        .trim_matches(['[', ']'])
        .split(", ")
        .map(|v| v.parse().unwrap())
        .collect();
    (spec, input)
}

/// How many generated specs to run: a sample by default, all with `GRADTAU_SPEC_FUZZ=all`.
fn spec_count() -> usize {
    match std::env::var("GRADTAU_SPEC_FUZZ").as_deref() {
        Ok("all") => 1200,
        Ok(n) => n.parse().unwrap_or(200),
        Err(_) => 200,
    }
}

#[test]
fn generated_specs_give_a_status_never_an_abort() {
    if !is_child() {
        // A small process-wide budget: every spec that compiles is cheap to train.
        let stderr = rerun_in_child(
            "generated_specs_give_a_status_never_an_abort",
            &[("GRADTAU_MEMORY_LIMIT", &(256u64 << 20).to_string())],
        );
        assert!(stderr.is_empty(), "the library wrote to stderr: {stderr}");
        return;
    }
    let mut rng = Rng::new(14);
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    let n = spec_count();
    for i in 0..n {
        let (spec, input) = random_spec(&mut rng);
        let batch = [1usize, 7, 64, 1_000_000][i % 4];
        // At most 4 M input values, so the test's own copies of the data stay small.
        let per: usize = input.iter().product();
        let samples = [1usize, 8, 64][(i / 4) % 3].min((1 << 22) / per).max(1);
        // The C ABI: compile, bind, train one epoch.
        let status = match Host::new(&spec) {
            Err((s, _)) => s,
            Ok(host) => {
                let data = Set::new(&random_set(&input, samples, i as u64));
                let mut o = train_defaults();
                o.epochs = 1;
                o.batch_size = batch;
                unsafe {
                    gradtau_train(
                        host.model,
                        data.0,
                        &o,
                        None,
                        ptr::null_mut(),
                        ptr::null_mut(),
                    )
                }
            }
        };
        assert_ne!(status, GRADTAU_PANIC, "spec {i}: {spec}: {}", last_error());
        // The Rust API gives the same kind of answer.
        let rust = std::panic::catch_unwind(|| {
            let model = gradtau::nn::Model::from_json(&spec)?;
            let data = random_set(&input, samples, i as u64);
            let mut w = model.init_weights(0);
            let r = gradtau::unlearn::TrainRecipe {
                epochs: 1,
                batch_size: batch,
                ..Default::default()
            };
            gradtau::unlearn::train(
                &model,
                &mut w,
                &data,
                &r,
                &mut gradtau::unlearn::no_progress,
            )
            .map(|_| ())
        });
        let rust = rust.unwrap_or_else(|_| panic!("spec {i} panicked in the Rust API: {spec}"));
        let name = unsafe { CStr::from_ptr(gradtau_status_name(status as i32)) }
            .to_string_lossy()
            .into_owned();
        assert_eq!(
            rust.is_ok(),
            status == GRADTAU_OK,
            "spec {i}: C says {name}, Rust says {rust:?}: {spec}"
        );
        *tally.entry(name).or_default() += 1;
    }
    println!("{n} generated specs: {tally:?}");
    assert!(
        tally.len() >= 3,
        "the generator covers too little: {tally:?}"
    );
}

#[test]
fn the_memory_limit_setter_takes_a_null_model() {
    assert_eq!(
        unsafe { gradtau_model_set_memory_limit(ptr::null_mut(), 5) },
        GRADTAU_NULL_POINTER
    );
    let _ = CString::new("unused").unwrap();
}
