//! The allocator's knobs: one declaration per knob (the [`knobs!`](crate::knobs)
//! table below), which generates the [`Options`] struct, its `Default`, the
//! environment variable names, parsing ([`Options::set`], [`Options::from_env`])
//! and the rows of the docs table that follows. A unit test checks that this
//! table is exactly the generated one (after changing a knob, paste the output
//! of `Options::doc_table()` here). A tuning profile file (`key = value` lines,
//! written by `tuning/`) sets knobs by name. Every value is validated; a bad one
//! is an error naming it.
//!
//! | knob (profile key) | env var | default | meaning |
//! |---|---|---|---|
//! | `region_size` | `SHARD_REGION_SIZE` | `64M` | Size of a shared (slab or large-object) region. 1 MiB ..= 64 GiB, a multiple of 4096. |
//! | `classes_per_doubling` | `SHARD_CLASSES_PER_DOUBLING` | `4` | Size classes between consecutive powers of two (1, 2, 4 or 8): more classes, less internal waste, more partly-filled slabs. |
//! | `large_threshold` | `SHARD_LARGE_THRESHOLD` | `256K` | Objects of at least this size are "large": page-aligned runs, not slab slots. A power of two in 4 KiB ..= `region_size / 8`. |
//! | `own_region_threshold` | `SHARD_OWN_REGION_THRESHOLD` | `16M` | Large objects of at least this size get a region of their own, sealed on publish. >= `large_threshold`. |
//! | `huge_threshold` | `SHARD_HUGE_THRESHOLD` | `32M` | Objects of at least this size go to regions that try huge pages (hugetlb 1 GiB, 2 MiB, then THP). Below `own_region_threshold` this makes large-object regions huge too. |
//! | `huge_pages` | `SHARD_HUGE_PAGES` | `auto` | `auto`: try huge pages as above; `off`: 4 KiB pages only. |
//! | `max_huge_page` | `SHARD_MAX_HUGE_PAGE` | `1G` | Largest hugetlb page size tried: `2M` or `1G` (1 GiB pages only for regions of at least 1 GiB). |
//! | `huge_retry_secs` | `SHARD_HUGE_RETRY_SECS` | `30` | After a hugetlb size fails, do not try it again for this many seconds (unless its pool's free count rises, or a smaller request comes). 0 = retry every time. |
//! | `placement` | `SHARD_PLACEMENT` | `default` | NUMA placement of new regions: `default`, `local`, `interleave`, `bind:N`, `preferred:N` (applied with `mbind` before first touch). |
//! | `populate_new_regions` | `SHARD_POPULATE_NEW_REGIONS` (old: `SHARD_PREFAULT`) | `false` | Fault every page of a new region in when it is created (`MADV_POPULATE_WRITE`) instead of on first touch. Old name `prefault`. |
//! | `max_object` | `SHARD_MAX_OBJECT` | `64T` | Largest single object; the allocator also caps it at physical memory. |
//! | `retain_empty_regions` | `SHARD_RETAIN_EMPTY_REGIONS` | `1` | Most empty small-object (slab) regions kept for the next small objects instead of released at once (at most one per pool, i.e. per placement; 0 ..= 64; 0 = release at once). A region another process still maps is never kept. |
//!
//! Names say one thing each. `populate_new_regions` was called `prefault`, a
//! word the store also uses for its copy helper thread, next to its `populate`
//! (of copy chunks) and `spare` (regions made ahead) levers. The old profile key
//! `prefault` and `SHARD_PREFAULT` still work (aliases); the new variable wins
//! when both are set.
//!
//! Sizes accept `K`, `M`, `G`, `T` suffixes (powers of 1024, optional `iB`/`B`).
//! Order of precedence: defaults, then the profile (`$SHARD_PROFILE`, else
//! `$XDG_CONFIG_HOME/shard/profile` or `~/.config/shard/profile` if it exists),
//! then `SHARD_*` variables; the result is validated as a whole.
//!
//! # Declaring knobs in another crate (the store)
//!
//! [`knobs!`](crate::knobs) is exported, so the store declares its knobs the
//! same way and gets the same env handling, aliases, errors and docs check:
//!
//! ```
//! use shard_alloc::options::{parse_bool, parse_int};
//!
//! shard_alloc::knobs! {
//!     /// The store's knobs.
//!     #[derive(Debug, Clone, PartialEq)]
//!     pub struct StoreKnobs: shard_alloc::AllocError {
//!         /// Threads copying a large object in (0 = one per CPU, at most 8).
//!         copy_threads: usize = 0;
//!             env "SHARD_COPY_THREADS", default "0",
//!             parse parse_int,
//!             meaning "Threads copying a large object in (0 = one per CPU, at most 8).";
//!         /// Prepare a spare region after a large share.
//!         spare_region: bool = false;
//!             env "SHARD_SPARE_REGION", default "false",
//!             aliases [("spare", "SHARD_SPARE")],
//!             parse parse_bool,
//!             meaning "Prepare (populate) a spare region for the next large share.";
//!     }
//! }
//!
//! let mut k = StoreKnobs::default();
//! k.set("spare", "yes").unwrap(); // an old name
//! assert!(k.spare_region);
//! k.apply_env().unwrap(); // SHARD_COPY_THREADS, SHARD_SPARE_REGION (else SHARD_SPARE)
//! assert!(StoreKnobs::doc_table().contains("`SHARD_SPARE_REGION` (old: `SHARD_SPARE`)"));
//! ```
//!
//! The error type after the `:` must implement `From<AllocError>` (the parse
//! functions return [`AllocError::BadOption`]). The store keeps its docs table
//! where its users read it and tests it against `StoreKnobs::doc_table()`, as
//! `doc_table_matches_the_module_doc` below does for these knobs.

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

