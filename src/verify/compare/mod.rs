//! Comparing a replay's outputs with the original run's: bit-exact first, then declared numeric tolerances.
