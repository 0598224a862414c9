//! Rehearses the one-shot GPU check on the CPU: `ops/gpu-check.sh --device cpu --quick` runs
//! every step it runs on a GPU (model only per batch size and precision, end to end on the
//! bundled photos and at two sizes in both quality modes, the utilisation samplers, the
//! object model, the design model on the poster compared across devices) with the built
//! `lamina`, and prints a table with a row for each.

use std::process::Command;

use lamina_tests::*;

#[test]
fn the_gpu_check_runs_through_on_the_cpu_and_prints_its_table() {
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(repo_root().join("ops/gpu-check.sh"))
        .args(["--device", "cpu", "--quick"])
        .current_dir(repo_root())
        .env("LAMINA_BIN", binary("lamina"))
        .env("GPU_CHECK_OUT", out.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", explain(&run));
    let table = std::fs::read_to_string(out.path().join("table.md")).unwrap();
    println!("{table}");
    for row in [
        "| model only | 256^2 | 1 | fp32 |",
        "| model only | 512^2 | 2 | bf16 |",
        "| model only, best batch | 512^2 |",
        "| e2e (256^2 job) lamina run, bundled photos (7 images",
        "| e2e (512^2 job) lamina run --quality fast, 3 images | 512^2 |",
        "| 512^2 and bundled photos, reference + fast |",
        "512^2: end to end",
        "| design: model only | 256^2 | 1 |",
        "design on cpu against the CPU: 9 and 9 layers, roles and words the same (45 / SPRING SALE / photo shoot ideas)",
    ] {
        assert!(table.contains(row), "no {row:?} in the table:\n{table}");
    }
    // The CPU's utilisation was sampled (a number, not a dash).
    let busy = table.lines().find(|l| l.starts_with("| 256^2 and bundled photos")).unwrap();
    let cpu: f64 = busy.trim_end_matches(" |").rsplit("| ").next().unwrap().trim_end_matches('%').parse().unwrap();
    assert!((1.0..=100.0).contains(&cpu), "{busy}");
}
