//! Embedding launchers: row gather and its scatter-add gradient.

use super::elems;
use super::memory::{check_len, u, CudaStorage};
use crate::backend::cuda::kernels::embedding as k;
use crate::error::{Error, Result};

fn check_ids(ids: &[u32], num: usize) -> Result<()> {
    if let Some((i, &id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= num) {
        return Err(Error::invalid(format!(
            "embedding: index {id} at position {i} out of range for {num} embeddings"
        )));
    }
    Ok(())
}

/// Rows `ids` of `weight` (`[num, dim]`), giving `[ids.len(), dim]`.
pub fn embedding_forward(weight: &CudaStorage, ids: &[u32], dim: usize) -> Result<CudaStorage> {
    if dim == 0 || !weight.len().is_multiple_of(dim) {
        return Err(Error::shape(
            "embedding",
            format!("weight of {} values is not [num, {dim}]", weight.len()),
        ));
    }
    check_ids(ids, weight.len() / dim)?;
    let m = ids.len() * dim;
    let mut y = weight.empty(m)?;
    if m > 0 {
        let l = weight.dev.upload_u32(ids)?;
        launch!(weight.dev, k::EMBEDDING_FWD, elems(m);
            &weight.buf, &l, &mut y.buf, &u(ids.len()), &u(dim))?;
    }
    Ok(y)
}

/// The weight gradient `[num, dim]` of an embedding lookup (repeated ids accumulate).
pub fn embedding_backward(
    ids: &[u32],
    grad: &CudaStorage,
    num: usize,
    dim: usize,
) -> Result<CudaStorage> {
    check_ids(ids, num)?;
    check_len("embedding", "output gradient", grad, ids.len() * dim)?;
    let mut gw = grad.zeros_like_len(num * dim)?;
    if !grad.is_empty() {
        let l = grad.dev.upload_u32(ids)?;
        launch!(grad.dev, k::EMBEDDING_BWD, elems(grad.len());
            &l, &grad.buf, &mut gw.buf, &u(ids.len()), &u(dim))?;
    }
    Ok(gw)
}
