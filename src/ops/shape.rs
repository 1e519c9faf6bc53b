//! Views that change the shape but not the data: reshape and flatten.

use crate::autograd::{BackwardCtx, BackwardOp, Tape, Var};
use crate::error::Result;
use crate::tensor::Tensor;

struct ReshapeBackward;
impl BackwardOp for ReshapeBackward {
    fn name(&self) -> &'static str {
        "reshape"
    }
    fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(c.grad.reshape(c.inputs[0].shape())?)])
    }
}

impl Tape {
    /// Same data, new shape; one dimension may be `usize::MAX` to infer it.
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        let out = self.value(x).reshape(shape)?;
        Ok(self.push(out, &[x], || Box::new(ReshapeBackward)))
    }

    /// Collapses every dimension after the first: `[N, ...] -> [N, prod(...)]`.
    pub fn flatten(&mut self, x: Var) -> Result<Var> {
        let n = self.value(x).shape().first().copied().unwrap_or(1);
        self.reshape(x, &[n, usize::MAX])
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::gradcheck::{check_gradients, GradCheck};

    #[test]
    fn flatten_and_reshape_gradients() {
        check_gradients(&[&[2, 3, 4]], GradCheck::default(), |t, v| t.flatten(v[0]));
        check_gradients(&[&[6, 5]], GradCheck::default(), |t, v| {
            t.reshape(v[0], &[3, 10])
        });
    }
}
