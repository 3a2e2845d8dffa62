//! RFC 9111 clause by clause.
