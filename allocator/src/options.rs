//! The allocator's knobs: one table, with defaults, environment overrides
//! (`SHARD_<NAME>`), and a tuning profile file (`key = value` lines) written by
//! `tuning/`. Every value is validated; a bad one is an error naming it.
//!
//! | knob (profile key)     | env var                       | default        | meaning |
//! |------------------------|-------------------------------|----------------|---------|
//! | `region_size`          | `SHARD_REGION_SIZE`           | `64M`          | Size of a shared (slab or large-object) region. 1 MiB ..= 64 GiB, a multiple of 4096. |
//! | `classes_per_doubling` | `SHARD_CLASSES_PER_DOUBLING`  | `4`            | Size classes between consecutive powers of two (1, 2, 4 or 8): more classes, less internal waste, more partly-filled slabs. |
//! | `large_threshold`      | `SHARD_LARGE_THRESHOLD`       | `256K`         | Objects of at least this size are "large": page-aligned runs, not slab slots. A power of two in 4 KiB ..= `region_size / 8`. |
//! | `own_region_threshold` | `SHARD_OWN_REGION_THRESHOLD`  | `16M`          | Large objects of at least this size get a region of their own, sealed on publish. >= `large_threshold`. |
//! | `huge_threshold`       | `SHARD_HUGE_THRESHOLD`        | `32M`          | Objects of at least this size go to regions that try huge pages (hugetlb 1 GiB, 2 MiB, then THP). Below `own_region_threshold` this makes large-object regions huge too. |
//! | `huge_pages`           | `SHARD_HUGE_PAGES`            | `auto`         | `auto`: try huge pages as above; `off`: 4 KiB pages only. |
//! | `max_huge_page`        | `SHARD_MAX_HUGE_PAGE`         | `1G`           | Largest hugetlb page size tried: `2M` or `1G` (1 GiB pages only for regions of at least 1 GiB). |
//! | `huge_retry_secs`      | `SHARD_HUGE_RETRY_SECS`       | `30`           | After a hugetlb size fails, do not try it again for this many seconds (unless its pool's free count rises, or a smaller request comes). 0 = retry every time. |
//! | `placement`            | `SHARD_PLACEMENT`             | `default`      | NUMA placement of new regions: `default`, `local`, `interleave`, `bind:N`, `preferred:N` (applied with `mbind` before first touch). |
//! | `prefault`             | `SHARD_PREFAULT`              | `false`        | Fault every page of a new region in at creation (`MADV_POPULATE_WRITE`) instead of on first touch. |
//! | `max_object`           | `SHARD_MAX_OBJECT`            | `64T`          | Largest single object; the allocator also caps it at physical memory. |
//!
//! Sizes accept `K`, `M`, `G`, `T` suffixes (powers of 1024, optional `iB`/`B`).
//! Order of precedence: defaults, then the profile (`$SHARD_PROFILE`, else
//! `$XDG_CONFIG_HOME/shard/profile` or `~/.config/shard/profile` if it exists),
//! then `SHARD_*` variables; the result is validated as a whole.

use std::path::{Path, PathBuf};

use crate::error::{AllocError, Result};
use crate::numa::Placement;

/// Whether large regions try huge pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HugePages {
    /// Never: 4 KiB pages only.
    Off,
    /// Try hugetlb 1 GiB, 2 MiB, then THP, then 4 KiB; record each fallback.
    Auto,
}

/// All knobs of the allocator.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Size of a slab region (bytes). Small objects are packed into regions of this size.
    pub region_size: u64,
    /// Size classes per power of two (1..=8).
    pub classes_per_doubling: u32,
    /// Objects of at least this many bytes are "large": page-aligned, outside slabs.
    pub large_threshold: u64,
    /// Large objects of at least this many bytes get a region of their own.
    pub own_region_threshold: u64,
    /// Regions of at least this many bytes try huge pages (when `huge_pages` is Auto).
    pub huge_threshold: u64,
    /// Huge-page policy.
    pub huge_pages: HugePages,
    /// Largest hugetlb page size to try (2 MiB or 1 GiB).
    pub max_huge_page: u64,
    /// NUMA placement of new regions.
    pub placement: Placement,
    /// Seconds a failed hugetlb page size is not retried (0 = always retry).
    pub huge_retry_secs: u64,
    /// Prefault regions when they are created (`MADV_POPULATE_WRITE`).
    pub prefault: bool,
    /// Largest single object (bytes).
    pub max_object: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            region_size: 64 << 20,
            classes_per_doubling: 4,
            large_threshold: 256 << 10,
            own_region_threshold: 16 << 20,
            huge_threshold: 32 << 20,
            huge_pages: HugePages::Auto,
            max_huge_page: 1 << 30,
            placement: Placement::Default,
            huge_retry_secs: 30,
            prefault: false,
            max_object: 1 << 46,
        }
    }
}

