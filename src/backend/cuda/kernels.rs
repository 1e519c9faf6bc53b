//! The CUDA kernel sources and their entry points, by name.
//!
//! Each `.cu` file under `kernels/` is declared once below with the `extern "C"` entry points
//! it defines. A launcher names a kernel through one of these constants (never a string it
//! searches for), so:
//! - a constant whose name its file does not define is a **compile error**: [`Kernel::new`]
//!   runs at compile time, finds `__global__ void <name>(` in the source and counts its
//!   parameters (the launch checks its argument count against that count before launching);
//! - a kernel a file defines but the table omits, or a name defined twice, fails the unit
//!   test below (no GPU or NVRTC needed);
//! - the few kernels chosen at run time by name (the pointwise maps the activations pick)
//!   are looked up in a family of kernels sharing one parameter list ([`pointwise`],
//!   [`pointwise_backward`]), so an unknown name is an error naming the family, and a kernel
//!   of another signature cannot be launched with the wrong arguments.
//!
//! When a file is compiled (at first use on a device) every entry point listed for it is
//! loaded at once, so a table that disagrees with what NVRTC produced fails at load time with
//! the kernel's name, not at some later launch.

// The launchers (feature `cuda`) are the only users outside the tests.
#![cfg_attr(not(feature = "cuda"), allow(dead_code))]

/// Prepended to every kernel file before NVRTC compiles it (NVRTC has no standard headers).
pub(crate) const COMMON: &str = include_str!("kernels/common.cuh");

/// One `.cu` file: the name NVRTC reports it under (`<name>.cu`) and its source.
#[derive(Debug)]
pub(crate) struct KernelFile {
    pub name: &'static str,
    pub source: &'static str,
}

/// One kernel entry point: the file defining it, its name and its number of parameters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Kernel {
    pub file: &'static KernelFile,
    pub name: &'static str,
    pub params: usize,
}

impl Kernel {
    /// The entry point `name` of `file`; evaluated at compile time, where a name the file
    /// does not define stops the build.
    const fn new(file: &'static KernelFile, name: &'static str) -> Kernel {
        match entry_params(file.source.as_bytes(), name.as_bytes()) {
            Some(params) => Kernel { file, name, params },
            None => panic!(
                "a kernel named in src/backend/cuda/kernels.rs is not defined in its .cu file"
            ),
        }
    }
}

const ENTRY: &[u8] = b"__global__ void ";

