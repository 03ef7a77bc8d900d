//! What this machine has to give: the memory a new allocation can have, the free space of a
//! file system. Both are estimates to refuse early a job that cannot fit; None where unknown.

/// The memory available to a new allocation (Linux's MemAvailable), if known.
pub fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// The bytes an unprivileged user may still write on the file system of `dir`, if known.
pub fn free_space(dir: &std::path::Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}
