//! Conversions between [`Tensor`] and `ndarray` arrays, for Rust hosts that keep their data
//! in `ndarray` (any layout in; a contiguous row-major copy is made only when needed).

use super::Tensor;
use crate::error::{Error, Result};
use ndarray::{ArrayD, ArrayViewD, IxDyn};

impl Tensor {
    /// Copies an `ndarray` view (any memory layout) into a CPU tensor of the same shape.
    pub fn from_ndarray(a: ArrayViewD<'_, f32>) -> Result<Tensor> {
        let shape = a.shape().to_vec();
        let data = match a.as_slice() {
            Some(s) => s.to_vec(),
            None => a.iter().copied().collect(),
        };
        Tensor::from_vec(data, &shape)
    }

    /// The values as an owned `ndarray` array (copied from any device).
    pub fn to_ndarray(&self) -> Result<ArrayD<f32>> {
        ArrayD::from_shape_vec(IxDyn(self.shape()), self.to_vec()?)
            .map_err(|e| Error::shape("to_ndarray", e.to_string()))
    }
}

impl TryFrom<ArrayD<f32>> for Tensor {
    type Error = Error;

    fn try_from(a: ArrayD<f32>) -> Result<Tensor> {
        Tensor::from_ndarray(a.view())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, ShapeBuilder};

    #[test]
    fn round_trips_and_handles_column_major_input() {
        let a = Array2::from_shape_vec((2, 3), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let t = Tensor::try_from(a.clone().into_dyn()).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.to_vec().unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(t.to_ndarray().unwrap(), a.clone().into_dyn());
        // Fortran-ordered storage and a transposed view come out row-major.
        let f = Array2::from_shape_vec((2, 3).f(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]).unwrap();
        assert_eq!(
            Tensor::from_ndarray(f.view().into_dyn())
                .unwrap()
                .to_vec()
                .unwrap(),
            t.to_vec().unwrap()
        );
        let tr = Tensor::from_ndarray(a.t().into_dyn()).unwrap();
        assert_eq!(tr.shape(), &[3, 2]);
        assert_eq!(tr.to_vec().unwrap(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }
}
