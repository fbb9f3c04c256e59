//! Known driver problems, as data compiled in: each entry matches adapters by
//! vendor id and (optionally) a device-name or driver substring, and turns
//! tiers off before anything runs. The self-test still runs on the tiers that
//! are left; a quirk only saves it from running (and a device from crashing
//! on) a path known to be bad.
//!
//! Entries summarize problems reported publicly for these GPU families
//! (llama.cpp's Vulkan backend issues on Adreno and Mali: garbage output,
//! `DeviceLost` with f16 and subgroup shaders; wgpu/Dawn driver-bug lists).
//! They are conservative: a tier is turned off for a whole family when
//! reports name the family, not a driver version. Add entries here with the
//! report they come from.

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
pub const IMGTEC: u32 = 0x1010;

/// The list.
pub const QUIRKS: &[Quirk] = &[
    Quirk {
        vendor: QUALCOMM,
        device: Some("adreno"),
        driver: None,
        disable: &[Tier::F16, Tier::Subgroup],
        why: "Adreno (Qualcomm proprietary driver): garbage output and DeviceLost with f16 and subgroup compute shaders (llama.cpp Vulkan backend reports)",
    },
    Quirk {
        vendor: ARM,
        device: Some("mali"),
        driver: None,
        disable: &[Tier::F16],
        why: "Mali (Arm proprietary driver): wrong results from f16 arithmetic in compute shaders (llama.cpp Vulkan backend reports)",
    },
    Quirk {
        vendor: IMGTEC,
        device: Some("powervr"),
        driver: None,
        disable: &[Tier::Subgroup],
        why: "PowerVR: subgroup operations unreliable in compute shaders (wgpu/Dawn driver-bug lists)",
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
        assert_eq!(q[0].disable, &[Tier::F16, Tier::Subgroup]);
        // Freedreno (Mesa's Adreno driver) has the same vendor and name: matched too (conservative).
        assert_eq!(matching(QUALCOMM, "Turnip Adreno (TM) 660", "turnip Mesa driver", "Mesa 24").len(), 1);
        assert!(matching(ARM, "Mali-G78", "Mali", "v1.r32").iter().any(|q| q.disable == [Tier::F16]));
        // Lavapipe (vendor 0x10005) and a desktop NVIDIA GPU: nothing.
        assert!(matching(0x10005, "llvmpipe (LLVM 15.0.6, 256 bits)", "llvmpipe", "Mesa 22.3.6").is_empty());
        assert!(matching(0x10DE, "NVIDIA GeForce RTX 4090", "NVIDIA", "550").is_empty());
        // A vendor id alone is not enough when the entry names a device family.
        assert!(matching(ARM, "Immortalis-G715", "Mali", "").is_empty());
    }
}
