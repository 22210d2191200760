//! Policy runtime: loads policy components, runs them sandboxed, and turns their output
//! into a [`crate::domain::Verdict`].
