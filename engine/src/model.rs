//! Plain reference model of DOMAIN.md (placeholder until written).
