//! engineio (under construction)
