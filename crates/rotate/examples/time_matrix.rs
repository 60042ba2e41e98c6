//! Times drawing a random rotation of `n` units and taking its power `α`, the fixed cost
//! of rotating one layer: `cargo run --release -p nd-rotate --example time_matrix -- N ALPHA`.

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map_or(512, |a| a.parse().expect("N: a number of units"));
    let alpha: f64 = args
        .next()
        .map_or(0.5, |a| a.parse().expect("ALPHA: a number"));
    let start = std::time::Instant::now();
    let q = nd_rotate::matrix::random_rotation(n, 1);
    let drawn = start.elapsed();
    let m = nd_rotate::matrix::power(&q, alpha);
    let powered = start.elapsed() - drawn;
    let n2 = m.nrows();
    let error = (m.transpose() * &m - nalgebra::DMatrix::<f64>::identity(n2, n2)).amax();
    println!(
        "n = {n}: Q drawn in {:.2} s, Q^{alpha} in {:.2} s, |MᵀM − I| = {error:.1e}",
        drawn.as_secs_f64(),
        powered.as_secs_f64()
    );
}