/// Names of every knob, as used in profiles; the env var is `SHARD_` + upper case.
pub const KNOBS: &[&str] = &[
    "region_size",
    "classes_per_doubling",
    "large_threshold",
    "own_region_threshold",
    "huge_threshold",
    "huge_pages",
    "max_huge_page",
    "huge_retry_secs",
    "placement",
    "prefault",
    "max_object",
];

fn bad(name: &str, value: &str, why: impl Into<String>) -> AllocError {
    AllocError::BadOption {
        name: name.to_string(),
        value: value.to_string(),
        why: why.into(),
    }
}

/// Parses a byte size: a plain integer or one with a K/M/G suffix (powers of 1024).
pub fn parse_size(name: &str, v: &str) -> Result<u64> {
    let t = v.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (t, 1u64),
        Some((i, _)) => {
            let mult = match t[i..]
                .trim()
                .to_ascii_uppercase()
                .trim_end_matches("IB")
                .trim_end_matches('B')
            {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                _ => return Err(bad(name, v, "expected bytes, optionally with K, M, G or T")),
            };
            (&t[..i], mult)
        }
    };
    let n: u64 = num
        .parse()
        .map_err(|_| bad(name, v, "expected a non-negative integer"))?;
    n.checked_mul(mult).ok_or_else(|| bad(name, v, "too large"))
}

fn parse_bool(name: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(bad(name, v, "expected true or false")),
    }
}

