//! After a run, gradtau hands the memory its threads freed back to the system
//! (`backend::cpu::pool::release_free_memory`). Alone in its own test binary: the resident
//! size it reads is the whole process's.

/// The process's resident memory in MiB (Linux).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024.0
}

#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn memory_a_helper_thread_freed_goes_back_to_the_system() {
    // What a kernel helper does in a run: its buffers come from its own glibc arena, and
    // once one large buffer has been freed, glibc serves the next ones from that arena
    // rather than from fresh mappings, and keeps them when they are freed.
    std::thread::spawn(|| {
        drop(std::hint::black_box(vec![1.0f32; 1 << 20]));
        let mut buffers: Vec<Vec<f32>> = (0..49).map(|i| vec![i as f32; 1 << 18]).collect();
        // The last one stays alive above the others, so the arena cannot shrink at its top
        // on its own when they are freed.
        let pin = buffers.pop();
        drop(buffers);
        std::mem::forget(pin);
    })
    .join()
    .unwrap();
    let before = resident_mib();
    gradtau::backend::cpu::pool::release_free_memory();
    let after = resident_mib();
    // 48 MiB were freed on the helper; at least most of it must leave the process.
    assert!(
        before - after >= 32.0,
        "resident {before:.1} MiB before and {after:.1} MiB after release_free_memory"
    );
}

#[test]
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn memory_a_helper_thread_freed_goes_back_to_the_system() {
    eprintln!("SKIPPED: release_free_memory trims glibc's arenas; this is not glibc on Linux");
}