const fn starts_at(hay: &[u8], at: usize, needle: &[u8]) -> bool {
    if at + needle.len() > hay.len() {
        return false;
    }
    let mut i = 0;
    while i < needle.len() {
        if hay[at + i] != needle[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The parameter count of `__global__ void <name>(...)` in `src`, or `None` when `src`
/// defines no such entry point. A `const fn` so the tables below are checked when compiled.
const fn entry_params(src: &[u8], name: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at < src.len() {
        if starts_at(src, at, ENTRY)
            && starts_at(src, at + ENTRY.len(), name)
            && starts_at(src, at + ENTRY.len() + name.len(), b"(")
        {
            return Some(count_params(src, at + ENTRY.len() + name.len() + 1));
        }
        at += 1;
    }
    None
}

/// Parameters in the list starting after `(` at `open` (parameter lists hold no parentheses).
const fn count_params(src: &[u8], open: usize) -> usize {
    let (mut i, mut commas, mut empty) = (open, 0, true);
    while i < src.len() && src[i] != b')' {
        match src[i] {
            b',' => commas += 1,
            b' ' | b'\n' | b'\t' | b'\r' => {}
            _ => empty = false,
        }
        i += 1;
    }
    if empty {
        0
    } else {
        commas + 1
    }
}

/// Declares one kernel file: a module holding its [`KernelFile`], one [`Kernel`] constant per
/// entry point, and `ALL`, every entry point in declaration order.
macro_rules! kernel_file {
    ($(#[$doc:meta])* $file:ident { $($konst:ident = $name:literal),* $(,)? }) => {
        $(#[$doc])*
        pub(crate) mod $file {
            use super::{Kernel, KernelFile};
            pub(crate) const FILE: &KernelFile = &KernelFile {
                name: stringify!($file),
                source: include_str!(concat!("kernels/", stringify!($file), ".cu")),
            };
            $(pub(crate) const $konst: Kernel = Kernel::new(FILE, $name);)*
            pub(crate) const ALL: &[Kernel] = &[$($konst),*];
        }
    };
}

kernel_file! {
    /// Broadcasting binary ops, gradient reduction to an operand's shape, small maps.
    elementwise {
        ADD_SAME = "add_same",
        MUL_SAME = "mul_same",
        ADD_ROWSUFFIX = "add_rowsuffix",
        MUL_ROWSUFFIX = "mul_rowsuffix",
        ADD_GENERAL = "add_general",
        MUL_GENERAL = "mul_general",
        SUM_ROWS = "sum_rows",
        REDUCE_GENERAL = "reduce_general",
        ADD_ASSIGN = "add_assign",
        REPEAT_ROWS = "repeat_rows",
        BROADCAST_SCALAR = "broadcast_scalar",
        SCALE = "scale",
        ADD_SCALAR = "add_scalar",
    }
}

kernel_file! {
    /// Pointwise activations and their derivatives.
    activation {
        RELU_FWD = "relu_fwd",
        RELU_BWD = "relu_bwd",
        GELU_ERF_FWD = "gelu_erf_fwd",
        GELU_ERF_BWD = "gelu_erf_bwd",
        GELU_TANH_FWD = "gelu_tanh_fwd",
        GELU_TANH_BWD = "gelu_tanh_bwd",
        TANH_FWD = "tanh_fwd",
        TANH_BWD = "tanh_bwd",
        SIGMOID_FWD = "sigmoid_fwd",
        SIGMOID_BWD = "sigmoid_bwd",
    }
}

kernel_file! {
    /// Full sums (two deterministic passes) and means over an axis.
    reduce {
        SUM_PARTIAL = "sum_partial",
        SUM_FINAL = "sum_final",
        MEAN_AXIS_FWD = "mean_axis_fwd",
        MEAN_AXIS_BWD = "mean_axis_bwd",
    }
}

kernel_file! {
    /// Per-sample losses.
    loss {
        SOFTMAX_XENT_FWD = "softmax_xent_fwd",
        SOFTMAX_XENT_BWD = "softmax_xent_bwd",
        MSE_FWD = "mse_fwd",
        MSE_BWD = "mse_bwd",
        BCE_FWD = "bce_fwd",
        BCE_BWD = "bce_bwd",
    }
}

kernel_file! {
    /// conv2d's im2col / col2im and layout transposes.
    conv {
        IM2COL = "im2col",
        COL2IM = "col2im",
        CNHW_TO_NCHW = "cnhw_to_nchw",
        NCHW_TO_CNHW = "nchw_to_cnhw",
        CHANNEL_SUM = "channel_sum",
    }
}

kernel_file! {
    /// 2-D max and average pooling.
    pool {
        MAXPOOL2D_FWD = "maxpool2d_fwd",
        MAXPOOL2D_BWD = "maxpool2d_bwd",
        AVGPOOL2D_FWD = "avgpool2d_fwd",
        AVGPOOL2D_BWD = "avgpool2d_bwd",
    }
}

kernel_file! {
    /// Batch and layer normalisation.
    norm {
        BN_TRAIN_STATS = "bn_train_stats",
        BN_EVAL_STATS = "bn_eval_stats",
        BN_APPLY = "bn_apply",
        BN_BWD_REDUCE = "bn_bwd_reduce",
        BN_BWD_DX = "bn_bwd_dx",
        LAYERNORM_FWD = "layernorm_fwd",
        LAYERNORM_BWD_DX = "layernorm_bwd_dx",
        LAYERNORM_BWD_PARAMS = "layernorm_bwd_params",
    }
}

kernel_file! {
    /// Embedding gather and scatter-add.
    embedding {
        EMBEDDING_FWD = "embedding_fwd",
        EMBEDDING_BWD = "embedding_bwd",
    }
}

kernel_file! {
    /// Inverted dropout with a stateless hash mask.
    dropout {
        DROPOUT_APPLY = "dropout_apply",
    }
}

kernel_file! {
    /// Fused SGD and Adam/AdamW updates.
    optim {
        SGD_PLAIN = "sgd_plain",
        SGD_MOMENTUM = "sgd_momentum",
        ADAM_STEP = "adam_step",
    }
}

/// Every kernel file with its entry points.
pub(crate) const FILES: &[(&KernelFile, &[Kernel])] = &[
    (elementwise::FILE, elementwise::ALL),
    (activation::FILE, activation::ALL),
    (reduce::FILE, reduce::ALL),
    (loss::FILE, loss::ALL),
    (conv::FILE, conv::ALL),
    (pool::FILE, pool::ALL),
    (norm::FILE, norm::ALL),
    (embedding::FILE, embedding::ALL),
    (dropout::FILE, dropout::ALL),
    (optim::FILE, optim::ALL),
];

/// The pointwise maps `(const float* x, float* y, float p, u64 n)`, chosen by name at run
/// time (`CudaStorage::unary`).
const POINTWISE: &[Kernel] = &[
    activation::RELU_FWD,
    activation::GELU_ERF_FWD,
    activation::GELU_TANH_FWD,
    activation::TANH_FWD,
    activation::SIGMOID_FWD,
    elementwise::SCALE,
    elementwise::ADD_SCALAR,
];

/// The pointwise derivatives `(const float* s, const float* g, float* out, float p, u64 n)`
/// (`CudaStorage::unary_backward`).
const POINTWISE_BACKWARD: &[Kernel] = &[
    activation::RELU_BWD,
    activation::GELU_ERF_BWD,
    activation::GELU_TANH_BWD,
    activation::TANH_BWD,
    activation::SIGMOID_BWD,
];

fn family(family: &'static [Kernel], what: &str, name: &str) -> Result<Kernel, String> {
    family
        .iter()
        .find(|k| k.name == name)
        .copied()
        .ok_or_else(|| {
            let names: Vec<&str> = family.iter().map(|k| k.name).collect();
            format!(
                "no {what} CUDA kernel named `{name}` (the {what} kernels are {})",
                names.join(", ")
            )
        })
}

/// The pointwise map `name` (`(x, y, p, n)`), or an error listing the ones there are.
pub(crate) fn pointwise(name: &str) -> Result<Kernel, String> {
    family(POINTWISE, "pointwise", name)
}

/// The pointwise derivative `name` (`(s, g, out, p, n)`), or an error listing them.
pub(crate) fn pointwise_backward(name: &str) -> Result<Kernel, String> {
    family(POINTWISE_BACKWARD, "pointwise-derivative", name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The `extern "C"` entry points a source defines, read from the text.
    fn defined(source: &str) -> BTreeSet<&str> {
        source
            .split("__global__ void ")
            .skip(1)
            .map(|rest| rest.split('(').next().unwrap_or_default().trim())
            .collect()
    }

    #[test]
    fn every_file_lists_exactly_the_entry_points_it_defines() {
        let mut seen = BTreeSet::new();
        for (file, kernels) in FILES {
            let listed: BTreeSet<&str> = kernels.iter().map(|k| k.name).collect();
            assert_eq!(
                listed.len(),
                kernels.len(),
                "{}: a name listed twice",
                file.name
            );
            assert_eq!(
                listed,
                defined(file.source),
                "kernels/{}.cu and its table in kernels.rs disagree",
                file.name
            );
            for k in kernels.iter() {
                assert_eq!(k.file.name, file.name);
                // The module cache is keyed by name: one name, one kernel, across files.
                assert!(seen.insert(k.name), "`{}` defined in two files", k.name);
            }
        }
        assert!(
            defined(COMMON).is_empty(),
            "common.cuh defines no entry points"
        );
    }

    #[test]
    fn parameter_counts_are_read_from_the_signatures() {
        assert_eq!(elementwise::ADD_SAME.params, 4);
        assert_eq!(elementwise::ADD_GENERAL.params, 5);
        // A multi-line parameter list.
        assert_eq!(optim::ADAM_STEP.params, 13);
        assert_eq!(norm::BN_BWD_DX.params, 12);
        assert_eq!(pool::MAXPOOL2D_FWD.params, 3);
        assert_eq!(entry_params(b"__global__ void k() {}", b"k"), Some(0));
        assert_eq!(entry_params(b"__global__ void kk(int a) {}", b"k"), None);
        assert_eq!(
            entry_params(b"__global__ void k(int a,\n int b)", b"k"),
            Some(2)
        );
    }

    #[test]
    fn run_time_names_resolve_within_their_signature_family() {
        for k in POINTWISE {
            assert_eq!(k.params, 4, "{}", k.name);
            assert_eq!(pointwise(k.name).unwrap().name, k.name);
        }
        for k in POINTWISE_BACKWARD {
            assert_eq!(k.params, 5, "{}", k.name);
            assert_eq!(pointwise_backward(k.name).unwrap().name, k.name);
        }
        // Every activation kernel is in one of the two families.
        for k in activation::ALL {
            assert!(pointwise(k.name).is_ok() || pointwise_backward(k.name).is_ok());
        }
        // A kernel of another signature is refused, with the family's names in the message.
        let e = pointwise("add_same").unwrap_err();
        assert!(e.contains("`add_same`") && e.contains("relu_fwd"), "{e}");
        assert!(pointwise_backward("relu_fwd").is_err());
    }
}