impl Options {
    /// Sets one knob from its text form.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        match name {
            "region_size" => self.region_size = parse_size(name, value)?,
            "classes_per_doubling" => {
                self.classes_per_doubling = value
                    .trim()
                    .parse()
                    .map_err(|_| bad(name, value, "expected an integer"))?
            }
            "large_threshold" => self.large_threshold = parse_size(name, value)?,
            "own_region_threshold" => self.own_region_threshold = parse_size(name, value)?,
            "huge_threshold" => self.huge_threshold = parse_size(name, value)?,
            "huge_pages" => {
                self.huge_pages = match value.trim().to_ascii_lowercase().as_str() {
                    "off" | "false" | "never" => HugePages::Off,
                    "auto" | "on" | "true" => HugePages::Auto,
                    _ => return Err(bad(name, value, "expected auto or off")),
                }
            }
            "max_huge_page" => self.max_huge_page = parse_size(name, value)?,
            "huge_retry_secs" => {
                self.huge_retry_secs = value
                    .trim()
                    .parse()
                    .map_err(|_| bad(name, value, "expected a whole number of seconds"))?
            }
            "placement" => {
                self.placement = value.parse().map_err(|why: String| bad(name, value, why))?
            }
            "prefault" => self.prefault = parse_bool(name, value)?,
            "max_object" => self.max_object = parse_size(name, value)?,
            _ => {
                return Err(bad(
                    name,
                    value,
                    format!("unknown option; known: {}", KNOBS.join(", ")),
                ))
            }
        }
        Ok(())
    }

    /// Checks the relations between knobs.
    pub fn validate(&self) -> Result<()> {
        let pow2 = |name: &str, v: u64| -> Result<()> {
            if v == 0 || !v.is_power_of_two() {
                Err(bad(name, &v.to_string(), "must be a power of two"))
            } else {
                Ok(())
            }
        };
        // At most 64 GiB: a region's live and pending block counts and retired
        // flag are packed into one 64-bit atomic (32 + 31 + 1 bits; a slab slot
        // is at least 64 bytes).
        if self.region_size < (1 << 20)
            || self.region_size > (64 << 30)
            || self.region_size % 4096 != 0
        {
            return Err(bad(
                "region_size",
                &self.region_size.to_string(),
                "must be 1 MiB ..= 64 GiB and a multiple of 4096",
            ));
        }
        if !(1..=8).contains(&self.classes_per_doubling)
            || !self.classes_per_doubling.is_power_of_two()
        {
            return Err(bad(
                "classes_per_doubling",
                &self.classes_per_doubling.to_string(),
                "must be 1, 2, 4 or 8",
            ));
        }
        pow2("large_threshold", self.large_threshold)?;
        if self.large_threshold < 4096 || self.large_threshold > self.region_size / 8 {
            return Err(bad(
                "large_threshold",
                &self.large_threshold.to_string(),
                "must be between 4 KiB and region_size / 8",
            ));
        }
        if self.own_region_threshold < self.large_threshold {
            return Err(bad(
                "own_region_threshold",
                &self.own_region_threshold.to_string(),
                "must be >= large_threshold",
            ));
        }
        if self.max_huge_page != (2 << 20) && self.max_huge_page != (1 << 30) {
            return Err(bad(
                "max_huge_page",
                &self.max_huge_page.to_string(),
                "must be 2M or 1G",
            ));
        }
        if self.max_object == 0 {
            return Err(bad("max_object", "0", "must be positive"));
        }
        Ok(())
    }

    /// Applies a profile: `key = value` lines, `#` comments.
    pub fn apply_profile_text(&mut self, text: &str, origin: &str) -> Result<()> {
        for (lineno, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or_else(|| {
                bad(
                    &format!("{origin}:{}", lineno + 1),
                    line,
                    "expected `key = value`",
                )
            })?;
            self.set(k.trim(), v.trim()).map_err(|e| match e {
                AllocError::BadOption { name, value, why } => AllocError::BadOption {
                    name: format!("{name} ({origin}:{})", lineno + 1),
                    value,
                    why,
                },
                other => other,
            })?;
        }
        Ok(())
    }

    /// Default profile location: `$SHARD_PROFILE`, else
    /// `$XDG_CONFIG_HOME/shard/profile` (or `~/.config/shard/profile`).
    pub fn profile_path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("SHARD_PROFILE") {
            return Some(PathBuf::from(p));
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))?;
        Some(base.join("shard").join("profile"))
    }

    /// Defaults, then the profile (if the file exists; a missing explicit
    /// `$SHARD_PROFILE` is an error), then `SHARD_*` environment variables; validated.
    pub fn from_env() -> Result<Options> {
        let mut o = Options::default();
        if let Some(path) = Options::profile_path() {
            match std::fs::read_to_string(&path) {
                Ok(text) => o.apply_profile_text(&text, &path.display().to_string())?,
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        && std::env::var_os("SHARD_PROFILE").is_none() => {}
                Err(e) => {
                    return Err(bad(
                        "SHARD_PROFILE",
                        &path.display().to_string(),
                        e.to_string(),
                    ))
                }
            }
        }
        for knob in KNOBS {
            let var = format!("SHARD_{}", knob.to_ascii_uppercase());
            if let Ok(v) = std::env::var(&var) {
                o.set(knob, &v).map_err(|e| match e {
                    AllocError::BadOption { value, why, .. } => AllocError::BadOption {
                        name: var.clone(),
                        value,
                        why,
                    },
                    other => other,
                })?;
            }
        }
        o.validate()?;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Options::default().validate().unwrap();
    }

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("x", "64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("x", "2 MiB").unwrap(), 2 << 20);
        assert_eq!(parse_size("x", "4096").unwrap(), 4096);
        assert!(parse_size("x", "-1").is_err());
        assert!(parse_size("x", "12Q").is_err());
    }

    #[test]
    fn profile_errors_name_the_line_and_key() {
        let mut o = Options::default();
        let e = o
            .apply_profile_text("region_size = 64M\nlarge_threshold = banana\n", "p")
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("large_threshold") && msg.contains("p:2") && msg.contains("banana"),
            "{msg}"
        );
        let e = o.apply_profile_text("nonsense = 1", "p").unwrap_err();
        assert!(e.to_string().contains("unknown option"));
    }

    #[test]
    fn validation_rejects_inconsistent_knobs() {
        let o = Options {
            large_threshold: 3000,
            ..Options::default()
        };
        assert!(o.validate().is_err());
        let o = Options {
            own_region_threshold: 1024,
            ..Options::default()
        };
        assert!(o.validate().is_err());
    }
}
