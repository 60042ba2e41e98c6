//! The NumPy `.npy` files (format 1.0) of the matrices a rotate artifact holds: little-endian
//! f64, row-major, as `numpy.load` reads them.

use nalgebra::DMatrix;

const MAGIC: &[u8] = b"\x93NUMPY\x01\x00";

/// The bytes of the `.npy` file of a matrix (rows in order, as NumPy's C order).
pub fn to_bytes(m: &DMatrix<f64>) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': ({}, {}), }}",
        m.nrows(),
        m.ncols()
    );
    // The header ends with a newline and pads the data to a multiple of 64 bytes.
    let unpadded = MAGIC.len() + 2 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut bytes = Vec::with_capacity(MAGIC.len() + 2 + header.len() + m.len() * 8);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for row in m.row_iter() {
        for v in row.iter() {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    bytes
}

/// The matrix of a `.npy` file that [`to_bytes`] wrote (or NumPy, for a C-order
/// little-endian float64 array of two dimensions); `None` for any other file.
pub fn from_bytes(bytes: &[u8]) -> Option<DMatrix<f64>> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let len = u16::from_le_bytes([*rest.first()?, *rest.get(1)?]) as usize;
    let header = std::str::from_utf8(rest.get(2..2 + len)?).ok()?;
    let data = &rest[2 + len..];
    if !header.contains("'descr': '<f8'") || !header.contains("'fortran_order': False") {
        return None;
    }
    let shape = header.split("'shape': (").nth(1)?.split(')').next()?;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok())
        .collect::<Option<_>>()?;
    let [rows, cols] = dims[..] else { return None };
    if data.len() != rows * cols * 8 {
        return None;
    }
    let values: Vec<f64> = data
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    Some(DMatrix::from_row_slice(rows, cols, &values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matrix_reads_back_and_its_data_is_aligned() {
        let m = DMatrix::from_row_slice(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, -0.5]);
        let bytes = to_bytes(&m);
        assert_eq!((bytes.len() - 6 * 8) % 64, 0);
        assert_eq!(from_bytes(&bytes), Some(m));
        assert_eq!(from_bytes(b"not numpy"), None);
    }
}
