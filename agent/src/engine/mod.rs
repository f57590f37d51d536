//! The engine: the one owner of state.
