//! temporary local build of apg-sync: seal only (replaced by the real crate at merge)
pub mod seal;
