//! tiny guest builder
