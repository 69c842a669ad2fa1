//! Prints the tensors of TFLite models and times one run of each.
//!
//! `cargo run -p apg-tflite --example inspect -- model.tflite...`

fn main() {
    for path in std::env::args().skip(1) {
        match apg_tflite::Model::load(&path) {
            Ok(model) => {
                let inputs: Vec<Vec<f32>> =
                    model.inputs().iter().map(|t| vec![0.5; t.len()]).collect();
                let slices: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
                let start = std::time::Instant::now();
                let runs = 5;
                for _ in 0..runs {
                    model.run(&slices).expect("inference");
                }
                let ms = start.elapsed().as_secs_f64() * 1000.0 / f64::from(runs);
                println!(
                    "{path}: inputs {:?} outputs {:?} {ms:.2} ms/run",
                    model.inputs(),
                    model.outputs()
                );
            }
            Err(e) => println!("{path}: {e}"),
        }
    }
}
