//! `vigil bench`: measurements of the running system, each beside a
//! baseline measured in the same run.

pub mod api;
