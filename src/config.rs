//! config (placeholder until the server lands)
