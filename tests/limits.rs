//! Resource bounds of a node against hostile peers, before and after authentication.
