//! Export of a run record as an RO-Crate Process Run Crate and as an in-toto Statement.
