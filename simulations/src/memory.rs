//! Process memory as the kernel sees it (`/proc/self/status`), for memory-per-node figures.

/// (VmRSS, VmHWM) in bytes: resident now, and the peak. `None` off Linux.
pub fn rss() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kb| kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_rss_on_linux() {
        if cfg!(target_os = "linux") {
            let (rss, peak) = super::rss().expect("proc status");
            assert!(rss > 0 && peak >= rss);
        }
    }
}
