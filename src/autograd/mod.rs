//! Reverse-mode automatic differentiation with a tape (a Wengert list).
//!
//! Every op appends its output to the tape together with a [`BackwardOp`] that knows how to
//! turn the output's gradient into its inputs' gradients. The tape is topologically sorted by
//! construction (an op can only consume values already on it), so backward is one reverse
//! sweep. Leaves created with [`Tape::var`] carry a caller-chosen key (a parameter index);
//! their gradients come back in [`Gradients`], accumulated when a leaf is used more than once.
//! After backward the tape is cleared but keeps its capacity, so a training loop reuses it
//! without growing.

mod tape;

pub use tape::{BackwardCtx, BackwardOp, Gradients, Tape, Var};
