//! Models described by a JSON spec: parsing ([`spec`]), compiling and running ([`model`]),
//! binding parameters to caller-owned buffers ([`binding`]), and the memory each call needs
//! ([`budget`]).

pub mod binding;
pub mod budget;
mod files;
pub mod model;
pub mod outputs;
pub mod spec;

pub use binding::Bindings;
pub use budget::{Footprint, Workload};
pub use model::{Forward, ForwardMode, Model, ParamInfo};
pub use spec::{LossKind, ModelSpec, NodeOp};