/// One knob as a [`knobs!`](crate::knobs) table declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Knob {
    /// Its name: the struct field and the profile key.
    pub name: &'static str,
    /// Its environment variable.
    pub env: &'static str,
    /// Old names still accepted: (profile key, environment variable).
    pub aliases: &'static [(&'static str, &'static str)],
    /// The default as the docs show it (it parses to the `Default` value: tested).
    pub default: &'static str,
    /// What it does (the docs table's last column).
    pub meaning: &'static str,
}

impl Knob {
    /// This knob's row of the docs table.
    pub fn doc_row(&self) -> String {
        let mut env = format!("`{}`", self.env);
        if !self.aliases.is_empty() {
            let old: Vec<String> = self.aliases.iter().map(|(_, e)| format!("`{e}`")).collect();
            env.push_str(&format!(" (old: {})", old.join(", ")));
        }
        format!(
            "| `{}` | {env} | `{}` | {} |",
            self.name, self.default, self.meaning
        )
    }
}

/// The docs table of a knob table: header and one row per knob.
pub fn doc_table(knobs: &[Knob]) -> String {
    let mut t =
        String::from("| knob (profile key) | env var | default | meaning |\n|---|---|---|---|\n");
    for k in knobs {
        t.push_str(&k.doc_row());
        t.push('\n');
    }
    t
}

/// The table rows (`|`-lines) of a module doc (`//!` lines at the top of
/// `source`, a file's text from `include_str!`), trimmed: what a test compares
/// with [`doc_table`] so that a knobs table in the docs cannot drift from the
/// declaration.
pub fn module_doc_table(source: &str) -> Vec<&str> {
    source
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| l.trim_start_matches("//!").trim())
        .filter(|l| l.starts_with('|'))
        .collect()
}

/// The knob called `name` (by its name or an old one).
pub fn find_knob<'a>(knobs: &'a [Knob], name: &str) -> Option<&'a Knob> {
    knobs
        .iter()
        .find(|k| k.name == name || k.aliases.iter().any(|(a, _)| *a == name))
}

/// The error for a name no knob has.
pub fn unknown_knob(knobs: &[Knob], name: &str, value: &str) -> AllocError {
    let names: Vec<&str> = knobs.iter().map(|k| k.name).collect();
    bad(
        name,
        value,
        format!("unknown option; known: {}", names.join(", ")),
    )
}

