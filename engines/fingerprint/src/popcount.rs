//! The CPU's population-count instruction for the matcher's bit loops.
//!
//! Release builds target baseline x86-64, which has no POPCNT instruction, so `count_ones`
//! compiles to a dozen shifts and masks. The hot loops (cylinder similarities, the 1:N first
//! stage) are compiled a second time with POPCNT enabled, and that copy runs when the CPU has
//! the instruction (every x86-64 CPU since 2008). Other architectures have their own
//! instruction and need no second copy.

/// True when the POPCNT copies may run on this CPU (detected once, then cached by std).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn available() -> bool {
    std::arch::is_x86_feature_detected!("popcnt")
}
