//! Shards as the frame knows them: manifests, packaged components, compatibility, building,
//! installing, and the catalog of installed shards.

pub mod builder;
pub mod catalog;
pub mod compat;
pub mod fetch;
pub mod grants;
pub mod install;
pub mod manifest;
pub mod package;
pub mod trust;
