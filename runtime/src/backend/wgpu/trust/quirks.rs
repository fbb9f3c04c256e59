//! Known driver problems, as data compiled in: each entry matches adapters by
//! vendor id and (optionally) a device-name or driver substring, and turns
//! tiers off before anything runs. The self-test still runs on the tiers that
//! are left; a quirk only saves it from running (and a device from crashing
//! on) a path known to be bad.
//!
//! Each entry names the public reports it comes from (llama.cpp's Vulkan
//! backend issues: the same drivers run the same kind of compute shaders).
//! They are conservative: a tier is turned off for a whole family when the
//! reports name the family, not a driver version; the baseline tier stays
//! and the self-test still has the last word on it. Add entries here with
//! the report they come from.

use crate::backend::wgpu::device::Tier;

/// One known problem.
#[derive(Debug, Clone, Copy)]
pub struct Quirk {
    /// PCI / Vulkan vendor id.
    pub vendor: u32,
    /// Substring of the adapter name (case-insensitive); `None` = every device of the vendor.
    pub device: Option<&'static str>,
    /// Substring of the driver name or driver info (case-insensitive); `None` = every driver.
    pub driver: Option<&'static str>,
    /// Tiers turned off.
    pub disable: &'static [Tier],
    /// Why, and where it was reported.
    pub why: &'static str,
}

pub const QUALCOMM: u32 = 0x5143;
pub const ARM: u32 = 0x13B5;

/// The list.
pub const QUIRKS: &[Quirk] = &[
    Quirk {
        vendor: QUALCOMM,
        device: Some("adreno"),
        driver: Some("qualcomm"),
        disable: &[Tier::F16, Tier::Subgroup, Tier::Tiled],
        why: "Adreno, Qualcomm's driver: gibberish output (Adreno 732, github.com/ggml-org/llama.cpp/issues/16881), \
              DeviceLost on prompt batches over 32 tokens (Adreno 732/750, llama.cpp issues 12139 and 8743), \
              compute pipeline creation failing (Adreno 690, issue 9452) and a shader miscompile (Adreno 740, issue 5186)",
    },
    Quirk {
        vendor: ARM,
        device: Some("mali"),
        driver: None,
        disable: &[Tier::F16, Tier::Tiled],
        why: "Mali: a hang ending in DeviceLost on Mali-G78/G78AE (github.com/ggml-org/llama.cpp/issues/5186, discussion 8292)",
    },
    Quirk {
        vendor: ARM,
        device: None,
        driver: Some("panvk"),
        disable: &[Tier::F16, Tier::Subgroup, Tier::Fused, Tier::Tiled],
        why: "PanVK (Mesa's Mali driver, still flagged experimental): garbled output on RK3566 and S905D3 \
              (github.com/ggml-org/llama.cpp/issues/22682): baseline kernels only, and the self-test decides on those",
    },
];

/// The quirks that match this adapter.
pub fn matching(vendor: u32, device_name: &str, driver: &str, driver_info: &str) -> Vec<&'static Quirk> {
    let has = |hay: &str, needle: &str| hay.to_lowercase().contains(&needle.to_lowercase());
    QUIRKS
        .iter()
        .filter(|q| q.vendor == vendor)
        .filter(|q| q.device.is_none_or(|d| has(device_name, d)))
        .filter(|q| q.driver.is_none_or(|d| has(driver, d) || has(driver_info, d)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quirks_match_by_vendor_and_name() {
        let q = matching(QUALCOMM, "Adreno (TM) 740", "Qualcomm Technologies Inc. Adreno Vulkan Driver", "Driver Build: …");
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].disable, &[Tier::F16, Tier::Subgroup, Tier::Tiled]);
        // Turnip (Mesa's Adreno driver) was not named in the reports: left to the self-test.
        assert!(matching(QUALCOMM, "Turnip Adreno (TM) 660", "turnip Mesa driver", "Mesa 24").is_empty());
        assert!(matching(ARM, "Mali-G78", "Mali", "v1.r32").iter().any(|q| q.disable == [Tier::F16, Tier::Tiled]));
        // PanVK on a Mali: both entries, every tier off.
        assert_eq!(matching(ARM, "Mali-G52 r1", "panvk", "Mesa 25.0").len(), 2);
        // Lavapipe (vendor 0x10005) and a desktop NVIDIA GPU: nothing.
        assert!(matching(0x10005, "llvmpipe (LLVM 15.0.6, 256 bits)", "llvmpipe", "Mesa 22.3.6").is_empty());
        assert!(matching(0x10DE, "NVIDIA GeForce RTX 4090", "NVIDIA", "550").is_empty());
        // A vendor id alone is not enough when the entry names a device family.
        assert!(matching(ARM, "Immortalis-G715", "Mali", "").is_empty());
    }
}
