//! # gradtau
//!
//! Machine unlearning with the ∇τ method, run directly on the weight buffers of the program
//! that calls it.
//!
//! The crate is layered; each module has one job:
//!
//! | module | job |
//! | --- | --- |
//! | [`tensor`] | `Tensor`: shape + shared, device-tagged f32 storage |
//! | [`backend`] | `Storage = Cpu \| Cuda`; CPU kernels (SIMD, GEMM), CUDA kernels or stub |
//! | [`autograd`] | the tape: records ops, topological backward, gradients by key |
//! | [`ops`] | differentiable ops, each with forward, backward and finite-difference tests |
//! | [`optim`] | SGD, Adam, AdamW, learning-rate schedules, gradient clipping |
//! | [`nn`] | model spec (JSON) → graph, parameters bound to caller buffers by name |
//! | [`unlearn`] | ∇τ, the baselines, and `train` |
//! | [`data`] | data sets (the embedded UCI digits) and batching |
//! | [`io`] | `.npy`, IDX (MNIST) and safetensors readers/writers |
//! | [`audit`] | accuracy, per-sample losses, membership-inference attack |
//! | [`live`] | a model that serves reads while one writer trains or unlearns it |
//! | [`onnx`] | ONNX models in, weights written back into the same file |
//! | [`rng`] | a fixed, portable random generator |

pub mod audit;
pub mod autograd;
pub mod backend;
pub mod data;
pub mod error;
pub mod ffi;
pub mod io;
pub mod live;
pub mod nn;
pub mod onnx;
pub mod ops;
pub mod optim;
pub mod rng;
pub mod tensor;
pub mod unlearn;

pub use autograd::{Gradients, Tape, Var};
pub use backend::{Device, DeviceRequest};
pub use error::{Error, Result};
pub use tensor::Tensor;
