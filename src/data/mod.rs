//! Data sets and batching. The UCI digits set is embedded in the library.

pub mod digits;
