//! `exprun verify`: replay a recorded run and compare what it produced with the
//! original.

pub mod compare;
