//! GEMM through cuBLAS (row-major, as the CPU `matmul`).

use super::context::Dev;
use super::memory::{all_same_dev, check_len, CudaStorage};
use crate::error::{Error, Result};
use cudarc::cublas::{sys::cublasOperation_t, Gemm, GemmConfig};
use cudarc::driver::{CudaView, CudaViewMut};

fn op(t: bool) -> cublasOperation_t {
    if t {
        cublasOperation_t::CUBLAS_OP_T
    } else {
        cublasOperation_t::CUBLAS_OP_N
    }
}

fn int(v: usize) -> Result<i32> {
    i32::try_from(v)
        .map_err(|_| Error::shape("gemm", format!("dimension {v} too large for cuBLAS")))
}

/// Row-major `c = alpha op(a) op(b) + beta c` on views. cuBLAS is column-major, and a
/// row-major matrix is its transpose in column-major, so we compute `c^T = op(b)^T op(a)^T`:
/// swap the operands and the m/n roles, keep each operand's own transpose flag.
///
/// Binds `dev`'s context on this thread first: cuBLAS runs in the thread's current context
/// and binds none itself.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_view(
    dev: &Dev,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &CudaView<'_, f32>,
    ta: bool,
    b: &CudaView<'_, f32>,
    tb: bool,
    beta: f32,
    c: &mut CudaViewMut<'_, f32>,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let enough = |v: usize, want: Option<usize>| want.is_some_and(|w| v >= w);
    if !enough(a.len(), m.checked_mul(k))
        || !enough(b.len(), k.checked_mul(n))
        || !enough(c.len(), m.checked_mul(n))
    {
        return Err(Error::shape(
            "gemm",
            format!(
                "views of {}, {} and {} values for a {m}x{k} by {k}x{n} product",
                a.len(),
                b.len(),
                c.len()
            ),
        ));
    }
    let cfg = GemmConfig {
        transa: op(tb),
        transb: op(ta),
        m: int(n)?,
        n: int(m)?,
        k: int(k)?,
        alpha,
        lda: int(if tb { k } else { n })?.max(1),
        ldb: int(if ta { m } else { k })?.max(1),
        beta,
        ldc: int(n)?,
    };
    dev.bind()?;
    // SAFETY: a, b and c hold at least m*k, k*n and m*n values (checked above), the leading
    // dimensions are those of contiguous row-major operands, and the handle's stream is the
    // device's one stream, which orders this call after the writes of a, b and c.
    unsafe { dev.blas.gemm(cfg, b, a, c) }.map_err(|e| Error::Cuda(format!("cublasSgemm: {e:?}")))
}

/// Row-major `c = alpha op(a) op(b) + beta c` with cuBLAS: `op(a)` is `m x k`, `op(b)` is
/// `k x n`; a transposed operand is stored transposed (as the CPU `matmul`).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &CudaStorage,
    ta: bool,
    b: &CudaStorage,
    tb: bool,
    beta: f32,
    c: &mut CudaStorage,
) -> Result<()> {
    all_same_dev("gemm", a, &[b, c])?;
    check_len("gemm", "left operand", a, m * k)?;
    check_len("gemm", "right operand", b, k * n)?;
    check_len("gemm", "output", c, m * n)?;
    if m * n == 0 {
        return Ok(());
    }
    if k == 0 {
        // cuBLAS would only scale c by beta; do the same without it. β = 0 means "ignore c"
        // (it may be uninitialised, and 0 · NaN is NaN), as on the CPU.
        *c = if beta == 0.0 {
            c.zeros_like_len(m * n)?
        } else {
            c.unary("scale", beta)?
        };
        return Ok(());
    }
    let dev = a.dev.clone();
    gemm_view(
        &dev,
        m,
        k,
        n,
        alpha,
        &a.buf.slice(..m * k),
        ta,
        &b.buf.slice(..k * n),
        tb,
        beta,
        &mut c.buf.slice_mut(..m * n),
    )
}
