//! Shared fixtures for the criterion benches: the `payauth bench` workload replayed as an
//! endless stream with advancing request ids and time, and the test-mode switch.
//!
//! The workload generator and its Zipf sampler live in `payauth_harness::bench` (re-exported
//! here), so the criterion benches and `payauth bench` drive the engine with the same traffic.

use payauth_engine::Request;
pub use payauth_harness::bench::{SplitMix64, Workload, WorkloadOptions, Zipf, GAP_NS_MEAN};

/// True when criterion will not measure: `cargo test --benches` (no `--bench` argument),
/// `cargo bench -- --test`, or `--list`. The benches then use small fixtures so CI stays fast;
/// the code paths are the same.
pub fn quick_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    !has("--bench") || has("--test") || has("--list")
}

/// An endless request stream made of one workload's requests, replayed pass after pass.
///
/// Pass `p` shifts every `request_id` and `ref` by `p * ids_per_pass` and every `ts_ns` by
/// `p * span_ns`, so ids never repeat across passes (a bench measures fresh requests, not
/// duplicate answers, except for the workload's own 0.5% retransmissions), references stay
/// inside their pass, and time never goes backwards.
#[derive(Clone, Debug)]
pub struct Stream {
    base: Vec<Request>,
    ids_per_pass: u64,
    span_ns: i64,
    pass: u64,
    cursor: usize,
}

impl Stream {
    /// A stream over `base`, which must be non-empty with non-decreasing `ts_ns`.
    pub fn new(base: Vec<Request>) -> Stream {
        assert!(!base.is_empty(), "a stream needs requests");
        let ids_per_pass = base
            .iter()
            .flat_map(|r| [r.request_id, r.reference.unwrap_or(0)])
            .max()
            .expect("non-empty");
        let span_ns = base[base.len() - 1].ts_ns - base[0].ts_ns + GAP_NS_MEAN;
        Stream {
            base,
            ids_per_pass,
            span_ns,
            pass: 0,
            cursor: 0,
        }
    }

    /// The stream of a generated workload's requests.
    pub fn of(workload: &Workload) -> Stream {
        Stream::new(workload.requests.clone())
    }

    /// Replace the contents of `out` with the next `len` requests.
    pub fn fill(&mut self, out: &mut Vec<Request>, len: usize) {
        out.clear();
        while out.len() < len {
            if self.cursor == self.base.len() {
                self.cursor = 0;
                self.pass += 1;
            }
            let id_shift = self.pass * self.ids_per_pass;
            let ts_shift = self.pass as i64 * self.span_ns;
            let mut r = self.base[self.cursor];
            r.request_id += id_shift;
            r.reference = r.reference.map(|x| x + id_shift);
            r.ts_ns += ts_shift;
            out.push(r);
            self.cursor += 1;
        }
    }

    /// The next `len` requests.
    pub fn next_batch(&mut self, len: usize) -> Vec<Request> {
        let mut out = Vec::with_capacity(len);
        self.fill(&mut out, len);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use payauth_engine::Kind;

    #[test]
    fn stream_ids_and_time_advance_across_passes() {
        let w = Workload::generate(&WorkloadOptions {
            accounts: 50,
            requests: 1_000,
            zipf: 1.0,
            seed: 1,
        });
        let mut s = Stream::of(&w);
        let all = s.next_batch(3_500);
        assert!(all.windows(2).all(|p| p[0].ts_ns <= p[1].ts_ns));
        // Apart from the workload's own retransmissions, ids never repeat.
        let mut ids: Vec<u64> = all.iter().map(|r| r.request_id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert!(ids.len() > 3_400, "{}", ids.len());
        // A reference in pass 2 names an authorization of pass 2.
        let r = all[2_000..3_000]
            .iter()
            .find(|r| r.kind == Kind::Capture)
            .expect("a capture");
        let auth = all[2_000..3_000]
            .iter()
            .find(|a| a.request_id == r.reference.unwrap())
            .expect("its authorization");
        assert_eq!(auth.kind, Kind::Authorize);
    }
}
