//! socketio (under construction)
