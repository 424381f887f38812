//! `bench scrape`: what one scrape of `/metrics` costs at a given size: the members and roles
//! of the registry, and the methods with calls on both sides (the encoding the endpoint does,
//! without the HTTP round trip).
//!
//! ```text
//! cargo run --release -p easy-rpc-bench -- scrape [--members 100] [--roles 20] [--methods 50] [--iters 200]
//! ```

use std::time::Instant;

/// Times `--iters` scrapes of a synthetic node and prints the figure.
pub fn run(args: &[String]) {
    let arg = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (members, roles, methods) = (
        arg("--members", 100),
        arg("--roles", 20),
        arg("--methods", 50),
    );
    let iters = arg("--iters", 200).max(1);
    let fixture = easy_rpc::ScrapeFixture::new(members, roles, methods);
    // Warm up (allocations, caches), and measure the size of one scrape.
    let bytes = fixture.scrape().len();
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        let text = std::hint::black_box(fixture.scrape());
        samples.push(start.elapsed().as_secs_f64() * 1e6);
        drop(text);
    }
    samples.sort_by(f64::total_cmp);
    let p50 = samples[samples.len() / 2];
    let p99 = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];
    let lines = fixture.scrape().lines().count();
    println!(
        "| figure | result | goal |\n| --- | --- | --- |\n\
         | one scrape of `/metrics`, {members} members, {roles} roles, {methods} methods (encoding, {lines} lines, {bytes} bytes), {iters} scrapes | p50 {p50:.0} us, p99 {p99:.0} us | reported |"
    );
}