/// The value of a knob's environment variable, else of its old ones in
/// order: (variable, value). `None` when none is set.
pub fn env_value(k: &Knob) -> Option<(&'static str, String)> {
    std::iter::once(k.env)
        .chain(k.aliases.iter().map(|(_, e)| *e))
        .find_map(|v| std::env::var(v).ok().map(|x| (v, x)))
}

/// `e` naming `name` (an environment variable) instead of the knob.
#[doc(hidden)]
pub fn rename_error(e: AllocError, name: &str) -> AllocError {
    match e {
        AllocError::BadOption { value, why, .. } => AllocError::BadOption {
            name: name.to_string(),
            value,
            why,
        },
        other => other,
    }
}

/// Declares a table of knobs, one declaration each, and generates from it the
/// struct (one `pub` field per knob, with its doc), `Default`, the `KNOBS`
/// table of [`Knob`](crate::options::Knob)s (name, env var, old names, default
/// text, meaning), `set(name, value)` (by name or old name), `apply_env()`
/// (each knob's env var, else its old ones; an error names the variable) and
/// `doc_table()`. Example in the module doc of `shard_alloc::options`.
///
/// Each knob: `field: Type = default_expr; env "VAR", default "text"
/// [, aliases [("old_key", "OLD_VAR"), ...]], parse path::to::fn, meaning
/// "text";`, the parse function being `fn(name: &str, value: &str) ->
/// Result<Type, AllocError>`.
#[macro_export]
macro_rules! knobs {
    (
        $(#[$meta:meta])*
        $vis:vis struct $Name:ident : $Err:ty {
            $(
                $(#[doc = $doc:literal])*
                $field:ident : $ty:ty = $default:expr ;
                    env $env:literal , default $dtext:literal
                    $(, aliases [$(($akey:literal, $aenv:literal)),* $(,)?])? ,
                    parse $parse:path ,
                    meaning $meaning:literal ;
            )*
        }
    ) => {
        $(#[$meta])*
        $vis struct $Name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl ::std::default::Default for $Name {
            fn default() -> Self {
                $Name { $( $field: $default, )* }
            }
        }

        impl $Name {
            /// Every knob, in declaration order.
            pub const KNOBS: &'static [$crate::options::Knob] = &[
                $( $crate::options::Knob {
                    name: stringify!($field),
                    env: $env,
                    aliases: &[$($(($akey, $aenv)),*)?],
                    default: $dtext,
                    meaning: $meaning,
                }, )*
            ];

            /// Sets one knob from its text form, by name or old name.
            pub fn set(&mut self, name: &str, value: &str) -> ::std::result::Result<(), $Err> {
                self.set_knob(name, value).map_err(::std::convert::Into::into)
            }

            fn set_knob(
                &mut self,
                name: &str,
                value: &str,
            ) -> ::std::result::Result<(), $crate::error::AllocError> {
                let knob = $crate::options::find_knob(Self::KNOBS, name)
                    .ok_or_else(|| $crate::options::unknown_knob(Self::KNOBS, name, value))?;
                $(
                    if knob.name == stringify!($field) {
                        self.$field = $parse(name, value)?;
                        return Ok(());
                    }
                )*
                unreachable!("every entry of KNOBS is a field")
            }

            /// Sets every knob whose environment variable (or an old one) is
            /// set; an error names the variable.
            pub fn apply_env(&mut self) -> ::std::result::Result<(), $Err> {
                for k in Self::KNOBS {
                    if let Some((var, v)) = $crate::options::env_value(k) {
                        // Typed: with an error type other than AllocError
                        // `into()` and `?` would leave it ambiguous.
                        self.set_knob(k.name, &v).map_err(|e| -> $Err {
                            $crate::options::rename_error(e, var).into()
                        })?;
                    }
                }
                Ok(())
            }

            /// The docs table of these knobs (what the docs must show).
            pub fn doc_table() -> ::std::string::String {
                $crate::options::doc_table(Self::KNOBS)
            }
        }
    };
}

crate::knobs! {
    /// All knobs of the allocator (see the table in the module doc).
    #[derive(Debug, Clone, PartialEq)]
    pub struct Options: AllocError {
        /// Size of a slab region (bytes). Small objects are packed into regions of this size.
        region_size: u64 = 64 << 20;
            env "SHARD_REGION_SIZE", default "64M",
            parse parse_size,
            meaning "Size of a shared (slab or large-object) region. 1 MiB ..= 64 GiB, a multiple of 4096.";
        /// Size classes per power of two (1..=8).
        classes_per_doubling: u32 = 4;
            env "SHARD_CLASSES_PER_DOUBLING", default "4",
            parse parse_int,
            meaning "Size classes between consecutive powers of two (1, 2, 4 or 8): more classes, less internal waste, more partly-filled slabs.";
        /// Objects of at least this many bytes are "large": page-aligned, outside slabs.
        large_threshold: u64 = 256 << 10;
            env "SHARD_LARGE_THRESHOLD", default "256K",
            parse parse_size,
            meaning "Objects of at least this size are \"large\": page-aligned runs, not slab slots. A power of two in 4 KiB ..= `region_size / 8`.";
        /// Large objects of at least this many bytes get a region of their own.
        own_region_threshold: u64 = 16 << 20;
            env "SHARD_OWN_REGION_THRESHOLD", default "16M",
            parse parse_size,
            meaning "Large objects of at least this size get a region of their own, sealed on publish. >= `large_threshold`.";
        /// Regions of at least this many bytes try huge pages (when `huge_pages` is Auto).
        huge_threshold: u64 = 32 << 20;
            env "SHARD_HUGE_THRESHOLD", default "32M",
            parse parse_size,
            meaning "Objects of at least this size go to regions that try huge pages (hugetlb 1 GiB, 2 MiB, then THP). Below `own_region_threshold` this makes large-object regions huge too.";
        /// Huge-page policy.
        huge_pages: HugePages = HugePages::Auto;
            env "SHARD_HUGE_PAGES", default "auto",
            parse parse_huge_pages,
            meaning "`auto`: try huge pages as above; `off`: 4 KiB pages only.";
        /// Largest hugetlb page size to try (2 MiB or 1 GiB).
        max_huge_page: u64 = 1 << 30;
            env "SHARD_MAX_HUGE_PAGE", default "1G",
            parse parse_size,
            meaning "Largest hugetlb page size tried: `2M` or `1G` (1 GiB pages only for regions of at least 1 GiB).";
        /// Seconds a failed hugetlb page size is not retried (0 = always retry).
        huge_retry_secs: u64 = 30;
            env "SHARD_HUGE_RETRY_SECS", default "30",
            parse parse_int,
            meaning "After a hugetlb size fails, do not try it again for this many seconds (unless its pool's free count rises, or a smaller request comes). 0 = retry every time.";
        /// NUMA placement of new regions.
        placement: Placement = Placement::Default;
            env "SHARD_PLACEMENT", default "default",
            parse parse_placement,
            meaning "NUMA placement of new regions: `default`, `local`, `interleave`, `bind:N`, `preferred:N` (applied with `mbind` before first touch).";
        /// Fault every page of a new region in when it is created
        /// (`MADV_POPULATE_WRITE`). Was called `prefault`.
        populate_new_regions: bool = false;
            env "SHARD_POPULATE_NEW_REGIONS", default "false",
            aliases [("prefault", "SHARD_PREFAULT")],
            parse parse_bool,
            meaning "Fault every page of a new region in when it is created (`MADV_POPULATE_WRITE`) instead of on first touch. Old name `prefault`.";
        /// Largest single object (bytes).
        max_object: u64 = 1 << 46;
            env "SHARD_MAX_OBJECT", default "64T",
            parse parse_size,
            meaning "Largest single object; the allocator also caps it at physical memory.";
        /// Most empty slab regions kept for reuse (0 = release at once).
        /// Saves the create/seal/map/unmap of a region on every share and
        /// close of a lone small object (mimalloc's segment cache).
        retain_empty_regions: u32 = 1;
            env "SHARD_RETAIN_EMPTY_REGIONS", default "1",
            parse parse_int,
            meaning "Most empty small-object (slab) regions kept for the next small objects instead of released at once (at most one per pool, i.e. per placement; 0 ..= 64; 0 = release at once). A region another process still maps is never kept.";
    }
}

/// Most empty slab regions a pool may keep (`retain_empty_regions`).
pub const MAX_RETAINED: u32 = 64;

/// Names of every knob as profiles use them (old names not included; env vars
/// and old names are in [`Options::KNOBS`]). Generated from the table.
pub const KNOBS: &[&str] = &knob_names();

const fn knob_names() -> [&'static str; Options::KNOBS.len()] {
    let mut out = [""; Options::KNOBS.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = Options::KNOBS[i].name;
        i += 1;
    }
    out
}

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

/// Parses a boolean: `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`.
pub fn parse_bool(name: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(bad(name, v, "expected true or false")),
    }
}

/// Parses a non-negative integer.
pub fn parse_int<T: std::str::FromStr>(name: &str, v: &str) -> Result<T> {
    v.trim()
        .parse()
        .map_err(|_| bad(name, v, "expected a non-negative integer"))
}

/// Parses `auto` (or `on`, `true`) and `off` (or `false`, `never`).
pub fn parse_huge_pages(name: &str, v: &str) -> Result<HugePages> {
    match v.trim().to_ascii_lowercase().as_str() {
        "off" | "false" | "never" => Ok(HugePages::Off),
        "auto" | "on" | "true" => Ok(HugePages::Auto),
        _ => Err(bad(name, v, "expected auto or off")),
    }
}

/// Parses a NUMA placement (see [`Placement`]).
pub fn parse_placement(name: &str, v: &str) -> Result<Placement> {
    v.parse().map_err(|why: String| bad(name, v, why))
}

impl Options {
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
        if self.retain_empty_regions > MAX_RETAINED {
            return Err(bad(
                "retain_empty_regions",
                &self.retain_empty_regions.to_string(),
                "must be 0 ..= 64",
            ));
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
        o.apply_env()?;
        o.validate()?;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The knobs table in this file's module doc is exactly the generated one
    /// (same knobs, env vars, old names, defaults and meanings, in order).
    #[test]
    fn doc_table_matches_the_module_doc() {
        let doc = module_doc_table(include_str!("options.rs"));
        let generated = Options::doc_table();
        let generated: Vec<&str> = generated.lines().collect();
        assert_eq!(
            doc, generated,
            "the module doc's knobs table differs from Options::doc_table(); paste that"
        );
        assert_eq!(Options::KNOBS.len(), KNOBS.len());
    }

    /// Every knob's documented default parses to its `Default` value.
    #[test]
    fn documented_defaults_are_the_defaults() {
        let mut o = Options {
            max_object: 1,
            region_size: 1,
            populate_new_regions: true,
            ..Options::default()
        };
        for k in Options::KNOBS {
            o.set(k.name, k.default).unwrap();
        }
        assert_eq!(o, Options::default());
    }

    /// Names and env vars are unique, and an old name is nobody's name.
    #[test]
    fn knob_names_are_unique() {
        let mut names: Vec<&str> = Options::KNOBS
            .iter()
            .flat_map(|k| std::iter::once(k.name).chain(k.aliases.iter().map(|a| a.0)))
            .collect();
        let mut envs: Vec<&str> = Options::KNOBS
            .iter()
            .flat_map(|k| std::iter::once(k.env).chain(k.aliases.iter().map(|a| a.1)))
            .collect();
        let (n, e) = (names.len(), envs.len());
        names.sort_unstable();
        names.dedup();
        envs.sort_unstable();
        envs.dedup();
        assert_eq!((names.len(), envs.len()), (n, e));
    }

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
