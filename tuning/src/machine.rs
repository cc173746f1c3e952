//! A one-paragraph description of the machine a measurement ran on.

use std::fs;

/// What the report says about the machine.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub mem_total_gib: f64,
    pub numa_nodes: usize,
    pub hugepages_2m_free: u64,
    pub hugepages_1g_free: u64,
    pub thp_shmem: String,
    /// 1-minute load average when probed (others' work on a shared machine).
    pub load: String,
}

fn read(p: &str) -> String {
    fs::read_to_string(p).unwrap_or_default()
}

fn meminfo(key: &str) -> u64 {
    read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|r| {
            r.trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Free huge pages of one size (`hugepages-2048kB`, `hugepages-1048576kB`).
pub fn hugepages_free(dir: &str) -> u64 {
    read(&format!("/sys/kernel/mm/hugepages/{dir}/free_hugepages"))
        .trim()
        .parse()
        .unwrap_or(0)
}

impl Machine {
    pub fn probe() -> Machine {
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|r| r.trim_start_matches([' ', '\t', ':']).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let numa_nodes = fs::read_dir("/sys/devices/system/node")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| {
                        let n = e.file_name();
                        let n = n.to_string_lossy();
                        n.starts_with("node") && n[4..].chars().all(|c| c.is_ascii_digit())
                    })
                    .count()
            })
            .unwrap_or(0)
            .max(1);
        let thp = read("/sys/kernel/mm/transparent_hugepage/shmem_enabled");
        let thp_shmem = thp
            .split_whitespace()
            .find(|w| w.starts_with('['))
            .map(|w| w.trim_matches(['[', ']']).to_string())
            .unwrap_or_else(|| "n/a".into());
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            mem_total_gib: meminfo("MemTotal") as f64 / (1024.0 * 1024.0),
            numa_nodes,
            hugepages_2m_free: hugepages_free("hugepages-2048kB"),
            hugepages_1g_free: hugepages_free("hugepages-1048576kB"),
            thp_shmem,
            load: read("/proc/loadavg")
                .split_whitespace()
                .next()
                .unwrap_or("?")
                .to_string(),
        }
    }

    /// One line for reports.
    pub fn line(&self) -> String {
        format!(
            "{} CPUs ({}), kernel {}, {:.1} GiB RAM, {} NUMA node(s), free huge pages: {} x 2 MiB, {} x 1 GiB, shmem THP: {}, load average {}",
            self.cpus,
            self.cpu_model,
            self.kernel,
            self.mem_total_gib,
            self.numa_nodes,
            self.hugepages_2m_free,
            self.hugepages_1g_free,
            self.thp_shmem,
            self.load
        )
    }
}
