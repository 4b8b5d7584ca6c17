//! Cross-replica delivery: implements `socketio::Adapter` over Redis (fred).
