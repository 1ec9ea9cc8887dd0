//! criterion benches for payauth live in benches/.
