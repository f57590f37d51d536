//! The local API door.
