//! Policy-evaluation benchmarks (written with the sase-policy evaluator).

fn main() {}
