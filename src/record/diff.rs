//! `exprun runs diff`: what differs between two run records, context and outputs.
